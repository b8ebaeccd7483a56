"""The rules stage on the runtime agent API: route → evaluate → render → sign → send.

Rules group events by fields of their own choosing (`group_by: [subject]` spans the "subject/name"
keys, and so the partitions, of `events`), so the stage repartitions before it keeps state:

    events ──(route_events)──┐                        ┌─> actions             (vigil.Action, key: target)
                             ├─> rules-repartition ───┤─> actions-suppressed  (JSON; a silence covered it)
    alerts ──(route_alerts)──┘   key "g:<group key>", └─> actions-dlq         (JSON; a template failed)
                                 value forwarded            (evaluate: RuleEngine on table rules_state,
                                 unchanged (raw bytes)       absence timers = runtime timers)

A record is forwarded once per distinct group key of the rules it matches; `evaluate` then runs
only the rules whose group key is the record's key, so every group's state lives in exactly one
partition and survives restarts and rebalances through the runtime's changelogs.

Schedules (app.rules.schedules): a `schedule:` rule without `match:` has no events to start it, so
the route agents send a "start" record for it to key `s:<rule>` (the event they were routing, as a
carrier; at most once a minute per rule and process) and the evaluate partition of that key starts
the rule's schedule once, keeps its last fired slot in `rules_state` and arms the timer of the next
slot. Repeated starts do nothing, so every worker may send them.

Hot reload: the rules directory is checked at most every `reload_interval_ms` (on records, on a
per-partition wall-clock timer so it happens without traffic too, and on GET /rules). A broken
file is reported (logged as file:line, counted, listed by /rules) and its previous version stays
active. Each partition's state is reconciled with the new rules the next time it runs: state of
rules whose match/trigger/group/throttle changed (or that went away) is dropped, the rest is kept,
also across restarts (the fingerprints the state belongs to are stored beside it).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from app.config import Settings
from app.lookups.loader import LookupSource
from app.model.chain import chain_of
from app.model.events import Action, now_ms
from app.model.signing import sign_action
from app.pipeline.validate import format_time_ms
from app.rules.actions import RenderedAction, RenderFailure, render_actions
from app.rules.dependencies import DependencyLoader, DependencySet
from app.rules.dependency_reader import DependencyStatusReader
from app.rules.engine import ALERT_TYPE, EXPIRY_TIMER_PREFIX, Firing, RuleEngine, RuleIndex
from app.rules.fields import EVENT_TYPE
from app.rules.inhibit import (
    Cause,
    DependencyView,
    dependent_matches,
    identity_key,
    judge_firing,
    judge_held,
    judge_settled,
    settle_ms_of,
)
from app.rules.loader import FixedRules, RuleSet, RuleSetLoader
from app.rules.silence_reader import SilenceReader
from app.rules.silences import ActionFacts, Silence, SilenceSet
from app.rules.stage_metrics import StageMetrics
from app.rules.storms import DEFAULT_MAX_CHAIN_DEPTH, storm_suppressed_record, storm_verdict, with_chain
from app.rules.topics import ACTIONS_DLQ_TOPIC, ACTIONS_TOPIC, REPARTITION_TOPIC, SUPPRESSED_TOPIC
from app.rules.triggers import Trigger
from app.runtime.agent import Agent, AgentRegistry, agent
from app.runtime.context import AgentContext
from app.runtime.expiry import DEFAULT_STATE_RETENTION_MS, ExpiryMetrics
from app.runtime.stage import Stage
from app.runtime.tables import Table

__all__ = [
    "ACTIONS_DLQ_TOPIC",
    "ACTIONS_TOPIC",
    "DEPENDENCY_TIMER_PREFIX",
    "HELD_PREFIX",
    "REPARTITION_TOPIC",
    "ROUTE_AGENTS",
    "STATE_TABLE",
    "SUPPRESSED_TOPIC",
    "RulesStage",
    "StageConfig",
    "dependency_reason",
    "group_of_repartition_key",
    "repartition_key",
    "routed_type",
    "schedule_of_repartition_key",
    "schedule_start_key",
    "suppressed_record",
]

log = logging.getLogger(__name__)

STATE_TABLE: Final = "rules_state"
#: Rule names start with a letter or digit, so these never clash with "<rule>/<part>/<group>" keys.
RELOAD_TIMER: Final = "__reload__"
APPLIED_KEY: Final = "__rules__"
_KEY_PREFIX: Final = "g:"
_SCHEDULE_PREFIX: Final = "s:"
#: State of a firing a dependency holds back (or that waits for its settle), by its first action id,
#: and the timer that looks at it again.
HELD_PREFIX: Final = "~held/"
DEPENDENCY_TIMER_PREFIX: Final = "~dep/"
#: How often each process re-sends the start of a schedule (a worker on an older rule set may have
#: ignored the first one; the evaluate partition's state makes repeats harmless).
SCHEDULE_START_EVERY_MS: Final = 60_000
#: Trigger kinds whose state keys double as timer keys (their timers go when their state goes).
_TIMER_KINDS: Final = frozenset(t.kind for t in Trigger.__subclasses__() if t.uses_timers)


#: The route agents' names, by the topic each reads.
ROUTE_AGENTS: Final = {"events": "rules_route_events", "alerts": "rules_route_alerts"}


def routed_type(topic: str, type_name: str | None) -> str | None:
    """The type a route agent of `topic` routes a record of Avro type `type_name` as (None: it leaves
    the record alone: transitions are evaluated from `alerts` only)."""
    if topic == "alerts":
        return ALERT_TYPE
    return None if type_name == ALERT_TYPE else type_name or EVENT_TYPE


def repartition_key(group_key: str) -> str:
    """Kafka key on the repartition topic. Prefixed because the group key of `group_by: []` is empty,
    and librdkafka spreads empty keys over random partitions."""
    return _KEY_PREFIX + group_key


def schedule_start_key(rule: str) -> str:
    """Repartition key of a schedule's start record: its state lives in this key's partition."""
    return _SCHEDULE_PREFIX + rule


def schedule_of_repartition_key(key: str | None) -> str | None:
    """The rule a schedule start record is for, None for any other key."""
    return key[len(_SCHEDULE_PREFIX):] if key is not None and key.startswith(_SCHEDULE_PREFIX) else None


def group_of_repartition_key(key: str | None) -> str:
    """The group key a repartitioned record is for; ValueError for keys the stage did not write."""
    if key is None or not key.startswith(_KEY_PREFIX):
        raise ValueError(f"record key {key!r} on {REPARTITION_TOPIC} was not written by the rules stage "
                         f"(expected {_KEY_PREFIX}<group key>)")
    return key[len(_KEY_PREFIX):]


@dataclass(frozen=True)
class StageConfig:
    """How the stage is set up. `settings` (for the silences reader) None: silences only via the
    stage's SilenceSet (tests)."""

    rules_dir: Path
    signing_key: bytes | None = None
    #: None: load the rules once and never reload (a backtest's rules must not change under it)
    reload_interval_ms: int | None = 2_000
    settings: Settings | None = None
    #: before the first action, how long to wait for the silences reader to catch up (a worker
    #: restarting during a maintenance window must not send what a silence covers); short, because
    #: the worker's processing (and an exactly-once transaction) waits with it
    silences_wait_s: float = 10.0
    #: events more action hops deep than this are not acted on (app.rules.storms)
    max_chain_depth: int = DEFAULT_MAX_CHAIN_DEPTH
    #: records whose rule matches routing keeps for their evaluation (RuleIndex's memo): a backtest
    #: routes and evaluates the same record objects; a worker evaluates records it decoded anew (0)
    match_memo: int = 0
    #: a group quiet this long (event time) loses its state unless its rule says otherwise; 0: never
    state_retention_ms: int = DEFAULT_STATE_RETENTION_MS
    #: apply `<rules_dir>/dependencies/` (off in a backtest: it replays events, not the `status`
    #: topic of the time, so it has no dependency states to judge by)
    dependencies: bool = True
    #: how often a firing a dependency holds back looks again whether the dependency recovered
    dependency_recheck_ms: int = 5_000

    @classmethod
    def from_settings(cls, settings: Settings | None, environ: Mapping[str, str] | None = None) -> StageConfig:
        """Rules directory from settings (VIGIL_RULES_DIR / vigil.yaml rules_dir, default ./rules), the
        signing key from VIGIL_ACTION_SIGNING_KEY(_FILE) (raises SigningKeyError when unusable), the
        storm guard's depth limit from VIGIL_RULES_MAX_CHAIN_DEPTH (ValueError when not a number >= 1),
        the state retention from settings (VIGIL_RULES_STATE_RETENTION / rules_state_retention, 7d)."""
        from app.rules.signing_key import load_signing_key

        env = os.environ if environ is None else environ
        rules_dir = settings.rules_dir if settings is not None else Path(env.get("VIGIL_RULES_DIR") or "rules")
        depth_text = env.get("VIGIL_RULES_MAX_CHAIN_DEPTH") or str(DEFAULT_MAX_CHAIN_DEPTH)
        if not depth_text.strip().isdigit() or int(depth_text) < 1:
            raise ValueError(f"VIGIL_RULES_MAX_CHAIN_DEPTH={depth_text!r}: give a whole number of action hops, "
                             f"at least 1 (default {DEFAULT_MAX_CHAIN_DEPTH})")
        retention_ms = settings.rules_state_retention_ms if settings is not None else DEFAULT_STATE_RETENTION_MS
        return cls(rules_dir=Path(rules_dir), signing_key=load_signing_key(env), settings=settings,
                   max_chain_depth=int(depth_text), state_retention_ms=retention_ms)


