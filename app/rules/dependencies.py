"""Dependency declarations (`<rules_dir>/dependencies/*.yaml`): parsing with file:line errors, the
cycle check, and a loader that hot-reloads them like rule files. Pure: no Kafka.

    dependencies:
      - name: rack-switch
        dependents: {tags.rack: "*", tags.role: {ne: switch}}   # who depends (rule match grammar)
        depends_on: {tags.role: switch, name: ping}              # on what (matched on `status` rows)
        equal: [tags.rack]        # ...the dependency whose tags.rack equals the dependent's
        failing: [CRITICAL, EXPIRED]                              # default
        settle: 30s                                              # default

`dependents` is matched against a firing's cause (the event or status transition a rule fired on);
`depends_on` against the current status of every identity (`status` topic: subject, name, tags).
With `equal`, a dependent depends only on the rows whose fields listed there equal its own (a
dependent without one of them depends on nothing through this declaration). A firing is never
held back by a dependency of its own subject.

Cycle check: declaration A leads to B when what A depends on may also be a dependent of B (their
selectors are not provably disjoint: a field both give that no value can satisfy twice). A cycle
(A itself included: two switches of one rack holding back each other's alerts) would let two
failing things hide each other, so `vigil rules check` rejects it with its path; tell the two
sides apart with a condition on a field both use, e.g. `tags.role: {ne: switch}`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from app.globs import glob_matcher, is_glob
from app.model.events import State
from app.rules.fields import FieldRef, parse_field
from app.rules.files import FileWatch
from app.rules.loader import rule_files
from app.rules.match import OPERATORS, Predicate, compile_match
from app.rules.source import ErrorSink, LineDict, RuleError, line_of, load_yaml_text

__all__ = [
    "DEFAULT_FAILING",
    "DEFAULT_SETTLE_MS",
    "DEPENDENCIES_DIR",
    "STATUS_TYPE",
    "Dependency",
    "DependencyLoader",
    "DependencySet",
    "check_dependencies",
    "dependency_cycles",
    "may_overlap",
    "parse_dependencies_text",
]

log = logging.getLogger(__name__)

#: Where dependency files live, under the rules directory.
DEPENDENCIES_DIR: Final = "dependencies"
#: Avro full name of the status rows `depends_on` is matched against.
STATUS_TYPE: Final = "vigil.Status"
#: States of a dependency that hold back its dependents' firings unless `failing:` says otherwise.
#: UNKNOWN is not among them: it says the check could not tell, and hiding alerts on that would let
#: a broken check silence a real outage.
DEFAULT_FAILING: Final = frozenset({"CRITICAL", "EXPIRED"})
#: How long a dependent's firing waits for its dependency's state (cross-partition order).
DEFAULT_SETTLE_MS: Final = 30_000
_MAX_SETTLE_MS: Final = 600_000
_KEYS: Final = ("name", "description", "dependents", "depends_on", "equal", "failing", "settle")
_STATES: Final = tuple(s.value for s in State)


@dataclass(frozen=True, eq=False)
class Dependency:
    """One declaration: `dependents` depend on what `depends_on` selects (see the module docstring)."""

    name: str
    file: str
    line: int
    dependents: Predicate
    depends_on: Predicate
    dependents_spec: Mapping[str, Any]
    depends_on_spec: Mapping[str, Any]
    equal: tuple[FieldRef, ...] = ()
    failing: frozenset[str] = DEFAULT_FAILING
    settle_ms: int = DEFAULT_SETTLE_MS
    description: str = ""
    #: what the view's index depends on (selectors and equal fields): a change means a re-read
    fingerprint: str = field(default="")

    @property
    def location(self) -> str:
        """file:line of the declaration."""
        return f"{self.file}:{self.line}"

    def describe(self) -> dict[str, Any]:
        """The JSON form GET /rules shows."""
        return {"name": self.name, "location": self.location, "dependents": _plain(self.dependents_spec),
                "depends_on": _plain(self.depends_on_spec), "equal": [ref.key for ref in self.equal],
                "failing": sorted(self.failing), "settle_ms": self.settle_ms, "description": self.description}


def _plain(value: Any) -> Any:
    """LineDict/LineList trees as plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class DependencySet:
    """The active declarations, in file order."""

    dependencies: tuple[Dependency, ...] = ()

    @property
    def selectors_fingerprint(self) -> str:
        """Changes whenever a selector or `equal` does (what decides which status rows are kept)."""
        return hashlib.sha256("|".join(d.fingerprint for d in self.dependencies).encode()).hexdigest()[:16]

    def get(self, name: str) -> Dependency | None:
        """The declaration called `name`, or None."""
        return next((d for d in self.dependencies if d.name == name), None)

    def __len__(self) -> int:
        return len(self.dependencies)

    def __bool__(self) -> bool:
        return bool(self.dependencies)


