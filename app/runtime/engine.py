"""The processing core, free of Kafka: runs agents over batches of decoded records of one
partition, keeps per-partition stores, watermarks, windows and timers, and collects outputs and
dead letters. The Kafka worker and the test harness are thin I/O layers around it.

Failure isolation: a batch runs as a store transaction (app.runtime.transaction: its writes in an
overlay); if an agent raises, the batch's state changes and outputs are dropped and the batch is
re-run one record at a time, so only the poison record goes to the dead-letter list — it never loops.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import Any

from app.runtime.agent import Agent, kafka_time
from app.runtime.backends import StoreBackend
from app.runtime.context import AgentContext, Forward, Output, each_output
from app.runtime.store import PartitionStore, clear_store
from app.runtime.tables import Table
from app.runtime.timers import PartitionTimers
from app.runtime.transaction import StoreTransaction, TransactionStatus
from app.runtime.windowed import WindowedTable

__all__ = ["AgentStats", "CheckpointFailed", "DeadLetter", "Engine", "InRecord"]

log = logging.getLogger(__name__)

BackendFactory = Callable[[Table, int], StoreBackend]


class CheckpointFailed(BaseException):
    """ctx.checkpoint() could not make state durable. A BaseException on purpose: the agent must not
    go on (it may be about to cause a side effect it could not record), and the engine's per-record
    error isolation must not catch it and re-run the batch. The worker stops; a restart resumes
    from the last durable point."""


@dataclass(slots=True)
class InRecord:
    """One consumed record, value already decoded."""

    key: str | None
    value: Any
    offset: int
    timestamp_ms: int
    type_name: str | None = None
    raw_value: bytes | None = None
    raw_key: bytes | None = None
    #: the record's Kafka headers as consumed (None: it has none)
    headers: list[tuple[str, bytes]] | None = None


@dataclass(slots=True)
class DeadLetter:
    """A record (or timer) an agent could not process, with the reason."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    agent: str
    error: str
    dlq_topic: str


@dataclass
class AgentStats:
    events_in: int = 0
    errors: int = 0
    timers_fired: int = 0
    windows_closed: int = 0


def _event_time(value: Any, kafka_ts: int) -> int:
    if type(value) is dict:
        ts = value.get("time")
        if type(ts) is int:
            return ts
    return kafka_ts


