"""Nagios/Icinga check results and perfdata (documented plugin output shapes)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.bridges.errors import ParseError
from app.bridges.parsers.nagios import parse_nagios
from app.bridges.parsers.perfdata import normalise_unit, parse_perfdata, split_plugin_output
from app.model.events import Kind, Severity

from .support import data_json

SAMPLES = data_json("nagios/samples.json")


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["_source"][:60])
def test_documented_outputs__become_one_status_event_with_normalised_metrics(sample: dict[str, Any]) -> None:
    (event,) = parse_nagios(sample["input"], received_ms=1).events
    expect = sample["expect"]
    assert (event.subject, event.name, event.severity, event.text) == (
        sample["input"]["host"], expect["name"], expect["severity"], expect["text"])
    assert event.metrics == pytest.approx(expect["metrics"])
    assert (event.kind, event.origin, event.time) == (Kind.STATUS, "nagios", 1)
    extended = event.extended or {}
    assert extended.get("long_output") == expect.get("long_output")
    assert len(extended.get("perfdata_errors", [])) == expect.get("perfdata_errors", 0)


def test_json_bytes__are_accepted_like_a_mapping() -> None:
    body = json.dumps({"host": "h", "service": "s", "return_code": 1, "output": "WARN|x=1"}).encode()
    (event,) = parse_nagios(body).events
    assert (event.name, event.severity, event.metrics) == ("s", 1, {"x": 1.0})


def test_perfdata_details__keep_thresholds_and_units_in_extended() -> None:
    (event,) = parse_nagios({"host": "h", "service": "PING", "return_code": 0,
                             "output": "OK|rta=0.8ms;100;500;0 pl=U"}).events
    assert event.extended is not None
    rta, pl = event.extended["perfdata"]
    assert rta == {"label": "rta", "value": pytest.approx(0.0008), "unit": "s", "uom": "ms",
                   "warn": "100", "crit": "500", "min": 0.0, "max": None}
    assert (pl["value"], pl["uom"]) == (None, "")


@pytest.mark.parametrize(("data", "field"), [
    ({"service": "s", "return_code": 0, "output": ""}, "host"),
    ({"host": " ", "return_code": 0}, "host"),
    ({"host": "h", "return_code": 4}, "return_code"),
    ({"host": "h", "return_code": "2x"}, "return_code"),
    ({"host": "h", "return_code": True}, "return_code"),
    ({"host": "h"}, "return_code"),
    ({"host": "h", "return_code": 0, "output": 5}, "output"),
    ({"host": "h", "service": ["x"], "return_code": 0}, "service"),
    ([1, 2], "body"),
])
def test_bad_results__name_the_field(data: Any, field: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_nagios(data)
    assert caught.value.field == field


@pytest.mark.parametrize(("value", "uom", "expected"), [
    (1.5, "s", (1.5, "s")), (250, "ms", (0.25, "s")), (40, "us", (0.00004, "s")),
    (12, "%", (12, "%")), (3, "B", (3, "B")), (2, "KB", (2048, "B")), (1, "MB", (1048576, "B")),
    (1, "GB", (1073741824, "B")), (1, "TB", (1099511627776, "B")), (1, "kB", (1024, "B")),
    (1, "MiB", (1048576, "B")), (7, "c", (7, "c")), (7, "", (7, "")), (7, "req/s", (7, "req/s")),
])
def test_normalise_unit__converts_time_and_sizes_and_keeps_the_rest(value: float, uom: str,
                                                                    expected: tuple[float, str]) -> None:
    converted, unit = normalise_unit(value, uom)
    assert (converted, unit) == (pytest.approx(expected[0]), expected[1])


def test_split_plugin_output__separates_text_long_text_and_all_perfdata() -> None:
    output = "TEXT | a=1\nLONG 1\nLONG 2 | b=2\nc=3\n"
    assert split_plugin_output(output) == ("TEXT", "LONG 1\nLONG 2", "a=1 b=2 c=3")
    assert split_plugin_output("just text") == ("just text", "", "")


def test_parse_perfdata__skips_malformed_items_and_says_why() -> None:
    values, problems = parse_perfdata("a=1 b c=x d=4;;;0;10 'e f'=5s =3 'unterminated=2")
    assert [(v.label, v.value) for v in values] == [("a", 1.0), ("d", 4.0), ("e f", 5.0)]
    assert len(problems) == 4
    assert any("'c'" in p for p in problems)


def test_parse_perfdata__accepts_decimal_commas_negative_and_exponent_values() -> None:
    values, problems = parse_perfdata("t=-1,5 u=2.5e3ms v=.5")
    assert problems == []
    assert [v.value for v in values] == pytest.approx([-1.5, 2.5, 0.5])


@pytest.mark.parametrize("perfdata_field", [
    {"perfdata": "rta=42.874001ms;80.000000;90.000000;0.000000 pl=0%;80;90;0"},
    {"performance_data": ["rta=42.874001ms;80.000000;90.000000;0.000000", "pl=0%;80;90;0"]},
])
def test_perfdata_in_its_own_field__is_read_like_perfdata_in_the_output(perfdata_field: dict[str, Any]) -> None:
    # Nagios hands $SERVICEOUTPUT$ and $SERVICEPERFDATA$ to commands separately.
    inline = parse_nagios({"host": "h", "service": "ping", "return_code": 0,
                           "output": "PING OK - Packet loss = 0%, RTA = 42.87 ms|rta=42.874001ms;80.000000;90.000000;"
                                     "0.000000 pl=0%;80;90;0"}).events[0]
    separate = parse_nagios({"host": "h", "service": "ping", "return_code": 0,
                             "output": "PING OK - Packet loss = 0%, RTA = 42.87 ms", **perfdata_field}).events[0]
    assert separate.metrics == inline.metrics == {"rta": pytest.approx(0.042874001), "pl": 0.0}
    assert separate.text == inline.text


def test_perfdata_field__wins_over_the_same_label_in_the_output_and_adds_the_others() -> None:
    event = parse_nagios({"host": "h", "return_code": "1", "output": "LOAD WARNING | load1=9 load5=3",
                          "perfdata": "load1=8.5 load15=1"}).events[0]
    assert event.metrics == {"load1": 8.5, "load5": 3.0, "load15": 1.0}


def test_icinga2_check_result_names__are_accepted() -> None:
    event = parse_nagios({"host": "h", "service": "passive-ping", "exit_status": 2.0,
                          "plugin_output": "PING CRITICAL - Packet loss = 100%",
                          "performance_data": ["rta=5000.000000ms;3000.000000;5000.000000;0.000000",
                                               "pl=100%;80;100;0"],
                          "check_source": "example.localdomain"}).events[0]
    assert (event.severity, event.text, event.metrics) == (Severity.CRITICAL, "PING CRITICAL - Packet loss = 100%",
                                                           {"rta": 5.0, "pl": 100.0})


@pytest.mark.parametrize("bad", [{"perfdata": 5}, {"performance_data": [1, 2]}])
def test_perfdata_field_of_the_wrong_type__names_the_field(bad: dict[str, Any]) -> None:
    with pytest.raises(ParseError) as caught:
        parse_nagios({"host": "h", "return_code": 0, "output": "OK", **bad})
    assert caught.value.field == next(iter(bad))
