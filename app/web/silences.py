"""Writing silences to the compacted `silences` topic from the API (the same records `vigil silence`
writes; the workers' rules stage reads them from there)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaException

from app.bus.clients import make_producer
from app.config import Settings
from app.rules.silences import Silence, encode_silence
from app.rules.topics import SILENCES_TOPIC

__all__ = ["KafkaUnavailable", "SilenceWriter"]


class KafkaUnavailable(Exception):
    """Kafka did not take a write in time (answered as 503)."""


class SilenceWriter:
    """One producer, made on first use; `write` waits until Kafka has the record."""

    def __init__(self, settings: Settings, *, timeout_s: float = 15.0) -> None:
        self.settings = settings
        self.topic = settings.topic(SILENCES_TOPIC)
        self.timeout_s = timeout_s
        self._producer: Any = None
        self._lock = threading.Lock()

    def _write(self, key: str, value: bytes | None) -> None:
        with self._lock:
            if self._producer is None:
                self._producer = make_producer(self.settings, **{"linger.ms": 0})
            errors: list[str] = []

            def delivered(err: Any, _msg: Any) -> None:
                if err is not None:
                    errors.append(str(err))

            try:
                self._producer.produce(self.topic, value, key.encode(), on_delivery=delivered)
            except (KafkaException, BufferError) as exc:
                raise KafkaUnavailable(f"cannot write to {self.topic}: {exc}") from exc
            if self._producer.flush(self.timeout_s) or errors:
                raise KafkaUnavailable(f"Kafka at {self.settings.kafka_bootstrap} did not take the write to "
                                       f"{self.topic} within {self.timeout_s:.0f}s{': ' + errors[0] if errors else ''}")

    async def write(self, silence: Silence) -> None:
        """Write (add or replace) a silence."""
        await asyncio.to_thread(self._write, silence.id, encode_silence(silence))

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(5)
                self._producer = None