class _AgentPartition:
    """Runtime state of one agent on one partition."""

    def __init__(self, engine: Engine, agent: Agent, partition: int, stores: dict[str, PartitionStore]) -> None:
        self.engine = engine
        self.agent = agent
        self.partition = partition
        self.stores = stores
        self.store_list = list(stores.values())
        self.windowed = [(t, stores[t.name]) for t in agent.tables if isinstance(t, WindowedTable)]
        self.next_due: int | None = None
        self.timers = PartitionTimers(stores[agent.meta.name], self.note_due)
        self.ctx = AgentContext(agent.name, agent.topic, partition, {t.name: t for t in agent.tables},
                                self.timers, engine.outputs, engine.clock)
        self.ctx._checkpoint = self.checkpoint
        self.ctx.settings = engine.settings
        self.wm = self.timers.watermark_ms
        #: the transaction of the agent call in progress (or the last one)
        self.txn: StoreTransaction | None = None
        self.rebuild()

    def rebuild(self) -> None:
        """(Re)index timers and open windows from the stores (after assignment or a rollback)."""
        self.timers = PartitionTimers(self.stores[self.agent.meta.name], self.note_due)
        self.ctx.timers = self.timers
        self.wm = self.timers.watermark_ms
        self.ctx.watermark = self.wm
        for table, store in self.windowed:
            table.attach(store, self.wm)
        self._recompute_due()

    def _recompute_due(self) -> None:
        dues = [d for d in [self.timers.next_due("event"), *(t.next_due(s) for t, s in self.windowed)] if d is not None]
        self.next_due = min(dues) if dues else None

    def transaction(self) -> StoreTransaction:
        """Start the store transaction of one agent call (a rollback drops its writes and outputs and
        re-indexes timers and windows from the stores)."""
        self.txn = StoreTransaction(self.store_list, self.engine.outputs, on_rollback=self.rebuild)
        return self.txn

    def checkpoint(self) -> None:
        """ctx.checkpoint(): commit through the I/O layer (the call's writes and outputs so far
        included), then go on in the call's transaction from here."""
        txn = self.txn
        if txn is not None and txn.status is TransactionStatus.STARTED:
            txn.checkpoint(self._make_durable)
        else:  # outside an agent call's transaction (on_rebuild): writes are already pending
            self._make_durable()

    def _make_durable(self) -> None:
        if self.engine.checkpoint_hook is not None:
            try:
                self.engine.checkpoint_hook()
            except Exception as exc:
                raise CheckpointFailed(f"checkpoint failed: {type(exc).__name__}: {exc}") from exc

    def note_due(self, due_ms: int) -> None:
        if self.next_due is None or due_ms < self.next_due:
            self.next_due = due_ms

    def unbind(self) -> None:
        """After an agent call: tables read from outside agents must see every partition."""
        for table in self.agent.all_tables:
            table.active = None

    def bind(self) -> None:
        for table in self.agent.all_tables:
            table.active = self.stores[table.name]
        for table, _ in self.windowed:
            table.watermark_of = self._get_wm
            table.event_time_of = self._get_ts
            table.note_due = self.note_due

    def _get_wm(self) -> int:
        return self.wm

    def _get_ts(self) -> int:
        return self.ctx.timestamp

    def advance(self, watermark_ms: int) -> None:
        """Move the partition's event-time watermark; close windows and fire event timers now due."""
        self.wm = watermark_ms
        self.ctx.watermark = watermark_ms
        self.timers.set_watermark(watermark_ms)
        if self.next_due is not None and watermark_ms >= self.next_due:
            self.fire_event_time(watermark_ms)

    def fire_event_time(self, watermark_ms: int) -> None:
        ctx = self.ctx
        saved = (ctx.key, ctx.timestamp, ctx.offset, ctx.type_name)
        stats = self.engine.stats[self.agent.name]
        for table, store in self.windowed:
            stats.windows_closed += table.close_due(store, watermark_ms, ctx)
        for due in self.timers.pop_due("event", watermark_ms):
            self.call_timer(due.key, due.at_ms, due.payload)
        ctx.key, ctx.timestamp, ctx.offset, ctx.type_name = saved
        self._recompute_due()

    def call_timer(self, key: str, at_ms: int, payload: Any) -> None:
        fn = self.agent.timer_fn
        if fn is None:
            log.warning("agent %s has a timer for %s but no @on_timer function", self.agent.name, key)
            return
        self.ctx.key = key
        self.ctx.timestamp = at_ms
        self.engine.stats[self.agent.name].timers_fired += 1
        result = fn(key, payload, self.ctx)
        if asyncio.iscoroutine(result):
            self.engine.loop.run_until_complete(result)


