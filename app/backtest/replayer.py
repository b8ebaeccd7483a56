"""The core of a backtest: recorded `events` through the built-in pipeline and one or more rule sets,
in one process, in event time, with fresh in-memory state (no Kafka here: records in, would-be
actions out). The stages are the worker's own objects (Pipeline, RulesStage) and run on the
runtime's Engine, as in a worker; only what the worker does with Kafka is done in memory:

    events[p] ──> pipeline ──> alerts ──> route_alerts ─┐ (stream 2p+1)
         │                                              ├──> merged by event time ──> evaluate ──> actions
         └──────────────────────────> route_events ─────┘ (stream 2p)           (per rule set)

The rules stage's repartition topic is skipped: what its route agents send is handed to its
evaluate agent directly, merged from all streams in the order of their event-time positions (a
stream's position: the latest event time it has carried), ties by stream and sequence. Each
stream keeps its own order, as a Kafka partition does, so the result is the same however the
partitions are split among processes, and equal to a live worker's when the live one saw the
events as they happened.

Time (app.backtest.clock): each `events` partition and each rule set's evaluation has a virtual
wall clock at its event-time position, so every wall-clock timer (ttl expiry, `absent_for`) fires
at its due time, before the first record past it. History is run in slices of event time
(`run_slice`), all partitions up to the slice's end, then the evaluation of what they routed; a
worker of several processes exchanges routed records between slices (app.backtest.parallel).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from app.backtest.causes import CauseLog
from app.backtest.clock import EngineClock, PositionClock, next_chunk
from app.backtest.sharing import Share
from app.backtest.stores import StatePolicy
from app.model.events import Action
from app.pipeline.agents import EVENTS_TOPIC, Pipeline
from app.pipeline.tracker import ALERTS_TOPIC, METRICS_TOPIC
from app.rules.engine import ALERT_TYPE
from app.rules.fields import EVENT_TYPE
from app.rules.loader import RuleSet
from app.rules.stage import (
    ROUTE_AGENTS,
    RulesStage,
    group_of_repartition_key,
    routed_type,
    schedule_of_repartition_key,
)
from app.rules.topics import ACTIONS_DLQ_TOPIC, ACTIONS_TOPIC, REPARTITION_TOPIC, SUPPRESSED_TOPIC
from app.rules.triggers import AbsentTrigger
from app.runtime.engine import Engine, InRecord
from app.runtime.tables import Table

__all__ = ["FiredAction", "PartitionBuffer", "Replayer", "Routed", "RuleSetReplay", "RunCounts", "owner_of",
           "pipeline_timer_limit", "query_only_tables", "rules_timer_lead_ms"]

log = logging.getLogger(__name__)

#: (position ms, stream, sequence, repartition key, record, type name, record time ms): one record a
#: rule set's route agents forwarded to its evaluation. Sorted, the first three order them.
Routed = tuple[int, int, int, str, Any, str, int]
_INFINITY: Final = 1 << 62


@dataclass(frozen=True, slots=True)
class FiredAction:
    """A would-be action: what the rules stage would have sent to `actions` (never executed)."""

    ruleset: int
    id: str
    rule: str
    type: str
    target: str
    #: the action's parameters as the Action record carries them (canonical JSON)
    params: str
    time_ms: int
    group_key: str
    event_id: str | None
    trace_id: str | None
    deadline_ms: int | None
    #: ids of the events that caused the firing (app.backtest.causes)
    causes: tuple[str, ...] = ()
    #: the firing it belongs to: the id of the firing's first action (deterministic, like every action
    #: id: the same firing under two rule sets has the same one, even when they fire it at other times)
    firing: str = ""

    def to_json(self) -> dict[str, Any]:
        """The report's JSON object (params as an object)."""
        return {"id": self.id, "rule": self.rule, "type": self.type, "target": self.target,
                "params": json.loads(self.params), "time": self.time_ms, "group_key": self.group_key,
                "event_id": self.event_id, "trace_id": self.trace_id, "deadline": self.deadline_ms,
                "causes": list(self.causes), "firing": self.firing or self.id}


def query_only_tables(pipeline: Pipeline) -> list[Table]:
    """The pipeline's tables that only answer queries (`vigil events get/find`, window queries): no
    output depends on them, so a backtest does not keep them."""
    return [pipeline.archive.ids, pipeline.archive.find.table, pipeline.tracker.closed.table]


