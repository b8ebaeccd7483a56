"""The header of a syslog line in the forms real senders use: timestamps, host names and tags.

Pure text scanning, no event building (that is `syslog.py`). Read as forgivingly as rsyslog and
syslog-ng read them, from the layouts network devices and relays actually send:

    RFC 3164    [TIMESTAMP] [HOSTNAME] [TAG[pid]:|TAG[pid]|TAG] MSG      (spaces may repeat)
    Cisco IOS   [seq:] [origin-id:] [*|.]TIMESTAMP[ ZONE]: %FAC-SEV-MNEMONIC: text
                [seq:] [*|.]TIMESTAMP: host %FAC-SEV-MNEMONIC: text
    IOS-XR      seq: host NODE:TIMESTAMP[ ZONE] : process[pid]: %FAC-SUB-SEV-MNEMONIC : text
    NX-OS       YYYY Mmm dd hh:mm:ss host %FAC-SEV-MNEMONIC: text
                [host]: YYYY Mmm dd hh:mm:ss ZONE: %FAC-SEV-MNEMONIC: text
    Opengear    host program-or-port YYYY-Mmm-dd hh:mm:ss[.fff] EVENT: text
    FortiOS     date=YYYY-MM-DD time=hh:mm:ss devname=host ... logid=... type=... (key=value)
    AIX relay   TIMESTAMP Message forwarded from host: TAG: MSG

Timestamps: `Mmm dd hh:mm:ss` with any month case, padded or not, with a year after the day or after
the time, an optional fraction (even empty), an optional leading `*`/`.` (Cisco: clock not or no
longer synchronised); year-first `YYYY Mmm dd hh:mm:ss`; ISO 8601 with `T` or a space, any number
of fraction digits, `Z`, `+hh:mm`, `+hhmm` or no zone; Huawei's `YYYY-M-D hh:mm:ss.fff.n`.
Times without a zone are read as UTC; a zone name other than UTC/GMT is kept as a tag.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from app.bridges.parsers._common import datetime_ms

__all__ = ["LegacyHeader", "parse_legacy_header", "read_timestamp"]

_MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_CLOCK_AHEAD_SLACK = timedelta(days=7)
_CLOCK = r"(?P<h>\d{1,2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:[.,](?P<f>\d*))?"
_BSD = re.compile(
    rf"[*.]?(?P<mon>[A-Za-z]{{3}}) +(?P<d>\d{{1,2}})(?: +(?P<y1>(?:19|20)\d\d))? +{_CLOCK}"
    rf"(?: +(?P<y2>(?:19|20)\d\d)(?=\s|$))?")
_YEAR_FIRST = re.compile(rf"[*.]?(?P<y>(?:19|20)\d\d) +(?P<mon>[A-Za-z]{{3}}) +(?P<d>\d{{1,2}}) +{_CLOCK}")
_ISO = re.compile(
    rf"(?P<y>\d{{4}})-(?P<mo>\d{{1,2}})-(?P<d>\d{{1,2}})[T ]{_CLOCK}(?:\.\d+)*"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?(?=\s|:|$)")
_OPENGEAR = re.compile(rf"(?P<y>\d{{4}})-(?P<mon>[A-Za-z]{{3}})- ?(?P<d>\d{{1,2}}) +{_CLOCK}")
# A zone name after a Cisco timestamp: followed by ':' and then a %CODE, or a known abbreviation.
_ZONE = re.compile(r" +(?P<zone>[A-Za-z][\w/+-]{0,31})(?=\s?:(?P<code>\s*%[A-Z])?)")
# A zone written between the time and the host, and then maybe the year (RFC 3164 §5.4's own
# examples: "Aug 24 05:34:00 CST 1987 mymachine", "1990 Oct 22 10:52:01 TZ-6 scapegoat...").
_SPACED_ZONE = re.compile(r" +(?P<zone>[A-Z]{1,5}|TZ[+-]?\d{1,2})(?: +(?P<year>(?:19|20)\d\d))?(?= )")
_KNOWN_ZONES = frozenset((
    "UTC", "GMT", "UT", "Z", "CET", "CEST", "MET", "MEST", "MESZ", "EET", "EEST", "WET", "WEST", "BST",
    "IST", "EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT", "AKST", "AKDT", "HST", "JST", "KST",
    "AEST", "AEDT", "ACST", "AWST", "NZST", "NZDT", "SGT", "HKT", "MSK"))
_STAMP_COLON = re.compile(r" ?:(?=\s|$)")  # Cisco ends its timestamp with ":" (IOS-XR with " :")
_UTC_ZONES = frozenset({"UTC", "GMT", "UT", "Z"})

# Prefixes before the timestamp (Cisco, NX-OS, IOS-XR, Opengear), tried in order; one is taken only
# when a timestamp (or, for the Cisco forms, a %CODE) follows it, so ordinary text is never mistaken
# for one. Name → pattern; "plain" is no prefix at all.
_SEQ = r"(?:(?P<seq>\d{1,10}):\s*)?"
_PREFIXES = (
    ("plain", re.compile("")),
    ("seq", re.compile(_SEQ)),
    ("empty_origin", re.compile(_SEQ + r":\s+")),  # NX-OS: "<190>: 2017 Mar 06 ..."
    ("origin", re.compile(_SEQ + r"(?P<origin>[^\s:%*\[\]]{1,255}):\s*")),  # IOS origin-id "router1: "
    ("iosxr", re.compile(_SEQ + r"(?P<origin>[^\s:%*\[\]]{1,255})\s+(?P<node>[A-Z]{1,4}\d*(?:/[A-Za-z0-9]+)+):")),
    ("opengear", re.compile(r"(?P<origin>[^\s:%*\[\]]{1,255})\s+(?P<prog>[^\s:%*\[\]]{1,64})\s+")),
)
_CISCO_PREFIXES = frozenset({"seq", "empty_origin", "origin", "iosxr"})
_CISCO_CODE_AHEAD = re.compile(r"%%?[A-Z0-9]")
_HOST = re.compile(r"[^\s\[\]]{1,255}")
_TAG = re.compile(r"(?P<program>[^\s:\[\]]{1,64})(?:\[(?P<pid>[^\]\s]{0,32})\])?(?P<colon>:)?(?=\s|$)")
# A TAG without colon or [pid] is taken only when it looks like a program name (lower case), or
# when a TAB ends it (Snare): RFC 3164's own example "10.0.0.99 Use the BFG!" has no TAG.
_BARE_PROGRAM = re.compile(r"[a-z0-9_][a-z0-9_.\-/]{0,63}")
_EVENT_CODE = re.compile(r"(?P<code>[A-Z][A-Z0-9_]{1,47}):(?=\s|$)")
_FORWARDED = re.compile(r"Message forwarded from (?P<host>[^\s:]{1,255}):\s+")
_ROUTING_ENGINE = re.compile(r"(?P<re>re\d)[.-](?P<host>.*[A-Za-z].*)")
_FORTI = re.compile(r"date=(?P<date>\d{4}-\d{2}-\d{2}) time=(?P<time>\d{1,2}:\d{2}:\d{2})\s")
_OFFSET = re.compile(r"[+-]\d{4}")
_KV = re.compile(r"(?P<key>[a-z_]+)=(?P<value>\"[^\"]*\"|\S*)")


@dataclass
class LegacyHeader:
    """What the header of a non-RFC 5424 line said; None where it said nothing."""

    format: str = "rfc3164"
    host: str | None = None
    time_ms: int | None = None
    program: str | None = None
    pid: str | None = None
    code: str | None = None
    message: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    #: A timestamp was there (its time is None when its fields were not a valid date).
    stamped: bool = False


@dataclass(frozen=True)
class _Stamp:
    end: int
    time_ms: int | None
    zone: str | None


def read_timestamp(text: str, pos: int, received_ms: int) -> _Stamp | None:
    """A timestamp at `pos` (any of the forms in the module docstring), with a trailing zone name
    and `:` / ` :` consumed; its time is None when the fields are not a valid date."""
    for pattern, reader in ((_ISO, _iso_time), (_YEAR_FIRST, _named_month_time), (_BSD, _named_month_time),
                            (_OPENGEAR, _named_month_time)):
        match = pattern.match(text, pos)
        if match and not (pattern is _BSD and match.group("mon").lower() not in _MONTHS):
            end, zone, year = match.end(), None, None
            zone_match = _ZONE.match(text, end)
            spaced = _SPACED_ZONE.match(text, end)
            if pattern is _ISO:
                pass
            elif zone_match and (zone_match.group("code") or zone_match.group("zone") in _KNOWN_ZONES):
                zone, end = zone_match.group("zone"), zone_match.end()
            elif spaced and (spaced.group("zone") in _KNOWN_ZONES or spaced.group("zone").startswith("TZ")):
                zone, year, end = spaced.group("zone"), spaced.group("year"), spaced.end()
            colon = _STAMP_COLON.match(text, end)
            if colon:
                end = colon.end()
            return _Stamp(end, reader(match, year, received_ms), zone)
    return None


def _fraction_us(fraction: str | None) -> int:
    return int((fraction or "").ljust(6, "0")[:6] or 0)


def _iso_time(match: re.Match[str], _year: str | None, _received_ms: int) -> int | None:
    tz_text = match.group("tz")
    try:
        tz = UTC
        if tz_text and tz_text != "Z":
            sign = -1 if tz_text[0] == "-" else 1
            digits = tz_text[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        stamp = datetime(int(match.group("y")), int(match.group("mo")), int(match.group("d")),
                         int(match.group("h")), int(match.group("mi")), int(match.group("s")),
                         _fraction_us(match.group("f")), tzinfo=tz)
        return datetime_ms(stamp)
    except (ValueError, OverflowError):
        return None


def _named_month_time(match: re.Match[str], year_after_zone: str | None, received_ms: int) -> int | None:
    """`Mmm dd [yyyy] hh:mm:ss` (year from the text, else the latest one not after receipt)."""
    month = _MONTHS.get(match.group("mon").lower())
    groups = match.groupdict()
    year_text = groups.get("y") or groups.get("y1") or groups.get("y2") or year_after_zone
    if month is None:
        return None
    received = datetime.fromtimestamp(received_ms / 1000, tz=UTC)
    years = [int(year_text)] if year_text else [received.year - 1, received.year, received.year + 1]
    stamps = []
    for year in years:
        try:
            stamps.append(datetime(year, month, int(match.group("d")), int(match.group("h")),
                                   int(match.group("mi")), int(match.group("s")),
                                   _fraction_us(match.group("f")), tzinfo=UTC))
        except ValueError:
            continue
    # Logs describe the past: without a year, take the latest one that does not put the message
    # more than a week after its receipt (slack for senders whose clocks run ahead).
    plausible = stamps if year_text else [s for s in stamps if s <= received + _CLOCK_AHEAD_SLACK]
    return datetime_ms(max(plausible)) if plausible else None


def _is_ip(token: str) -> bool:
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False
    return True


def parse_legacy_header(rest: str, received_ms: int) -> LegacyHeader:
    """Read the header of a line that is not RFC 5424 (`rest` is the text after the PRI)."""
    text = rest.lstrip(" ")
    forti = _FORTI.match(text)
    if forti:
        return _fortios(text, forti)
    head = LegacyHeader()
    pos = _read_prefix_and_time(text, head, received_ms)
    pos = _skip_spaces(text, pos)
    forwarded = _FORWARDED.match(text, pos)
    if forwarded:  # AIX syslogd names the original host after the relay's own header
        head.host, pos = forwarded.group("host"), forwarded.end()
    cisco_style = head.format == "cisco"
    if head.host is None:
        pos = _read_host(text, pos, head, cisco_style=cisco_style)
    pos = _skip_spaces(text, pos)
    pos = _read_tag(text, pos, head, header_seen=head.stamped or head.host is not None)
    # A relay's header in front of a Cisco line: the device's own "seq: [host:] time:" follows.
    if not cisco_style and head.program is None:
        inner = LegacyHeader()
        inner_pos = _read_prefix_and_time(text, inner, received_ms, pos=pos, cisco_only=True)
        if inner.format == "cisco":
            head.format = "cisco"
            head.host = head.host or inner.host
            if not head.stamped:
                head.time_ms, head.stamped = inner.time_ms, inner.stamped
            head.tags.update({k: v for k, v in inner.tags.items() if k not in head.tags})
            pos = _skip_spaces(text, inner_pos)
    head.message = text[pos:]
    return head


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


def _read_prefix_and_time(text: str, head: LegacyHeader, received_ms: int, *, pos: int = 0,
                          cisco_only: bool = False) -> int:
    """Find the first prefix form followed by a timestamp or a %CODE; fill `head`; return the
    position after it (or `pos` unchanged when the line starts with neither)."""
    for name, prefix in _PREFIXES:
        cisco = name in _CISCO_PREFIXES
        if cisco_only and not cisco:
            continue
        match = prefix.match(text, pos)
        if match is None:
            continue
        groups = match.groupdict()
        after = match.end()
        stamp = read_timestamp(text, after, received_ms)
        if stamp is None and not (cisco and _CISCO_CODE_AHEAD.match(text, after)):
            continue
        if cisco_only and not groups.get("seq") and name != "empty_origin":
            # Behind a relay's header only a Cisco sequence number (or empty origin) marks the
            # device's own header; a bare "word:" there is the relayed program's tag.
            continue
        if cisco:
            head.format = "cisco"
        if groups.get("seq"):
            head.tags["seq"] = groups["seq"]
        if groups.get("node"):
            head.tags["node"] = groups["node"]
        if groups.get("origin"):
            head.host = groups["origin"]
        if groups.get("prog"):
            head.program = groups["prog"]
        if stamp is None:
            return after
        head.stamped, head.time_ms = True, stamp.time_ms
        if stamp.zone and stamp.zone not in _UTC_ZONES:
            head.tags["timezone"] = stamp.zone
        return stamp.end
    return pos


def _read_host(text: str, pos: int, head: LegacyHeader, *, cisco_style: bool) -> int:
    """An RFC 3164 HOSTNAME: a token followed by a space or the end (IPv6 addresses included).
    In a Cisco line a host only comes right before the %CODE."""
    match = _HOST.match(text, pos)
    if match is None:
        return pos
    token = match.group(0)
    end = match.end()
    if not token[0].isalnum() and not _is_ip(token):
        return pos  # host names (and addresses) start with a letter or digit
    if end < len(text) and text[end] != " ":
        return pos  # "tag[": a program, not a host
    if cisco_style and not _CISCO_CODE_AHEAD.match(text, _skip_spaces(text, end)):
        return pos
    if token.endswith(":") and not _is_ip(token):
        return pos  # "tag:" is the TAG ("0002::" is an IPv6 address, a host)
    if ":" in token and not _is_ip(token):
        return pos
    if not head.stamped and not _CISCO_CODE_AHEAD.match(text, _skip_spaces(text, end)):
        return pos  # without a timestamp the first word is not read as a host (rsyslog does the same)
    engine = _ROUTING_ENGINE.fullmatch(token)
    if engine:  # Junos with two routing engines prefixes its name: "re0.router1"
        head.tags["routing_engine"] = engine.group("re")
        token = engine.group("host")
    head.host = token
    return end


def _read_tag(text: str, pos: int, head: LegacyHeader, *, header_seen: bool) -> int:
    """TAG[pid]: / TAG: / TAG[pid] / TAG (the last only after a header: "host tag msg"); where the
    program came before the timestamp (Opengear), an upper-case `EVENT:` here is the event code."""
    if text.startswith("%", pos):
        return pos
    if head.program is not None:
        event = _EVENT_CODE.match(text, pos)
        if event:
            head.code = event.group("code")
            return _skip_spaces(text, event.end())
        return pos
    match = _TAG.match(text, pos)
    if match is None:
        return pos
    program, pid, colon = match.group("program"), match.group("pid"), match.group("colon")
    if program.isdigit() and colon:
        return pos  # "1234:" is a Cisco sequence number, not a program
    if not (program[0].isalnum() or program[0] == "/") or not any(c.isalnum() for c in program):
        # ";0:", ";:" or "--" is punctuation in the text, not a TAG (RFC 3164: alphanumeric); a
        # path ("/kernel:") is the executable's name
        return pos
    tab_ended = text.startswith("\t", match.end())
    # A bare word (no ':' or [pid]) is a TAG only in "host tag msg": after a timestamp alone, a word
    # that could not be the host ("_0") is text, as a word that could be is the host.
    bare_ok = tab_ended or (head.host is not None and _BARE_PROGRAM.fullmatch(program) is not None)
    if not colon and pid is None and not (header_seen and bare_ok and not _is_ip(program)):
        return pos
    if program.startswith("/"):  # "/kernel:", "/usr/sbin/cron[42]:": the executable's name
        program = program.rstrip("/").rsplit("/", 1)[-1] or program
    head.program = program
    head.pid = pid or None
    return _skip_spaces(text, match.end())


def _fortios(text: str, match: re.Match[str]) -> LegacyHeader:
    """FortiOS sends key=value pairs instead of a header: devname is the host, logid the code."""
    pairs = {m.group("key"): m.group("value").strip('"') for m in _KV.finditer(text)}
    head = LegacyHeader(format="fortios", host=pairs.get("devname") or pairs.get("devid") or None,
                        program=pairs.get("type") or None, code=pairs.get("logid") or None, message=text)
    offset = pairs.get("tz", "")  # FortiOS 6.2+: tz="+0200"
    if not _OFFSET.fullmatch(offset):
        offset = ""
    iso = f"{match.group('date')}T{match.group('time')}{offset}"
    stamp = _ISO.match(iso)
    head.time_ms = _iso_time(stamp, None, 0) if stamp else None
    head.stamped = True
    return head
