"""`POST /v1/puppet`: Puppet run reports (the YAML of Puppet's `http` report processor, or JSON).

Events (origin "puppet", subject = the node, i.e. the report's `host`):
- one ARCHIVE event per failed, changed or noop-pending resource, named after it (e.g.
  `Service[httpd]`), tagged `resource_status` failed / changed / noop: CRITICAL if it failed (or
  failed to restart), OK if it changed, OK and tagged `noop=true` if a noop run found it out of sync
  (its pending changes, as Puppet reports them with event status "noop"); text = its change/log
  messages. A resource that only an error log names (reports of agents before 2.6 have no resource
  statuses) is a failed resource too.
- one METRIC event named `puppet-run` with every numeric report metric as `<category>.<name>`
  (`time.total` in seconds, `resources.changed`, `resources.failed`, `changes.total`,
  `events.failure`, ...; `resources.noop_pending` counts the noop resources), CRITICAL when the
  run failed, else OK. Its `run_status` tag is the report's `status`; reports without one (agents
  before 2.6.5) get it from what they contain: `failed` if a resource failed or a log is an error,
  `changed` if a resource changed, else `unchanged` (tagged `run_status_derived=true`).

Puppet writes its report with Ruby object tags (`!ruby/object:Puppet::Transaction::Report`,
`!ruby/sym ...`). They are read with a SafeLoader subclass that turns any `!ruby/...` node into the
plain mapping/sequence/string underneath: nothing named by the document is ever instantiated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import yaml

from app.bridges.errors import ParseError
from app.bridges.parsers._common import (
    SURROGATE_ESCAPE,
    ParseResult,
    build_event,
    datetime_ms,
    decode_utf8,
    load_json,
    parse_rfc3339_ms,
    require_mapping,
    require_str,
    tag_text,
)
from app.model.events import Event, Kind, Severity, now_ms

__all__ = ["RUN_EVENT_NAME", "RubyTagSafeLoader", "load_report", "parse_puppet_report"]

ORIGIN = "puppet"
RUN_EVENT_NAME = "puppet-run"
# Report field → tag, copied to every event of a run.
_RUN_TAGS = {
    "environment": "environment", "transaction_uuid": "transaction_uuid", "status": "run_status",
    "configuration_version": "configuration_version", "puppet_version": "puppet_version",
    "report_format": "report_format", "noop": "noop", "catalog_uuid": "catalog_uuid",
    "code_id": "code_id", "server_used": "server_used",
}
# Where a resource reference starts in a log source, and what must follow it to the end: the title
# in brackets, optionally one "/property". Titles may contain "/" (file paths), hence the two steps.
_RESOURCE_START = re.compile(r"(?:^|/)([A-Z][\w:]*)\[")
_RESOURCE_TAIL = re.compile(r"([A-Z][\w:]*\[.*\])(?:/[a-z_]+)?$")
_MAX_NESTING = 64  # a real report nests about 6 levels deep
_MAX_MESSAGES = 20  # per resource event text: enough to see what happened, bounded for big runs
_ERROR_LEVELS = frozenset({"err", "alert", "emerg", "crit"})


# libyaml's parser when available: a large report parses several times faster than in pure Python.
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RubyTagSafeLoader(_SafeBase):  # type: ignore[valid-type,misc]
    """SafeLoader that reads `!ruby/...` tagged nodes as plain data (and nothing else unsafely)."""


def _construct_ruby_tagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


RubyTagSafeLoader.add_multi_constructor("!ruby/", _construct_ruby_tagged)


def load_report(body: bytes | str) -> Mapping[str, Any]:
    """Decode a report: JSON if it looks like JSON, else Puppet's tagged YAML."""
    text = decode_utf8(body) if isinstance(body, bytes | bytearray) else body
    if text.lstrip().startswith("{"):
        return require_mapping(load_json(text), "body")
    if SURROGATE_ESCAPE.search(text):
        # PyYAML turns even a valid pair into two lone surrogates: text that cannot be sent on.
        raise ParseError("body", "surrogate escapes (\\ud800-\\udfff) are not supported in YAML reports")
    try:
        _check_nesting(text)
        data = yaml.load(text, Loader=RubyTagSafeLoader)
    except ParseError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParseError("body", f"not a valid YAML report{where}: {problem}") from None
    except (RecursionError, TypeError, ValueError, OverflowError) as exc:
        # Deep nesting, unhashable (complex) keys and out-of-range timestamps surface as these.
        raise ParseError("body", f"not a usable YAML report: {type(exc).__name__}") from None
    return require_mapping(data, "body")


