"""Syslog messages (RFC 5424, RFC 3164 and the network-OS variants) → ARCHIVE events.

Event (origin "syslog"):
- subject: the host the message names (RFC 5424 HOSTNAME, RFC 3164 HOSTNAME, a Cisco origin-id,
  NX-OS / IOS-XR host, FortiOS devname; a Junos routing-engine prefix `re0.` is dropped and kept as
  `routing_engine`). Only when the message names none is it the sender's address (passed in by the
  server), so devices behind a relay keep their own names.
- name: the program (RFC 5424 APP-NAME, RFC 3164 TAG without `[pid]`), else "syslog".
- severity: emerg/alert/crit/err (0-3) → CRITICAL, warning (4) → WARNING,
  notice/info/debug (5-7) → OK. A message without PRI is user.notice (RFC 3164 §4.3.3).
- time: the message's timestamp (see `syslog_header` for the forms read). Times without a zone are
  read as UTC; without a year, in the latest year that does not put them after the time of receipt.
  No or bad timestamp → receipt time.
- tags (rules match these): `facility`, `syslog_severity` (keywords), `program`, `pid`, `msgid`,
  `format` (rfc5424 / rfc3164 / cisco / fortios), Cisco `seq`, IOS-XR `node`, `timezone` (a zone
  name other than UTC), the network-OS message code as `code` (Cisco `%LINK-3-UPDOWN` →
  `code=LINK-3-UPDOWN`, `code_facility=LINK`, `code_severity=3`, `code_mnemonic=UPDOWN`; Huawei
  `%%01IFNET/4/IF_STATE(l)` → `code=IFNET/4/IF_STATE`; Junos `SNMP_TRAP_LINK_DOWN` →
  `code=SNMP_TRAP_LINK_DOWN`; FortiOS logid), RFC 5424 structured data as
  `<sd-id without @enterprise>.<param>` (full form kept in extended), and `key=value` pairs and
  comma-separated `key value` pairs of the text. Header tags win over pairs found in the text, so a
  message cannot forge its own `facility` or `program`.
- a partial parse is never silent: when the host, time or program (or RFC 5424 structured data)
  could not be read, the event has `vigil.parse=partial` and `vigil.parse.missing=host,time,...`
  (a message with a network-OS code needs no program: the code says what spoke).
- text: the message (MSG) without header, BOM or trailing newline.

Slightly-off RFC 5424 structured data (SD-IDs or names over 32 characters, stray spaces, unquoted
values, an unescaped `]` inside quotes) is read as far as it parses; the message is never rejected
for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.bridges.errors import ParseError
from app.bridges.parsers._common import build_event, decode_utf8, partial_tags
from app.bridges.parsers.syslog_header import LegacyHeader, parse_legacy_header, read_timestamp
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

_MAX_PAIR_TAGS = 32
_MAX_TAG_VALUE = 256
_MAX_SD_NAME = 255

_PRI = re.compile(r"<(\d{1,3})>")
# VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID; version 0 and repeated spaces are seen in the wild.
_RFC5424_HEADER = re.compile(
    r"(?P<version>\d{1,2}) +(?P<ts>-|\d{4}-\d{2}-\d{2}T\S+) +"
    r"(?P<host>\S+) +(?P<app>\S+) +(?P<procid>\S+) +(?P<msgid>\S+)(?: |$)")
# Some senders (Infinera) leave PROCID out: the fifth field is then already the structured data.
_RFC5424_SHORT_HEADER = re.compile(
    r"(?P<version>\d{1,2}) +(?P<ts>-|\d{4}-\d{2}-\d{2}T\S+) +"
    r"(?P<host>\S+) +(?P<app>\S+) +(?P<msgid>[^\s\[]\S*) +(?=\[)")
# "name@address" (Infinera writes "dci01.waw02@::"): the name is the host.
_HOST_AT_ADDRESS = re.compile(r"(?P<name>[^@\s]+)@(?P<address>[0-9A-Fa-f:.]+)")
_CISCO_CODE = re.compile(
    r"(?:^|\s)%(?P<fac>[A-Z][A-Z0-9_]*(?:-[A-Z0-9_]+)*?)-(?P<sev>[0-7])-(?P<mn>[A-Z0-9_]+) ?:")
_HUAWEI_CODE = re.compile(r"(?:^|\s)%%\d{0,2}(?P<fac>[A-Z][A-Z0-9_]*)/(?P<sev>[0-7])/(?P<mn>[A-Z0-9_]+)(?:\([a-z]\))?")
_JUNOS_CODE = re.compile(r"(?P<code>[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?::|\s|$)")
_KV_PAIR = re.compile(r"(?<![\w.\-])(?P<key>[A-Za-z_][\w.\-]{0,63})=(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,;]+)")
_SPACE_PAIR = re.compile(r"(?P<key>[A-Za-z_][\w.\-]{0,63}) (?P<value>[^\s=]{1,256})")
_SD_UNESCAPE = re.compile(r"\\([\"\\\]])")
_SD_TOKEN_END = frozenset(' =]"')


@dataclass
class _Parts:
    """What a message's header said (None where it said nothing), and its text."""

    format: str
    message: str
    host: str | None = None
    time_ms: int | None = None
    program: str | None = None
    pid: str | None = None
    msgid: str | None = None
    code: str | None = None
    sd: dict[str, dict[str, str]] = field(default_factory=dict)
    header_tags: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def parse_syslog(data: bytes, *, source_host: str | None = None, received_ms: int | None = None) -> Event:
    """Parse one syslog message (a datagram or one frame of a stream) into an event.

    `source_host` (the sender's address) names the subject of messages without a host; such
    events (and any other partial parse) are tagged `vigil.parse=partial`.
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
    if header and header.group("msgid").startswith("["):
        header = _RFC5424_SHORT_HEADER.match(rest) or header
    parts = _parse_rfc5424(rest, header) if header else _from_legacy(parse_legacy_header(rest, received))

    subject = parts.host or source_host
    if not subject:
        raise ParseError("hostname", "the message names no host and the sender's address is unknown")
    facility, syslog_severity = divmod(pri, 8)
    tags: dict[str, str] = {}
    tags.update(extract_pairs(parts.message))
    tags.update({f"{sd_id.split('@', 1)[0]}.{name}": value[:_MAX_TAG_VALUE]
                 for sd_id, params in parts.sd.items() for name, value in params.items()})
    codes = extract_codes(parts.message, msgid=parts.msgid)
    if parts.code:
        codes = {"code": parts.code}
    tags.update(codes)
    missing = list(parts.missing)
    if parts.host is None:
        missing.insert(0, "host")
    if parts.time_ms is None:
        missing.insert(1 if parts.host is None else 0, "time")
    if parts.program is None and "code" not in codes:
        missing.append("program")
    header_tags = {
        **parts.header_tags,
        "format": parts.format,
        "facility": FACILITIES[facility],
        "syslog_severity": SYSLOG_SEVERITIES[syslog_severity],
        "program": parts.program,
        "pid": parts.pid,
        "msgid": parts.msgid,
        "sender": source_host if source_host and source_host != subject else None,
        **partial_tags(_ordered(missing)),
    }
    tags.update({k: v[:_MAX_TAG_VALUE] for k, v in header_tags.items() if v})
    return build_event(
        "",
        time=received if parts.time_ms is None else parts.time_ms,
        subject=subject,
        name=parts.program or DEFAULT_NAME,
        kind=Kind.ARCHIVE,
        severity=SEVERITY_BY_SYSLOG[syslog_severity],
        origin=ORIGIN,
        text=parts.message,
        tags=tags,
        extended={"structured_data": parts.sd} if parts.sd else None,
    )


def _ordered(missing: list[str]) -> list[str]:
    order = ("host", "time", "program", "structured_data")
    return sorted(dict.fromkeys(missing), key=lambda name: order.index(name) if name in order else len(order))


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _from_legacy(head: LegacyHeader) -> _Parts:
    return _Parts(format=head.format, message=head.message, host=head.host, time_ms=head.time_ms,
                  program=head.program, pid=head.pid, code=head.code, header_tags=dict(head.tags))


def _parse_rfc5424(rest: str, header: re.Match[str]) -> _Parts:
    """HEADER SP STRUCTURED-DATA [SP MSG] (RFC 5424 §6), structured data read leniently."""
    ts = _nil(header.group("ts"))
    stamp = read_timestamp(ts, 0, 0) if ts else None
    groups = header.groupdict()
    parts = _Parts(
        format="rfc5424", message="",
        time_ms=stamp.time_ms if stamp and stamp.end == len(ts or "") else None,
        host=_host_name(_nil(header.group("host"))), program=_nil(header.group("app")),
        pid=_nil(groups.get("procid") or "-"), msgid=_nil(header.group("msgid")))
    body = rest[header.end():]
    if body.startswith("-"):
        body = body[1:]
    elif body.startswith("["):
        sd, consumed, complete = _read_structured_data(body)
        parts.sd = sd
        body = body[consumed:]
        if not complete:
            parts.missing.append("structured_data")
    elif body:
        parts.missing.append("structured_data")  # no SD field at all: the rest is the message
        body = " " + body
    parts.message = body.lstrip(" ").removeprefix("\ufeff")
    return parts


def _host_name(host: str | None) -> str | None:
    at_address = _HOST_AT_ADDRESS.fullmatch(host or "")
    if at_address and any(c in at_address.group("address") for c in ".:"):
        return at_address.group("name")
    return host


def parse_structured_data(text: str) -> tuple[dict[str, dict[str, str]], int]:
    """Parse `[id k="v" ...][id2 ...]` from the start of `text`; return (data, characters consumed).

    Lenient: stray spaces, long names, unquoted values and `]` inside quotes are read; at a part
    that cannot be read the elements so far are kept and reading stops after that element.
    """
    data, consumed, _ = _read_structured_data(text)
    return data, consumed


def _read_structured_data(text: str) -> tuple[dict[str, dict[str, str]], int, bool]:
    data: dict[str, dict[str, str]] = {}
    pos = 0
    while pos < len(text) and text[pos] == "[":
        end = _read_sd_element(text, pos, data)
        if end is None:
            return data, _skip_broken_element(text, pos), False
        pos = end
    return data, pos, True


def _read_sd_element(text: str, pos: int, data: dict[str, dict[str, str]]) -> int | None:
    """One `[SD-ID (SP PARAM="VALUE")*]`; the position after it, or None if it cannot be read
    (its parameters read so far are kept)."""
    n = len(text)
    i = _skip(text, pos + 1)
    sd_id, i = _sd_token(text, i)
    if not sd_id:
        return None
    params = data.setdefault(sd_id, {})
    while True:
        i = _skip(text, i)
        if i >= n:
            return None
        if text[i] == "]":
            return i + 1
        name, i = _sd_token(text, i)
        i = _skip(text, i)
        if not name or i >= n or text[i] != "=":
            return None
        i = _skip(text, i + 1)
        if i < n and text[i] == '"':
            value, i = _sd_quoted(text, i + 1)
            if value is None:
                return None
        else:  # unquoted (VMware ESXi writes them so)
            start = i
            while i < n and text[i] not in " ]":
                i += 1
            value = text[start:i]
        params[name] = value


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] == " ":
        i += 1
    return i


def _sd_token(text: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(text) and text[i] not in _SD_TOKEN_END and i - start < _MAX_SD_NAME:
        i += 1
    return text[start:i], i


def _sd_quoted(text: str, i: int) -> tuple[str | None, int]:
    """A PARAM-VALUE after its opening quote: up to the next unescaped quote."""
    chars: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            chars.append(nxt if nxt in '"\\]' else char + nxt)
            i += 2
            continue
        if char == '"':
            return "".join(chars), i + 1
        chars.append(char)
        i += 1
    return None, i


def _skip_broken_element(text: str, pos: int) -> int:
    """After an element that cannot be read: the end of it (a `]` followed by a space, `[` or the
    end of the text), so the message after it is kept."""
    for match in re.finditer(r"\](?= |\[|$)", text[pos:]):
        return pos + match.end()
    return len(text)


def extract_codes(message: str, *, msgid: str | None = None) -> dict[str, str]:
    """Network-OS message codes as tags: Cisco `%FAC-SEV-MNEMONIC` (IOS-XR: `... :`) and Huawei
    `%%01FAC/SEV/MNEMONIC(l)` anywhere, Junos `SNMP_...` codes at the start of the message or as
    the RFC 5424 MSGID."""
    cisco = _CISCO_CODE.search(message)
    huawei = None if cisco else _HUAWEI_CODE.search(message)
    if huawei:
        return {
            "code": f"{huawei.group('fac')}/{huawei.group('sev')}/{huawei.group('mn')}",
            "code_facility": huawei.group("fac"),
            "code_severity": huawei.group("sev"),
            "code_mnemonic": huawei.group("mn"),
        }
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
            pair = _SPACE_PAIR.fullmatch(item.strip())
            if pair:
                pairs.setdefault(pair.group("key"), pair.group("value"))
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
