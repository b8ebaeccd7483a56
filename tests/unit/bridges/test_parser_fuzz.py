"""Hypothesis fuzzing: whatever arrives, parsers return valid events or raise ParseError, nothing else.

Every event a parser returns must also be sendable: it converts to the Avro record of vigil.Event,
validates against that schema, and its text encodes as UTF-8.
"""

from __future__ import annotations

import json
from typing import Any

from fastavro.validation import validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bridges.errors import ParseError
from app.bridges.parsers._common import ParseResult
from app.bridges.parsers.alertmanager import parse_alertmanager
from app.bridges.parsers.github import parse_github, verify_github_signature
from app.bridges.parsers.nagios import parse_nagios
from app.bridges.parsers.perfdata import parse_perfdata, split_plugin_output
from app.bridges.parsers.puppet import parse_puppet_report
from app.bridges.parsers.syslog import parse_syslog
from app.bridges.parsers.syslog_framing import FrameError, SyslogFrameDecoder
from app.bridges.parsers.vigil_json import parse_vigil_json
from app.model.events import Event
from app.model.schemas import builtin_schema

from .support import data_json

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
EVENT_SCHEMA = builtin_schema("vigil.Event").parsed

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=30)
any_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                          | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=30)


def _sendable(event: Event) -> None:
    record = event.to_record()
    assert validate(record, EVENT_SCHEMA, raise_errors=True)
    json.dumps(record, ensure_ascii=False).encode("utf-8")


def _check(parse: Any, *args: Any, **kwargs: Any) -> None:
    """Call a parser: ParseError is fine; anything returned must be sendable."""
    try:
        result = parse(*args, **kwargs)
    except ParseError as exc:
        assert exc.field is not None and exc.reason
        return
    events = result.events if isinstance(result, ParseResult) else [result]
    for event in events:
        _sendable(event)
    for error in result.errors if isinstance(result, ParseResult) else []:
        assert isinstance(error, ParseError) and error.index is not None