# --- parsing ----------------------------------------------------------------------------------------

def _glob_problem(pattern: str) -> str | None:
    """Why a glob is malformed (fnmatch would silently read it literally), or None."""
    i = pattern.find("[")
    while i >= 0:
        close = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)
        if close < 0:
            return f"bad glob {pattern!r}: `[` without a closing `]`"
        i = pattern.find("[", close + 1)
    return None


def _check_globs(spec: Any, sink: ErrorSink, line: int, what: str) -> None:
    """Report malformed globs in a match spec: plain strings under a field or a combinator (an
    operator's operand is no glob: `regex`, `in`, `eq`, ... say what they take themselves)."""
    if isinstance(spec, Mapping):
        for key, value in spec.items():
            if key not in OPERATORS:
                _check_globs(value, sink, line_of(spec, key, line), what)
    elif isinstance(spec, list):
        for i, value in enumerate(spec):
            _check_globs(value, sink, line_of(spec, i, line), what)
    elif isinstance(spec, str) and is_glob(spec):
        problem = _glob_problem(spec)
        if problem:
            sink.add(line, f"{what}: {problem}")


def _selector(raw: Mapping[str, Any], key: str, sink: ErrorSink, what: str) -> tuple[Predicate | None, Any]:
    line = line_of(raw, key)
    spec = raw.get(key)
    if spec is None:
        sink.add(line, f"{what}: `{key}:` is required (a match, e.g. {{tags.role: switch}})")
        return None, None
    if not isinstance(spec, Mapping) or not spec:
        sink.add(line, f"{what}: `{key}:` must be a non-empty match mapping, e.g. {{tags.role: switch}}")
        return None, None
    before = len(sink.errors)
    _check_globs(spec, sink, line, f"{what}: {key}")
    predicate = compile_match(spec, sink, line)
    return (predicate if len(sink.errors) == before else None), spec


def _settle_ms(raw: Mapping[str, Any], sink: ErrorSink, what: str) -> int | None:
    if "settle" not in raw:
        return DEFAULT_SETTLE_MS
    value, line = raw["settle"], line_of(raw, "settle")
    if value in (0, "0", "0s", "0ms"):
        return 0
    ms = sink.duration_ms(value, line, f"{what}: settle")
    if ms is not None and ms > _MAX_SETTLE_MS:
        sink.add(line, f"{what}: settle {value} is longer than 10m: every dependent's firing waits that long")
        return None
    return ms


def _failing(raw: Mapping[str, Any], sink: ErrorSink, what: str) -> frozenset[str] | None:
    if "failing" not in raw:
        return DEFAULT_FAILING
    value, line = raw["failing"], line_of(raw, "failing")
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        sink.add(line, f"{what}: `failing:` must be a non-empty list of states, e.g. [CRITICAL, EXPIRED]")
        return None
    states = frozenset(s.upper() for s in value)
    unknown = sorted(states - set(_STATES))
    if unknown:
        sink.add(line, f"{what}: failing: unknown state(s) {', '.join(unknown)}; states are {', '.join(_STATES)}")
        return None
    if "OK" in states:
        sink.add(line, f"{what}: failing: OK is never failing (a dependency that is fine would hold alerts back)")
        return None
    return states


def _equal(raw: Mapping[str, Any], sink: ErrorSink, what: str) -> tuple[FieldRef, ...] | None:
    value = raw.get("equal")
    if value is None:
        return ()
    line = line_of(raw, "equal")
    if not isinstance(value, list):
        sink.add(line, f"{what}: `equal:` must be a list of fields, e.g. [tags.rack]")
        return None
    refs: list[FieldRef] = []
    for i, key in enumerate(value):
        ref = parse_field(key)
        if isinstance(ref, str):
            sink.add(line_of(value, i, line), f"{what}: equal: {ref}")
            return None
        refs.append(ref)
    return tuple(refs)


def _compile(raw: Any, sink: ErrorSink, line: int) -> Dependency | None:
    if not isinstance(raw, LineDict):
        sink.add(line, "a dependency must be a mapping starting with `- name:`")
        return None
    name = raw.get("name")
    what = f"dependency {name}" if isinstance(name, str) and name else "dependency"
    if not isinstance(name, str) or not name.strip() or "/" in name:
        sink.add(line_of(raw, "name"), "dependency: `name:` is required (a word without `/`), e.g. rack-switch")
    sink.unknown_keys(raw, _KEYS, what)
    before = len(sink.errors)
    dependents, dependents_spec = _selector(raw, "dependents", sink, what)
    depends_on, depends_on_spec = _selector(raw, "depends_on", sink, what)
    equal = _equal(raw, sink, what)
    failing = _failing(raw, sink, what)
    settle_ms = _settle_ms(raw, sink, what)
    description = raw.get("description", "")
    if not isinstance(description, str):
        sink.add(line_of(raw, "description"), f"{what}: `description:` must be text")
    if len(sink.errors) != before or not isinstance(name, str) or dependents is None or depends_on is None \
            or equal is None or failing is None or settle_ms is None:
        return None
    fingerprint = json.dumps([_plain(dependents_spec), _plain(depends_on_spec), [r.key for r in equal]],
                             sort_keys=True, default=str)
    return Dependency(name=name, file=sink.file, line=raw.line, dependents=dependents, depends_on=depends_on,
                      dependents_spec=dependents_spec, depends_on_spec=depends_on_spec, equal=equal,
                      failing=failing, settle_ms=settle_ms, description=str(description), fingerprint=fingerprint)