class Engine:
    """Runs agents; owns stores of assigned partitions. Single-threaded by design."""

    def __init__(self, agents: list[Agent], *, backend_factory: BackendFactory, clock: Callable[[], int],
                 checkpoint: Callable[[], None] | None = None, settings: Any = None) -> None:
        self.agents = agents
        self.settings = settings
        self.checkpoint_hook = checkpoint
        self.backend_factory = backend_factory
        self.clock = clock
        self.outputs: list[Output | Forward] = []
        self.dead_letters: list[DeadLetter] = []
        self.stats: dict[str, AgentStats] = {a.name: AgentStats() for a in agents}
        self.by_topic: dict[str, list[Agent]] = {}
        for a in agents:
            self.by_topic.setdefault(a.topic, []).append(a)
        self._check_tables()
        self._parts: dict[tuple[str, int], list[_AgentPartition]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def _check_tables(self) -> None:
        owner: dict[str, Agent] = {}
        for a in self.agents:
            for t in a.all_tables:
                other = owner.setdefault(t.name, a)
                if other is not a and other.topic != a.topic:
                    raise ValueError(f"table {t.name!r} is used by agents {other.name} ({other.topic}) and {a.name} "
                                     f"({a.topic}); a table is partitioned like one source topic")

    @property
    def topics(self) -> list[str]:
        return sorted(self.by_topic)

    def tables_of(self, topic: str) -> list[Table]:
        """Every table (user and internal) whose partitions follow `topic`."""
        seen: dict[str, Table] = {}
        for a in self.by_topic.get(topic, []):
            for t in a.all_tables:
                seen.setdefault(t.name, t)
        return list(seen.values())

    # -- assignment -------------------------------------------------------------------------------------
    def open_partition(self, topic: str, partition: int) -> list[tuple[Table, PartitionStore]]:
        """Open the stores of a newly assigned partition (the caller restores them, then `activate`s)."""
        opened = []
        for t in self.tables_of(topic):
            store = t.stores.get(partition)
            if store is None:
                store = t.stores[partition] = PartitionStore(self.backend_factory(t, partition), t.codec,
                                                             cache_limit=t.cache_limit)
            opened.append((t, store))
        return opened

    def activate(self, topic: str, partition: int) -> None:
        """Start processing a partition whose stores are restored."""
        parts = []
        for a in self.by_topic.get(topic, []):
            stores = {t.name: t.stores[partition] for t in a.all_tables}
            parts.append(_AgentPartition(self, a, partition, stores))
        self._parts[(topic, partition)] = parts

    def rebuild(self, topic: str, partition: int) -> None:
        """Refill the local-only tables of an activated partition: empty them, then run each agent's
        on_rebuild with the partition's tables bound (the worker calls this after a restore)."""
        for t in self.tables_of(topic):
            if not t.changelog and partition in t.stores:
                clear_store(t.stores[partition])
        for ap in self._parts.get((topic, partition), ()):
            fn = ap.agent.rebuild_fn
            if fn is None:
                continue
            ap.bind()
            try:
                fn(ap.ctx)
            finally:
                ap.unbind()

    def close_partition(self, topic: str, partition: int) -> None:
        """Forget a revoked partition (call after its pending writes are committed)."""
        for ap in self._parts.pop((topic, partition), []):
            for table, store in ap.windowed:
                table.detach(store)
        for t in self.tables_of(topic):
            revoked = t.stores.pop(partition, None)
            if revoked is not None:
                if t.active is revoked:
                    t.active = None
                revoked.close()

    def assigned(self) -> list[tuple[str, int]]:
        return list(self._parts)

    def stores(self) -> Iterator[tuple[Table, int, PartitionStore]]:
        """Every open store (for commits)."""
        for topic in self.by_topic:
            for t in self.tables_of(topic):
                for p, store in list(t.stores.items()):
                    yield t, p, store

    # -- processing -------------------------------------------------------------------------------------
    def process(self, topic: str, partition: int, records: list[InRecord], *, eager: bool | None = None) -> None:
        """Run every agent of `topic` over the records (all from this partition, in offset order);
        `eager` True: only its eager agents, False: only the others (the worker runs the eager ones
        on each slice of a turn as it is decoded, the others on the whole turn)."""
        #: batch agents of one topic (the pipeline, the routes) share the batch's values and event
        #: times (per timestamp function): computed once, each agent gets its own copy of the lists
        shared: dict[Any, tuple[list[Any], list[int], int]] = {}
        for ap in self._parts.get((topic, partition), ()):
            if eager is not None and ap.agent.eager is not eager:
                continue
            self.stats[ap.agent.name].events_in += len(records)
            ap.bind()
            try:
                with ap.transaction():
                    if ap.agent.batch:
                        self._run_batch(ap, records, shared)
                    else:
                        self._run_each(ap, records)
            except Exception:
                self._run_isolated(ap, records)
            ap.unbind()

    def _run_each(self, ap: _AgentPartition, records: list[InRecord]) -> None:
        agent, ctx = ap.agent, ap.ctx
        fn, ts_fn, is_async = agent.fn, agent.timestamp, agent.is_async
        for r in records:
            v = r.value
            if ts_fn is None:  # inlined _event_time: this loop runs once per event
                ts = v.get("time") if type(v) is dict else None
                if type(ts) is not int:
                    ts = r.timestamp_ms
            else:
                ts = ts_fn(v, r.timestamp_ms)
            ctx.key = r.key
            ctx.offset = r.offset
            ctx.timestamp = ts
            ctx.type_name = r.type_name
            ctx.raw_value = r.raw_value
            if ts > ap.wm:
                ap.advance(ts)
            if is_async:
                self.loop.run_until_complete(fn(v, ctx))
            else:
                fn(v, ctx)

    def _run_batch(self, ap: _AgentPartition, records: list[InRecord],
                   shared: dict[Any, tuple[list[Any], list[int], int]] | None = None) -> None:
        agent, ctx = ap.agent, ap.ctx
        ts_fn = agent.timestamp or _event_time
        last = records[-1]
        ctx.key, ctx.offset, ctx.type_name, ctx.raw_value = last.key, last.offset, last.type_name, last.raw_value
        ctx.records = records
        known = shared.get(ts_fn) if shared is not None else None
        if known is None:
            if ts_fn is kafka_time:
                event_times = [r.timestamp_ms for r in records]
            else:
                event_times = [ts_fn(r.value, r.timestamp_ms) for r in records]
            known = ([r.value for r in records], event_times, max(event_times))
            if shared is not None:
                shared[ts_fn] = known
        values, times, max_ts = known
        ctx.event_times = times[:]  # copies (C speed): an agent may change its lists
        ctx.timestamp = max_ts
        result = agent.fn(values[:], ctx)
        if asyncio.iscoroutine(result):
            self.loop.run_until_complete(result)
        if max_ts > ap.wm:
            ap.advance(max_ts)

    def _run_isolated(self, ap: _AgentPartition, records: list[InRecord]) -> None:
        """Slow path after a failed batch: one record per journaled call; failures are dead-lettered."""
        run = self._run_batch if ap.agent.batch else self._run_each
        for r in records:
            try:
                with ap.transaction():
                    run(ap, [r])
            except Exception as exc:
                self._dead_letter(ap.agent, ap.partition, r, exc)

    def _dead_letter(self, agent: Agent, partition: int, r: InRecord, exc: BaseException) -> None:
        self.stats[agent.name].errors += 1
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" at {where.filename}:{where.lineno}" if where else ""
        log.warning("agent %s failed on %s[%d]@%d: %s: %s%s", agent.name, agent.topic, partition, r.offset,
                    type(exc).__name__, exc, at)
        self.dead_letters.append(DeadLetter(agent.topic, partition, r.offset, r.raw_key, r.raw_value, agent.name,
                                            f"{type(exc).__name__}: {exc}{at}", agent.dlq_topic))

    def fire_wall_timers(self, now_ms: int | None = None, *, skip: Container[tuple[str, int]] = ()) -> int:
        """Fire wall-clock timers due now on every assigned partition except those in `skip`
        ((topic, partition): e.g. held back while the records that would cancel the timers are
        stuck); returns how many fired."""
        now = self.clock() if now_ms is None else now_ms
        fired = 0
        for where, parts in self._parts.items():
            if skip and where in skip:
                continue
            for ap in parts:
                nxt = ap.timers.next_due("wall")
                if nxt is None or nxt > now:
                    continue
                ap.bind()
                for due in ap.timers.pop_due("wall", now):
                    try:
                        with ap.transaction():
                            ap.call_timer(due.key, due.at_ms, due.payload)
                    except Exception as exc:
                        ap.timers.cancel(due.key)  # a failing timer must not fire forever
                        rec = InRecord(due.key, due.payload, -1, due.at_ms, raw_key=due.key.encode(),
                                       raw_value=repr(due.payload).encode())
                        self._dead_letter(ap.agent, ap.partition, rec, exc)
                    else:
                        fired += 1
                ap.unbind()
        return fired

    def next_wall_due_any(self, *, skip: Container[tuple[str, int]] = ()) -> int | None:
        """When the earliest wall-clock timer armed on any assigned partition except those in `skip`
        is due (None: none is): the worker waits for records no longer than that."""
        dues = [d for where, parts in self._parts.items() if not (skip and where in skip) for ap in parts
                if (d := ap.timers.next_live_due("wall")) is not None]
        return min(dues) if dues else None

    def next_wall_due(self, topic: str, partition: int) -> int | None:
        """When the earliest wall-clock timer armed on an assigned partition is due (None: none is),
        for a driver that moves a virtual clock (the backtest) and must fire every timer before the
        first record past it."""
        dues = [d for ap in self._parts.get((topic, partition), ())
                if (d := ap.timers.next_live_due("wall")) is not None]
        return min(dues) if dues else None

    def take_outputs(self) -> list[Output]:
        """The outputs so far, one per record (a Forward's copies one by one), and forget them."""
        return list(each_output(self.take_output_entries()))

    def take_output_entries(self) -> list[Output | Forward]:
        """The outputs so far as the agents made them (a Forward is many records), and forget
        them: for the worker, which produces a Forward's copies without expanding them."""
        out = self.outputs[:]  # the list itself stays: every context and transaction holds it
        self.outputs.clear()
        return out

    def take_dead_letters(self) -> list[DeadLetter]:
        out, self.dead_letters = self.dead_letters, []
        return out

    def close(self) -> None:
        for topic, partition in list(self._parts):
            self.close_partition(topic, partition)
        if self._loop is not None:
            for a in self.agents:  # Agent.on_close, while the loop can still run what they close
                if a.close_fn is None:
                    continue
                try:
                    result = a.close_fn()
                    if inspect.isawaitable(result):
                        self._loop.run_until_complete(result)
                except Exception:  # closing must go on: the other agents, then the loop
                    log.exception("agent %s: its on_close failed", a.name)
            self._loop.close()
