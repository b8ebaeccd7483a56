"""Runbooks: named, ordered checklists a rule action (or a roll over members) runs, step by step.

    runbooks:
      - name: web-degraded
        description: what on-call does when web degrades, automatically
        steps:
          - name: snapshot
            action: {http: {url: "https://ops.example.com/snapshot", json: {service: "{{ params.service }}"}}}
            on_failure: continue
          - name: restart
            action: {shell: {command: restart-service, args: {unit: "{{ params.service }}"}}}
          - name: healthy
            wait_for: {status: {subject: "{{ target }}", name: http, in: [OK]}, within: 5m, every: 10s}
            on_failure: goto escalate
            on_success: end
          - name: escalate
            approve: {approvers: ["oncall-*"], timeout: 30m, on_timeout: fail, message: "page the owner?"}
          - name: page
            action: {http: {url: "https://pager.example.com/v1", json: {service: "{{ params.service }}"}}}

A step does one thing or two: `action` (any executor plugin, `TYPE: {params}` as in rules; the
reserved `target` and `deadline` keys too), `wait_for` (conditions, app.orchestration.conditions,
that must hold within `within`, polled `every`), both (the action, then the wait), or `approve`
(a person's approval). `when:` is an expression over `params`, `target`, `member`, `run` and
`steps` (`steps.restart.status == 'SUCCEEDED'`, `'degraded' in steps.check.output`); a step whose
`when` is false is skipped. After a step: `on_success: continue | end | goto STEP` and
`on_failure: stop | continue | goto STEP`; a goto may bring the run back to a step at most
`max_visits` times (default 3). Approvals: `approvers` globs of who may approve, `timeout`, and
`on_timeout: fail | continue | stop | goto STEP` (fail: the step fails and on_failure applies).

Pure: parsing (every error with file:line) and compiling templates; a run keeps the raw
definition it started with (`Runbook.raw`), so editing the file never changes a run under way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.orchestration.conditions import RuleLookup, parse_conditions
from app.rules.source import ErrorSink, LineDict, is_json_value, line_of, load_yaml_text
from app.rules.templates import CompiledTemplate, compile_template, compile_tree

__all__ = [
    "MEMBER_KEYS",
    "RUNBOOK_KEYS",
    "STEP_KEYS",
    "ActionTemplate",
    "Approval",
    "Flow",
    "MemberSelector",
    "RollSpec",
    "Runbook",
    "RunbookError",
    "Step",
    "Wait",
    "compile_action",
    "parse_roll",
    "parse_runbook",
    "parse_wait",
    "runbook_from_raw",
]

RUNBOOK_KEYS: Final = ("name", "description", "steps")
STEP_KEYS: Final = ("name", "when", "action", "wait_for", "approve", "on_failure", "on_success", "max_visits")
ROLL_KEYS: Final = ("members", "concurrency", "splay", "max_failures", "wait_for")
MEMBER_KEYS: Final = ("host", "tags")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
_ACTION_TYPE: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_RESERVED: Final = ("target", "deadline")
_DEFAULT_EVERY_MS: Final = 10_000
_MAX_CONCURRENCY: Final = 10_000


class RunbookError(ValueError):
    """A stored run's definition no longer parses (the message lists the problems)."""


@dataclass(frozen=True)
class Flow:
    """Where a lane goes after a step: continue, end, stop (failed), fail (the step fails), goto."""

    kind: str
    step: str | None = None

    def describe(self) -> str:
        return f"goto {self.step}" if self.kind == "goto" else self.kind


@dataclass(frozen=True, eq=False)
class ActionTemplate:
    """One `TYPE: {params}` action with its templates compiled (rendered per lane at run time)."""

    type: str
    params: Any
    target: CompiledTemplate | str | None
    deadline_ms: int | None


@dataclass(frozen=True, eq=False)
class Wait:
    """Conditions that must hold within `within_ms`, polled every `every_ms`. The raw conditions
    are kept compiled as templates and parsed again once rendered for a lane."""

    conditions: Any
    within_ms: int
    every_ms: int


@dataclass(frozen=True)
class Approval:
    approvers: tuple[str, ...]
    timeout_ms: int
    on_timeout: Flow
    message: CompiledTemplate | str


@dataclass(frozen=True, eq=False)
class Step:
    name: str
    line: int
    when: CompiledTemplate | None = None
    action: ActionTemplate | None = None
    wait: Wait | None = None
    approve: Approval | None = None
    on_failure: Flow = Flow("stop")
    on_success: Flow = Flow("continue")
    max_visits: int = 3


@dataclass(frozen=True, eq=False)
class Runbook:
    name: str
    description: str
    file: str
    line: int
    steps: tuple[Step, ...]
    #: the definition as JSON values: what a run keeps, and parses again after a restart
    raw: dict[str, Any]

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.raw, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def index(self, name: str) -> int:
        """Position of step `name` (ValueError when absent)."""
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        raise ValueError(f"runbook {self.name} has no step {name!r}")


