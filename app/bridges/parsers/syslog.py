"""Syslog messages (RFC 5424 and RFC 3164, incl. Cisco IOS and Junos styles) → ARCHIVE events.

Event (origin "syslog"):
- subject: the HOSTNAME of the message, else the sender's address (passed in by the server).
- name: the program (RFC 5424 APP-NAME, RFC 3164 TAG without `[pid]`), else "syslog".
- severity: emerg/alert/crit/err (0-3) → CRITICAL, warning (4) → WARNING,
  notice/info/debug (5-7) → OK. A message without PRI is user.notice (RFC 3164 §4.3.3).
- time: the message's timestamp; RFC 3164 timestamps have no year or zone: they are read as UTC,
  in the latest year that does not put them after the time of receipt. No or bad timestamp → receipt time.
- tags (rules match these): `facility`, `syslog_severity` (keywords), `program`, `pid`, `msgid`,
  `format` (rfc5424 / rfc3164 / cisco), the network-OS message code as `code` (Cisco
  `%LINK-3-UPDOWN` → `code=LINK-3-UPDOWN`, `code_facility=LINK`, `code_severity=3`,
  `code_mnemonic=UPDOWN`; Junos `SNMP_TRAP_LINK_DOWN` → `code=SNMP_TRAP_LINK_DOWN`), RFC 5424
  structured data as `<sd-id without @enterprise>.<param>` (full form kept in extended), and
  `key=value` pairs and comma-separated `key value` pairs of the text. Header tags win over
  pairs found in the text, so a message cannot forge its own `facility` or `program`.
- text: the message (MSG) without header, BOM or trailing newline.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from app.bridges.errors import ParseError
from app.bridges.parsers._common import build_event, datetime_ms, decode_utf8
from app.model.events import Event, Kind, Severity, now_ms

__all__ = [
    "FACILITIES",
    "SEVERITY_BY_SYSLOG",
    "extract_codes",
    "extract_pairs",
    "parse_structured_data",
    "parse_syslog",
]

ORIGIN = "syslog"
DEFAULT_NAME = "syslog"
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
              "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
              *(f"local{i}" for i in range(8)))
SYSLOG_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
#: syslog severity (0-7) → Vigil severity.
SEVERITY_BY_SYSLOG = (Severity.CRITICAL,) * 4 + (Severity.WARNING,) + (Severity.OK,) * 3
_DEFAULT_PRI = 13  # user.notice

_CLOCK_AHEAD_SLACK = timedelta(days=7)
_MAX_PAIR_TAGS = 32
_MAX_TAG_VALUE = 256
_MONTHS = {m: i + 1 for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))}

_PRI = re.compile(r"<(\d{1,3})>")
_RFC5424_HEADER = re.compile(
    r"(?P<version>[1-9]\d{0,2}) (?P<ts>-|\d{4}-\d{2}-\d{2}T\S+) "
    r"(?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+)(?: |$)")
_BSD_TIME = r"[A-Z][a-z]{2} [ \d]\d(?: \d{4})? \d{1,2}:\d{2}:\d{2}(?:\.\d{1,6})?"
_BSD_TIMESTAMP = re.compile(rf"(?P<ts>{_BSD_TIME})(?: |$)")
_ISO_TIMESTAMP = re.compile(r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2}))(?: |$)")
# Cisco IOS: "[seq: ][host: ][*|.]Mmm dd[ yyyy] hh:mm:ss[.fff][ TZ]: %FAC-SEV-MNEMONIC: text".
_CISCO = re.compile(
    rf"(?:\d+: )?(?:(?P<host>(?!\d+:)[^\s:%*.][^\s:%]*): )?"
    rf"(?:[*.]?(?P<ts>{_BSD_TIME})(?: [A-Za-z]{{1,6}})?: )?(?=%[A-Z])")
_TAG = re.compile(r"(?P<program>[^\s:\[\]]{1,48})(?:\[(?P<pid>[^\]\s]{1,32})\])?: ?")
_HOSTNAME = re.compile(r"[^\s:\[\]]{1,255}")
_CISCO_CODE = re.compile(r"(?:^|\s)%(?P<fac>[A-Z][A-Z0-9_]*(?:-[A-Z0-9_]+)*?)-(?P<sev>[0-7])-(?P<mn>[A-Z0-9_]+):")
_JUNOS_CODE = re.compile(r"(?P<code>[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?::|\s|$)")
_KV_PAIR = re.compile(r"(?<![\w.\-])(?P<key>[A-Za-z_][\w.\-]{0,63})=(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,;]+)")
_SPACE_PAIR = re.compile(r"(?P<key>[A-Za-z_][\w.\-]{0,63}) (?P<value>[^\s=]{1,256})")
_SD_ELEMENT = re.compile(r"\[(?P<id>[^\s=\]\"]{1,32})(?P<params>(?: [^\s=\]\"]{1,32}=\"(?:[^\"\\]|\\.)*\")*)\]")
_SD_PARAM = re.compile(r" (?P<name>[^\s=\]\"]{1,32})=\"(?P<value>(?:[^\"\\]|\\.)*)\"")
_SD_UNESCAPE = re.compile(r"\\([\"\\\]])")


def parse_syslog(data: bytes, *, source_host: str | None = None, received_ms: int | None = None) -> Event:
    """Parse one syslog message (a datagram or one frame of a stream) into an event.

    `source_host` (the sender's address) names the subject of messages without a HOSTNAME.
    """
    text = decode_utf8(data, field_name="message").rstrip("\r\n\x00")
    if not text.strip():
        raise ParseError("message", "empty message")
    received = received_ms if received_ms is not None else now_ms()
    pri_match = _PRI.match(text)
    pri = int(pri_match.group(1)) if pri_match else _DEFAULT_PRI
    if pri > 191:
        raise ParseError("pri", f"<{pri}> is out of range (0-191)")
    rest = text[pri_match.end():] if pri_match else text

    header = _RFC5424_HEADER.match(rest) if pri_match else None
    parts = _parse_rfc5424(rest, header) if header else _parse_rfc3164(rest, received)

    subject = parts.get("host") or source_host
    if not subject:
        raise ParseError("hostname", "the message names no host and the sender's address is unknown")
    facility, syslog_severity = divmod(pri, 8)
    tags: dict[str, str] = {}
    message: str = parts["message"]
    tags.update(extract_pairs(message))
    tags.update(parts.get("sd_tags", {}))
    tags.update(extract_codes(message, msgid=parts.get("msgid")))
    header_tags = {
        "format": parts["format"],
        "facility": FACILITIES[facility],
        "syslog_severity": SYSLOG_SEVERITIES[syslog_severity],
        "program": parts.get("program"),
        "pid": parts.get("pid"),
        "msgid": parts.get("msgid"),
        "sender": source_host if source_host and source_host != subject else None,
    }
    tags.update({k: v for k, v in header_tags.items() if v})
    program = parts.get("program")
    return build_event(
        "",
        time=received if parts.get("time_ms") is None else parts["time_ms"],
        subject=subject,
        name=program or DEFAULT_NAME,
        kind=Kind.ARCHIVE,
        severity=SEVERITY_BY_SYSLOG[syslog_severity],
        origin=ORIGIN,
        text=message,
        tags=tags,
        extended={"structured_data": parts["sd"]} if parts.get("sd") else None,
    )


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _parse_rfc5424(rest: str, header: re.Match[str]) -> dict[str, Any]:
    """HEADER SP STRUCTURED-DATA [SP MSG] (RFC 5424 §6)."""
    ts = _nil(header.group("ts"))
    parts: dict[str, Any] = {
        "format": "rfc5424",
        "time_ms": _iso_ms(ts) if ts else None,
        "host": _nil(header.group("host")),
        "program": _nil(header.group("app")),
        "pid": _nil(header.group("procid")),
        "msgid": _nil(header.group("msgid")),
    }
    body = rest[header.end():]
    if body.startswith("-"):
        sd: dict[str, dict[str, str]] = {}
        body = body[1:]
    elif body.startswith("["):
        sd, consumed = parse_structured_data(body)
        body = body[consumed:]
    else:
        raise ParseError("structured_data", "must be '-' or [SD-ID param=\"value\" ...] after the header")
    if body and not body.startswith(" "):
        raise ParseError("structured_data", f"unexpected text after it: {body[:40]!r}")
    parts["message"] = body[1:].removeprefix("\ufeff")
    parts["sd"] = sd
    parts["sd_tags"] = {f"{sd_id.split('@', 1)[0]}.{name}": value[:_MAX_TAG_VALUE]
                        for sd_id, params in sd.items() for name, value in params.items()}
    return parts


def parse_structured_data(text: str) -> tuple[dict[str, dict[str, str]], int]:
    """Parse `[id k="v" ...][id2 ...]` from the start of `text`; return (data, characters consumed)."""
    data: dict[str, dict[str, str]] = {}
    pos = 0
    while pos < len(text) and text[pos] == "[":
        element = _SD_ELEMENT.match(text, pos)
        if not element:
            raise ParseError("structured_data", f"malformed SD-ELEMENT at {text[pos:pos + 40]!r}")
        params = data.setdefault(element.group("id"), {})
        for param in _SD_PARAM.finditer(element.group("params")):
            params[param.group("name")] = _SD_UNESCAPE.sub(r"\1", param.group("value"))
        pos = element.end()
    return data, pos


def _parse_rfc3164(rest: str, received_ms: int) -> dict[str, Any]:
    """[TIMESTAMP SP [HOSTNAME SP]] [TAG[pid]: ] MSG, or a Cisco IOS line."""
    parts: dict[str, Any] = {"format": "rfc3164"}
    stamp = _BSD_TIMESTAMP.match(rest) or _ISO_TIMESTAMP.match(rest)
    if stamp:
        ts = stamp.group("ts")
        parts["time_ms"] = _iso_ms(ts) if "T" in ts else _bsd_ms(ts, received_ms)
        rest = rest[stamp.end():]
        host = _HOSTNAME.match(rest)
        # A hostname is a bare word followed by a space; "su:" or "sshd[42]:" is already the TAG.
        if host and rest[host.end():host.end() + 1] == " ":
            parts["host"] = host.group(0)
            rest = rest[host.end() + 1:]
    cisco = _CISCO.match(rest)
    if cisco:
        # Cisco IOS puts its own "seq: [host:] timestamp:" before the %CODE, with or without a
        # syslog header in front (a relay adds one).
        parts["format"] = "cisco"
        parts["host"] = parts.get("host") or cisco.group("host")
        if parts.get("time_ms") is None and cisco.group("ts"):
            parts["time_ms"] = _bsd_ms(cisco.group("ts"), received_ms)
        parts["message"] = rest[cisco.end():]
        return parts
    tag = _TAG.match(rest)
    # A number before the colon is a Cisco sequence number, not a program.
    if tag and not tag.group("program").isdigit():
        parts["program"] = tag.group("program")
        parts["pid"] = tag.group("pid")
        rest = rest[tag.end():]
    parts["message"] = rest
    return parts


def _iso_ms(ts: str) -> int | None:
    try:
        return datetime_ms(datetime.fromisoformat(ts))
    except (ValueError, OverflowError):
        return None


def _bsd_ms(ts: str, received_ms: int) -> int | None:
    """'Mmm dd[ yyyy] hh:mm:ss[.fff]' as UTC; without a year, the latest one before receipt."""
    fields = ts.split()
    month = _MONTHS.get(fields[0])
    if month is None:
        return None
    clock = fields[-1]
    year_given = len(fields) == 4
    received = datetime.fromtimestamp(received_ms / 1000, tz=UTC)
    try:
        hms, _, fraction = clock.partition(".")
        hour, minute, second = (int(x) for x in hms.split(":"))
        micros = int((fraction + "000000")[:6]) if fraction else 0
        candidates = [int(fields[2])] if year_given else [received.year - 1, received.year, received.year + 1]
        stamps = [datetime(y, month, int(fields[1]), hour, minute, second, micros, tzinfo=UTC)
                  for y in candidates if _valid_day(y, month, int(fields[1]))]
    except ValueError:
        return None
    # Logs describe the past: take the latest year that does not put the message more than a week
    # after its receipt (a week of slack for senders whose clocks run ahead).
    plausible = stamps if year_given else [s for s in stamps if s <= received + _CLOCK_AHEAD_SLACK]
    return datetime_ms(max(plausible)) if plausible else None


def _valid_day(year: int, month: int, day: int) -> bool:
    try:
        datetime(year, month, day)
    except ValueError:
        return False
    return True


def extract_codes(message: str, *, msgid: str | None = None) -> dict[str, str]:
    """Network-OS message codes as tags: Cisco `%FAC-SEV-MNEMONIC` anywhere, Junos `SNMP_...`
    codes at the start of the message or as the RFC 5424 MSGID."""
    cisco = _CISCO_CODE.search(message)
    if cisco:
        return {
            "code": f"{cisco.group('fac')}-{cisco.group('sev')}-{cisco.group('mn')}",
            "code_facility": cisco.group("fac"),
            "code_severity": cisco.group("sev"),
            "code_mnemonic": cisco.group("mn"),
        }
    for candidate in (msgid or "", message):
        junos = _JUNOS_CODE.match(candidate)
        if junos:
            return {"code": junos.group("code")}
    return {}


def extract_pairs(message: str) -> dict[str, str]:
    """`key=value` pairs anywhere, and `key value` pairs that make up a whole comma-separated item
    (Junos: "ifIndex 526, ifAdminStatus up(1), ifName ge-0/0/1"), as tags."""
    pairs: dict[str, str] = {}
    for match in _KV_PAIR.finditer(message):
        value = match.group("value")
        if value[:1] in "\"'" and len(value) >= 2:
            value = value[1:-1]
        pairs[match.group("key")] = value[:_MAX_TAG_VALUE]
        if len(pairs) >= _MAX_PAIR_TAGS:
            return pairs
    body = _after_code(message)
    if "," in body:
        for item in body.split(","):
            match = _SPACE_PAIR.fullmatch(item.strip())
            if match:
                pairs.setdefault(match.group("key"), match.group("value"))
                if len(pairs) >= _MAX_PAIR_TAGS:
                    break
    return pairs


def _after_code(message: str) -> str:
    """The text after a leading message code ("CODE: text", "%FAC-3-MN: text")."""
    cisco = _CISCO_CODE.search(message)
    if cisco:
        return message[cisco.end():]
    junos = _JUNOS_CODE.match(message)
    return message[junos.end():] if junos else message