def pipeline_timer_limit(record: Any, time_ms: int) -> int | None:
    """The earliest wall-clock timer the pipeline may arm for `record` at event time `time_ms`: its
    absence deadline, time + ttl (Tracker.finish; None without a ttl). The record's own `time` may
    only be later than `time_ms` (EventClock), so this is never after the real deadline."""
    ttl = record.get("ttl") if type(record) is dict else None
    if ttl is None or isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        return None
    return time_ms + int(ttl * 1000)


def rules_timer_lead_ms(ruleset: RuleSet) -> int | None:
    """How soon after a record's time the rules stage may arm a wall-clock timer for it: the
    shortest `absent_for` (its only such timers once reloading is off); None without one."""
    leads = [rule.trigger.absent_ms for rule in ruleset.enabled if isinstance(rule.trigger, AbsentTrigger)]
    return min(leads) if leads else None


def owner_of(repartition_key: str, workers: int) -> int:
    """Which of `workers` processes evaluates a group (the repartition key's CRC32, as Kafka's
    default partitioner places it)."""
    return zlib.crc32(repartition_key.encode()) % workers if workers > 1 else 0


class _Only:
    """A `skip=` container for Engine.fire_wall_timers that skips every partition but one."""

    __slots__ = ("keep",)

    def __init__(self, keep: tuple[str, int]) -> None:
        self.keep = keep

    def __contains__(self, item: object) -> bool:
        return item != self.keep


class PartitionBuffer:
    """Records of one `events` partition read but not yet run, with their event times."""

    __slots__ = ("_head", "finished", "keys", "max_key", "records")

    def __init__(self) -> None:
        self.records: list[InRecord] = []
        self.keys: list[int] = []
        #: records before this index were taken (dropped in bulk, not one by one)
        self._head = 0
        #: the largest event time buffered (-inf when empty)
        self.max_key = -_INFINITY
        #: the source delivered everything of this partition in the range
        self.finished = False

    def add(self, records: list[InRecord], keys: list[int]) -> None:
        self.records += records
        self.keys += keys
        if keys:
            self.max_key = max(self.max_key, max(keys))

    @property
    def first_key(self) -> int | None:
        return self.keys[self._head] if self._head < len(self.keys) else None

    def ready_for(self, end_ms: int) -> bool:
        """Whether every record before `end_ms` is buffered (one at or past it is, or the rest is)."""
        return self.finished or self.max_key >= end_ms

    def take_before(self, end_ms: int) -> tuple[list[InRecord], list[int]]:
        """The records up to the first at or past `end_ms` (in offset order), removed."""
        keys, head = self.keys, self._head
        cut = next((i for i in range(head, len(keys)) if keys[i] >= end_ms), len(keys))
        records, taken = self.records[head:cut], keys[head:cut]
        self._head = cut
        if cut == len(keys):
            self.records, self.keys, self._head, self.max_key = [], [], 0, -_INFINITY
        elif cut > len(keys) // 2:  # drop what was taken now and then: copying the rest every time is quadratic
            self.records, self.keys, self._head = self.records[cut:], keys[cut:], 0
            self.max_key = max(self.keys)
        return records, taken


@dataclass
class RunCounts:
    """What a replay counted besides actions."""

    events: int = 0
    alerts: int = 0
    #: metric windows the pipeline closed (its vigil.WindowAggregate records, one per metric)
    windows: int = 0
    #: records the pipeline rejected, by the field that failed
    rejected: Counter[str] = field(default_factory=Counter)
    #: records an agent raised on (the runtime dead-letters them), by agent
    agent_errors: Counter[str] = field(default_factory=Counter)
    #: per rule set: actions dropped because a template failed
    render_failures: Counter[int] = field(default_factory=Counter)
    #: per rule set: actions a silence covered (a backtest's stages have none; counted if one does)
    suppressed: Counter[int] = field(default_factory=Counter)


