"""The `runbook` and `roll` action plugins: a rule (or anything that sends an action) starts a run.

    actions:
      - runbook: {name: web-degraded, params: {service: "{{ event.subject }}"}}
      - runbook: {name: cassandra-repair, members: {tags: {role: cassandra}}, concurrency: 1, max_failures: 0}
      - roll:
          members: {tags: {role: web}}
          concurrency: 5
          splay: 2m
          action: {ansible: {playbook: site.yml, limit: "{{ member.host }}"}}
          wait_for: {status: {subject: "{{ member.host }}", name: http, in: [OK]}, within: 10m}

The plugin checks the request, snapshots the runbook as it is now (a run never changes under
way), and sends a signed `start` command to `runs` in the same commit as the action's result; the
run's id is the action's id, so a re-run after a crash starts nothing twice. The run itself is the
orchestrator's (app.orchestration.orchestrator).
"""

from __future__ import annotations

from typing import Any, Final

from app.executor.plugin import ActionCall, ActionRejected, PluginRegistry, PluginSpec
from app.orchestration.definitions import DefinitionsLoader
from app.orchestration.records import RUNS_TOPIC, sign_record
from app.orchestration.runbooks import RollSpec, RunbookError, parse_roll, runbook_from_raw
from app.rules.source import ErrorSink

__all__ = ["add_start_plugins", "health_step_name", "start_record"]

_HEALTH: Final = "health"


def health_step_name(runbook: dict[str, Any]) -> str:
    """The name of the step a roll's `wait_for` becomes (one the runbook does not use already)."""
    names = {step.get("name") for step in runbook.get("steps", []) if isinstance(step, dict)}
    name, n = _HEALTH, 1
    while name in names:
        n += 1
        name = f"{_HEALTH}-{n}"
    return name


def _roll(params: dict[str, Any], what: str) -> RollSpec | None:
    sink = ErrorSink(what)
    roll = parse_roll(params, sink, 0, what)
    if sink.errors:
        raise ActionRejected("; ".join(e.message for e in sink.errors))
    return roll


def _check(raw: dict[str, Any], definitions: DefinitionsLoader) -> None:
    try:
        runbook_from_raw(raw, rules=definitions.current().rules.get)
    except RunbookError as exc:
        raise ActionRejected(f"the run would not start: {exc}") from None


def start_record(call: ActionCall, *, name: str, runbook: dict[str, Any], params: dict[str, Any],
                 roll: RollSpec | None) -> dict[str, Any]:
    """The `start` command for a run of `runbook` (raw) requested by `call`'s action."""
    a = call.action
    if roll is not None and roll.wait is not None:
        runbook = {**runbook, "steps": [*runbook.get("steps", []),
                                        {"name": health_step_name(runbook), "wait_for": roll.wait}]}
    roll_json = None if roll is None else {"members": roll.members.to_json(), "concurrency": roll.concurrency,
                                           "splay_ms": roll.splay_ms, "max_failures": roll.max_failures}
    return {"kind": "start", "run": a.id, "time": a.time, "name": name, "runbook": runbook, "params": params,
            "target": a.target, "roll": roll_json, "rule": a.rule, "trace_id": a.trace_id or a.event_id,
            "event_id": a.event_id, "group_key": a.group_key, "chain": list(a.chain), "by": f"rule {a.rule}"}


def add_start_plugins(registry: PluginRegistry, definitions: DefinitionsLoader, signing_key: bytes | None) -> None:
    """Register `runbook` and `roll` in `registry`, bound to these definitions."""

    async def runbook(call: ActionCall) -> str:
        """Start a run of a runbook (over members when `members` is given)."""
        p = call.params
        unknown = sorted(set(p) - {"name", "params", "members", "concurrency", "splay", "max_failures", "wait_for"})
        if unknown:
            raise ActionRejected(f"runbook: unknown param(s) {', '.join(unknown)}")
        name = p.get("name")
        found = definitions.current().runbooks.get(name) if isinstance(name, str) else None
        if found is None:
            known = ", ".join(sorted(definitions.current().runbooks)) or "none are defined"
            raise ActionRejected(f"runbook: no runbook called {name!r} ({known})")
        run_params = p.get("params") or {}
        if not isinstance(run_params, dict):
            raise ActionRejected("runbook: params must be an object")
        roll = _roll(p, "runbook")
        record = start_record(call, name=found.name, runbook=found.raw, params=run_params, roll=roll)
        _check(record["runbook"], definitions)
        call.send(RUNS_TOPIC, call.action.id, sign_record(record, signing_key))
        over = f" over members {roll.members.to_json()}" if roll else f" for {call.action.target}"
        return f"run {call.action.id} started: runbook {found.name}{over}"

    async def roll(call: ActionCall) -> str:
        """Run one action on every matching member, `concurrency` at a time."""
        p = call.params
        unknown = sorted(set(p) - {"members", "action", "concurrency", "splay", "max_failures", "wait_for"})
        if unknown:
            raise ActionRejected(f"roll: unknown param(s) {', '.join(unknown)}")
        action = p.get("action")
        if not isinstance(action, dict) or len(action) != 1:
            raise ActionRejected("roll: action must be one {TYPE: {params}} mapping")
        spec = _roll(p, "roll")
        if spec is None:
            raise ActionRejected("roll: members is required (which hosts to roll over)")
        ((action_type, _),) = action.items()
        name = f"roll:{action_type}"
        raw: dict[str, Any] = {"name": name, "steps": [{"name": str(action_type), "action": action}]}
        record = start_record(call, name=name, runbook=raw, params={}, roll=spec)
        _check(record["runbook"], definitions)
        call.send(RUNS_TOPIC, call.action.id, sign_record(record, signing_key))
        return f"run {call.action.id} started: {action_type} over members {spec.members.to_json()}"

    registry.add(PluginSpec("runbook", runbook, idempotent=True, help="start a runbook run"))
    registry.add(PluginSpec("roll", roll, idempotent=True, help="roll an action over members"))
