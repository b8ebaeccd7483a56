"""Settings: file + env + overrides, validation messages, librdkafka pass-through with secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, load_settings


def test_defaults__point_at_local_stack() -> None:
    s = load_settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.schema_registry_url == "http://127.0.0.1:8081"


def test_file_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("kafka_bootstrap: filehost:9092\nschema_registry_url: http://file:8081\ntopic_prefix: f-\n")
    monkeypatch.setenv("VIGIL_CONFIG", str(cfg))
    monkeypatch.setenv("VIGIL_SCHEMA_REGISTRY_URL", "http://env:8081/")
    s = load_settings(kafka_bootstrap="flag:1")
    assert (s.kafka_bootstrap, s.schema_registry_url, s.topic_prefix) == ("flag:1", "http://env:8081", "f-")
    assert s.topic("events") == "f-events"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"kafka_bootstrap": "nohost"}, "kafka_bootstrap: Value error, expected HOST:PORT"),
    ({"schema_registry_url": "ftp://x"}, "schema_registry_url: Value error, expected an http(s) URL"),
    ({"kafka_config": {"sasl.mechanism": ["x"]}}, "must be a scalar"),
])
def test_invalid__clear_error_naming_field(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(**overrides)


def test_unknown_key_in_file__rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("kafka_bootstrapp: x:1\n")
    monkeypatch.setenv("VIGIL_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="kafka_bootstrapp"):
        load_settings()


def test_broken_yaml__names_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("a: 1\nb: [unclosed\n")
    monkeypatch.setenv("VIGIL_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=r"vigil.yaml:\d+: not valid YAML"):
        load_settings()


def test_librdkafka_passthrough__secrets_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("SASL_USER", "alice")
    s = load_settings(kafka_config={"security.protocol": "SASL_SSL", "sasl.username": "${env:SASL_USER}",
                                    "sasl.password": f"${{file:{secret}}}", "socket.keepalive.enable": True})
    conf = s.client_config()
    assert conf["sasl.username"] == "alice" and conf["sasl.password"] == "s3cret"
    assert conf["security.protocol"] == "SASL_SSL" and conf["socket.keepalive.enable"] is True


def test_missing_secret__says_which_variable() -> None:
    s = load_settings(kafka_config={"sasl.password": "${env:NOPE_NOT_SET}"})
    with pytest.raises(ConfigError, match="NOPE_NOT_SET is not set"):
        s.client_config()


def test_unknown_librdkafka_property__rejected_when_client_is_built() -> None:
    from app.bus.clients import make_producer

    with pytest.raises(ConfigError, match="invalid Kafka producer configuration"):
        make_producer(load_settings(kafka_config={"no.such.property": "1"}))


def test_rules_state_retention__a_week_by_default_env_or_file_zero_keeps_forever(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().rules_state_retention_ms == 7 * 86_400_000
    monkeypatch.setenv("VIGIL_RULES_STATE_RETENTION", "36h")
    assert load_settings().rules_state_retention_ms == 36 * 3_600_000
    assert load_settings(rules_state_retention=0).rules_state_retention_ms == 0
    with pytest.raises(ConfigError, match="rules_state_retention"):
        load_settings(rules_state_retention="soon")