@dataclass(frozen=True, eq=False)
class _Version:
    """One loaded rule set and what is derived from it once."""

    ruleset: RuleSet
    index: RuleIndex
    fingerprints: dict[str, str]  # enabled rule -> state fingerprint


@dataclass(eq=False)
class _Partition:
    """The engine of one partition of `evaluate`, valid for one context and rule set version."""

    ctx: AgentContext
    version: _Version
    engine: RuleEngine
    reload_armed_on: object | None = None  # the ctx.timers the reload timer was scheduled on


class _ContextTimers:
    """TimerService of the partition being processed (the runtime replaces ctx.timers after a rollback)."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx

    def schedule(self, key: str, at_ms: int, *, kind: str = "wall", payload: Any = None) -> None:
        self.ctx.timers.schedule(key, at_ms, kind=kind, payload=payload)

    def cancel(self, key: str) -> None:
        self.ctx.timers.cancel(key)


@dataclass(eq=False)
class RulesStage:
    """The rules stage: its agents (`agents`), state table, loader, silences and metrics."""

    config: StageConfig
    registry: AgentRegistry | None = None
    silences: SilenceSet = field(default_factory=SilenceSet)
    #: rules given in memory instead of `config.rules_dir` (a backtest's share of a rule set:
    #: app.backtest.sharing); never reloaded
    rules: RuleSet | None = None
    #: the statuses dependency decisions read (fed from `status` in a worker; by hand in tests)
    dependency_view: DependencyView = field(default_factory=DependencyView)

    def __post_init__(self) -> None:
        self.loader: RuleSetLoader | FixedRules = RuleSetLoader(self.config.rules_dir) if self.rules is None \
            else FixedRules(self.rules)
        self.metrics = StageMetrics()
        for source in self._lookup_sources():
            source.on_miss = self._lookup_missed
        #: rule-group state forgotten after its retention, per state kind
        self.expiry = ExpiryMetrics()
        self.state = Table(STATE_TABLE, default=None, help="rules stage: trigger state and throttles per group")
        self._version: _Version | None = None
        self._checked_ms: int | None = None
        self._partitions: dict[int, _Partition] = {}
        self._reader: SilenceReader | None = None
        self._reader_tried = False
        self._silences_waited = False
        self._schedules_started: dict[str, int] = {}  # schedule rule fingerprint -> when its start was sent
        self.dependency_loader = DependencyLoader(self.config.rules_dir)
        self._dependency_reader: DependencyStatusReader | None = None
        self._dependencies_waited = False
        if self.config.signing_key is None:
            log.warning("rules stage: no action signing key (VIGIL_ACTION_SIGNING_KEY or "
                        "VIGIL_ACTION_SIGNING_KEY_FILE): actions are sent unsigned")
        self.agents: list[Agent] = self._build_agents()

    def _lookup_sources(self) -> list[LookupSource]:
        """Where this stage's rules read lookups: its loader's, or (rules given) each rule's."""
        if isinstance(self.loader, RuleSetLoader):
            return [self.loader.lookups.source]
        return list({id(r.lookups): r.lookups for r in self.loader.ruleset if r.lookups is not None}.values())

    def _lookup_missed(self, key: str) -> None:
        self.metrics.lookup_misses.labels(key).inc()

    # -- agents ---------------------------------------------------------------------------------------
    def _build_agents(self) -> list[Agent]:
        reg = self.registry or AgentRegistry()  # never the plugin registry: stages are built, not imported

        @agent("events", name=ROUTE_AGENTS["events"], registry=reg)
        def route_events(event: Any, ctx: AgentContext) -> None:
            """Rules: forward each event to the partition of every rule group it concerns."""
            event_type = routed_type("events", ctx.type_name)
            if event_type is not None:
                self.route(event, event_type, ctx)

        @agent("alerts", name=ROUTE_AGENTS["alerts"], registry=reg)
        def route_alerts(alert: Any, ctx: AgentContext) -> None:
            """Rules: forward each status transition to the partition of every status-rule group it concerns."""
            self.route(alert, ALERT_TYPE, ctx)

        @agent(REPARTITION_TOPIC, name="rules_evaluate", tables=[self.state], registry=reg)
        def evaluate(record: Any, ctx: AgentContext) -> None:
            """Rules: evaluate triggers and throttles per group; send actions."""
            self.evaluate(record, ctx)

        evaluate.on_timer(self.on_timer)
        return [route_events, route_alerts, evaluate]

    def route(self, record: Any, event_type: str, ctx: AgentContext) -> None:
        """Forward `record` unchanged (its consumed bytes) once per distinct group key it concerns."""
        self._start_silence_reader(ctx)  # here, not at import: only a running worker reads silences
        now_ms = ctx.now_ms()
        version = self.current(now_ms)
        if version.index.timed_rules:
            self._start_schedules(version, ctx)
        for key in self.repartition_keys(record, event_type, now_ms):
            ctx.send(REPARTITION_TOPIC, key, ctx.raw_value)

    def repartition_keys(self, record: Any, event_type: str, now_ms: int) -> list[str]:
        """The keys `route` forwards `record` under: one per distinct group key of the rules it
        matches (schedule starts aside); raises InvalidEventError for a record it cannot route."""
        return [repartition_key(group_key) for group_key in self.current(now_ms).index.group_keys(record, event_type)]

    def _start_schedules(self, version: _Version, ctx: AgentContext) -> None:
        now = ctx.now_ms()
        for rule in version.index.timed_rules:
            sent = self._schedules_started.get(rule.state_fingerprint)
            if sent is None or not 0 <= now - sent < SCHEDULE_START_EVERY_MS:
                self._schedules_started[rule.state_fingerprint] = now
                ctx.send(REPARTITION_TOPIC, schedule_start_key(rule.name), ctx.raw_value)

    def evaluate(self, record: Any, ctx: AgentContext) -> None:
        """Run the rules of this record's group; raises (so the runtime dead-letters) on invalid input."""
        schedule = schedule_of_repartition_key(ctx.key)
        if schedule is not None:  # a schedule's start: the record only carried it
            engine = self._engine(ctx)
            self._emit(engine.ruleset, engine.start_schedule(schedule, ctx.now_ms()), ctx)
            return
        group_key = group_of_repartition_key(ctx.key)
        engine = self._engine(ctx)
        if ctx.type_name == ALERT_TYPE:
            firings = engine.on_transition(record, only_group=group_key)
        else:
            firings = engine.on_event(record, ctx.type_name or EVENT_TYPE, only_group=group_key)
        self._emit(engine.ruleset, firings, ctx)

    def on_timer(self, key: str, payload: Any, ctx: AgentContext) -> None:
        """A timer of `evaluate` came due: the reload check, or an absence timer of the engine."""
        if key.startswith(EXPIRY_TIMER_PREFIX):
            self._engine(ctx).expire(key[len(EXPIRY_TIMER_PREFIX):], ctx.watermark)
            return
        if key.startswith(DEPENDENCY_TIMER_PREFIX):
            self._look_again(key[len(DEPENDENCY_TIMER_PREFIX):], ctx)
            return
        if key == RELOAD_TIMER:
            self._engine(ctx)  # reloads if due and reconciles this partition's state
            if self.config.reload_interval_ms is not None:
                ctx.timers.schedule(RELOAD_TIMER, ctx.now_ms() + self.config.reload_interval_ms, kind="wall")
            return
        engine = self._engine(ctx)
        self._emit(engine.ruleset, engine.on_timer(key, ctx.now_ms(), payload), ctx)

    # -- rule set versions and per-partition engines ------------------------------------------------------
    def current(self, now_ms: int) -> _Version:
        """The active rule set, reloading the directory first if the last check is old enough."""
        interval_ms = self.config.reload_interval_ms
        due = interval_ms is not None and (self._checked_ms is None or not 0 <= now_ms - self._checked_ms < interval_ms)
        if due or self._version is None:
            self._checked_ms = now_ms
            self._reload()
        assert self._version is not None
        return self._version

    def _reload(self) -> None:
        if self.config.dependencies:
            self._reload_dependencies()
        before = set(self.loader.errors)
        result = self.loader.reload()
        errors = set(result.errors)
        for error in sorted(errors - before):
            log.warning("rules: %s", error)
        for error in sorted(before - errors):
            log.info("rules: fixed: %s", error)
        self.metrics.errors.set(len(errors))
        if errors - before:
            self.metrics.reload_failures.inc()
        # Same rules (Rule objects are reused while their file is unchanged or broken): same version.
        if self._version is not None and result.ruleset.rules == self._version.ruleset.rules:
            return
        ruleset = result.ruleset
        fingerprints = {rule.name: rule.state_fingerprint for rule in ruleset.enabled}
        self._version = _Version(ruleset, RuleIndex(ruleset, memo_size=self.config.match_memo), fingerprints)
        self.metrics.reloads.inc()
        self.metrics.rules.set(len(ruleset.enabled))
        log.info("rules: %d active rule(s) from %s%s", len(ruleset.enabled), self.config.rules_dir,
                 f"; {len(errors)} error(s)" if errors else "")

    def _reload_dependencies(self) -> None:
        before = set(self.dependency_loader.errors)
        changed = self.dependency_loader.reload()
        errors = set(self.dependency_loader.errors)
        for error in sorted(errors - before):
            log.warning("dependencies: %s", error)
        for error in sorted(before - errors):
            log.info("dependencies: fixed: %s", error)
        self.metrics.dependency_errors.set(len(errors))
        if not changed:
            return
        dependencies = self.dependency_loader.dependencies
        self.metrics.dependencies.set(len(dependencies))
        log.info("dependencies: %d active declaration(s) from %s", len(dependencies), self.dependency_loader.directory)
        if self.dependency_view.set_dependencies(dependencies) and self._dependency_reader is not None:
            self._dependency_reader.request_reread()
        self._start_dependency_reader()

    @property
    def dependencies(self) -> DependencySet:
        """The active dependency declarations (none when the stage does not apply them)."""
        return self.dependency_loader.dependencies if self.config.dependencies else DependencySet()

    def _engine(self, ctx: AgentContext) -> RuleEngine:
        self._start_silence_reader(ctx)
        version = self.current(ctx.now_ms())
        entry = self._partitions.get(ctx.partition)
        if entry is None or entry.ctx is not ctx or entry.version is not version:
            self._reconcile_state(ctx, version)
            engine = RuleEngine(version.ruleset, self.state, _ContextTimers(ctx), index=version.index,
                                state_retention_ms=self.config.state_retention_ms, expiry=self.expiry)
            entry = _Partition(ctx, version, engine)
            self._partitions[ctx.partition] = entry
        if entry.reload_armed_on is not ctx.timers and self.config.reload_interval_ms is not None:
            ctx.timers.schedule(RELOAD_TIMER, ctx.now_ms() + self.config.reload_interval_ms, kind="wall")
            entry.reload_armed_on = ctx.timers
        return entry.engine

    def _reconcile_state(self, ctx: AgentContext, version: _Version) -> None:
        """Drop this partition's state of rules whose state fingerprint differs from the one the
        state was built under (or that are gone), with their timers."""
        applied = self.state.get(APPLIED_KEY) or {}
        wanted = version.fingerprints
        if applied == wanted:
            return
        stale = {name for name in {*applied, *wanted} if applied.get(name) != wanted.get(name)}
        doomed = [key for key, _ in self.state.items() if key.partition("/")[0] in stale]
        for key in doomed:
            if key.split("/", 2)[1] in _TIMER_KINDS:
                ctx.timers.cancel(key)
            del self.state[key]
        self.state[APPLIED_KEY] = wanted
        if doomed:
            log.info("rules: partition %d: dropped %d state entr(ies) of changed or removed rules",
                     ctx.partition, len(doomed))

    # -- output ---------------------------------------------------------------------------------------
    def _emit(self, ruleset: RuleSet, firings: list[Firing], ctx: AgentContext) -> None:
        if not firings:
            return
        self._await_silences()
        now_ms = ctx.now_ms()
        for firing in firings:
            rule = ruleset.get(firing.rule)
            if rule is None:  # cannot happen: an engine only fires rules of its own rule set
                raise RuntimeError(f"firing of unknown rule {firing.rule!r}")
            self.metrics.firings.labels(rule.name).inc()
            chain = chain_of(firing.event)  # empty unless actions produced the event (app.model.chain)
            storm = storm_verdict(chain, rule.name, self.config.max_chain_depth)
            if storm is not None:
                self.metrics.storm_suppressed.labels(rule.name, storm.reason).inc()
                log.info("rules: %s not acted on for %s: %s", rule.name, firing.group_key or "(all)", storm.detail)
            ready: list[tuple[RenderedAction, Action]] = []
            for rendered in render_actions(firing, rule):
                if isinstance(rendered, RenderFailure):
                    self._render_failed(rendered, firing, ctx)
                    continue
                action = self.sign(with_chain(rendered.to_action(), chain))
                if storm is not None:
                    ctx.send(SUPPRESSED_TOPIC, rendered.target, storm_suppressed_record(action, storm, now_ms))
                    continue
                ready.append((rendered, action))
            if ready and not self._held_back(firing, ready, ctx):
                for rendered, action in ready:
                    self._send(ActionFacts(rule.name, rendered.type, rendered.target, rendered.group_key,
                                           firing.event, firing.event_type), action, ctx)

    def _send(self, facts: ActionFacts, action: Action, ctx: AgentContext) -> None:
        """Send one action, or record it as suppressed when a silence covers it."""
        now_ms = ctx.now_ms()
        silence = self.silences.covering(facts, now_ms)
        if silence is None:
            ctx.send(ACTIONS_TOPIC, facts.target, action)
            self.metrics.actions.labels(facts.rule).inc()
        else:
            ctx.send(SUPPRESSED_TOPIC, facts.target, suppressed_record(action, silence, now_ms))
            self.metrics.suppressed.labels(facts.rule).inc()
            log.info("rules: %s %s -> %s suppressed by silence %s (%s)", facts.rule, facts.action_type,
                     facts.target, silence.id, silence.reason)

    # -- dependencies (app.rules.inhibit) ---------------------------------------------------------------
    def _held_back(self, firing: Firing, ready: list[tuple[RenderedAction, Action]], ctx: AgentContext) -> bool:
        """Whether a dependency holds the firing back, now or until its settle passed (then it is
        kept in the state table and looked at again by timer)."""
        dependencies = self.dependencies
        if not dependencies:
            return False
        matches = dependent_matches(dependencies, firing.event, firing.event_type)
        if not matches:
            return False
        self._await_dependencies()
        verdict = judge_firing(matches, self.dependency_view, firing.event.get("subject"), firing.time_ms)
        if verdict.kind == "send":
            return False
        firing_id = ready[0][1].id
        entry: dict[str, Any] = {
            "phase": "settle", "rule": firing.rule, "time_ms": firing.time_ms, "event": dict(firing.event),
            "event_type": firing.event_type, "settle_ms": settle_ms_of(matches),
            "dependent": identity_key(firing.event.get("subject"), firing.event.get("name")),
            "actions": [{"action": action.to_record(), "type": rendered.type, "target": rendered.target,
                         "group_key": rendered.group_key} for rendered, action in ready]}
        if verdict.kind == "settle":
            assert verdict.at_ms is not None
            self.state[HELD_PREFIX + firing_id] = entry
            ctx.timers.schedule(DEPENDENCY_TIMER_PREFIX + firing_id, verdict.at_ms, kind="wall")
        else:
            self._hold(firing_id, entry, list(verdict.causes), ctx)
        return True

    def _hold(self, firing_id: str, entry: dict[str, Any], causes: list[Cause], ctx: AgentContext) -> None:
        now_ms = ctx.now_ms()
        reason = dependency_reason(causes)
        for item in entry["actions"]:
            ctx.send(SUPPRESSED_TOPIC, item["target"], {"action": item["action"], "time": now_ms, "dependency": reason})
        for name in sorted({c.dependency for c in causes}):
            self.metrics.dependency_inhibited.labels(name).inc()
        log.info("rules: %s for %s held back: %s", entry["rule"], entry["dependent"], reason["detail"])
        self.state[HELD_PREFIX + firing_id] = {**entry, "phase": "held", "held_ms": now_ms,
                                               "causes": [c.to_dict() for c in causes]}
        ctx.timers.schedule(DEPENDENCY_TIMER_PREFIX + firing_id, now_ms + self.config.dependency_recheck_ms,
                            kind="wall")

    def _release(self, firing_id: str, entry: dict[str, Any], ctx: AgentContext) -> None:
        """Send a firing's actions (their original ids: executors run each once) and forget it."""
        del self.state[HELD_PREFIX + firing_id]
        for item in entry["actions"]:
            facts = ActionFacts(entry["rule"], item["type"], item["target"], item["group_key"], entry["event"],
                                entry["event_type"])
            self._send(facts, Action.from_record(item["action"]), ctx)

    def _look_again(self, firing_id: str, ctx: AgentContext) -> None:
        """A held or settling firing's timer came due."""
        entry = self.state.get(HELD_PREFIX + firing_id)
        if not isinstance(entry, dict):
            return
        view, now_ms = self.dependency_view, ctx.now_ms()
        subject = entry["event"].get("subject")
        if entry["phase"] == "settle":
            matches = dependent_matches(self.dependencies, entry["event"], entry["event_type"])
            verdict = judge_settled(matches, view, subject, entry["time_ms"])
            if verdict.kind == "hold":
                self._hold(firing_id, entry, list(verdict.causes), ctx)
            else:
                self._release(firing_id, entry, ctx)
            return
        causes = [Cause.from_dict(c) for c in entry["causes"]]
        held = judge_held(causes, view, entry["dependent"], now_ms, int(entry["settle_ms"]))
        names = sorted({c.dependency for c in causes})
        if held.kind == "wait":
            at_ms = held.at_ms if held.at_ms is not None else now_ms + self.config.dependency_recheck_ms
            ctx.timers.schedule(DEPENDENCY_TIMER_PREFIX + firing_id, at_ms, kind="wall")
        elif held.kind == "release":
            log.info("rules: %s for %s released: its dependencies recovered and it still fails", entry["rule"],
                     entry["dependent"])
            for name in names:
                self.metrics.dependency_released.labels(name).inc()
            self._release(firing_id, entry, ctx)
        else:
            log.info("rules: %s for %s dropped: it recovered with its dependencies", entry["rule"],
                     entry["dependent"])
            for name in names:
                self.metrics.dependency_dropped.labels(name).inc()
            del self.state[HELD_PREFIX + firing_id]

    def held(self) -> list[dict[str, Any]]:
        """Firings held back or settling in this process's partitions (for GET /rules)."""
        out = []
        for _, entry in self.state.all_items(HELD_PREFIX):
            if isinstance(entry, dict):
                out.append({"rule": entry.get("rule"), "dependent": entry.get("dependent"),
                            "phase": entry.get("phase"), "time_ms": entry.get("time_ms"),
                            "causes": entry.get("causes", []),
                            "actions": [a["action"].get("id") for a in entry.get("actions", [])]})
        return out

    def sign(self, action: Action) -> Action:
        """The action with its HMAC signature (unchanged when no key is configured)."""
        key = self.config.signing_key
        if key is None:
            return action
        return action.model_copy(update={"signature": sign_action(action.to_record(), key)})

    def _render_failed(self, failure: RenderFailure, firing: Firing, ctx: AgentContext) -> None:
        log.warning("rules: %s", failure)
        self.metrics.render_failures.labels(failure.rule).inc()
        record = {"rule": failure.rule, "action_index": failure.action_index, "type": failure.type,
                  "group_key": failure.group_key, "trigger_id": failure.trigger_id, "reason": failure.reason,
                  "event_id": firing.event.get("id"), "trace_id": firing.event.get("trace_id"),
                  "time": firing.time_ms}
        ctx.send(ACTIONS_DLQ_TOPIC, failure.rule, record,
                 headers={"vigil.agent": ctx.agent_name, "vigil.rule": failure.rule,
                          "vigil.error": str(failure)[:4000]})

    # -- silences and queries -----------------------------------------------------------------------------
    def _start_silence_reader(self, ctx: AgentContext | None = None) -> None:
        # The worker's own settings (flags included) win over the ones the module was built with.
        settings = getattr(ctx, "settings", None) or self.config.settings
        if settings is not None and settings is not self.config.settings:
            self.config = dataclasses.replace(self.config, settings=settings)
        if self._reader_tried or self.config.settings is None:
            return
        self._reader_tried = True
        self._reader = SilenceReader(self.config.settings, self.silences).start()
        self._start_dependency_reader()

    def _start_dependency_reader(self) -> None:
        settings = self.config.settings
        if self._dependency_reader is not None or settings is None or not self.dependencies:
            return
        self._dependency_reader = DependencyStatusReader(settings, self.dependency_view).start()

    def _await_dependencies(self) -> None:
        if self._dependency_reader is None or self._dependencies_waited or self.dependency_view.ready.is_set():
            return
        self._dependencies_waited = True  # once, as for silences
        if not self.dependency_view.ready.wait(self.config.silences_wait_s):
            log.warning("rules: dependency states not loaded after %.0fs; judging firings by what is known",
                        self.config.silences_wait_s)

    def _await_silences(self) -> None:
        if self._reader is None or self._silences_waited or self.silences.ready.is_set():
            return
        self._silences_waited = True  # wait once: a missing topic or a down bus must not stall every firing
        if not self.silences.ready.wait(self.config.silences_wait_s):
            log.warning("rules: silences not loaded after %.0fs; sending actions without checking silences "
                        "until they are", self.config.silences_wait_s)

    def stage(self) -> Stage:
        """The stage's agents, its GET /rules route and its counters, for a worker to run."""

        def rules_api(query: dict[str, list[str]]) -> tuple[int, Any]:
            """Active rules, rule file errors (file:line: message), active silences and counters."""
            return 200, self.describe(now_ms())

        return Stage("rules", list(self.agents), {"/rules": rules_api}, [self.metrics.registry, self.expiry.registry],
                     self.close)

    def close(self) -> None:
        """Stop the silences and dependency readers (if started)."""
        if self._reader is not None:
            self._reader.stop()
            self._reader = None
        if self._dependency_reader is not None:
            self._dependency_reader.stop()
            self._dependency_reader = None

    def describe(self, now_ms: int) -> dict[str, Any]:
        """What GET /rules shows: active rules, current errors, silences and counters."""
        version = self.current(now_ms)
        rules = [{"name": r.name, "location": r.location, "enabled": r.enabled, "trigger": r.trigger.kind,
                  "group_by": [ref.key for ref in r.group_by], "throttle_ms": r.throttle_ms,
                  "actions": [a.type for a in r.actions], "description": r.description}
                 for r in version.ruleset]
        lookups = self.loader.lookups.data if isinstance(self.loader, RuleSetLoader) else None
        return {"rules_dir": str(self.config.rules_dir), "rules": rules,
                "lookups": None if lookups is None else {
                    "levels": [level.template for level in lookups.hierarchy.levels],
                    "data_files": sorted(f.file for f in lookups.files.values())},
                "errors": [str(e) for e in self.loader.errors], "signed": self.config.signing_key is not None,
                "silences": {"loaded": self.silences.ready.is_set(),
                             "active": [s.to_dict() for s in self.silences.active(now_ms)]},
                "dependencies": {"declared": [d.describe() for d in self.dependencies.dependencies],
                                 "errors": [str(e) for e in self.dependency_loader.errors],
                                 "loaded": self.dependency_view.ready.is_set(),
                                 "statuses_kept": len(self.dependency_view), "held": self.held()},
                "counters": {**self.metrics.snapshot(), "vigil_state_expired": dict(self.expiry.counts)}}


def suppressed_record(action: Action, silence: Silence, now_ms: int) -> dict[str, Any]:
    """The JSON value recorded on actions-suppressed for an action a silence covered."""
    return {"action": action.to_record(), "time": now_ms,
            "silence": {"id": silence.id, "reason": silence.reason, "until_ms": silence.until_ms,
                        "rule": silence.rule, "match": silence.match}}


def dependency_reason(causes: list[Cause]) -> dict[str, Any]:
    """What a held action is recorded with on actions-suppressed: the first cause (which dependency,
    its state and since when), a sentence for people, and every cause."""
    first = causes[0]
    others = f" (and {len(causes) - 1} more)" if len(causes) > 1 else ""
    since = format_time_ms(first.since_ms)
    detail = f"dependency {first.dependency}: {first.identity} is {first.state} since {since}{others}"
    return {**first.to_dict(), "detail": detail, "causes": [c.to_dict() for c in causes]}