class RuleSetReplay:
    """One rule set in a replay (or a share of two compared: app.backtest.sharing): its stage's route
    agents on `events` and `alerts` partitions and its evaluate agent on one partition of its own,
    in one Engine with in-memory state.

    Actions are told apart by firing per rule: an action belongs to the firing of the previous
    action of its rule when both have the same group, time and cause (a firing's actions are sent
    one after the other: RulesStage._emit), whatever other rules fired in between."""

    def __init__(self, index: int, stage: RulesStage, *, partitions: Iterable[int], evaluate_partition: int,
                 policy: StatePolicy, counts: RunCounts, share: Share | None = None) -> None:
        if stage.config.reload_interval_ms is not None:
            raise ValueError("a replayed rules stage must not reload its rules (reload_interval_ms=None)")
        self.index = index
        #: the rule sets whose actions this one's firings are (itself, or those a share serves)
        self.serves: tuple[int, ...] = share.serves if share is not None else (index,)
        self._route_errors_weight = share.counts_route_errors if share is not None else 1
        self.stage = stage
        self.ruleset = stage.current(0).ruleset  # loads the rules (once: no reloading)
        self.counts = counts
        self.clock = PositionClock()
        self.engine_clock = EngineClock(self.clock)
        self.engine = Engine(stage.agents, backend_factory=policy.backend, clock=self.engine_clock)
        for partition in partitions:
            for topic in (EVENTS_TOPIC, ALERTS_TOPIC):
                self.engine.open_partition(topic, partition)
                self.engine.activate(topic, partition)
        self.evaluate_partition = evaluate_partition
        self.engine.open_partition(REPARTITION_TOPIC, evaluate_partition)
        self.engine.activate(REPARTITION_TOPIC, evaluate_partition)
        self._only_evaluate = _Only((REPARTITION_TOPIC, evaluate_partition))
        self.lead_ms = rules_timer_lead_ms(self.ruleset)
        self.causes = CauseLog(self.ruleset, window_ms=share.cause_window_ms if share is not None else None)
        #: would-be actions, as actions of the first rule set served (Replayer.actions: of each)
        self.actions: list[FiredAction] = []
        #: rule -> (group, time, cause) of its last action, and that action's firing
        self._firings: dict[str, tuple[tuple[str, int, str | None], str]] = {}
        self._offset = 0
        self._seq: Counter[int] = Counter()
        self._position: dict[int, int] = {}

    # -- routing (runs beside the pipeline, per `events` partition) -----------------------------------------
    def route(self, topic: str, partition: int, stream: int, records: list[InRecord], keys: Sequence[int],
              clock: PositionClock) -> list[Routed]:
        """Route a batch as the route agent of `topic` does; what it forwards, as Routed records of
        `stream` (keys: the records' event times, which move the stream's position).

        The agent runs on the engine only when the rule set has schedules (their starts ride on any
        record, through the agent's context); otherwise each record's keys come straight from the
        stage (RulesStage.repartition_keys: what the agent sends), skipping records no rule can
        concern (RuleIndex.routes_nothing), and a record that fails is counted as the engine counts
        an agent's failure: routing keeps no state, so nothing else differs."""
        self.engine_clock.current = clock
        index = self.stage.current(clock.now_ms).index
        if index.timed_rules:
            return self._route_by_agent(topic, partition, stream, records, keys)
        start = self._position.get(stream, -_INFINITY)
        self._position[stream] = max(start, max(keys)) if keys else start
        positions: list[int] | None = None
        skips, repartition_keys, now_ms = index.routes_nothing, self.stage.repartition_keys, clock.now_ms
        seq = self._seq[stream]
        routed: list[Routed] = []
        for i, record in enumerate(records):
            value = record.value
            event_type = routed_type(topic, record.type_name)
            if event_type is None or skips(value, event_type):
                continue
            try:
                found = repartition_keys(value, event_type, now_ms)
            except Exception as exc:  # the engine dead-letters what an agent raises on
                log.warning("agent %s failed on %s[%d]@%d: %s: %s", ROUTE_AGENTS[topic], topic, partition,
                            record.offset, type(exc).__name__, exc)
                self.counts.agent_errors[ROUTE_AGENTS[topic]] += self._route_errors_weight
                continue
            if not found:
                continue
            if positions is None:
                positions = list(itertools.accumulate(keys, max, initial=start))
            type_name, time_ms = record.type_name or EVENT_TYPE, int(value["time"])
            for key in found:
                routed.append((positions[i + 1], stream, seq, key, value, type_name, time_ms))
                seq += 1
        self._seq[stream] = seq
        return routed

    def _route_by_agent(self, topic: str, partition: int, stream: int, records: list[InRecord],
                        keys: Sequence[int]) -> list[Routed]:
        self.engine.process(topic, partition, records)
        outputs = self.engine.take_outputs()
        self._count_dead_letters(self._route_errors_weight)
        start = self._position.get(stream, -_INFINITY)
        if not outputs:
            if keys:
                self._position[stream] = max(start, max(keys))
            return []
        positions = list(itertools.accumulate(keys, max, initial=start))
        self._position[stream] = positions[-1]
        where = {id(record.raw_value): i for i, record in enumerate(records)}
        seq = self._seq[stream]
        routed: list[Routed] = []
        for output in outputs:
            i = where[id(output.value)]
            record = records[i]
            value = record.value
            routed.append((positions[i + 1], stream, seq, str(output.key), value, record.type_name or EVENT_TYPE,
                           int(value["time"])))
            seq += 1
        self._seq[stream] = seq
        return routed

    # -- evaluation (per slice, over what every partition routed to this process) ------------------------------
    def evaluate(self, routed: list[Routed], until_ms: int) -> None:
        """Evaluate routed records (sorted here), firing the rule set's timers on time, then every
        timer due up to `until_ms`."""
        routed.sort()
        clock = self.clock
        self.engine_clock.current = clock
        keys = [item[0] for item in routed]
        lead = self.lead_ms
        limits = [item[6] + lead for item in routed] if lead is not None else None
        topic, partition = REPARTITION_TOPIC, self.evaluate_partition
        start, count = 0, len(routed)
        while start < count:
            end = next_chunk(keys, limits, start, clock.now_ms, self.engine.next_wall_due(topic, partition))
            if end == start:
                self.fire_timers(max(clock.now_ms, keys[start]))
                continue
            clock.advance(keys[end - 1])
            chunk = routed[start:end]
            if self.causes.active:
                for item in chunk:
                    if schedule_of_repartition_key(item[3]) is None:  # a schedule's start is no cause
                        self.causes.note(group_of_repartition_key(item[3]), item[6], item[4], item[5])
            records = [InRecord(item[3], item[4], offset, item[6], item[5])
                       for offset, item in enumerate(chunk, self._offset)]
            self._offset += len(records)
            self.engine.process(topic, partition, records)
            self._collect()
            start = end
        self.fire_timers(until_ms)
        # Every record routed here up to now was evaluated: what routing still remembers went to
        # other processes (their own decoded copies are evaluated there).
        self.stage.current(clock.now_ms).index.forget_matches()

    def fire_timers(self, until_ms: int) -> None:
        """Fire the evaluation's wall-clock timers due up to `until_ms`, each at its due time."""
        clock = self.clock
        self.engine_clock.current = clock
        topic, partition = REPARTITION_TOPIC, self.evaluate_partition
        while (due := self.engine.next_wall_due(topic, partition)) is not None and due <= until_ms:
            clock.advance(due)
            self.engine.fire_wall_timers(clock.now_ms, skip=self._only_evaluate)
            self._collect()
        clock.advance(until_ms)

    def _collect(self) -> None:
        firings = self._firings
        for output in self.engine.take_outputs():
            if output.topic == ACTIONS_TOPIC and isinstance(output.value, Action):
                action = output.value
                # a firing's actions are sent one after the other (RulesStage._emit): told apart per
                # rule, so that a share of a rule set tells them apart as the whole set does
                key = (action.group_key, action.time, action.event_id)
                last = firings.get(action.rule)
                if last is None or last[0] != key:
                    last = firings[action.rule] = (key, action.id)
                self.actions.append(self._fired(action, last[1]))
            elif output.topic == SUPPRESSED_TOPIC:
                for index in self.serves:
                    self.counts.suppressed[index] += 1
            elif output.topic == ACTIONS_DLQ_TOPIC:
                for index in self.serves:
                    self.counts.render_failures[index] += 1
        self._count_dead_letters(len(self.serves))

    def _fired(self, action: Action, firing: str) -> FiredAction:
        causes = self.causes.causes(action.rule, action.group_key, action.event_id, action.time) \
            if self.causes.active else ((action.event_id,) if action.event_id else ())
        return FiredAction(self.serves[0], action.id, action.rule, action.type, action.target, action.params,
                           action.time, action.group_key, action.event_id, action.trace_id, action.deadline, causes,
                           firing)

    def _count_dead_letters(self, weight: int = 1) -> None:
        # weight: for how many rule sets this one counts (a share serves several)
        for dead in self.engine.take_dead_letters():
            self.counts.agent_errors[dead.agent] += weight


