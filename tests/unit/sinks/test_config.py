"""The sinks' settings: off by default, errors that name the field, the env form, sinks_on."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_settings
from app.sinks.config import SinksConfig, sinks_on


def test_every_sink_is_off_by_default() -> None:
    config = SinksConfig.from_settings(load_settings())
    assert not config.any_enabled
    assert config.graphite.path_template == "vigil.{subject}.{name}.{metric}.{window}.{aggregate}"
    assert config.prometheus.max_series == 50_000


def test_durations_and_sizes_as_people_write_them() -> None:
    config = SinksConfig.model_validate({"graphite": {"enabled": True, "batch_delay": "250ms", "timeout": "3s",
                                                      "max_age": "2h", "buffer_max_bytes": 1024}})
    assert (config.graphite.batch_delay_ms, config.graphite.timeout_ms, config.graphite.max_age_ms) == \
        (250, 3000, 7_200_000)


@pytest.mark.parametrize(("section", "says"), [
    ({"remote_write": {"enabled": True}}, "remote_write.url"),
    ({"remote_write": {"url": "ftp://x"}}, "sinks.remote_write.url"),
    ({"otlp": {"enabled": True}}, "otlp.endpoint"),
    ({"graphite": {"address": "nohost"}}, "sinks.graphite.address"),
    ({"graphite": {"path_template": "a.{host}"}}, "unknown field"),
    ({"graphite": {"batch_windows": 0}}, "sinks.graphite.batch_windows"),
    ({"statsd": {}}, "sinks.statsd"),
])
def test_bad_settings_name_the_field(section: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        SinksConfig.from_settings(load_settings(sinks=section))


def test_the_env_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_SINKS", '{"graphite": {"enabled": true, "address": "127.0.0.1:2003"}}')
    assert SinksConfig.from_settings(load_settings()).graphite.enabled


def test_sinks_on__a_settings_object_with_the_named_sinks_enabled() -> None:
    settings = sinks_on(load_settings(), prometheus={}, otlp={"endpoint": "http://127.0.0.1:4318"})
    config = SinksConfig.from_settings(settings)
    assert config.prometheus.enabled and config.otlp.enabled and not config.graphite.enabled
