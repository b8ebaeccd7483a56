"""One rule file's text -> validated, compiled rules (every error reported with its line).

Grammar summary (the full contract is in app/rules/__init__.py):

    rules:
      - name: client-load-high          # unique across all files: [A-Za-z0-9][A-Za-z0-9_.:-]*
        description: ...                # optional
        enabled: true                   # optional; false keeps the rule checked but inactive
        match: {name: load, tags.class: client}
        group_by: [subject]             # optional; default [subject, name] ([subject] for sequence)
        register: {metric: load1, aggregate: avg, period: 10s}    # at most one trigger
        when: {gt: 20}
        throttle: {once_within: 1m}
        state_retention: 30d            # optional; a group quiet this long is forgotten (0: never;
                                        # default: the `rules_state_retention` setting)
        actions:
          - print: {}
          - http: {url: "https://...", target: "{{ event.subject }}", deadline: 5m}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.lookups.loader import LookupSource
from app.lookups.operands import LookupUse, OperandGetter, compile_operand, template_lookups
from app.rules.fields import FieldRef, parse_field
from app.rules.match import OperandCompiler, Predicate, compile_match, literal_names
from app.rules.source import ErrorSink, LineDict, RuleError, is_json_value, line_of, load_yaml_text
from app.rules.templates import CompiledTemplate, compile_template, compile_tree
from app.rules.triggers import COMPANION_KEYS, TRIGGER_KEYS, Trigger, parse_trigger

__all__ = ["RULE_KEYS", "ActionSpec", "Rule", "compile_rule", "compile_rules_text"]

RULE_KEYS: Final = ("name", "description", "enabled", "match", "group_by", *TRIGGER_KEYS,
                    *COMPANION_KEYS, "throttle", "state_retention", "actions")
#: Keys whose change resets a rule's state on hot reload (actions and prose do not).
_STATE_KEYS: Final = ("match", "group_by", *TRIGGER_KEYS, *COMPANION_KEYS, "throttle")
#: Reserved action keys: not passed to the plugin but used to address/limit the action.
ACTION_RESERVED: Final = ("target", "deadline")
#: Params of some action types that are not rendered when the rule fires but passed on as written:
#: a roll's action and health check are rendered per member by the orchestrator (app.orchestration).
DEFERRED_PARAMS: Final = {"roll": ("action", "wait_for")}
#: Other top-level keys a rule file may hold beside `rules:` (gates and runbooks: checked by
#: app.orchestration.definitions; dependencies: read from `dependencies/` by app.rules.dependencies).
OTHER_FILE_KEYS: Final = ("gates", "runbooks", "dependencies")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
_ACTION_TYPE: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_TEMPLATE_MARKERS: Final = ("{{", "{%", "{#")


@dataclass(frozen=True, eq=False)
class ActionSpec:
    """One `{TYPE: {params}}` entry with its templates compiled."""

    index: int
    type: str
    params: Any  # compiled params tree: plain JSON values and CompiledTemplate leaves
    target: CompiledTemplate | None  # None: the event's subject
    deadline_ms: int | None
    line: int


@dataclass(frozen=True, eq=False)
class Rule:
    """A compiled rule, ready for the engine."""

    name: str
    description: str
    file: str
    line: int
    enabled: bool
    match: Predicate
    names: frozenset[str] | None  # event names it can match (dispatch index), None = any
    group_by: tuple[FieldRef, ...]
    trigger: Trigger
    throttle_ms: int | None
    actions: tuple[ActionSpec, ...]
    #: Hash of the state-relevant spec: equal fingerprints keep state across a reload.
    state_fingerprint: str
    #: how long a quiet group's state is kept (app.runtime.expiry); None: the stage's default, 0: forever
    state_retention_ms: int | None = None
    #: Hash of the whole definition (every rule key, not where it is written): equal definitions
    #: behave alike (a backtest comparing two rule sets evaluates such rules once: app.backtest.sharing)
    #: when they read the same lookup data (`lookup_uses`).
    definition: str = ""
    #: where its `lookup()` calls read (the loader's hierarchy and data: app.lookups); None: no data
    lookups: LookupSource | None = None
    #: the literal keys its templates and operands look up
    lookup_uses: tuple[LookupUse, ...] = ()

    @property
    def location(self) -> str:
        """`file:line` of the rule's definition."""
        return f"{self.file}:{self.line}"


