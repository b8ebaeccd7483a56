"""Syslog parsing on documented samples (RFC 5424/3164, Cisco IOS, Junos) and on bad input."""

from __future__ import annotations

from typing import Any

import pytest

from app.bridges.errors import ParseError
from app.bridges.parsers.syslog import extract_codes, extract_pairs, parse_structured_data, parse_syslog
from app.model.events import Kind, Severity

from .support import data_json, iso_ms

SAMPLES = data_json("syslog/samples.json")
RECEIVED_MS = iso_ms(SAMPLES["received"])
SENDER = SAMPLES["sender"]


@pytest.mark.parametrize("sample", SAMPLES["samples"], ids=lambda s: s["_source"][:60])
def test_documented_samples__parse_to_the_expected_event(sample: dict[str, Any]) -> None:
    event = parse_syslog(sample["message"].encode(), source_host=SENDER, received_ms=RECEIVED_MS)
    expect = sample["expect"]
    assert (event.subject, event.name, event.severity) == (expect["subject"], expect["name"], expect["severity"])
    assert event.time == iso_ms(expect["time"])
    if "text" in expect:
        assert event.text == expect["text"]
    assert {k: event.tags.get(k) for k in expect["tags"]} == expect["tags"]
    if "structured_data" in expect:
        assert event.extended == {"structured_data": expect["structured_data"]}
    assert event.kind == Kind.ARCHIVE
    assert event.origin == "syslog"


@pytest.mark.parametrize(("pri", "severity"), [
    (0, Severity.CRITICAL), (1, Severity.CRITICAL), (2, Severity.CRITICAL), (3, Severity.CRITICAL),
    (4, Severity.WARNING), (5, Severity.OK), (6, Severity.OK), (7, Severity.OK), (191, Severity.OK),
])
def test_severity__follows_the_documented_mapping(pri: int, severity: Severity) -> None:
    event = parse_syslog(f"<{pri}>Mar 19 10:00:00 host1 app: x".encode(), received_ms=RECEIVED_MS)
    assert event.severity == severity


def test_message_without_pri__is_user_notice() -> None:
    event = parse_syslog(b"just a line user=bob", source_host="10.0.0.1", received_ms=RECEIVED_MS)
    assert (event.subject, event.tags["facility"], event.tags["syslog_severity"]) == ("10.0.0.1", "user", "notice")
    assert event.tags["user"] == "bob"
    assert event.time == RECEIVED_MS


def test_header_tags__cannot_be_forged_by_pairs_in_the_text() -> None:
    event = parse_syslog(b"<14>Mar 19 11:00:00 fw1 app: facility=kern program=evil format=x level=3",
                         received_ms=RECEIVED_MS)
    assert (event.tags["facility"], event.tags["program"], event.tags["format"]) == ("user", "app", "rfc3164")
    assert event.tags["level"] == "3"


def test_rfc3164_time__is_taken_in_the_latest_year_not_after_receipt() -> None:
    # Received on 2024-01-01: "Dec 31" is last year's, not this year's.
    event = parse_syslog(b"<13>Dec 31 23:59:58 h1 app: x", received_ms=iso_ms("2024-01-01T00:00:05Z"))
    assert event.time == iso_ms("2023-12-31T23:59:58Z")


def test_bad_timestamp__falls_back_to_receipt_time() -> None:
    event = parse_syslog(b"<13>1 2024-13-45T99:00:00Z h1 app - - - x", received_ms=RECEIVED_MS)
    assert event.time == RECEIVED_MS


def test_sender_address__is_kept_when_the_message_names_another_host() -> None:
    event = parse_syslog(b"<13>Mar 19 10:00:00 host1 app: x", source_host="10.9.9.9", received_ms=RECEIVED_MS)
    assert (event.subject, event.tags["sender"]) == ("host1", "10.9.9.9")


