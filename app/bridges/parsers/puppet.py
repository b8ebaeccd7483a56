"""`POST /v1/puppet`: Puppet run reports (the YAML of Puppet's `http` report processor, or JSON).

Events (origin "puppet", subject = the node, i.e. the report's `host`):
- one ARCHIVE event per failed or changed resource, named after it (e.g. `Service[httpd]`):
  CRITICAL if it failed (or failed to restart), OK if it changed; text = its change/log messages.
- one METRIC event named `puppet-run` with every numeric report metric as `<category>.<name>`
  (`time.total` in seconds, `resources.changed`, `resources.failed`, `changes.total`,
  `events.failure`, ...), CRITICAL when the run's status is `failed`, else OK.

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

    result = ParseResult()
    counted = {"failed": 0, "changed": 0}
    for index, (resource, status) in enumerate(statuses.items()):
        prefix = f"resource_statuses[{str(resource)[:80]!r}]"
        try:
            event = _resource_event(str(resource), status, prefix, node, time_ms, run_tags, messages)
        except ParseError as exc:
            exc.index = index
            result.errors.append(exc)
            continue
        if event is not None:
            counted["failed" if event.severity == Severity.CRITICAL else "changed"] += 1
            result.events.append(event)
    result.events.append(_run_event(report, node, time_ms, run_tags, counted))
    return result


def _resource_event(resource: str, status: Any, prefix: str, node: str, time_ms: int,
                    run_tags: Mapping[str, str], messages: Mapping[str, list[str]]) -> Event | None:
    status = require_mapping(status, prefix)
    failed = bool(status.get("failed")) or bool(status.get("failed_to_restart"))
    if not failed and not status.get("changed"):
        return None
    change_messages = [str(e["message"]) for e in _list(status.get("events"))
                       if isinstance(e, Mapping) and _is_scalar(e.get("message"))]
    lines = (change_messages + messages.get(resource, []))[:_MAX_MESSAGES]
    tags = dict(run_tags)
    tags["resource_status"] = "failed" if failed else "changed"
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
        text="\n".join(lines) or ("failed" if failed else "changed"),
        tags=tags,
        metrics=metrics,
    )


def _run_event(report: Mapping[str, Any], node: str, time_ms: int, run_tags: Mapping[str, str],
               counted: Mapping[str, int]) -> Event:
    metrics: dict[str, float] = {}
    categories = report.get("metrics")
    for category, metric in (categories.items() if isinstance(categories, Mapping) else ()):
        values = metric.get("values") if isinstance(metric, Mapping) else None
        for row in _list(values):
            # Each row is [name, label, value].
            if isinstance(row, list) and len(row) == 3 and _is_number(row[2]):
                metrics[f"{category}.{row[0]}"] = float(row[2])
    # A run that failed before applying (e.g. catalog compilation) has no metrics: count ourselves.
    metrics.setdefault("resources.failed", float(counted["failed"]))
    metrics.setdefault("resources.changed", float(counted["changed"]))
    failed = report.get("status") == "failed"
    return build_event(
        "",
        time=time_ms,
        subject=node,
        name=RUN_EVENT_NAME,
        kind=Kind.METRIC,
        severity=Severity.CRITICAL if failed else Severity.OK,
        origin=ORIGIN,
        text=f"puppet run {report.get('status', 'finished')!s:.40}: {counted['changed']} changed, "
             f"{counted['failed']} failed",
        tags=dict(run_tags),
        metrics=metrics,
    )


def _log_messages_by_resource(logs: Any) -> dict[str, list[str]]:
    """Log messages of level warning or worse, keyed by the resource named at the end of `source`."""
    found: dict[str, list[str]] = {}
    for entry in _list(logs):
        if not isinstance(entry, Mapping) or not _is_scalar(entry.get("message")):
            continue
        if str(entry.get("level", "")).lstrip(":") not in ("warning", "err", "alert", "emerg", "crit"):
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