@dataclass(frozen=True)
class MemberSelector:
    """Members (hosts seen through heartbeats) a roll runs over: host glob and tag globs."""

    host: str = "*"
    tags: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "tags": dict(self.tags or {})}


@dataclass(frozen=True)
class RollSpec:
    """How a run goes over members: `concurrency` lanes at a time, each after a deterministic splay,
    stopping once more than `max_failures` members failed; `wait` is each member's health check."""

    members: MemberSelector
    concurrency: int = 1
    splay_ms: int = 0
    max_failures: int = 0
    wait: Any = None  # the raw wait_for mapping (a final `health` step), or None


def _plain(value: Any) -> Any:
    """A YAML tree as plain JSON values (LineDicts become dicts)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _flow(spec: Any, sink: ErrorSink, line: int, what: str, kinds: tuple[str, ...], default: str) -> Flow:
    if spec is None:
        return Flow(default)
    if isinstance(spec, str):
        word, _, rest = spec.strip().partition(" ")
        if word in kinds and word != "goto" and not rest:
            return Flow(word)
        if word == "goto" and "goto" in kinds and rest.strip():
            return Flow("goto", rest.strip())
    choices = " | ".join(k if k != "goto" else "goto STEP" for k in kinds)
    sink.add(line, f"{what}: {spec!r} is not one of {choices}")
    return Flow(default)


def compile_action(entry: Any, sink: ErrorSink, line: int, what: str) -> ActionTemplate | None:
    """A `TYPE: {params}` mapping as in rules, templates compiled (not rendered)."""
    if not isinstance(entry, Mapping) or len(entry) != 1:
        sink.add(line, f"{what}: an action is one `TYPE: {{params}}` mapping, e.g. {{shell: {{command: x}}}}")
        return None
    ((action_type, params),) = entry.items()
    if not isinstance(action_type, str) or not _ACTION_TYPE.fullmatch(action_type):
        sink.add(line, f"{what}: {action_type!r} is not an action type (a plugin name such as http, shell, ansible)")
        return None
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        sink.add(line, f"{what} ({action_type}): parameters must be a mapping")
        return None
    params_line = line_of(entry, action_type, line)
    if action_type == "shell" and (not isinstance(params.get("command"), str) or "{" in params.get("command", "")):
        sink.add(line_of(params, "command", params_line),
                 f"{what} (shell): `command` must be the fixed name of an allowlisted command, not a template")
    target: CompiledTemplate | str | None = None
    if "target" in params:
        raw_target = params["target"]
        compiled = compile_template(raw_target) if isinstance(raw_target, str) else "target must be a string"
        if isinstance(compiled, str):
            sink.add(line_of(params, "target", params_line), f"{what}.target: {compiled}")
        else:
            target = compiled
    deadline = None
    if "deadline" in params:
        deadline = sink.duration_ms(params["deadline"], line_of(params, "deadline", params_line), f"{what}.deadline")
    plain = LineDict({k: v for k, v in params.items() if k not in _RESERVED})
    plain.line = line_of(params, default=params_line)
    plain.key_lines = {k: line_of(params, k, params_line) for k in plain}
    tree = compile_tree(plain, sink, params_line, f"{what}.params")
    return ActionTemplate(action_type, tree, target, deadline)


def parse_wait(spec: Any, sink: ErrorSink, line: int, what: str, rules: RuleLookup | None) -> Wait | None:
    """`wait_for:` -- one condition (`status: {...}`) or `conditions: [...]`, with `within` and `every`."""
    if not isinstance(spec, Mapping):
        sink.add(line, f"{what}: expected a mapping such as {{status: {{...}}, within: 10m}}")
        return None
    conditions = {k: v for k, v in spec.items() if k not in ("within", "every")}
    if "conditions" in conditions:
        if len(conditions) > 1:
            sink.add(line, f"{what}: give `conditions: [...]` or one condition, not both")
        raw_conditions = conditions["conditions"]
    else:
        raw_conditions = [LineDict({k: v}) for k, v in conditions.items()]
        for item, key in zip(raw_conditions, conditions, strict=True):
            item.line = line_of(spec, key, line)
            item.key_lines = {key: line_of(spec, key, line)}
    if "within" not in spec:
        sink.add(line, f"{what}: needs `within:` (how long to wait before the step fails), e.g. within: 10m")
    within = sink.duration_ms(spec.get("within", "1s"), line_of(spec, "within", line), f"{what}.within")
    every = _DEFAULT_EVERY_MS
    if "every" in spec:
        every = sink.duration_ms(spec["every"], line_of(spec, "every", line), f"{what}.every") or every
    # Validated now with the templates still in (globs such as "{{ target }}" are text);
    # rendered and parsed again for each lane at run time.
    checked = parse_conditions(raw_conditions, sink, line, what=what, rules=rules)
    compiled = compile_tree(raw_conditions, sink, line, what)
    if within is None or not checked:
        return None
    return Wait(compiled, within, every)


def _approval(spec: Any, sink: ErrorSink, line: int, what: str) -> Approval | None:
    if not isinstance(spec, Mapping):
        sink.add(line, f"{what}: expected {{approvers: [...], timeout: 30m, on_timeout: fail}}")
        return None
    sink.unknown_keys(spec, ("approvers", "timeout", "on_timeout", "message"), what)
    approvers = spec.get("approvers", ["*"])
    if isinstance(approvers, str):
        approvers = [approvers]
    if not isinstance(approvers, list) or not approvers or not all(isinstance(a, str) and a for a in approvers):
        sink.add(line_of(spec, "approvers", line), f"{what}.approvers: a list of names or globs of who may approve")
        approvers = ["*"]
    if "timeout" not in spec:
        sink.add(line, f"{what}: needs `timeout:` (how long to wait for a person), e.g. timeout: 30m")
    timeout = sink.duration_ms(spec.get("timeout", "1s"), line_of(spec, "timeout", line), f"{what}.timeout")
    on_timeout = _flow(spec.get("on_timeout"), sink, line_of(spec, "on_timeout", line), f"{what}.on_timeout",
                       ("fail", "continue", "stop", "goto"), "fail")
    message: CompiledTemplate | str = ""
    raw_message = spec.get("message", "")
    if not isinstance(raw_message, str):
        sink.add(line_of(spec, "message", line), f"{what}.message must be text")
    elif "{{" in raw_message or "{%" in raw_message:
        compiled = compile_template(raw_message)
        if isinstance(compiled, str):
            sink.add(line_of(spec, "message", line), f"{what}.message: {compiled}")
        else:
            message = compiled
    else:
        message = raw_message
    if timeout is None:
        return None
    return Approval(tuple(approvers), timeout, on_timeout, message)


def _step(raw: Any, sink: ErrorSink, line: int, rules: RuleLookup | None) -> Step | None:
    if not isinstance(raw, Mapping):
        sink.add(line, "each step is a mapping with a name and an action, wait_for or approve")
        return None
    sink.unknown_keys(raw, STEP_KEYS, "step")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        sink.add(line_of(raw, "name", line), f"step name {name!r} must be 1-200 letters, digits or _.:-")
        return None
    what = f"step {name}"
    line = line_of(raw, default=line)
    if not any(k in raw for k in ("action", "wait_for", "approve")):
        sink.add(line, f"{what}: give it an `action`, a `wait_for` or an `approve`")
    if "approve" in raw and ("action" in raw or "wait_for" in raw):
        sink.add(line_of(raw, "approve", line), f"{what}: an approval is a step of its own (no action or wait_for)")
    when = None
    if "when" in raw:
        expression = raw["when"]
        if not isinstance(expression, str) or not expression.strip():
            sink.add(line_of(raw, "when", line), f"{what}.when: an expression, e.g. \"steps.check.status == "
                                                 "'SUCCEEDED'\"")
        else:
            compiled = compile_template(f"{{% if {expression} %}}true{{% else %}}false{{% endif %}}")
            if isinstance(compiled, str):
                sink.add(line_of(raw, "when", line), f"{what}.when: {compiled}")
            else:
                when = compiled
    action = compile_action(raw["action"], sink, line_of(raw, "action", line), f"{what}.action") \
        if "action" in raw else None
    wait = parse_wait(raw["wait_for"], sink, line_of(raw, "wait_for", line), f"{what}.wait_for", rules) \
        if "wait_for" in raw else None
    approve = _approval(raw["approve"], sink, line_of(raw, "approve", line), f"{what}.approve") \
        if "approve" in raw else None
    on_failure = _flow(raw.get("on_failure"), sink, line_of(raw, "on_failure", line), f"{what}.on_failure",
                       ("stop", "continue", "goto"), "stop")
    on_success = _flow(raw.get("on_success"), sink, line_of(raw, "on_success", line), f"{what}.on_success",
                       ("continue", "end", "goto"), "continue")
    visits = raw.get("max_visits", 3)
    if isinstance(visits, bool) or not isinstance(visits, int) or not 1 <= visits <= 100:
        sink.add(line_of(raw, "max_visits", line), f"{what}.max_visits must be a whole number from 1 to 100")
        visits = 3
    return Step(name, line, when, action, wait, approve, on_failure, on_success, visits)


def _check_gotos(steps: list[Step], sink: ErrorSink) -> None:
    names = {s.name for s in steps}
    for step in steps:
        flows = [("on_failure", step.on_failure), ("on_success", step.on_success)]
        if step.approve is not None:
            flows.append(("approve.on_timeout", step.approve.on_timeout))
        for what, flow in flows:
            if flow.kind == "goto" and flow.step not in names:
                sink.add(step.line, f"step {step.name}.{what}: goto {flow.step}: no such step "
                                    f"(steps: {', '.join(s.name for s in steps)})")


def parse_runbook(raw: Any, sink: ErrorSink, line: int, *, rules: RuleLookup | None = None) -> Runbook | None:
    """One runbook mapping, or None after reporting every problem to `sink`."""
    if not isinstance(raw, Mapping):
        sink.add(line, "each item of `runbooks:` must be a mapping with name and steps")
        return None
    before = len(sink.errors)
    sink.unknown_keys(raw, RUNBOOK_KEYS, "runbook")
    line = line_of(raw, default=line)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        sink.add(line_of(raw, "name", line), f"runbook name {name!r} must be 1-200 letters, digits or _.:- "
                                             "(starting with a letter or digit)")
    description = raw.get("description", "")
    if not isinstance(description, str):
        sink.add(line_of(raw, "description", line), "`description` must be text")
    items = raw.get("steps")
    if not isinstance(items, list) or not items:
        sink.add(line_of(raw, "steps", line), "runbook needs `steps:`, a non-empty list")
        items = []
    steps: list[Step] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        step = _step(item, sink, line_of(items, i, line), rules)
        if step is None:
            continue
        if step.name in seen:
            sink.add(step.line, f"duplicate step name {step.name!r} (first at line {seen[step.name]})")
            continue
        seen[step.name] = step.line
        steps.append(step)
    _check_gotos(steps, sink)
    plain = _plain(raw)
    if not is_json_value(plain):
        sink.add(line, "the runbook holds values that are not JSON (quote dates and times)")
    if len(sink.errors) > before or not isinstance(name, str) or not isinstance(description, str):
        return None
    return Runbook(name, description, sink.file, line, tuple(steps), plain)


def runbook_from_raw(raw: dict[str, Any], *, file: str = "<run>", rules: RuleLookup | None = None) -> Runbook:
    """The runbook a run keeps (its raw definition), compiled again; RunbookError if it no longer parses."""
    sink = ErrorSink(file)
    # Through YAML's line-aware loader so nested mappings are LineDicts like in a file.
    doc = load_yaml_text(json.dumps(raw), sink)
    runbook = parse_runbook(doc, sink, 1, rules=rules) if not sink else None
    if runbook is None:
        raise RunbookError("; ".join(e.message for e in sink.errors) or "not a runbook")
    return runbook


def parse_roll(spec: Mapping[str, Any], sink: ErrorSink, line: int, what: str,
               rules: RuleLookup | None = None) -> RollSpec | None:
    """The roll options of a `runbook:` or `roll:` action: members, concurrency, splay, max_failures,
    wait_for (None when `members` is absent: no roll)."""
    if "members" not in spec:
        for key in ("concurrency", "splay", "max_failures"):
            if key in spec:
                sink.add(line_of(spec, key, line), f"{what}.{key} only applies with `members:` (a roll)")
        return None
    members = spec["members"]
    if not isinstance(members, Mapping):
        sink.add(line_of(spec, "members", line), f"{what}.members: e.g. {{tags: {{role: cassandra}}}} or "
                                                 "{host: 'db*'}")
        return None
    sink.unknown_keys(members, MEMBER_KEYS, f"{what}.members")
    host = members.get("host", "*")
    tags = members.get("tags", {})
    if not isinstance(host, str) or not host:
        sink.add(line_of(members, "host", line), f"{what}.members.host must be a glob of host names")
        host = "*"
    if not isinstance(tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        sink.add(line_of(members, "tags", line), f"{what}.members.tags must map tag names to globs")
        tags = {}
    concurrency = spec.get("concurrency", 1)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= _MAX_CONCURRENCY:
        sink.add(line_of(spec, "concurrency", line), f"{what}.concurrency must be from 1 to {_MAX_CONCURRENCY}")
        concurrency = 1
    splay = 0
    if spec.get("splay") not in (None, 0, "0", "0s"):
        splay = sink.duration_ms(spec["splay"], line_of(spec, "splay", line), f"{what}.splay") or 0
    max_failures = spec.get("max_failures", 0)
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        sink.add(line_of(spec, "max_failures", line), f"{what}.max_failures must be a whole number >= 0")
        max_failures = 0
    wait = spec.get("wait_for")
    if wait is not None:
        parse_wait(wait, sink, line_of(spec, "wait_for", line), f"{what}.wait_for", rules)
    return RollSpec(MemberSelector(host, dict(tags)), concurrency, splay, max_failures, _plain(wait))
