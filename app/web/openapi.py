"""The API's contract: the OpenAPI 3.0 document served at /api/v1/openapi.json. The tests run a
property-based tester (schemathesis) against the live server with it: every documented status,
every response body against its schema, no 5xx on generated input."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Final

from app.durations import format_duration_ms
from app.model.events import State

__all__ = ["TIME_PATTERN", "openapi_document", "request_schema"]

_STATES: Final = [s.value for s in State]
_RESULT_STATES: Final = ["PENDING", "SUPPRESSED", "SUCCEEDED", "FAILED", "TIMED_OUT", "EXPIRED", "REJECTED",
                         "DUPLICATE"]
_FIELDS: Final = ("subject|name|kind|origin|severity|text|id|time|trace_id|ttl|from_state|to_state|"
                   "cause_event_id|type|target|action|group")
#: A silence's FIELD=GLOB: a rule field or one of the action's own (app.rules.silences).
_MATCH_PATTERN: Final = (rf"^({_FIELDS}|tags\.[^=\x00]+|metrics\.[^=\x00]+|data\.[^.=\x00]+(\.[^.=\x00]+)*)"
                         r"=[^\x00]+$")
#: Some character that is not blank under both regex dialects: Python's \s also counts \x1c-\x1f and \x85,
#: ECMA's (clients') also \ufeff, so a plain \S would accept in one what the other refuses.
_VISIBLE_CHAR_PATTERN: Final = r"[^\s\x1c-\x1f\x85\ufeff]"
_TIME_DOC: Final = ("ms since the epoch (13 digits), ISO-8601 (2024-05-03T10:15:00Z), `now`, or a duration before "
                    "now (15m, 2h, 7d)")


_OPEN: Final = {"type": "object", "additionalProperties": True}
#: A text parameter: no NUL character, at most 1000 characters.
_TEXT: Final = {"type": "string", "maxLength": 1000, "pattern": "^[^\\x00]*$"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(name: str, description: str, schema: dict[str, Any] | None = None, *, where: str = "query",
           required: bool = False, explode: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where, "description": description,
                           "schema": schema or _TEXT,
                           "required": required or where == "path"}
    if explode is not None:
        out["explode"] = explode
    return out


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "a parameter or the body is wrong (`parameter` names it)", 401: "a valid bearer token is needed",
            404: "unknown id or identity", 415: "the body must be JSON", 429: "too many backtests waiting",
            501: "not in this build", 503: "the workers or Kafka do not answer now"}
    out = {str(c): _json(_ref("Error"), text[c]) for c in codes}
    if 400 in codes:
        # A request the HTTP layer cannot even read (a request line longer than 64 KiB) gets plain text.
        out["400"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    return out


_PAGE_PARAMS: Final = [
    _param("offset", "rows to skip", {"type": "integer", "minimum": 0, "maximum": 10_000_000}),
    _param("page", "1-based page number (instead of offset)", {"type": "integer", "minimum": 1,
                                                                "maximum": 10_000_000}),
    _param("limit", "rows per page (capped at the server's max_page)", {"type": "integer", "minimum": 1}),
]
_STATUS_PARAMS: Final = [
    _param("subject", "subject glob (shell-style: * ? [abc])"),
    _param("name", "name glob"),
    _param("state", "only these states (repeatable or comma-separated)",
           {"type": "array", "items": {"type": "string", "enum": _STATES}, "maxItems": 50}, explode=True),
    _param("tag", "KEY=GLOB a tag must match (repeatable)",
           {"type": "array", "maxItems": 20,
            "items": {"type": "string", "pattern": r"^[^=]+=.*$", "maxLength": 1000}}, explode=True),
    _param("flapping", "only flapping (true) or only steady (false) identities", {"type": "boolean"}),
    _param("sort", "subject, name, state (worst first), since or last_seen; a leading - reverses",
           {"type": "string", "enum": ["subject", "-subject", "name", "-name", "state", "-state", "since", "-since",
                                       "last_seen", "-last_seen"]}),
]
#: The forms of a time the server reads (it also reads a few more spellings of ISO-8601).
TIME_PATTERN: Final = (r"^(now|[0-9]{13}|-?([1-9][0-9]{0,5}(ms|s|m|h|d|w))+|"
                       r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
                       r"(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,3})?)?(Z|[+-](0[0-9]|1[0-2]):00)?)?)$")
_TIME: Final = {"type": "string", "pattern": TIME_PATTERN, "maxLength": 64}
_RANGE_PARAMS: Final = [
    _param("since", f"from this time: {_TIME_DOC}", _TIME),
    _param("until", f"up to this time: {_TIME_DOC}", _TIME),
]
_MAYBE_STR: Final = {"type": "string", "nullable": True}
_MAYBE_INT: Final = {"type": "integer", "nullable": True}
_COUNTS: Final = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}


def _schemas() -> dict[str, Any]:
    status = {
        "type": "object", "additionalProperties": True,
        "required": ["subject", "name", "state", "since", "last_seen", "flapping", "tags"],
        "properties": {
            "subject": {"type": "string"}, "name": {"type": "string"}, "state": {"type": "string", "enum": _STATES},
            "since": {"type": "integer"}, "last_seen": {"type": "integer"}, "last_event_id": {"type": "string"},
            "text": {"type": "string"}, "event_count": {"type": "integer"}, "transition_count": {"type": "integer"},
            "flapping": {"type": "boolean"}, "ttl": {"type": "number", "nullable": True},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "rev": {"type": "integer", "description": "stream sequence of the last change (newer wins)"},
        },
    }
    alert = {
        "type": "object", "additionalProperties": True,
        "required": ["id", "time", "subject", "name", "from_state", "to_state"],
        "properties": {"id": {"type": "string"}, "time": {"type": "integer"}, "subject": {"type": "string"},
                       "name": {"type": "string"}, "from_state": {"type": "string"}, "to_state": {"type": "string"},
                       "severity": {"type": "integer"}, "cause_event_id": _MAYBE_STR, "text": {"type": "string"},
                       "flapping": {"type": "boolean"}, "trace_id": _MAYBE_STR,
                       "tags": {"type": "object", "additionalProperties": {"type": "string"}}},
    }
    window = {
        "type": "object", "additionalProperties": True,
        "required": ["subject", "name", "metric", "window_start", "size_ms", "count"],
        "properties": {"subject": {"type": "string"}, "name": {"type": "string"}, "metric": {"type": "string"},
                       "window_start": {"type": "integer"}, "size_ms": {"type": "integer"},
                       "count": {"type": "integer"}, "mean": {"type": "number", "nullable": True},
                       "min": {"type": "number", "nullable": True}, "max": {"type": "number", "nullable": True},
                       "p95": {"type": "number", "nullable": True}, "closed": {"type": "boolean"}},
    }
    action = {
        "type": "object", "additionalProperties": True,
        "required": ["id", "time", "rule", "type", "target", "status", "results"],
        "properties": {"id": {"type": "string"}, "time": {"type": "integer"}, "rule": {"type": "string"},
                       "type": {"type": "string"}, "target": {"type": "string"},
                       "status": {"type": "string", "enum": _RESULT_STATES},
                       "results": {"type": "array", "items": _OPEN},
                       "suppressed_by": {"type": "object", "nullable": True, "additionalProperties": True},
                       "held_by": {"type": "object", "nullable": True, "additionalProperties": True,
                                   "description": "the failing dependency that held the action back before "
                                                  "it was released (sent)"},
                       "event_id": _MAYBE_STR, "trace_id": _MAYBE_STR},
    }
    silence = {
        "type": "object", "additionalProperties": True,
        "required": ["id", "match", "until_ms", "reason", "created_ms", "active"],
        "properties": {"id": {"type": "string"}, "match": {"type": "object",
                                                          "additionalProperties": {"type": "string"}},
                       "rule": _MAYBE_STR, "until_ms": {"type": "integer"}, "reason": {"type": "string"},
                       "created_ms": {"type": "integer"}, "active": {"type": "boolean"}},
    }
    backtest = {
        "type": "object", "additionalProperties": True, "required": ["id", "state", "request", "progress"],
        "properties": {"id": {"type": "string"},
                       "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
                       "created": {"type": "integer"}, "request": _OPEN, "progress": _OPEN,
                       "error": _MAYBE_STR, "result": {"type": "object", "nullable": True,
                                                       "additionalProperties": True}},
    }
    trace_node: dict[str, Any] = {
        "type": "object", "additionalProperties": True, "required": ["kind", "id", "record", "children"],
        "properties": {"kind": {"type": "string", "enum": ["event", "firing", "action", "result"]},
                       "id": {"type": "string"}, "record": _OPEN, "note": {"type": "string"},
                       "children": {"type": "array", "items": _ref("TraceNode")}},
    }
    return {
        "Error": {"type": "object", "required": ["error"], "additionalProperties": True,
                  "properties": {"error": {"type": "string"}, "parameter": {"type": "string"},
                                 "errors": {"type": "array", "items": {"type": "string"}}}},
        "Status": status, "Alert": alert, "Window": window, "Action": action, "Silence": silence,
        "Backtest": backtest, "TraceNode": trace_node,
        "StatusPage": {
            "type": "object", "additionalProperties": True,
            "required": ["total", "offset", "limit", "counts", "items", "revision", "source"],
            "properties": {"total": {"type": "integer", "minimum": 0}, "offset": {"type": "integer", "minimum": 0},
                           "limit": {"type": "integer", "minimum": 0}, "counts": _COUNTS,
                           "flapping": {"type": "integer"}, "revision": {"type": "integer"},
                           "source": {"type": "string", "enum": ["index", "workers"]}, "ready": {"type": "boolean"},
                           "items": {"type": "array", "items": _ref("Status")}}},
        "GroupLine": {
            "type": "object", "additionalProperties": True, "required": ["kind", "group"],
            "properties": {"kind": {"type": "string", "enum": ["group", "items"]}, "group": {"type": "string"},
                           "size": {"type": "integer"}, "counts": _COUNTS,
                           "worst": {"type": "string", "enum": _STATES},
                           "items": {"type": "array", "items": _ref("Status")}}},
        "EventRef": {
            "type": "object", "additionalProperties": True, "required": ["id", "time", "subject", "name"],
            "properties": {"id": {"type": "string"}, "time": {"type": "integer"}, "subject": {"type": "string"},
                           "name": {"type": "string"}, "type": {"type": "string"}, "partition": {"type": "integer"},
                           "offset": {"type": "integer"},
                           "record": {"type": "object", "nullable": True, "additionalProperties": True}}},
    }


def _paths(window_sizes_ms: tuple[int, ...]) -> dict[str, Any]:
    id_param = _param("id", "an id", where="path")
    windows = [*(format_duration_ms(s) for s in window_sizes_ms), *(str(s) for s in window_sizes_ms)]
    return {
        "/status": {"get": {
            "summary": "Current status of every identity: filtered, sorted, paged (server-side)",
            "parameters": [*_STATUS_PARAMS, *_PAGE_PARAMS,
                           _param("source", "index (the published statuses, fast) or workers (their tables: fresh "
                                            "last_seen, counts and text)",
                                  {"type": "string", "enum": ["index", "workers"]})],
            "responses": {"200": _json(_ref("StatusPage")), **_errors(400, 401, 503)}}},
        "/status/groups": {"get": {
            "summary": "The board grouped by subject, name or a tag, as lines (a group's header, then its identities "
                       "per_line at a time)",
            "parameters": [*_STATUS_PARAMS, *_PAGE_PARAMS,
                           _param("group_by", "subject, name or tag:KEY", {"type": "string",
                                                                           "pattern": "^(subject|name|tag:.+)$"}),
                           _param("per_line", "identities per line", {"type": "integer", "minimum": 1,
                                                                     "maximum": 500}),
                           _param("group_order", "group (by name) or worst (worst state first)",
                                  {"type": "string", "enum": ["group", "worst"]})],
            "responses": {"200": _json({
                "type": "object", "additionalProperties": True,
                "required": ["total_lines", "groups", "total", "counts", "lines", "offset", "limit"],
                "properties": {"total_lines": {"type": "integer"}, "groups": {"type": "integer"},
                               "total": {"type": "integer"}, "counts": _COUNTS, "offset": {"type": "integer"},
                               "limit": {"type": "integer"}, "lines": {"type": "array", "items": _ref("GroupLine")}}}),
                **_errors(400, 401)}}},
        "/status/{subject}/{name}": {"get": {
            "summary": "One identity: its status, the workers' current record, and its transitions (newest first)",
            "parameters": [_param("subject", "subject", where="path"), _param("name", "name", where="path"),
                           _param("limit", "transitions to return", {"type": "integer", "minimum": 1}),
                           _param("since", f"transitions from: {_TIME_DOC}", _TIME)],
            "responses": {"200": _json({
                "type": "object", "additionalProperties": True, "required": ["subject", "name", "transitions"],
                "properties": {"subject": {"type": "string"}, "name": {"type": "string"},
                               "status": {"allOf": [_ref("Status")], "nullable": True},
                               "current": {"type": "object", "nullable": True, "additionalProperties": True},
                               "transitions": {"type": "array", "items": _ref("Alert")},
                               "missing": {"type": "array", "items": {"type": "string"}}}}),
                **_errors(400, 401, 404)}}},
        "/events": {"get": {
            "summary": "The archive index: events of matching identities in a time range, newest first",
            "parameters": [_param("subject", "subject glob"), _param("name", "name glob"), *_RANGE_PARAMS,
                           _param("limit", "events (at most 100 with records=true)", {"type": "integer",
                                                                                       "minimum": 1}),
                           _param("records", "read each event's record from Kafka too", {"type": "boolean"})],
            "responses": {"200": _json({
                "type": "object", "additionalProperties": True, "required": ["events"],
                "properties": {"events": {"type": "array", "items": _ref("EventRef")},
                               "missing": {"type": "array", "items": {"type": "string"}}}}),
                **_errors(400, 401, 503)}}},
        "/events/{id}": {"get": {
            "summary": "One event by id (archive index, then Kafka)",
            "parameters": [id_param],
            "responses": {"200": _json({"type": "object", "additionalProperties": True,
                                        "required": ["id", "event", "partition", "offset"],
                                        "properties": {"id": {"type": "string"}, "event": _OPEN,
                                                       "partition": {"type": "integer"},
                                                       "offset": {"type": "integer"}}}),
                          **_errors(401, 404, 503)}}},
        "/alerts": {"get": {
            "summary": "Alert history (every status transition), newest first",
            "parameters": [*_RANGE_PARAMS,
                           _param("state", "only transitions to these states",
                                  {"type": "array", "items": {"type": "string", "enum": _STATES}}, explode=True),
                           _param("subject", "subject glob"), _param("name", "name glob"),
                           _param("limit", "alerts", {"type": "integer", "minimum": 1})],
            "responses": {"200": _json({"type": "object", "additionalProperties": True, "required": ["alerts"],
                                        "properties": {"alerts": {"type": "array", "items": _ref("Alert")}}}),
                          **_errors(400, 401)}}},
        "/metrics": {"get": {
            "summary": "Windows of one identity's metrics in a range (closed ones from the history store, open "
                       "and recent ones from the workers)",
            "parameters": [_param("subject", "subject", {**_TEXT, "minLength": 1}, required=True),
                           _param("name", "name", {**_TEXT, "minLength": 1}, required=True),
                           _param("metric", "only this metric"),
                           _param("window", "window size (one the pipeline has), e.g. 10s or 1m, or in ms",
                                  {"type": "string", "enum": windows}), *_RANGE_PARAMS,
                           _param("last", "instead of a range: the workers' latest N windows per size (open ones "
                                          "too)", {"type": "integer", "minimum": 1, "maximum": 1000}),
                           _param("limit", "windows", {"type": "integer", "minimum": 1})],
            "responses": {"200": _json({
                "type": "object", "additionalProperties": True, "required": ["windows", "metrics", "sizes"],
                "properties": {"windows": {"type": "array", "items": _ref("Window")},
                               "metrics": {"type": "array", "items": {"type": "string"}},
                               "sizes": {"type": "array", "items": {"type": "integer"}},
                               "missing": {"type": "array", "items": {"type": "string"}}}}),
                **_errors(400, 401)}}},
        "/actions": {"get": {
            "summary": "Actions joined with their results (or the silence that suppressed them), newest first",
            "parameters": [_param("rule", "rule glob"), _param("target", "target glob"),
                           _param("state", "only these states",
                                  {"type": "array", "items": {"type": "string", "enum": _RESULT_STATES}},
                                  explode=True),
                           _param("suppressed", "only suppressed (true) or only sent (false) actions",
                                  {"type": "boolean"}),
                           *_RANGE_PARAMS, _param("limit", "actions", {"type": "integer", "minimum": 1})],
            "responses": {"200": _json({"type": "object", "additionalProperties": True, "required": ["actions"],
                                        "properties": {"actions": {"type": "array", "items": _ref("Action")}}}),
                          **_errors(400, 401)}}},
        "/trace/{id}": {"get": {
            "summary": "Why did this fire: the chain around an event, alert, action or result id (event, rule "
                       "firing, action, result, follow-on events)",
            "parameters": [id_param],
            "responses": {"200": _json({
                "type": "object", "additionalProperties": True, "required": ["id", "trace_id", "tree"],
                "properties": {"id": {"type": "string"}, "trace_id": {"type": "string"}, "tree": _ref("TraceNode"),
                               "alerts": {"type": "array", "items": _ref("Alert")},
                               "rules": {"type": "array", "items": _OPEN}}}),
                **_errors(401, 404)}}},
        "/silences": {
            "get": {"summary": "Silences (active ones; all=true: ended ones too)",
                    "parameters": [_param("all", "include ended silences", {"type": "boolean"})],
                    "responses": {"200": _json({"type": "object", "additionalProperties": True,
                                                "required": ["silences"],
                                                "properties": {"silences": {"type": "array",
                                                                            "items": _ref("Silence")}}}),
                                  **_errors(400, 401)}},
            "post": {"summary": "Start a silence now, for a duration (or until a time), with a reason",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["reason", "duration"], "additionalProperties": False,
                         "anyOf": [{"required": ["match"], "properties": {"match": {"minItems": 1}}},
                                   {"required": ["rule"]}],
                         "properties": {"match": {"type": "array", "maxItems": 20,
                                                  "items": {"type": "string", "pattern": _MATCH_PATTERN,
                                                            "maxLength": 500},
                                                  "description": "FIELD=GLOB: subject, name, tags.K, data.P, ... or "
                                                                 "the action's target, action, group"},
                                        "rule": {"type": "string", "minLength": 1, "maxLength": 200,
                                                 "pattern": "^[^\\x00]*$", "description": "rule name glob"},
                                        "duration": {"type": "string", "maxLength": 32, "description": "e.g. 2h",
                                                     "pattern": "^([1-9][0-9]{0,4}(s|m)|[1-9][0-9]{0,2}h|"
                                                                "[1-9][0-9]?d)$"},
                                        "reason": {"type": "string", "maxLength": 2000,
                                                   "pattern": _VISIBLE_CHAR_PATTERN}}}}}},
                     "responses": {"201": _json(_ref("Silence"), "the silence"), **_errors(400, 401, 415, 503)}}},
        "/silences/{id}": {"delete": {
            "summary": "Expire a silence now (it stays listed as ended)",
            "parameters": [id_param],
            "responses": {"200": _json(_ref("Silence"), "the ended silence"), **_errors(401, 404, 503)}}},
        "/backtests": {
            "get": {"summary": "Recent backtests (without results)",
                    "responses": {"200": _json({"type": "object", "additionalProperties": True,
                                                "required": ["backtests"],
                                                "properties": {"backtests": {"type": "array",
                                                                             "items": _ref("Backtest")}}}),
                                  **_errors(401)}},
            "post": {"summary": "Queue a backtest: a posted rule set (or the deployed one) over a range of recorded "
                                "events, compared with the deployed rules",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["from"], "additionalProperties": False,
                         "properties": {"from": {**_TIME, "description": _TIME_DOC},
                                        "to": {**_TIME, "description": _TIME_DOC},
                                        "files": {"type": "object", "additionalProperties": {"type": "string"},
                                                  "description": "rule files: name.yaml -> YAML"},
                                        "rules": {"type": "string", "description": "one rule file's YAML"},
                                        "subject": {"type": "string", "description": "only events of subjects "
                                                                                     "matching this glob"},
                                        "compare": {"type": "boolean",
                                                    "description": "also run the deployed rules and compare"}}}}}},
                     "responses": {"202": _json(_ref("Backtest"), "queued"), **_errors(400, 401, 415, 429)}}},
        "/backtests/{id}": {"get": {
            "summary": "A backtest: state, progress and (once done) firings and the difference",
            "parameters": [id_param],
            "responses": {"200": _json(_ref("Backtest")), **_errors(401, 404)}}},
        "/rules": {"get": {
            "summary": "The deployed rules (as the workers run them) and their files",
            "responses": {"200": _json({"type": "object", "additionalProperties": True, "required": ["rules", "files"],
                                        "properties": {"rules": {"type": "array", "items": _OPEN},
                                                       "files": {"type": "object",
                                                                 "additionalProperties": {"type": "string"}}}}),
                          **_errors(401)}}},
        "/gates": {"get": {
            "summary": "The gates defined beside the rules, and their definition errors",
            "responses": {"200": _json({"type": "object", "additionalProperties": True, "required": ["gates"],
                                        "properties": {"gates": {"type": "array", "items": _OPEN}}}),
                          **_errors(401)}}},
        "/gates/{name}": {"get": {
            "summary": "A gate's decision now: open or closed, each condition and why (recorded as an ARCHIVE event)",
            "parameters": [_param("name", "the gate's name", where="path"),
                           _param("record", "record the decision as an event (default true)", {"type": "boolean"})],
            "responses": {"200": _json({"type": "object", "additionalProperties": True,
                                        "required": ["gate", "open", "state", "conditions"],
                                        "properties": {"gate": {"type": "string"}, "open": {"type": "boolean"},
                                                       "state": {"type": "string", "enum": ["open", "closed"]},
                                                       "conditions": {"type": "array", "items": _OPEN}}}),
                          **_errors(400, 401, 404)}}},
        "/members": {"get": {
            "summary": "Hosts seen through heartbeats (alive, or failed when the heartbeat expired)",
            "responses": {"200": _json({"type": "object", "additionalProperties": True, "required": ["members"],
                                        "properties": {"members": {"type": "array", "items": {
                                            "type": "object", "additionalProperties": True,
                                            "required": ["host", "state", "last_seen"],
                                            "properties": {"host": {"type": "string"},
                                                           "state": {"type": "string", "enum": ["ALIVE", "FAILED"]},
                                                           "last_seen": {"type": "integer"}}}}}}),
                          **_errors(401)}}},
        "/info": {"get": {
            "summary": "What this server serves: readiness, window sizes, retention, whether a token is needed",
            "responses": {"200": _json(_OPEN), **_errors(401)}}},
        "/stream": {"get": {
            "summary": "Server-sent events: status, alert, action, result, suppressed, silence (and reset, hello); "
                       "resumable with Last-Event-ID",
            "parameters": [_param("kinds", "only these kinds (comma-separated)"),
                           _param("last_event_id", "resume after this id (what Last-Event-ID carries)"),
                           _param("access_token", "the bearer token (EventSource cannot send headers)")],
            "responses": {"200": {"description": "an endless text/event-stream",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          **_errors(400, 401)}}},
    }


def request_schema(path: str, method: str = "post") -> dict[str, Any]:
    """The JSON schema of an operation's request body (the server checks bodies against it first)."""
    schema: dict[str, Any] = _paths(())[path][method]["requestBody"]["content"]["application/json"]["schema"]
    return schema


@lru_cache(maxsize=8)
def openapi_document(window_sizes_ms: tuple[int, ...] = (10_000, 60_000)) -> dict[str, Any]:
    """The OpenAPI 3.0 document of /api/v1 (for a pipeline with these window sizes)."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "Vigil API", "version": "1",
                 "description": "Status, alerts, metrics, actions, traces, silences and backtests of Vigil. Changes "
                                "(POST, DELETE) need `Authorization: Bearer <token>` when the server has a token; "
                                "reads too when it is configured so."},
        "servers": [{"url": "/api/v1"}],
        "components": {"schemas": _schemas(),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": _paths(window_sizes_ms),
    }