class Replayer:
    """History through the pipeline and rule sets, in one process: feed `events` records per
    partition (`buffer(p).add`), run them slice by slice (`run_slice` then `evaluate`), `finish`.

    In a run of several processes (`workers`), this one runs the pipeline of `partitions` and
    evaluates the groups `owner_of` gives it (`worker`); `run_slice` returns what it routed to the
    others, and `evaluate` takes what they routed to it.

    `shares`: when stages are shares of the rule sets compared (app.backtest.sharing), one per
    stage; `rulesets` are then the shares, and `actions` those of each rule set."""

    def __init__(self, pipeline: Pipeline, stages: Sequence[RulesStage], *, partitions: Iterable[int],
                 worker: int = 0, workers: int = 1, policy: StatePolicy | None = None,
                 shares: Sequence[Share] | None = None) -> None:
        if shares is not None and len(shares) != len(stages):
            raise ValueError(f"{len(shares)} share(s) for {len(stages)} rules stage(s)")
        self.partitions = sorted(partitions)
        self.worker, self.workers = worker, workers
        self.pipeline = pipeline
        self.counts = RunCounts()
        #: where state lives (default: in memory, the query-only tables dropped)
        self.policy = policy or StatePolicy(query_only_tables(pipeline))
        self.clocks = {p: PositionClock() for p in self.partitions}
        self.engine_clock = EngineClock(PositionClock())
        self.engine = Engine([pipeline.agent], backend_factory=self.policy.backend, clock=self.engine_clock)
        for p in self.partitions:
            self.engine.open_partition(EVENTS_TOPIC, p)
            self.engine.activate(EVENTS_TOPIC, p)
        self.rulesets = [RuleSetReplay(i, stage, partitions=self.partitions, evaluate_partition=worker,
                                       policy=self.policy, counts=self.counts,
                                       share=shares[i] if shares is not None else None)
                         for i, stage in enumerate(stages)]
        #: how many rule sets are replayed (fewer or more than `rulesets` when those are shares)
        self.ruleset_count = max((max(r.serves) + 1 for r in self.rulesets), default=0)
        self.buffers = {p: PartitionBuffer() for p in self.partitions}
        timestamp = pipeline.agent.timestamp
        if timestamp is None:  # pragma: no cover - the pipeline agent always has its EventClock
            raise ValueError("the pipeline agent has no timestamp function")
        self.event_time = timestamp
        #: per rule set, this slice's routed records for this process's evaluation
        self._local: list[list[Routed]] = [[] for _ in self.rulesets]
        #: per rule set and other process: routed records for its evaluation
        self._remote: list[dict[int, list[Routed]]] = [{} for _ in self.rulesets]
        self._alert_seq: Counter[int] = Counter()
        self._since_commit = 0

    # -- input --------------------------------------------------------------------------------------------
    def add(self, partition: int, records: list[InRecord]) -> None:
        """Buffer records of one partition (in offset order, after those given before)."""
        event_time = self.event_time
        self.buffers[partition].add(records, [event_time(r.value, r.timestamp_ms) for r in records])

    def finished(self, partition: int) -> None:
        """The source delivered everything of `partition`."""
        self.buffers[partition].finished = True

    def next_time(self) -> int | None:
        """The event time of the earliest buffered record (None when nothing is buffered)."""
        firsts = [key for b in self.buffers.values() if (key := b.first_key) is not None]
        return min(firsts) if firsts else None

    # -- slices -------------------------------------------------------------------------------------------
    def run_slice(self, end_ms: int, horizon_ms: int) -> list[dict[int, list[Routed]]]:
        """Run every partition's buffered records before `end_ms` through the pipeline and the route
        agents, then fire the pipeline's timers due up to `horizon_ms` (the slice's end, or the end
        of the range if sooner: no timer fires past it without records). Returns, per rule set, what
        was routed to the other processes (by process)."""
        for p in self.partitions:
            records, keys = self.buffers[p].take_before(end_ms)
            self._run_partition(p, records, keys, horizon_ms)
        remote = self._remote
        self._remote = [{} for _ in self.rulesets]
        return remote

    def evaluate(self, horizon_ms: int, received: Sequence[Sequence[Sequence[Routed]]] = ()) -> None:
        """Evaluate this slice's routed records of every rule set (this process's own, plus
        `received`: per other process, per rule set) and fire the rule sets' timers up to `horizon_ms`."""
        for index, ruleset in enumerate(self.rulesets):
            routed = self._local[index]
            for other in received:
                routed.extend(other[index])
            self._local[index] = []
            ruleset.evaluate(routed, horizon_ms)
        if self._since_commit >= 200_000:
            self.commit()

    def finish(self, to_ms: int) -> list[dict[int, list[Routed]]]:
        """The end of the range: fire every pipeline timer due up to `to_ms` (then `evaluate(to_ms)`)."""
        for p in self.partitions:
            self._run_partition(p, [], [], to_ms)
        remote = self._remote
        self._remote = [{} for _ in self.rulesets]
        return remote

    def commit(self) -> None:
        """Write pending state to the in-memory backends (bounds memory; changes no result)."""
        self.policy.commit([self.engine, *(r.engine for r in self.rulesets)])
        self._since_commit = 0

    @property
    def actions(self) -> list[FiredAction]:
        """Every would-be action so far, of every rule set, in the order they fired (per rule set and
        share): a shared rule's actions once for each rule set."""
        return [a if a.ruleset == index else dataclasses.replace(a, ruleset=index)
                for index in range(self.ruleset_count) for r in self.rulesets if index in r.serves
                for a in r.actions]

    # -- one partition ------------------------------------------------------------------------------------
    def _run_partition(self, p: int, records: list[InRecord], keys: list[int], horizon_ms: int) -> None:
        clock = self.clocks[p]
        self.engine_clock.current = clock
        limits = [pipeline_timer_limit(r.value, k) for r, k in zip(records, keys, strict=True)]
        start, count = 0, len(records)
        while start < count:
            end = next_chunk(keys, limits, start, clock.now_ms, self.engine.next_wall_due(EVENTS_TOPIC, p))
            if end == start:
                self._fire_pipeline(p, max(clock.now_ms, keys[start]))
                continue
            chunk, chunk_keys = records[start:end], keys[start:end]
            clock.advance(max(chunk_keys))
            self.engine.process(EVENTS_TOPIC, p, chunk)
            self._pipeline_outputs(p)
            for ruleset in self.rulesets:
                self._send(ruleset.index, ruleset.route(EVENTS_TOPIC, p, 2 * p, chunk, chunk_keys, clock))
            self.counts.events += len(chunk)
            self._since_commit += len(chunk)
            start = end
        self._fire_pipeline(p, horizon_ms)
        clock.advance(horizon_ms)

    def _fire_pipeline(self, p: int, until_ms: int) -> None:
        clock = self.clocks[p]
        only = _Only((EVENTS_TOPIC, p))
        while (due := self.engine.next_wall_due(EVENTS_TOPIC, p)) is not None and due <= until_ms:
            clock.advance(due)
            self.engine_clock.current = clock
            self.engine.fire_wall_timers(clock.now_ms, skip=only)
            self._pipeline_outputs(p)

    def _pipeline_outputs(self, p: int) -> None:
        alerts: list[InRecord] = []
        seq = self._alert_seq[p]
        for output in self.engine.take_outputs():
            if output.topic == ALERTS_TOPIC:
                alert = output.value
                key = output.key if isinstance(output.key, str) else None
                # raw_value: what route_alerts forwards; a new object per alert (the routed output is
                # matched back to its record by identity)
                alerts.append(InRecord(key, alert, seq, alert["time"], ALERT_TYPE, alert["id"].encode(),
                                       key.encode() if key else None))
                seq += 1
            elif output.topic == METRICS_TOPIC:
                self.counts.windows += 1
            elif output.topic == self.pipeline.agent.dlq_topic:
                headers = output.headers if isinstance(output.headers, dict) else {}  # the pipeline's: text
                self.counts.rejected[headers.get("vigil.field", "")] += 1
        self._alert_seq[p] = seq
        self.counts.windows += self.pipeline.tracker.take_unsent_windows()
        for dead in self.engine.take_dead_letters():
            self.counts.agent_errors[dead.agent] += 1
        if not alerts:
            return
        self.counts.alerts += len(alerts)
        clock = self.clocks[p]
        keys = [r.timestamp_ms for r in alerts]
        for ruleset in self.rulesets:
            self._send(ruleset.index, ruleset.route(ALERTS_TOPIC, p, 2 * p + 1, alerts, keys, clock))

    def _send(self, index: int, routed: list[Routed]) -> None:
        if not routed:
            return
        if self.workers == 1:
            self._local[index] += routed
            return
        local, remote = self._local[index], self._remote[index]
        for item in routed:
            owner = owner_of(item[3], self.workers)
            if owner == self.worker:
                local.append(item)
            else:
                remote.setdefault(owner, []).append(item)
