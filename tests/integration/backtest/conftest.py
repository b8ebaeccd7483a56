"""Backtest integration helpers: events produced as a live source would (keyed by identity, Kafka
timestamp = event time), rule directories, and the CLI run in-process against the session Kafka."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner, Result

from app.bus.clients import make_producer
from app.cli import CliContext
from app.config import Settings
from app.model.events import Event, now_ms
from app.model.schemas import builtin_schema
from app.model.serde import AvroSerde
from app.registry.client import RegistryClient


class EventProducer:
    """Produces events to a logical topic, keyed by identity, timestamped with their event time."""

    def __init__(self, settings: Settings, topic: str = "events") -> None:
        self.topic = settings.topic(topic)
        self.writer = AvroSerde(RegistryClient.from_settings(settings)).writer(builtin_schema("vigil.Event"))
        self.producer = make_producer(settings)

    def send(self, events: list[Event], *, headers: list[tuple[str, bytes]] | None = None) -> None:
        """Produce and wait for the acknowledgements."""
        for ev in events:
            self.producer.produce(self.topic, self.writer.encode(ev.to_record()), ev.key.encode(), timestamp=ev.time,
                                  headers=headers)
        assert self.producer.flush(30) == 0


def produce(settings: Settings, events: list[Event], *, topic: str = "events",
            headers: list[tuple[str, bytes]] | None = None) -> None:
    """Produce events once (EventProducer)."""
    EventProducer(settings, topic).send(events, headers=headers)


def produce_raw(settings: Settings, items: list[tuple[bytes, bytes, int]], *, topic: str = "events") -> None:
    """Produce raw (key, value, timestamp) records (e.g. ones no decoder can read)."""
    producer = make_producer(settings)
    for key, value, timestamp in items:
        producer.produce(settings.topic(topic), value, key, timestamp=timestamp)
    assert producer.flush(30) == 0


def write_rules(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yaml").write_text(textwrap.dedent(text))
    return directory


def vigil(settings: Settings, command: click.Command, *args: Any) -> Result:
    """A `vigil` command in-process with these settings (exit code, stdout and stderr apart)."""
    return CliRunner().invoke(command, [str(a) for a in args], obj=CliContext(_settings=settings),
                              catch_exceptions=False)


#: an hour ago, on the minute: recent, or the broker's retention (7 days by event time) may delete it
T0 = (now_ms() // 60_000 - 60) * 60_000
#: a second, in ms
S = 1000

def iso(ms: int) -> str:
    from app.pipeline.validate import format_time_ms

    return format_time_ms(ms)
