"""`POST /v1/alertmanager`: Alertmanager webhook payloads, one event per alert.

Alertmanager does not retry a 4xx answer, so a rejected alert is a lost alert: every alert of a
payload that is JSON with an `alerts` array is accepted, whatever labels it has, whatever the
`version` (Alertmanager sends "4"; Grafana's Alertmanager-compatible webhook sends "1"). Only an
alert that is not a JSON object at all is reported as invalid (by index; the others still count).

Mapping (STATUS events, origin "alertmanager"):
- subject: the first non-empty label of SUBJECT_LABELS (instance, job, service, pod, namespace,
  node, host, hostname, cluster, alertname), else the receiver, else "alertmanager". A subject taken
  from alertname or later is flagged `vigil.parse=partial` / `vigil.parse.missing=subject`: the alert
  names no host or service it is about.
- name: the `alertname` label (else "alert", flagged missing=name).
- severity: resolved alerts are OK; firing alerts take the `severity` label (table below); a firing
  alert without that label is WARNING, one with a value we do not know is UNKNOWN.
- tags: all labels (non-text label values as JSON); text: the `summary` annotation (else
  `description`, else `message`); extended: all annotations plus status, times, fingerprint,
  generatorURL and the group's receiver.
- time: `startsAt` of a firing alert, `endsAt` of a resolved one; the time of receipt when that is
  missing, Go's zero time, or not a timestamp (flagged missing=time).
- status: the alert's, else the group's; anything but "resolved" is taken as firing (kept in extended).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from app.bridges.errors import ParseError
from app.bridges.parsers._common import (
    ParseResult,
    bounded_json,
    build_event,
    json_body,
    parse_rfc3339_ms,
    partial_tags,
    require_mapping,
    tag_text,
)
from app.model.events import Event, Kind, Severity, now_ms

__all__ = ["SEVERITY_BY_LABEL", "SUBJECT_LABELS", "alertmanager_group_state", "parse_alertmanager"]

ORIGIN = "alertmanager"
#: Labels that name what an alert is about, in the order they are tried for the event's subject.
SUBJECT_LABELS = ("instance", "job", "service", "pod", "namespace", "node", "host", "hostname",
                  "cluster", "alertname")
#: From here on in SUBJECT_LABELS, the label does not name a host or service: a partial parse.
_WEAK_SUBJECT_LABELS = frozenset({"alertname"})
DEFAULT_NAME = "alert"

#: `severity` label value (lower-cased) → Vigil severity. Covers the conventions seen in the
#: Prometheus community rule sets (critical/warning/info) and common pager vocabularies.
SEVERITY_BY_LABEL: dict[str, Severity] = {
    "critical": Severity.CRITICAL, "crit": Severity.CRITICAL, "error": Severity.CRITICAL,
    "page": Severity.CRITICAL, "high": Severity.CRITICAL, "major": Severity.CRITICAL,
    "emergency": Severity.CRITICAL, "fatal": Severity.CRITICAL, "disaster": Severity.CRITICAL,
    "severe": Severity.CRITICAL, "urgent": Severity.CRITICAL,
    "warning": Severity.WARNING, "warn": Severity.WARNING, "medium": Severity.WARNING,
    "minor": Severity.WARNING, "average": Severity.WARNING,
    "info": Severity.OK, "informational": Severity.OK, "notice": Severity.OK, "low": Severity.OK,
    "none": Severity.OK, "ok": Severity.OK, "debug": Severity.OK,
}
_TEXT_ANNOTATIONS = ("summary", "description", "message")
# Go's zero time: Alertmanager sends it as endsAt while an alert has no known end.
_GO_ZERO_TIME_PREFIX = "0001-01-01"


def parse_alertmanager(body: bytes | str | Any, *, received_ms: int | None = None) -> ParseResult:
    """Parse a webhook payload; an alert that is not an object is reported with its index, every
    other alert becomes an event."""
    data = require_mapping(json_body(body), "body")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise ParseError("alerts", "missing or not an array: an Alertmanager webhook carries its alerts there")
    group: dict[str, Any] = {k: data.get(k) for k in ("receiver", "externalURL", "groupKey") if data.get(k) is not None}
    if data.get("version") is not None and str(data.get("version")) != "4":
        group["version"] = data.get("version")
    received = received_ms if received_ms is not None else now_ms()
    group_status = data.get("status")

    result = ParseResult()
    for index, alert in enumerate(alerts):
        try:
            result.events.append(_alert_event(alert, f"alerts[{index}].", group, group_status, received))
        except ParseError as exc:
            exc.index = index
            result.errors.append(exc)
    return result


def alertmanager_group_state(body: bytes | str | Any) -> str | None:
    """A digest of what a notification says: its group (groupKey, else receiver and group labels) and
    each alert's identity (fingerprint and labels), status, startsAt and endsAt, in any order.
    None when the body is not a webhook payload (the parser says why).

    Alertmanager resends a group on its repeat interval with the same alerts: a firing alert's
    endsAt is sent as the zero time until it resolves (Alertmanager's types.Alerts), and its
    annotations, which may quote a current value, are left out. So a resend of an unchanged group
    has the same digest, and a group where an alert fired, resolved or fired again has another."""
    try:
        data = json_body(body)
    except ParseError:
        return None
    if not isinstance(data, Mapping) or not isinstance(data.get("alerts"), list):
        return None
    group_key = data.get("groupKey")
    group: Any = group_key if isinstance(group_key, str) and group_key else \
        [data.get("receiver"), data.get("groupLabels")]
    group_status = data.get("status")
    alerts = []
    for alert in data["alerts"]:
        if not isinstance(alert, Mapping):
            alerts.append(["", _canonical(alert), "", ""])
            continue
        identity = [alert.get("fingerprint"), alert.get("labels")]
        alerts.append([_canonical(identity), _canonical(alert.get("status") or group_status),
                       _canonical(alert.get("startsAt")), _canonical(alert.get("endsAt"))])
    state = json.dumps([_canonical(group), sorted(alerts)], separators=(",", ":"))
    return hashlib.sha256(state.encode()).hexdigest()


def _canonical(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _labels(value: Any) -> dict[str, str]:
    """A label or annotation map as text; nested values are kept as JSON, not refused."""
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        if item is None:
            continue
        out[str(key)] = tag_text(item) if isinstance(item, str | int | float | bool) else \
            json.dumps(bounded_json(item, str(key)), sort_keys=True, default=str)
    return out


def _subject(labels: Mapping[str, str], group: Mapping[str, Any]) -> tuple[str, bool]:
    """(subject, whether it names what the alert is about) per SUBJECT_LABELS."""
    for label in SUBJECT_LABELS:
        value = labels.get(label, "").strip()
        if value:
            return value, label not in _WEAK_SUBJECT_LABELS
    receiver = group.get("receiver")
    return (str(receiver) if isinstance(receiver, str) and receiver.strip() else ORIGIN), False


def _alert_event(alert: Any, prefix: str, group: Mapping[str, Any], group_status: Any, received_ms: int) -> Event:
    alert = require_mapping(alert, prefix.rstrip("."))
    labels = _labels(alert.get("labels"))
    annotations = _labels(alert.get("annotations"))
    missing: list[str] = []
    subject, named = _subject(labels, group)
    if not named:
        missing.append("subject")
    name = labels.get("alertname", "").strip()
    if not name:
        name = DEFAULT_NAME
        missing.append("name")
    status = alert.get("status") or group_status or "firing"
    resolved = status == "resolved"

    time_key = "endsAt" if resolved else "startsAt"
    time_text = alert.get(time_key)
    time_ms = received_ms
    if isinstance(time_text, str) and time_text and not time_text.startswith(_GO_ZERO_TIME_PREFIX):
        try:
            time_ms = parse_rfc3339_ms(time_text, f"{prefix}{time_key}")
        except ParseError:
            missing.append("time")
    else:
        missing.append("time")

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
        tags={**labels, **partial_tags(missing)},
        extended=bounded_json(extended, f"{prefix.rstrip('.')}"),
    )


def _severity(label: str | None) -> Severity:
    if label is None or not label.strip():
        return Severity.WARNING
    return SEVERITY_BY_LABEL.get(label.strip().lower(), Severity.UNKNOWN)