def parse_dependencies_text(text: str, file: str) -> tuple[list[Dependency], list[RuleError]]:
    """The declarations of one file's text and every error in it (file:line)."""
    sink = ErrorSink(file)
    doc = load_yaml_text(text, sink)
    if sink:
        return [], sink.errors
    if not isinstance(doc, LineDict) or "dependencies" not in doc:
        sink.add(line_of(doc, default=1), "expected a top-level mapping with a `dependencies:` list")
        return [], sink.errors
    sink.unknown_keys(doc, ("dependencies",), "dependency file")
    items = doc.get("dependencies") or []
    if not isinstance(items, list):
        sink.add(line_of(doc, "dependencies"), "`dependencies:` must be a list (each item starts with `- name:`)")
        return [], sink.errors
    found: list[Dependency] = []
    for i, raw in enumerate(items):
        dependency = _compile(raw, sink, line_of(items, i, line_of(doc, "dependencies")))
        if dependency is not None:
            found.append(dependency)
    return found, sink.errors


# --- cycles -----------------------------------------------------------------------------------------

def _as_literals(condition: Any) -> tuple[str, ...] | None:
    """The exact values a condition accepts when it is a plain value, `eq` or `in`; else None."""
    if isinstance(condition, str) and not is_glob(condition):
        return (condition,)
    if isinstance(condition, int | float) and not isinstance(condition, bool):
        return (str(condition),)
    if isinstance(condition, Mapping) and len(condition) == 1:
        ((op, operand),) = condition.items()
        if op == "eq" and isinstance(operand, str | int | float) and not isinstance(operand, bool):
            return (str(operand),)
        if op == "in" and isinstance(operand, list) and all(isinstance(x, str | int | float) for x in operand):
            return tuple(str(x) for x in operand)
    return None


def _accepts(condition: Any, value: str) -> bool | None:
    """Whether `condition` accepts the exact `value`: True/False when that is plain, else None."""
    literals = _as_literals(condition)
    if literals is not None:
        return value in literals
    if isinstance(condition, str):  # a glob
        return bool(glob_matcher(condition)(value))
    if isinstance(condition, Mapping) and len(condition) == 1:
        ((op, operand),) = condition.items()
        if op == "ne" and isinstance(operand, str | int | float):
            return value != str(operand)
        if op == "not_in" and isinstance(operand, list):
            return value not in {str(x) for x in operand}
        if op == "not":
            inner = _accepts(operand, value)
            return None if inner is None else not inner
    return None


def _disjoint(a: Any, b: Any) -> bool:
    """True when no value can satisfy both conditions (judged only where that is plain)."""
    for one, other in ((a, b), (b, a)):
        literals = _as_literals(one)
        if literals is not None:
            verdicts = [_accepts(other, value) for value in literals]
            if all(v is False for v in verdicts):
                return True
    if isinstance(a, str) and isinstance(b, str) and is_glob(a) and is_glob(b):
        pa, pb = a[:min(a.find(c) for c in "*?[" if c in a)], b[:min(b.find(c) for c in "*?[" if c in b)]
        return not (pa.startswith(pb) or pb.startswith(pa))
    return False


def may_overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """False only when two match specs provably select nothing in common: some field both give
    plain conditions for that no value satisfies together (a conservative check: True otherwise)."""
    for key in a.keys() & b.keys():
        if key in ("any", "all", "not"):
            continue
        if _disjoint(a[key], b[key]):
            return False
    return True


def dependency_cycles(dependencies: Sequence[Dependency]) -> list[list[Dependency]]:
    """Each cycle of the "leads to" graph (see the module docstring) once, as its path of declarations."""
    edges = {d.name: [e for e in dependencies if may_overlap(d.depends_on_spec, e.dependents_spec)]
             for d in dependencies}
    cycles: list[list[Dependency]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: Dependency, path: list[Dependency]) -> None:
        state[node.name] = 1
        path.append(node)
        for nxt in edges[node.name]:
            if state.get(nxt.name) == 1:
                cycle = path[[d.name for d in path].index(nxt.name):]
                names = frozenset(d.name for d in cycle)
                if names not in seen:
                    seen.add(names)
                    cycles.append(list(cycle))
            elif nxt.name not in state:
                visit(nxt, path)
        path.pop()
        state[node.name] = 2

    for dependency in dependencies:
        if dependency.name not in state:
            visit(dependency, [])
    return cycles


