"""Properties of the bridge parsers on generated input shaped like what real senders write.

- syslog: a header written in any of the layouts devices use (RFC 5424, RFC 3164 with its spacing,
  casing and year variants, Cisco IOS, NX-OS, IOS-XR, Arista) reads back to the host, time, program
  and code it was written from; whatever is left out is named in `vigil.parse.missing` and the
  sender's address is the subject only then; nothing but ParseError is ever raised.
- structured data written per RFC 5424 reads back to the same parameters.
- Alertmanager: every alert of any label set is accepted, its subject per the documented chain.
- GitHub: a delivery that is a JSON object is accepted for any event type.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.bridges.errors import ParseError
from app.bridges.parsers._common import missing_fields
from app.bridges.parsers.alertmanager import SUBJECT_LABELS, parse_alertmanager
from app.bridges.parsers.github import parse_github
from app.bridges.parsers.syslog import parse_structured_data, parse_syslog

PROPERTY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SENDER = "192.0.2.50"
RECEIVED_MS = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1000)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

hosts = st.from_regex(r"[a-z][a-z0-9-]{0,14}(\.[a-z][a-z0-9-]{0,9}){0,2}", fullmatch=True) \
    | st.ip_addresses().map(str)
programs = st.from_regex(r"[a-z][a-z0-9_-]{0,14}", fullmatch=True)
pids = st.none() | st.integers(1, 99999).map(str)
codes = st.builds(lambda fac, sev, mn: f"{fac}-{sev}-{mn}", st.from_regex(r"[A-Z][A-Z0-9_]{1,10}", fullmatch=True),
                  st.integers(0, 7), st.from_regex(r"[A-Z][A-Z0-9_]{1,12}", fullmatch=True))
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"]),
                max_size=60).map(str.strip)
# Whole seconds in the year before receipt (so a timestamp without a year reads back exactly),
# never the receipt time itself (a missing time falls back to it).
stamps = st.datetimes(min_value=datetime(2023, 6, 10), max_value=datetime(2024, 5, 30)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC))


@dataclass(frozen=True)
class Header:
    """What a generated line says (None: left out)."""

    host: str | None
    time: datetime | None
    program: str | None
    pid: str | None
    code: str | None


def _bsd(t: datetime, *, upper: bool, pad: bool, year: str) -> str:
    month = MONTHS[t.month - 1].upper() if upper else MONTHS[t.month - 1]
    day = f"{t.day:2d}" if pad else str(t.day)
    clock = t.strftime("%H:%M:%S")
    return {"none": f"{month} {day} {clock}", "after_day": f"{month} {day} {t.year} {clock}",
            "after_time": f"{month} {day} {clock} {t.year}"}[year]


def _is_address(word: str) -> bool:
    try:
        ipaddress.ip_address(word)
    except ValueError:
        return False
    return True


@st.composite
def rfc3164_lines(draw: st.DrawFn) -> tuple[str, Header]:
    """`<PRI>[ ]TIMESTAMP HOST  TAG[pid]: MSG` with the spacing and timestamp variants seen in the wild."""
    t = draw(stamps | st.none())
    host = draw(st.none() | hosts) if t is not None else None
    program = draw(programs | st.none())
    pid = draw(pids) if program else None
    colon = draw(st.booleans())
    # A TAG without ':' or [pid] is only read after a timestamp and host ("host tag msg"): alone,
    # "stamp word" is a host and "word" is text.
    if program is not None and pid is None and (t is None or host is None):
        colon = True
    text = draw(texts)
    # Else the first word of the text is the TAG (it starts with a letter, digit or "/": a path),
    # or (right after a timestamp) the host -- an address too ("::" is one).
    assume(program is not None or not (text[:1].isalnum() or text[:1] == "/"
                                       or _is_address(text.split(" ", 1)[0])))
    parts = [f"<{draw(st.integers(0, 191))}>" + (" " if draw(st.booleans()) else "")]
    if t is not None:
        iso = t.strftime("%Y-%m-%dT%H:%M:%S") + draw(st.sampled_from(["Z", "+00:00", ".000000Z", ""]))
        year = draw(st.sampled_from(["none", "after_day", "after_time"]))
        bsd = _bsd(t, upper=draw(st.booleans()), pad=draw(st.booleans()), year=year)
        parts.append(draw(st.sampled_from([iso, bsd])))
        parts.append(" ")
    if host is not None:
        parts.append(host + draw(st.sampled_from([" ", "  "])))  # Junos writes two spaces
    if program is not None:
        tag = program + (f"[{pid}]" if pid else "")
        parts.append(tag + (": " if colon else " "))
        if not colon:
            assume(not text.startswith(":"))
    parts.append(text)
    return "".join(parts), Header(host, t, program, pid, None)


@st.composite
def network_os_lines(draw: st.DrawFn) -> tuple[str, Header]:
    """Cisco IOS / NX-OS / IOS-XR / Arista EOS layouts around a %FAC-SEV-MNEMONIC code."""
    t = draw(stamps)
    host: str | None = draw(hosts.filter(lambda h: ":" not in h))
    code = draw(codes)
    text = draw(texts)
    seq = draw(st.integers(1, 9_999_999))
    millis = draw(st.integers(0, 999))
    ms = f".{millis:03d}"
    bsd = f"{MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S}"
    layout = draw(st.sampled_from(["ios", "ios_origin", "ios_host_after", "nxos", "nxos_origin", "iosxr", "eos"]))
    program: str | None = None
    pid: str | None = None
    if layout == "ios":
        line, host = f"<189>{seq}: *{bsd}{ms}: %{code}: {text}", None
    elif layout == "ios_origin":
        line = f"<189>{seq}: {host}: {bsd}{ms} {draw(st.sampled_from(['UTC', 'CET', 'MEST']))}: %{code}: {text}"
    elif layout == "ios_host_after":
        line = f"<189>{seq}: *{bsd}: {host} %{code}: {text}"
    elif layout == "nxos":
        line = f"<190>{t.year} {MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S} {host} %{code}: {text}"
    elif layout == "nxos_origin":
        line = f"<190>{host}: {t.year} {MONTHS[t.month - 1]} {t.day} {t:%H:%M:%S} UTC: %{code}: {text}"
    elif layout == "iosxr":
        program, pid = draw(programs), str(draw(st.integers(1, 9999)))
        line = f"<187>{seq}: {host} RP/0/RSP0/CPU0:{bsd}{ms} : {program}[{pid}]: %{code} : {text}"
    else:
        program = draw(st.from_regex(r"[A-Z][A-Za-z]{1,12}", fullmatch=True))
        line = f"<165>{bsd} {host} {program}: %{code}: {text}"
    if layout in ("ios", "ios_origin", "iosxr"):  # the layouts that write milliseconds (not: ".132" in a host)
        t = t.replace(microsecond=millis * 1000)
    return line, Header(host, t, program, pid, code)


@st.composite
def rfc5424_lines(draw: st.DrawFn) -> tuple[str, Header]:
    t = draw(stamps | st.none())
    host, program = draw(st.none() | hosts), draw(st.none() | programs)
    pid = draw(pids)
    ts = "-" if t is None else t.strftime("%Y-%m-%dT%H:%M:%S") + draw(st.sampled_from(["Z", ".000000000+00:00", ""]))
    sd = draw(st.sampled_from(["-", '[a@1 k="v"]', '[ b k= "v"]', "[c@32473 long_parameter_name_over_32_chars=x]"]))
    line = f"<{draw(st.integers(0, 191))}>1 {ts} {host or '-'} {program or '-'} {pid or '-'} - {sd} {draw(texts)}"
    return line, Header(host, t, program, pid, None)


def _check_reads_back(line: str, expected: Header) -> None:
    event = parse_syslog(line.encode(), source_host=SENDER, received_ms=RECEIVED_MS)
    missing = missing_fields(event)
    assert (event.tags.get("vigil.parse") == "partial") == bool(missing)
    if expected.host is None:
        assert (event.subject, "host" in missing) == (SENDER, True)
    else:
        assert (event.subject, "host" in missing) == (expected.host, False)
    if expected.time is None:
        assert (event.time, "time" in missing) == (RECEIVED_MS, True)
    else:
        assert (event.time, "time" in missing) == (int(expected.time.timestamp() * 1000), False)
    assert event.tags.get("program") == expected.program
    assert event.tags.get("pid") == expected.pid
    if expected.code is not None:
        assert event.tags.get("code") == expected.code
    assert ("program" in missing) == (expected.program is None and "code" not in event.tags)


@PROPERTY
@given(rfc3164_lines())
def test_rfc3164_headers__read_back_and_missing_fields_are_named(case: tuple[str, Header]) -> None:
    _check_reads_back(*case)


@PROPERTY
@given(network_os_lines())
def test_network_os_headers__read_back_to_host_time_program_and_code(case: tuple[str, Header]) -> None:
    _check_reads_back(*case)


@PROPERTY
@given(rfc5424_lines())
def test_rfc5424_headers__read_back_even_with_slightly_off_structured_data(case: tuple[str, Header]) -> None:
    _check_reads_back(*case)


sd_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.@-]{0,40}", fullmatch=True)
sd_values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)


@PROPERTY
@given(st.dictionaries(sd_names, st.dictionaries(sd_names.filter(lambda n: "@" not in n), sd_values, max_size=4),
                       min_size=1, max_size=4))
def test_structured_data__written_per_rfc5424_reads_back(data: dict[str, dict[str, str]]) -> None:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")

    text = "".join(f"[{sd_id}" + "".join(f' {k}="{escape(v)}"' for k, v in params.items()) + "]"
                   for sd_id, params in data.items())
    assert parse_structured_data(text + " msg") == (data, len(text))


@PROPERTY
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode), st.none() | st.just(SENDER))
def test_any_bytes__parse_to_a_tagged_event_or_a_parse_error(data: bytes, sender: str | None) -> None:
    try:
        event = parse_syslog(data, source_host=sender, received_ms=RECEIVED_MS)
    except ParseError:
        return
    missing = missing_fields(event)
    assert (event.tags.get("vigil.parse") == "partial") == bool(missing)
    assert ("host" in missing) == (event.subject == sender and "host" in missing)


label_values = st.text(min_size=0, max_size=12)


@PROPERTY
@given(st.lists(st.dictionaries(st.sampled_from([*SUBJECT_LABELS, "severity", "team", "zone", "prometheus"]),
                                label_values, max_size=6), min_size=1, max_size=5),
       st.sampled_from(["4", "1", None, 3]), st.sampled_from(["firing", "resolved", None]))
def test_alertmanager__accepts_every_alert_whatever_its_labels(labels: list[dict[str, str]], version: object,
                                                               status: str | None) -> None:
    payload = {"receiver": "team-x", "version": version, "status": status,
               "alerts": [{"labels": item, "status": status} for item in labels]}
    result = parse_alertmanager(payload, received_ms=RECEIVED_MS)
    assert result.errors == []
    for item, event in zip(labels, result.events, strict=True):
        expected = next((item[k].strip() for k in SUBJECT_LABELS if item.get(k, "").strip()), "team-x")
        assert event.subject == expected


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
json_objects = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@PROPERTY
@given(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True).filter(lambda t: t != "ping"),
       st.dictionaries(st.sampled_from(["action", "repository", "organization", "sender", "security_advisory",
                                        "workflow_job", "installation", "x"]), json_objects, max_size=5))
def test_github__accepts_any_object_delivery(event_type: str, payload: dict[str, object]) -> None:
    result = parse_github(event_type, payload, received_ms=RECEIVED_MS)
    assert len(result.events) == 1 and result.events[0].subject
