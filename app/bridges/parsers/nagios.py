"""`POST /v1/nagios`: Nagios/Icinga check results → one STATUS event with perfdata as metrics.

Input: `{"host", "service", "return_code", "output", "perfdata"}` as JSON, or the same fields
form-encoded (already decoded into a mapping by the caller). `service` may be left out for a host
check (the event name is then `host`). `return_code` is the plugin's exit code: 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN, which are exactly Vigil's severities. `perfdata` is performance data sent in
its own field, as Nagios hands it to commands ($SERVICEPERFDATA$ / $HOSTPERFDATA$, with
$SERVICEOUTPUT$ as `output`): it is read as well as perfdata after a `|` in the output (a label in
both is taken from `perfdata`). Icinga 2's process-check-result names are accepted too:
`exit_status`, `plugin_output`, `performance_data` (a string or a list of items).

Event (origin "nagios"): subject = host, name = service, text = first line of the plugin output,
metrics = every perfdata value with a known value, units normalised (see `perfdata`), extended =
the long output, each perfdata item in full (unit, thresholds, min, max) and any perfdata problems.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.bridges.errors import ParseError
from app.bridges.parsers._common import ParseResult, build_event, json_body, require_mapping, require_str
from app.bridges.parsers.perfdata import parse_perfdata, split_plugin_output
from app.model.events import Kind, Severity, now_ms

__all__ = ["HOST_CHECK_NAME", "parse_nagios"]

ORIGIN = "nagios"
#: Event name of a host check (a result without a service).
HOST_CHECK_NAME = "host"


def parse_nagios(body: bytes | str | Mapping[str, Any], *, received_ms: int | None = None) -> ParseResult:
    """Parse one check result (JSON bytes, or a mapping of JSON / form fields)."""
    data = require_mapping(json_body(body), "body")
    host = require_str(data, "host")
    service = data.get("service")
    if service is not None and not isinstance(service, str):
        raise ParseError("service", "must be a string")
    name = service.strip() if service and service.strip() else HOST_CHECK_NAME
    code_key = "return_code" if "return_code" in data or "exit_status" not in data else "exit_status"
    severity = _return_code(data.get(code_key), code_key)
    output_key = "output" if "output" in data or "plugin_output" not in data else "plugin_output"
    output = data.get(output_key, "")
    if not isinstance(output, str):
        raise ParseError(output_key, "must be the plugin output as a string")

    text, long_text, perf_text = split_plugin_output(output)
    perf_values, problems = parse_perfdata(perf_text)
    separate_key = "perfdata" if "perfdata" in data or "performance_data" not in data else "performance_data"
    separate, separate_problems = parse_perfdata(_perfdata_text(data.get(separate_key), separate_key))
    if separate:
        labels = {p.label for p in separate}
        perf_values = [p for p in perf_values if p.label not in labels] + separate
    problems += separate_problems
    metrics = {p.label: p.value for p in perf_values if p.value is not None}
    extended: dict[str, Any] = {}
    if long_text:
        extended["long_output"] = long_text
    if perf_values:
        extended["perfdata"] = [p.to_dict() for p in perf_values]
    if problems:
        extended["perfdata_errors"] = problems
    return ParseResult(events=[build_event(
        "",
        time=received_ms if received_ms is not None else now_ms(),
        subject=host.strip(),
        name=name,
        kind=Kind.STATUS,
        severity=severity,
        origin=ORIGIN,
        text=text,
        metrics=metrics,
        extended=extended or None,
    )])


def _perfdata_text(value: Any, field_name: str) -> str:
    """Perfdata sent on its own: one string, or a list of items (Icinga 2's performance_data)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return " ".join(value)
    raise ParseError(field_name, "must be perfdata text ('label'=value[UOM];warn;crit;min;max ...) or a list of items")


def _return_code(value: Any, field_name: str = "return_code") -> Severity:
    """Exit code 0-3 (a number, or digits as sent by a form) as a severity."""
    if isinstance(value, str) and value.strip() in ("0", "1", "2", "3"):
        value = int(value.strip())
    if isinstance(value, float) and value in (0.0, 1.0, 2.0, 3.0):
        value = int(value)  # Icinga 2's API examples send 2.0
    if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1, 2, 3):
        raise ParseError(field_name, f"must be 0 (OK), 1 (WARNING), 2 (CRITICAL) or 3 (UNKNOWN), got {value!r:.40}")
    return Severity(value)