def _canonical_hash(raw: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    relevant = {k: raw[k] for k in keys if k in raw}
    canonical = json.dumps(relevant, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _fingerprint(raw: Mapping[str, Any]) -> str:
    return _canonical_hash(raw, _STATE_KEYS)[:16]


def _group_by(raw: LineDict, sink: ErrorSink, trigger: Trigger | None) -> tuple[FieldRef, ...]:
    spec = raw.get("group_by", list((trigger or Trigger()).default_group_by))
    line = line_of(raw, "group_by")
    keys = [spec] if isinstance(spec, str) else spec
    if not isinstance(keys, list):
        sink.add(line, "`group_by` must be a list of field keys, e.g. group_by: [subject, tags.dc]")
        return ()
    refs: list[FieldRef] = []
    for i, key in enumerate(keys):
        ref = parse_field(key)
        if isinstance(ref, str):
            sink.add(line_of(keys, i, line), f"group_by: {ref}")
        else:
            refs.append(ref)
    return tuple(refs)


def _throttle(raw: LineDict, sink: ErrorSink) -> int | None:
    if "throttle" not in raw:
        return None
    spec, line = raw["throttle"], line_of(raw, "throttle")
    if not isinstance(spec, Mapping) or "once_within" not in spec:
        sink.add(line, "`throttle` must be a mapping like {once_within: 5m}")
        return None
    sink.unknown_keys(spec, ("once_within",), "throttle")
    return sink.duration_ms(spec["once_within"], line_of(spec, "once_within", line), "throttle.once_within")


def _state_retention(raw: LineDict, sink: ErrorSink) -> int | None:
    if "state_retention" not in raw:
        return None
    spec = raw["state_retention"]
    if spec in (0, "0") and not isinstance(spec, bool):
        return 0
    return sink.duration_ms(spec, line_of(raw, "state_retention"), "state_retention")


def _action(entry: Any, index: int, sink: ErrorSink, line: int) -> ActionSpec | None:
    if not isinstance(entry, Mapping) or len(entry) != 1:
        found = f"{len(entry)} keys ({', '.join(map(str, entry))})" if isinstance(entry, Mapping) else repr(entry)
        sink.add(line, f"action {index + 1}: each action is one `TYPE: {{params}}` mapping, found {found}; "
                       "put each action in its own list item")
        return None
    ((action_type, params),) = entry.items()
    where = f"action {index + 1} ({action_type})"
    if not isinstance(action_type, str) or not _ACTION_TYPE.fullmatch(action_type):
        sink.add(line, f"action {index + 1}: {action_type!r} is not an action type "
                       "(lowercase name such as print, shell, http, email, fire_event)")
        return None
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        sink.add(line, f"{where}: parameters must be a mapping, e.g. {action_type}: {{...}}")
        return None
    params_line = line_of(entry, action_type, line)
    plain = {k: v for k, v in params.items() if k not in ACTION_RESERVED}
    command = plain.get("command")
    if action_type == "shell" and (not isinstance(command, str)
                                   or any(m in command for m in _TEMPLATE_MARKERS)):
        # Nothing from an event is ever interpreted as a shell command.
        sink.add(line_of(params, "command", params_line),
                 f"{where}: `command` must be the fixed name of an allowlisted command, not a template; "
                 "pass event data through `args` or `env`")
    target: CompiledTemplate | None = None
    if "target" in params:
        raw_target = params["target"]
        compiled = compile_template(raw_target) if isinstance(raw_target, str) else "target must be a string"
        if isinstance(compiled, str):
            sink.add(line_of(params, "target", params_line), f"{where}.target: {compiled}")
        target = compiled if isinstance(compiled, CompiledTemplate) else None
    deadline = None
    if "deadline" in params:
        deadline = sink.duration_ms(params["deadline"], line_of(params, "deadline", params_line),
                                    f"{where}.deadline")
    deferred = {k: plain.pop(k) for k in DEFERRED_PARAMS.get(action_type, ()) if k in plain}
    tree = compile_tree(_subset_with_lines(params, plain), sink, params_line, f"{where}.params")
    for key, value in deferred.items():
        if not is_json_value(_plain(value)):
            sink.add(line_of(params, key, params_line), f"{where}.{key}: holds values that are not JSON; quote them")
        tree[key] = _plain(value)
    return ActionSpec(index, action_type, tree, target, deadline, line)


def _plain(value: Any) -> Any:
    """A YAML tree as plain JSON values (line-aware containers become dicts and lists)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _subset_with_lines(source: Mapping[Any, Any], subset: Mapping[Any, Any]) -> LineDict:
    """`subset` as a LineDict that keeps `source`'s key lines (so errors point at the right line)."""
    view = LineDict(subset)
    view.line = line_of(source)
    view.key_lines = {k: line_of(source, k) for k in subset}
    return view


def _actions(raw: LineDict, sink: ErrorSink) -> tuple[ActionSpec, ...]:
    spec, line = raw.get("actions"), line_of(raw, "actions")
    if not isinstance(spec, list) or not spec:
        sink.add(line, "rule needs `actions:`, a non-empty list such as [{print: {}}]")
        return ()
    compiled = (_action(entry, i, sink, line_of(spec, i, line)) for i, entry in enumerate(spec))
    return tuple(a for a in compiled if a is not None)


def _template_uses(node: Any, line: int) -> list[LookupUse]:
    if isinstance(node, CompiledTemplate):
        return template_lookups(node.source, line)
    if isinstance(node, dict):
        return [use for value in node.values() for use in _template_uses(value, line)]
    if isinstance(node, list):
        return [use for value in node for use in _template_uses(value, line)]
    return []


def _operand_compiler(lookups: LookupSource, uses: list[LookupUse]) -> OperandCompiler:
    """Compiles a rule's templated operands against `lookups`, noting the keys they look up."""

    def compile_one(template: str, line: int) -> OperandGetter | str:
        uses.extend(template_lookups(template, line))
        return compile_operand(lookups, template)

    return compile_one


def compile_rule(raw: Any, sink: ErrorSink, line: int, *, lookups: LookupSource | None = None) -> Rule | None:
    """Validate and compile one rule mapping; None when it has errors (all reported to `sink`).
    lookups: where its `lookup()` calls read (none given: an empty source, every lookup finds nothing)."""
    if not isinstance(raw, LineDict):
        sink.add(line, "each item of `rules:` must be a mapping with name, match/trigger and actions")
        return None
    errors_before = len(sink.errors)
    sink.unknown_keys(raw, RULE_KEYS, "rule")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        hint = " (YAML reads yes/no/on/off/true/false as booleans: quote the name)" if isinstance(name, bool) else ""
        sink.add(line_of(raw, "name"), f"rule name {name!r} must be 1-200 letters, digits or _.:- "
                                       f"(starting with a letter or digit){hint}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        sink.add(line_of(raw, "description"), "`description` must be text")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        sink.add(line_of(raw, "enabled"), "`enabled` must be true or false")
    if "match" not in raw and not any(k in raw for k in TRIGGER_KEYS):
        sink.add(raw.line, "rule has no trigger and no `match`: add `match:` (fires on every matching event) "
                           f"or one trigger ({', '.join(TRIGGER_KEYS)})")
    source = lookups if lookups is not None else LookupSource()
    uses: list[LookupUse] = []
    operands = _operand_compiler(source, uses)
    match = compile_match(raw.get("match"), sink, line_of(raw, "match"), operands=operands)
    trigger = parse_trigger(raw, sink, operands=operands)
    group_by = _group_by(raw, sink, trigger)
    throttle_ms = _throttle(raw, sink)
    state_retention_ms = _state_retention(raw, sink)
    actions = _actions(raw, sink)
    if len(sink.errors) > errors_before or trigger is None or not isinstance(name, str):
        return None
    return Rule(
        name=name, description=description, file=sink.file, line=raw.line, enabled=enabled, match=match,
        names=literal_names(raw.get("match")), group_by=group_by, trigger=trigger,
        throttle_ms=throttle_ms, actions=actions, state_fingerprint=_fingerprint(raw),
        state_retention_ms=state_retention_ms, definition=_canonical_hash(raw, RULE_KEYS), lookups=source,
        lookup_uses=tuple([*uses, *(u for a in actions for u in _template_uses([a.params, a.target], a.line))]),
    )


def compile_rules_text(text: str, file: str, *, lookups: LookupSource | None = None
                       ) -> tuple[list[Rule], list[RuleError]]:
    """All rules of one file's text and every error in it (duplicate names within the file included).
    lookups: where the rules' `lookup()` calls read (app.lookups.loader)."""
    sink = ErrorSink(file)
    lookups = lookups if lookups is not None else LookupSource()
    doc = load_yaml_text(text, sink)
    if sink:
        return [], sink.errors
    if doc is None:
        sink.add(1, "file is empty: expected a top-level `rules:` list")
        return [], sink.errors
    if not isinstance(doc, LineDict) or not any(key in doc for key in ("rules", *OTHER_FILE_KEYS)):
        sink.add(line_of(doc, default=1), "expected a top-level mapping with a `rules:` list "
                                          f"(or {', '.join(f'`{k}:`' for k in OTHER_FILE_KEYS)})")
        return [], sink.errors
    sink.unknown_keys(doc, ("rules", *OTHER_FILE_KEYS), "file")
    items = doc.get("rules")
    if items is None:
        items = []
    if not isinstance(items, list):
        sink.add(line_of(doc, "rules"), "`rules:` must be a list of rules (each item starts with `- name:`)")
        return [], sink.errors
    rules: list[Rule] = []
    first_line: dict[str, int] = {}
    for i, raw in enumerate(items):
        rule = compile_rule(raw, sink, line_of(items, i, line_of(doc, "rules")), lookups=lookups)
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if isinstance(name, str):
            if name in first_line:
                sink.add(line_of(raw, "name"), f"duplicate rule name `{name}` (first defined at "
                                               f"{file}:{first_line[name]}); rule names must be unique")
                continue
            first_line[name] = line_of(raw, "name")
        if rule is not None:
            rules.append(rule)
    return rules, sink.errors
