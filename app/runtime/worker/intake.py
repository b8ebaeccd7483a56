"""Turning consumed messages into engine records: decode per the agents' mode (Avro, JSON, raw),
group by partition in offset order, dead-letter what is undecodable for good, and stop a partition
at a record whose schema cannot be fetched right now (the registry is down: the record may be fine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message

from app.model.serde import AvroSerde, DecodeError
from app.registry.errors import RegistryError
from app.runtime.engine import DeadLetter, Engine, InRecord

__all__ = ["Decoded", "Intake", "decode_modes"]

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


@dataclass
class Decoded:
    """One turn's messages, decoded."""

    #: records per (real topic, partition), in offset order
    groups: dict[TopicPartition, list[InRecord]] = field(default_factory=dict)
    #: last offset of dead-lettered records per partition (processed: the position moves past them)
    failed: dict[TopicPartition, int] = field(default_factory=dict)
    #: partitions stopped at a record that could not be decoded now: (offset, the registry's error)
    stopped: dict[TopicPartition, tuple[int, RegistryError]] = field(default_factory=dict)
    #: consumer errors seen (other than partition EOF)
    errors: list[KafkaError] = field(default_factory=list)


def decode_modes(engine: Engine) -> dict[str, str]:
    """The decode mode of each source topic (its agents must agree)."""
    modes: dict[str, str] = {}
    for a in engine.agents:
        if modes.setdefault(a.topic, a.decode) != a.decode:
            raise ValueError(f"agents on topic {a.topic} disagree on decode ({modes[a.topic]} vs {a.decode})")
    return modes


class Intake:
    """Decodes a turn's messages for the engine; dead letters go to `dead_letter`."""

    def __init__(self, serde: AvroSerde, engine: Engine, source: dict[str, str],
                 dead_letter: Callable[[DeadLetter], None]) -> None:
        self.serde = serde
        self.engine = engine
        #: real topic name -> logical name
        self.source = source
        self.modes = decode_modes(engine)
        self.dead_letter = dead_letter

    def decode(self, msgs: list[Message], into: Decoded | None = None) -> Decoded:
        """The messages decoded and grouped; `into`: add them to what earlier messages of the same
        turn gave (a partition stopped there stays stopped)."""
        out = Decoded() if into is None else into
        decode = self.serde.decode_typed
        modes = self.modes
        source = self.source
        groups = out.groups
        stopped = out.stopped
        value: Any
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    out.errors.append(err)
                continue
            topic = msg.topic()
            tp = (topic, msg.partition())
            if stopped and tp in stopped:
                continue  # after a record held back: the partition resumes there later
            raw = msg.value()
            mode = modes[source[topic]]
            try:
                if mode == "avro":
                    type_name, value = decode(raw)
                elif mode == "json":
                    type_name, value = None, orjson.loads(raw) if raw is not None else None
                else:
                    type_name, value = None, raw
            except (DecodeError, orjson.JSONDecodeError) as exc:
                self._undecodable(msg, exc)
                out.failed[tp] = msg.offset()
                continue
            except RegistryError as exc:  # not the record's fault (a 40403 is a DecodeError)
                stopped[tp] = (msg.offset(), exc)
                continue
            k = msg.key()
            group = groups.get(tp)
            if group is None:
                group = groups[tp] = []
            group.append(InRecord(k.decode(errors="replace") if k is not None else None, value, msg.offset(),
                                  msg.timestamp()[1], type_name, raw, k, msg.headers()))
        return out

    def decode_in_slices(self, msgs: list[Message], eager_topics: frozenset[str],
                         run: Callable[[str, int, list[InRecord]], None], slice_size: int) -> Decoded:
        """`decode(msgs)`, `slice_size` messages at a time; after each slice, `run(real topic,
        partition, records)` with the records it added to each partition of `eager_topics` (every
        record once, in offset order). For eager agents: they read records still in the CPU's
        caches, which a turn of tens of thousands of decoded records overflows."""
        out = Decoded()
        groups = out.groups
        for start in range(0, len(msgs), slice_size):
            seen = {tp: len(group) for tp, group in groups.items()}
            self.decode(msgs[start:start + slice_size], out)
            for tp, group in groups.items():
                done = seen.get(tp, 0)
                if tp[0] in eager_topics and len(group) > done:
                    run(tp[0], tp[1], group[done:])
        return out

    def _undecodable(self, msg: Message, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, DecodeError) else str(exc)
        logical = self.source[msg.topic()]
        agents = self.engine.by_topic.get(logical, [])
        dlq = agents[0].dlq_topic if agents else "events-dlq"
        log.warning("cannot decode %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), reason)
        self.dead_letter(DeadLetter(logical, msg.partition(), msg.offset(), msg.key(), msg.value(), "(decode)",
                                    reason, dlq))