@pytest.mark.parametrize(("data", "field", "kind"), [
    (b"<13>Mar 19 10:00:00 h1 app: caf\xe9", "message", "not_utf8"),
    (b"", "message", "invalid"),
    (b"\r\n", "message", "invalid"),
    (b"<192>Mar 19 10:00:00 h1 app: x", "pri", "invalid"),
    (b"<13>1 2024-03-19T10:00:00Z - app - - - no host", "hostname", "invalid"),
])
def test_bad_messages__raise_a_parse_error_naming_the_part(data: bytes, field: str, kind: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_syslog(data, received_ms=RECEIVED_MS)
    assert (caught.value.field, caught.value.kind) == (field, kind)


@pytest.mark.parametrize(("data", "text"), [
    (b'<13>1 2024-03-19T10:00:00Z h1 app - - [bad', ""),
    (b"<13>1 2024-03-19T10:00:00Z h1 app - - garbage", "garbage"),
    (b'<13>1 2024-03-19T10:00:00Z h1 app - - [a x=""ok"] the text', "the text"),
])
def test_broken_structured_data__keeps_the_message_and_says_so(data: bytes, text: str) -> None:
    event = parse_syslog(data, received_ms=RECEIVED_MS)
    assert (event.subject, event.name, event.text) == ("h1", "app", text)
    assert (event.tags["vigil.parse"], event.tags["vigil.parse.missing"]) == ("partial", "structured_data")


def test_slightly_off_structured_data__is_read_as_far_as_it_parses() -> None:
    long_id = "a" * 40
    message = f'<13>1 2024-03-19T10:00:00Z h1 app - - [ {long_id} k= "v" u=plain][b@1 n="1" bad"] m'
    event = parse_syslog(message.encode(), received_ms=RECEIVED_MS)
    assert event.extended == {"structured_data": {long_id: {"k": "v", "u": "plain"}, "b@1": {"n": "1"}}}
    assert event.text == "m"
    assert event.tags["vigil.parse.missing"] == "structured_data"


def test_structured_data__unescapes_values_and_reports_consumed_length() -> None:
    data, consumed = parse_structured_data('[a@1 x="q\\"]\\\\" y=""][b z="1"] rest')
    assert data == {"a@1": {"x": 'q"]\\', "y": ""}, "b": {"z": "1"}}
    assert consumed == len('[a@1 x="q\\"]\\\\" y=""][b z="1"]')


@pytest.mark.parametrize(("message", "msgid", "code"), [
    ("%LINK-3-UPDOWN: Interface Gi0/1, changed state to down", None, "LINK-3-UPDOWN"),
    ("*Mar  1 00:00:01: %ETHPORT-5-IF_DOWN_LINK_FAILURE: x", None, "ETHPORT-5-IF_DOWN_LINK_FAILURE"),
    ("%DUAL-SUB-5-NBRCHANGE: EIGRP neighbor up", None, "DUAL-SUB-5-NBRCHANGE"),
    ("SNMP_TRAP_LINK_DOWN: ifIndex 526", None, "SNMP_TRAP_LINK_DOWN"),
    ("User 'x' exiting", "UI_DBASE_LOGOUT_EVENT", "UI_DBASE_LOGOUT_EVENT"),
    ("see http://x/%20y and 50% done", None, None),
    ("ERROR: disk full", None, None),
])
def test_extract_codes__finds_network_os_codes_only(message: str, msgid: str | None, code: str | None) -> None:
    assert extract_codes(message, msgid=msgid).get("code") == code


def test_extract_pairs__reads_key_value_and_comma_separated_key_space_value() -> None:
    assert extract_pairs('a=1 b="two words" c=\'3\' url=http://x/?q=1') == {
        "a": "1", "b": "two words", "c": "3", "url": "http://x/?q=1"}
    assert extract_pairs("SNMP_TRAP_LINK_UP: ifIndex 3, ifName ge-0/0/0, went up now") == {
        "ifIndex": "3", "ifName": "ge-0/0/0"}
    assert extract_pairs("no pairs here, really none at all") == {}


def test_extract_pairs__is_bounded() -> None:
    message = " ".join(f"k{i}=v{i}" for i in range(1000))
    assert len(extract_pairs(message)) == 32


def test_rfc3164__punctuation_is_no_tag() -> None:
    """Found by the property test: a TAG is alphanumeric, so ";:" is text and the program is missing."""
    from app.bridges.parsers._common import missing_fields

    event = parse_syslog(b"<0>Jun 10 00:00:00 host1 ;: hello", source_host="192.0.2.50", received_ms=0)
    assert (event.subject, event.tags.get("program")) == ("host1", None)
    assert missing_fields(event) == ["program"]
    event = parse_syslog(b"<0>;0: hello", source_host="192.0.2.50", received_ms=0)  # found again: ";0" too
    assert (event.tags.get("program"), event.text) == (None, ";0: hello")
    event = parse_syslog(b"<0>Jun 10 00:00:00 host1 /usr/sbin/cron[42]: run", source_host="192.0.2.50", received_ms=0)
    assert (event.tags.get("program"), event.tags.get("pid")) == ("cron", "42")
    event = parse_syslog(b"<13>Jun 10 00:00:00 ::1 sshd[4]: hi", source_host="192.0.2.50", received_ms=0)
    assert (event.subject, event.tags.get("program"), event.tags.get("pid")) == ("::1", "sshd", "4")