def _cycle_error(cycle: list[Dependency]) -> RuleError:
    first = cycle[0]
    path = " -> ".join(f"{d.name} ({d.location})" for d in [*cycle, first])
    hint = ("what it depends on may be one of its own dependents" if len(cycle) == 1
            else "each depends on what may be a dependent of the next")
    return RuleError(first.file, first.line, f"dependency cycle: {path}: {hint}, so two failing things could hold "
                                             "back each other's alerts; tell the sides apart with a condition on "
                                             "a field both use, e.g. `tags.role: {ne: switch}` in `dependents`")


def _assemble(files: Mapping[str, Sequence[Dependency]]) -> tuple[list[Dependency], list[RuleError]]:
    """One list of declarations (each name once) and the cross-file errors (duplicates, cycles)."""
    chosen: dict[str, Dependency] = {}
    errors: list[RuleError] = []
    for name in sorted(files):
        for dependency in files[name]:
            first = chosen.get(dependency.name)
            if first is not None:
                errors.append(RuleError(dependency.file, dependency.line,
                                        f"duplicate dependency name `{dependency.name}`: already defined at "
                                        f"{first.location}; names must be unique"))
            else:
                chosen[dependency.name] = dependency
    ordered = list(chosen.values())
    errors.extend(_cycle_error(cycle) for cycle in dependency_cycles(ordered))
    return ordered, errors


# --- loading ----------------------------------------------------------------------------------------

@dataclass
class _File:
    latest: list[Dependency] | None  # None while the file has errors
    errors: list[RuleError]
    good: list[Dependency] = field(default_factory=list)


class DependencyLoader:
    """Loads `<rules_dir>/dependencies/` and reloads changed files. A file with errors keeps its last
    good declarations; a change that makes the whole set invalid (a duplicate name, a cycle) keeps
    the last good set. `errors` are the problems of the files as they are on disk now."""

    def __init__(self, rules_dir: Path | str) -> None:
        self.directory = Path(rules_dir) / DEPENDENCIES_DIR
        self._files: dict[str, _File] = {}
        self._watch = FileWatch()
        self._set = DependencySet()
        self._errors: list[RuleError] = []
        self._loaded = False

    @property
    def dependencies(self) -> DependencySet:
        """The active declarations."""
        return self._set

    @property
    def errors(self) -> list[RuleError]:
        """Every current problem (file:line)."""
        return list(self._errors)

    def reload(self) -> bool:
        """Pick up added, changed and removed files; True when the active set changed."""
        paths = rule_files(self.directory) if self.directory.is_dir() else []
        updated, gone = self._watch.scan(paths)
        for file in updated:
            entry = self._files.get(file.name)
            try:
                text = file.data.decode("utf-8")
            except UnicodeDecodeError as exc:
                found: list[Dependency] = []
                errors = [RuleError(file.name, 1, f"not UTF-8 text ({exc.reason}); save as UTF-8")]
            else:
                found, errors = parse_dependencies_text(text, file.name)
            good = entry.good if entry is not None else []
            self._files[file.name] = _File(None if errors else found, errors, found if not errors else good)
            if errors and entry is not None:
                log.warning("dependency file %s has %d error(s); keeping its last good version", file.name,
                            len(errors))
        for name in gone:
            self._files.pop(name, None)
        changed = bool(updated or gone) or not self._loaded
        if not changed:
            return False
        self._loaded = True
        file_errors = [e for f in self._files.values() for e in f.errors]
        wanted, set_errors = _assemble({n: f.good for n, f in self._files.items()})
        self._errors = sorted({*file_errors, *set_errors})
        if set_errors and self._set:
            log.warning("dependencies: %s; keeping the previous declarations", set_errors[0])
            return False
        if set_errors:
            wanted = []
        before = self._set
        self._set = DependencySet(tuple(wanted))
        return [d.fingerprint + repr(sorted(d.failing)) + str(d.settle_ms) + d.location for d in before.dependencies] \
            != [d.fingerprint + repr(sorted(d.failing)) + str(d.settle_ms) + d.location for d in wanted]


def check_dependencies(rules_dir: Path | str) -> list[RuleError]:
    """Every error in `<rules_dir>/dependencies/` (what `vigil rules check` adds)."""
    loader = DependencyLoader(rules_dir)
    loader.reload()
    return loader.errors