def _mutations(base: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The documented payload with keys replaced, dropped or nested values swapped for junk."""
    keys = st.sampled_from(sorted(base))
    return st.builds(lambda key, junk, drop: {k: v for k, v in {**base, key: junk}.items()
                                              if not (drop and k == key)},
                     keys, any_values, st.booleans())


# -- syslog ------------------------------------------------------------------------------------

syslog_like = st.builds(
    lambda pri, version, head, body: f"<{pri}>{version}{head}{body}".encode("utf-8", "surrogatepass"),
    st.integers(0, 999), st.sampled_from(["", "1 ", "2 "]),
    st.sampled_from(["", "- - - - - ", "2024-03-19T10:00:00Z h app 12 ID ", "Mar 19 10:00:00 h ",
                     "Feb 29 10:00:00 h app[1]: ", "134: *Mar  1 18:46:11.123: ", "h: Mar 19 09:14:02 UTC: "]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
    | st.sampled_from(['[a@1 x="y"] m', "[bad", '%LINK-3-UPDOWN: Interface X, changed state', "A_B: k v, k2 v2",
                       'a=1 b="c d"', "\ufeffbom"]),
)


@FUZZ
@given(st.binary(max_size=300) | syslog_like, st.none() | st.sampled_from(["10.0.0.1", "::1"]))
def test_syslog_parser__only_ever_raises_parse_error(data: bytes, sender: str | None) -> None:
    _check(parse_syslog, data, source_host=sender, received_ms=1_710_936_000_000)


@FUZZ
@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"5 <13>", b"\n", b"1", b" ", b"<13>x\n"]), max_size=30),
       st.integers(1, 64))
def test_frame_decoder__yields_bounded_frames_or_frame_errors(pieces: list[bytes], max_frame_bytes: int) -> None:
    decoder = SyslogFrameDecoder(max_frame_bytes)
    out: list[bytes | FrameError] = []
    for piece in pieces:
        out += decoder.feed(piece)
        assert decoder.pending_bytes <= max_frame_bytes + 12  # length digits + space
    out += decoder.close()
    for item in out:
        assert isinstance(item, FrameError) or 0 < len(item) <= max_frame_bytes


@FUZZ
@given(st.lists(st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r\n\x00"), min_size=1,
                        max_size=30).filter(lambda s: not s[0].isdigit()), max_size=10),
       st.integers(1, 9))
def test_frame_decoder__lf_lines_come_back_unchanged_however_split(lines: list[str], piece_bytes: int) -> None:
    stream = "".join(f"{line}\n" for line in lines).encode()
    decoder = SyslogFrameDecoder()
    out: list[bytes | FrameError] = []
    for start in range(0, len(stream), piece_bytes):
        out += decoder.feed(stream[start:start + piece_bytes])
    out += decoder.close()
    assert out == [line.encode() for line in lines]


# -- JSON endpoints ----------------------------------------------------------------------------

ALERTMANAGER = data_json("alertmanager/v4_group.json")


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()) | any_values
       | _mutations(ALERTMANAGER)
       | _mutations(ALERTMANAGER["alerts"][0]).map(lambda alert: {**ALERTMANAGER, "alerts": [alert]}))
def test_alertmanager_parser__only_ever_raises_parse_error(body: Any) -> None:
    _check(parse_alertmanager, body)


@FUZZ
@given(st.none() | st.text(max_size=20) | st.sampled_from(["push", "pull_request", "release", "deployment", "ping"]),
       st.binary(max_size=200) | any_values | _mutations(data_json("github/push.json"))
       | _mutations(data_json("github/pull_request.json")))
def test_github_parser__only_ever_raises_parse_error(event_type: str | None, body: Any) -> None:
    _check(parse_github, event_type, body)


@FUZZ
@given(st.binary(max_size=64), st.binary(max_size=64), st.none() | st.text(max_size=80))
def test_signature_check__never_raises(secret: bytes, body: bytes, header: str | None) -> None:
    assert verify_github_signature(secret, body, header) in (True, False)


nagios_inputs = st.fixed_dictionaries(
    {"host": st.text(max_size=10) | scalars, "return_code": st.integers(-1, 4) | scalars,
     "output": st.text(max_size=120) | scalars},
    optional={"service": st.text(max_size=10) | scalars})


@FUZZ
@given(st.binary(max_size=200) | any_values | nagios_inputs)
def test_nagios_parser__only_ever_raises_parse_error(body: Any) -> None:
    _check(parse_nagios, body)


perf_like = st.lists(st.sampled_from(["a", "'b c'", "''", "'", "=", ";", "1", "-2.5", "U", "ms", "%", "KB", "c",
                                      " ", ",", "e3", "\n", "|"]), max_size=30).map("".join)


@FUZZ
@given(st.text(max_size=200) | perf_like)
def test_perfdata_parser__never_raises(text: str) -> None:
    values, problems = parse_perfdata(text)
    assert all(isinstance(p, str) for p in problems)
    split_plugin_output(text)
    for value in values:
        assert value.value is None or value.value == value.value  # never NaN


@FUZZ
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()) | any_values
       | st.lists(any_values | st.fixed_dictionaries({"subject": scalars, "name": scalars},
                                                    optional={"metrics": any_values, "type": scalars,
                                                              "tags": any_values, "extended": any_values,
                                                              "severity": scalars, "ttl": scalars}), max_size=5))
def test_vigil_json_parser__only_ever_raises_parse_error(body: Any) -> None:
    _check(parse_vigil_json, body)


# -- Puppet ------------------------------------------------------------------------------------

yaml_like = st.lists(st.sampled_from(["--- ", "!ruby/object:X ", "!ruby/sym ", "!!python/object:os.system ", "host: ",
                                      "h", "\n", "  ", "- ", "[", "]", "{", "}", ": ", "&a ", "*a ", "'", '"', "? ",
                                      "resource_statuses:", "metrics:", "time: ", "2024-01-01 ", "\\ud800", "|"]),
                     max_size=40).map("".join)


@FUZZ
@given(st.binary(max_size=300) | yaml_like.map(str.encode) | any_values
       | st.fixed_dictionaries({"host": scalars}, optional={"resource_statuses": any_values, "metrics": any_values,
                                                           "logs": any_values, "time": scalars, "status": scalars}))
def test_puppet_parser__only_ever_raises_parse_error(body: Any) -> None:
    _check(parse_puppet_report, body)
