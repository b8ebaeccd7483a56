"""`POST /v1/alertmanager`: Prometheus Alertmanager webhook payloads (version 4), one event per alert.

Mapping (STATUS events, origin "alertmanager"):
- subject: the `instance` label, else `job`; name: the `alertname` label.
- severity: resolved alerts are OK; firing alerts take the `severity` label (table below); a firing
  alert without that label is WARNING, one with a value we do not know is UNKNOWN.
- tags: all labels; text: the `summary` annotation (else `description`, else `message`);
  extended: all annotations plus status, times, fingerprint, generatorURL and the group's receiver.
- time: `startsAt` of a firing alert, `endsAt` of a resolved one (else the time of receipt).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.bridges.errors import ParseError
from app.bridges.parsers._common import (
    ParseResult,
    bounded_json,
    build_event,
    json_body,
    parse_rfc3339_ms,
    require_mapping,
    str_map,
)
from app.model.events import Event, Kind, Severity, now_ms

__all__ = ["SEVERITY_BY_LABEL", "parse_alertmanager"]

ORIGIN = "alertmanager"
SUPPORTED_VERSION = "4"

#: `severity` label value (lower-cased) → Vigil severity. Covers the conventions seen in the
#: Prometheus community rule sets (critical/warning/info) and common pager vocabularies.
SEVERITY_BY_LABEL: dict[str, Severity] = {
    "critical": Severity.CRITICAL, "crit": Severity.CRITICAL, "error": Severity.CRITICAL,
    "page": Severity.CRITICAL, "high": Severity.CRITICAL, "major": Severity.CRITICAL,
    "emergency": Severity.CRITICAL, "fatal": Severity.CRITICAL, "disaster": Severity.CRITICAL,
    "warning": Severity.WARNING, "warn": Severity.WARNING, "medium": Severity.WARNING,
    "minor": Severity.WARNING, "average": Severity.WARNING,
    "info": Severity.OK, "informational": Severity.OK, "notice": Severity.OK, "low": Severity.OK,
    "none": Severity.OK, "ok": Severity.OK, "debug": Severity.OK,
}
_TEXT_ANNOTATIONS = ("summary", "description", "message")
# Go's zero time: Alertmanager sends it as endsAt while an alert has no known end.
_GO_ZERO_TIME_PREFIX = "0001-01-01"


def parse_alertmanager(body: bytes | str | Any, *, received_ms: int | None = None) -> ParseResult:
    """Parse a webhook payload; a bad alert is reported with its index, the others still count."""
    data = require_mapping(json_body(body), "body")
    version = data.get("version")
    if str(version) != SUPPORTED_VERSION:
        raise ParseError("version", f"unsupported webhook payload version {version!r} (this bridge reads "
                                    f"version {SUPPORTED_VERSION}, sent by Alertmanager 0.16 and later)")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise ParseError("alerts", "missing or not an array")
    group = {k: data.get(k) for k in ("receiver", "externalURL", "groupKey") if data.get(k) is not None}
    received = received_ms if received_ms is not None else now_ms()

    result = ParseResult()
    for index, alert in enumerate(alerts):
        try:
            result.events.append(_alert_event(alert, f"alerts[{index}].", group, received))
        except ParseError as exc:
            exc.index = index
            result.errors.append(exc)
    return result


def _alert_event(alert: Any, prefix: str, group: Mapping[str, Any], received_ms: int) -> Event:
    alert = require_mapping(alert, prefix.rstrip("."))
    labels = str_map(alert.get("labels"), f"{prefix}labels")
    annotations = str_map(alert.get("annotations"), f"{prefix}annotations")
    subject = labels.get("instance") or labels.get("job")
    if not subject:
        raise ParseError(f"{prefix}labels", "needs an 'instance' or 'job' label to name the subject")
    name = labels.get("alertname")
    if not name:
        raise ParseError(f"{prefix}labels.alertname", "missing: every alert needs an alertname")
    status = alert.get("status", "firing")
    if status not in ("firing", "resolved"):
        raise ParseError(f"{prefix}status", f"must be 'firing' or 'resolved', got {status!r:.40}")
    resolved = status == "resolved"

    time_key = "endsAt" if resolved else "startsAt"
    time_text = alert.get(time_key)
    if isinstance(time_text, str) and time_text and not time_text.startswith(_GO_ZERO_TIME_PREFIX):
        time_ms = parse_rfc3339_ms(time_text, f"{prefix}{time_key}")
    else:
        time_ms = received_ms

    text = next((annotations[k] for k in _TEXT_ANNOTATIONS if annotations.get(k)), "")
    extended = {
        "status": status,
        "annotations": annotations,
        **{k: alert[k] for k in ("startsAt", "endsAt", "generatorURL", "fingerprint") if k in alert},
        **group,
    }
    return build_event(
        prefix,
        time=time_ms,
        subject=subject,
        name=name,
        kind=Kind.STATUS,
        severity=Severity.OK if resolved else _severity(labels.get("severity")),
        origin=ORIGIN,
        text=text,
        tags=labels,
        extended=bounded_json(extended, f"{prefix.rstrip('.')}"),
    )


def _severity(label: str | None) -> Severity:
    if label is None or not label.strip():
        return Severity.WARNING
    return SEVERITY_BY_LABEL.get(label.strip().lower(), Severity.UNKNOWN)