def _check_nesting(text: str) -> None:
    """Refuse deeply nested YAML before composing it: libyaml's composer recurses in C and crashes
    the process (not a catchable RecursionError) on a few thousand levels. The event stream is
    produced iteratively, so counting depth on it is safe and stops at the limit."""
    depth = 0
    for event in yaml.parse(text, Loader=_SafeBase):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > _MAX_NESTING:
                raise ParseError("body", f"YAML is nested deeper than {_MAX_NESTING} levels")
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1


def parse_puppet_report(body: bytes | str | Mapping[str, Any], *, received_ms: int | None = None) -> ParseResult:
    """Events for one run report; a malformed resource status is reported, the others still count."""
    report = load_report(body) if isinstance(body, bytes | bytearray | str) else require_mapping(body, "body")
    node = require_str(report, "host").strip()
    time_ms = _report_time(report.get("time"), received_ms)
    run_tags = {tag: tag_text(report[key]) for key, tag in _RUN_TAGS.items() if _is_scalar(report.get(key))}
    statuses = report.get("resource_statuses") or {}
    if not isinstance(statuses, Mapping):
        raise ParseError("resource_statuses", "must be a mapping of resource name to status")
    messages = _log_messages_by_resource(report.get("logs"))
    error_logs = _error_logs(report.get("logs"))

    result = ParseResult()
    counted = {"failed": 0, "changed": 0, "noop": 0}
    for index, (resource, status) in enumerate(statuses.items()):
        prefix = f"resource_statuses[{str(resource)[:80]!r}]"
        try:
            event = _resource_event(str(resource), status, prefix, node, time_ms, run_tags, messages)
        except ParseError as exc:
            exc.index = index
            result.errors.append(exc)
            continue
        if event is not None:
            counted[event.tags["resource_status"]] += 1
            result.events.append(event)
    # Agents before 2.6 report no resource statuses: a resource is known to have failed only from
    # the error logs that name it.
    for resource, lines in error_logs.items():
        if str(resource) not in statuses:
            result.events.append(_logged_failure_event(resource, lines, node, time_ms, run_tags))
            counted["failed"] += 1
    result.events.append(_run_event(report, node, time_ms, run_tags, counted, _has_error_log(report.get("logs"))))
    return result


def _resource_event(resource: str, status: Any, prefix: str, node: str, time_ms: int,
                    run_tags: Mapping[str, str], messages: Mapping[str, list[str]]) -> Event | None:
    status = require_mapping(status, prefix)
    failed = bool(status.get("failed")) or bool(status.get("failed_to_restart"))
    events = [e for e in _list(status.get("events")) if isinstance(e, Mapping)]
    noop = not failed and not status.get("changed") and any(_text(e.get("status")) == "noop" for e in events)
    if not failed and not status.get("changed") and not noop:
        return None
    change_messages = [str(e["message"]) for e in events if _is_scalar(e.get("message"))]
    lines = (change_messages + messages.get(resource, []))[:_MAX_MESSAGES]
    tags = dict(run_tags)
    tags["resource_status"] = "failed" if failed else "noop" if noop else "changed"
    if noop:
        tags["noop"] = "true"
    for key in ("resource_type", "title", "file", "line", "corrective_change", "change_count", "skipped"):
        if _is_scalar(status.get(key)):
            tags[key] = tag_text(status[key])
    metrics = {}
    if isinstance(status.get("evaluation_time"), int | float) and not isinstance(status["evaluation_time"], bool):
        metrics["evaluation_time"] = float(status["evaluation_time"])
    return build_event(
        f"{prefix}.",
        time=time_ms,
        subject=node,
        name=resource,
        kind=Kind.ARCHIVE,
        severity=Severity.CRITICAL if failed else Severity.OK,
        origin=ORIGIN,
        text="\n".join(lines) or tags["resource_status"],
        tags=tags,
        metrics=metrics,
    )


def _logged_failure_event(resource: str, lines: list[str], node: str, time_ms: int,
                          run_tags: Mapping[str, str]) -> Event:
    return build_event(
        "",
        time=time_ms,
        subject=node,
        name=resource,
        kind=Kind.ARCHIVE,
        severity=Severity.CRITICAL,
        origin=ORIGIN,
        text="\n".join(lines[:_MAX_MESSAGES]),
        tags={**run_tags, "resource_status": "failed", "resource_status_source": "log"},
    )


