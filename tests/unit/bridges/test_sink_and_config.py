"""MemorySink (schema validation of typed records), dead letters, batch delivery, and bridge configuration."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from app.bridges.config import BridgeConfig, ListenAddress, load_bridge_config, parse_listen
from app.bridges.sink import (
    MAX_DEAD_LETTER_BYTES,
    BatchDelivery,
    EventSink,
    MemorySink,
    SinkError,
    make_dead_letter,
    typed_record,
)
from app.config import ConfigError
from app.model.events import Event
from app.model.schemas import parse_schema_text

DEPLOY = parse_schema_text(
    '{"type": "record", "name": "Deploy", "namespace": "acme", "fields": ['
    '{"name": "subject", "type": "string"}, {"name": "name", "type": "string"}, {"name": "time", "type": "long"},'
    '{"name": "duration_s", "type": "double"}, {"name": "note", "type": ["null", "string"], "default": null}]}')
GOOD = {"subject": "api", "name": "deploy", "time": 1, "duration_s": 4.5}


def test_memory_sink__implements_the_protocol_and_keeps_what_it_is_sent() -> None:
    sink = MemorySink({DEPLOY.fullname: DEPLOY})
    assert isinstance(sink, EventSink)
    calls: list[int] = []
    sink.listeners.append(lambda: calls.append(1))
    sink.send(Event(subject="a", name="b"))
    sink.send_typed("acme.Deploy", GOOD)
    sink.flush()
    assert (len(sink.events), sink.typed, sink.flushes, len(calls)) == (1, [("acme.Deploy", GOOD)], 1, 2)


@pytest.mark.parametrize(("type_name", "record", "field", "words"), [
    ("acme.Nope", GOOD, "type", "no registered record type"),
    ("acme.Deploy", {**GOOD, "time": "soon"}, "time", "expected long"),
    ("acme.Deploy", {k: v for k, v in GOOD.items() if k != "duration_s"}, "duration_s", "missing"),
    ("acme.Deploy", {**GOOD, "colour": "red"}, "colour", "is not a field of acme.Deploy"),
    ("acme.Deploy", {**GOOD, "note": 5}, "note", "expected"),
])
def test_memory_sink__refuses_records_that_do_not_match_naming_the_field(
        type_name: str, record: dict[str, object], field: str, words: str) -> None:
    sink = MemorySink({DEPLOY.fullname: DEPLOY})
    with pytest.raises(SinkError) as caught:
        sink.send_typed(type_name, record)
    assert caught.value.field == field
    assert words in caught.value.message
    assert sink.typed == []


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:8088", ListenAddress("http", "127.0.0.1", 8088)),
    ("udp://0.0.0.0:514", ListenAddress("udp", "0.0.0.0", 514)),
    ("tcp://[::1]:0", ListenAddress("tcp", "::1", 0)),
    ("tcp://localhost:6514", ListenAddress("tcp", "localhost", 6514)),
])
def test_parse_listen__reads_host_port_with_optional_scheme(value: str, expected: ListenAddress) -> None:
    assert parse_listen(value, schemes=("http", "udp", "tcp"), default_scheme="http") == expected


@pytest.mark.parametrize(("value", "words"), [
    ("8088", "not a listen address"), ("udp://h:99999", "out of range"), ("ftp://h:1", "scheme must be"),
    ("tcp://::1:5", "not a listen address"),
])
def test_parse_listen__explains_bad_addresses(value: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_listen(value, schemes=("udp", "tcp"))


def test_listen_address__prints_ipv6_in_brackets() -> None:
    assert str(ListenAddress("udp", "::1", 514)) == "udp://[::1]:514"


def test_load_bridge_config__reads_the_environment_and_overrides_win(tmp_path: Path) -> None:
    secret_file = tmp_path / "gh"
    secret_file.write_text("s3cret\n")
    env = {"VIGIL_API_TOKEN": "tok-0123456789abcdef", "VIGIL_GITHUB_SECRET_FILE": str(secret_file),
           "VIGIL_BRIDGE_MAX_BODY_BYTES": "2048", "VIGIL_BRIDGE_SYSLOG_LISTEN": "udp://127.0.0.1:0, tcp://127.0.0.1:0",
           "VIGIL_BRIDGE_HTTP_LISTEN": "127.0.0.1:1"}
    config = load_bridge_config(env, http_listen="127.0.0.1:0", syslog_listen=None)
    assert (config.token_bytes(), config.github_secret_bytes(), config.max_body_bytes) == \
        (b"tok-0123456789abcdef", b"s3cret", 2048)
    assert not config.metrics_open
    assert config.http_listen == "127.0.0.1:0"
    assert [str(a) for a in config.syslog_addresses] == ["udp://127.0.0.1:0", "tcp://127.0.0.1:0"]
    assert "s3cret" not in repr(config)


def test_load_bridge_config__token_from_a_file_and_metrics_open(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file-0123456789\n")
    config = load_bridge_config({"VIGIL_API_TOKEN_FILE": str(token_file), "VIGIL_API_METRICS_OPEN": "true"})
    assert config.token_bytes() == b"from-a-file-0123456789" and config.metrics_open


def test_load_bridge_config__resolves_secret_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TEST_GH_SECRET", "from-env")
    config = load_bridge_config({"VIGIL_GITHUB_SECRET": "${env:VIGIL_TEST_GH_SECRET}"})
    assert config.github_secret_bytes() == b"from-env"


@pytest.mark.parametrize(("env", "overrides", "words"), [
    ({"VIGIL_GITHUB_SECRET": "a", "VIGIL_GITHUB_SECRET_FILE": "/x"}, {}, "not both"),
    ({"VIGIL_GITHUB_SECRET_FILE": "/nonexistent/secret"}, {}, "cannot read"),
    ({"VIGIL_API_TOKEN": "a" * 20, "VIGIL_API_TOKEN_FILE": "/x"}, {}, "set only one"),
    ({"VIGIL_API_TOKEN": "short"}, {}, "use at least 16"),
    ({"VIGIL_BRIDGE_MAX_BODY_BYTES": "0"}, {}, "max_body_bytes"),
    ({}, {"http_listen": "nowhere"}, "http_listen"),
    ({}, {"syslog_listen": ["http://h:1"]}, "syslog_listen"),
    ({}, {"token_endpoints": {"events", "metrics"}}, "unknown endpoint"),
])
def test_load_bridge_config__explains_bad_settings(env: dict[str, str], overrides: dict[str, object],
                                                  words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_bridge_config(env, **overrides)


def test_empty_token__means_no_token() -> None:
    assert BridgeConfig(api_token="").token_bytes() is None


def test_memory_sink__fills_time_and_id_like_the_emitter() -> None:
    with_id = parse_schema_text(DEPLOY.text.replace('"fields":[', '"fields":[{"name":"id","type":"string"},'))
    sink = MemorySink({with_id.fullname: with_id})
    sink.send_typed("acme.Deploy", {k: v for k, v in GOOD.items() if k != "time"})
    ((_, kept),) = sink.typed
    assert kept["time"] > 0 and len(kept["id"]) == 36


def test_typed_record__refuses_types_that_cannot_be_events() -> None:
    blob = parse_schema_text('{"type": "record", "name": "Blob", "namespace": "acme", "fields": ['
                             '{"name": "subject", "type": "string"}]}')
    with pytest.raises(SinkError) as caught:
        typed_record(blob, {"subject": "a"})
    assert caught.value.field == "type"
    assert caught.value.message == "acme.Blob lacks field(s) name, time: events need subject, name and time"


def test_dead_letters__are_bounded_and_say_where_they_came_from() -> None:
    letter = make_dead_letter("syslog/udp", "oversized", b"x" * (MAX_DEAD_LETTER_BYTES + 10),
                              detail="d" * 10_000, peer="10.0.0.9")
    assert (len(letter.value), letter.size, letter.truncated) == (MAX_DEAD_LETTER_BYTES, MAX_DEAD_LETTER_BYTES + 10,
                                                                  True)
    headers = dict(letter.headers())
    assert headers["vigil.source"] == b"syslog/udp" and headers["vigil.reason"] == b"oversized"
    assert headers["vigil.peer"] == b"10.0.0.9" and headers["vigil.truncated"] == b"true"
    assert len(headers["vigil.error"].decode()) == 4000
    assert "vigil.truncated" not in dict(make_dead_letter("http/events", "invalid", b"{").headers())


def test_batch_delivery__counts_reports_from_other_threads_even_before_the_send_returned() -> None:
    async def main() -> BatchDelivery:
        batch = BatchDelivery()
        batch.report(None)  # a sink may report before the sender counted the record
        batch.sent()
        batch.sent()
        batch.sent()
        reporters = [threading.Thread(target=batch.report, args=(error,)) for error in (None, "refused")]
        for thread in reporters:
            thread.start()
        assert await batch.wait(timeout_s=10)
        return batch

    batch = asyncio.run(main())
    assert (batch.sent_count, batch.delivered, batch.failures, batch.outstanding) == (3, 2, ["refused"], 0)


def test_batch_delivery__says_when_reports_are_missing() -> None:
    async def main() -> BatchDelivery:
        batch = BatchDelivery()
        batch.sent()
        assert not await batch.wait(timeout_s=0.05)
        return batch

    assert asyncio.run(main()).outstanding == 1


def test_delivery_timeout__comes_from_the_environment() -> None:
    assert load_bridge_config({"VIGIL_BRIDGE_DELIVERY_TIMEOUT_S": "2.5"}).delivery_timeout_s == 2.5
    with pytest.raises(ConfigError, match="delivery_timeout_s"):
        load_bridge_config({"VIGIL_BRIDGE_DELIVERY_TIMEOUT_S": "0"})