def _run_event(report: Mapping[str, Any], node: str, time_ms: int, run_tags: Mapping[str, str],
               counted: Mapping[str, int], error_logged: bool) -> Event:
    metrics: dict[str, float] = {}
    categories = report.get("metrics")
    for category, metric in (categories.items() if isinstance(categories, Mapping) else ()):
        values = metric.get("values") if isinstance(metric, Mapping) else None
        for row in _list(values):
            # Each row is [name, label, value]; format 0 reports write names as ":failed".
            if isinstance(row, list) and len(row) == 3 and _is_number(row[2]):
                metrics[f"{_text(category)}.{_text(row[0])}"] = float(row[2])
    # A run that failed before applying (e.g. catalog compilation) has no metrics: count ourselves.
    metrics.setdefault("resources.failed", float(counted["failed"]))
    metrics.setdefault("resources.changed", float(counted["changed"]))
    if counted["noop"]:
        metrics["resources.noop_pending"] = float(counted["noop"])
    tags = dict(run_tags)
    status = tags.get("run_status")
    if not status:
        status = _derived_status(metrics, counted, error_logged)
        tags.update(run_status=status, run_status_derived="true")
    return build_event(
        "",
        time=time_ms,
        subject=node,
        name=RUN_EVENT_NAME,
        kind=Kind.METRIC,
        severity=Severity.CRITICAL if status == "failed" else Severity.OK,
        origin=ORIGIN,
        text=f"puppet run {status:.40}: {counted['changed']} changed, {counted['failed']} failed"
             + (f", {counted['noop']} pending (noop)" if counted["noop"] else ""),
        tags=tags,
        metrics=metrics,
    )


def _derived_status(metrics: Mapping[str, float], counted: Mapping[str, int], error_logged: bool) -> str:
    """The run status Puppet 2.6.5+ would have written: failed / changed / unchanged."""
    if counted["failed"] or error_logged or metrics.get("resources.failed", 0) > 0 \
            or metrics.get("resources.failed_restarts", 0) > 0:
        return "failed"
    if counted["changed"] or metrics.get("resources.changed", 0) > 0 or metrics.get("changes.total", 0) > 0:
        return "changed"
    return "unchanged"


def _text(value: Any) -> str:
    """A scalar as text without the leading ':' of a Ruby symbol written as a plain string."""
    return str(value).lstrip(":") if value is not None else ""


def _error_logs(logs: Any) -> dict[str, list[str]]:
    """Error-level log messages keyed by the resource their source names."""
    found: dict[str, list[str]] = {}
    for entry in _list(logs):
        if isinstance(entry, Mapping) and _text(entry.get("level")) in _ERROR_LEVELS \
                and _is_scalar(entry.get("message")):
            resource = _resource_of_source(str(entry.get("source", "")))
            if resource:
                found.setdefault(resource, []).append(str(entry["message"]))
    return found


def _has_error_log(logs: Any) -> bool:
    return any(isinstance(e, Mapping) and _text(e.get("level")) in _ERROR_LEVELS for e in _list(logs))


def _log_messages_by_resource(logs: Any) -> dict[str, list[str]]:
    """Log messages of level warning or worse, keyed by the resource named at the end of `source`."""
    found: dict[str, list[str]] = {}
    for entry in _list(logs):
        if not isinstance(entry, Mapping) or not _is_scalar(entry.get("message")):
            continue
        if _text(entry.get("level")) not in _ERROR_LEVELS | {"warning"}:
            continue
        resource = _resource_of_source(str(entry.get("source", "")))
        if resource:
            found.setdefault(resource, []).append(str(entry["message"]))
    return found


def _resource_of_source(source: str) -> str | None:
    """The resource a log source names: "/Stage[main]/Main/File[/etc/x]/content" → "File[/etc/x]"."""
    starts = [m.start(1) for m in _RESOURCE_START.finditer(source)]
    for start in reversed(starts):
        match = _RESOURCE_TAIL.match(source, start)
        if match:
            return match.group(1)
    return None


def _report_time(value: Any, received_ms: int | None) -> int:
    if isinstance(value, datetime):
        return datetime_ms(value)
    if isinstance(value, date):
        return datetime_ms(datetime(value.year, value.month, value.day))
    if isinstance(value, str) and value.strip():
        return parse_rfc3339_ms(value, "time")
    return received_ms if received_ms is not None else now_ms()


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | datetime | date)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
