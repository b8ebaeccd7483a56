"""Compile `match:` specs (and `when:` conditions) into predicates that never raise.

A string value is a glob, another scalar means `eq`, a mapping holds operators that must all hold.
`any`/`all`/`not` combine whole match mappings (`not: {subject: "web*"}`) and, inside an operator
mapping, operator mappings (`severity: {any: [{eq: 1}, {ge: 3}]}`).

Missing fields satisfy nothing except `exists: false` and a `not` around a failing test; a field of
the wrong type simply does not match. Numbers compare numerically with numeric strings (tags are
strings: `tags.cores: {ge: 8}` works). Regexes use `re.search` (anchor with ^...$ for a full match).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from app.globs import glob_matcher, is_glob
from app.rules.fields import MISSING, FieldRef, as_number, as_text, parse_field
from app.rules.source import ErrorSink, did_you_mean, line_of

__all__ = [
    "COMBINATORS",
    "OPERATORS",
    "EventValueTest",
    "OperandCompiler",
    "OperandGetter",
    "Predicate",
    "ValueTest",
    "compile_event_value_test",
    "compile_match",
    "compile_value_test",
    "literal_names",
    "match_fields",
    "match_on_atoms",
]

#: A compiled `match`: (event, event Avro type full name) -> bool.
Predicate = Callable[[Mapping[str, Any], str], bool]
#: A compiled field condition over one value (which may be MISSING).
ValueTest = Callable[[Any], bool]
#: A field condition over one value and the event it was read from (operands looked up per event).
EventValueTest = Callable[[Any, Mapping[str, Any], str], bool]
#: An operand read per event: (event, event type) -> value, or MISSING.
OperandGetter = Callable[[Mapping[str, Any], str], Any]
#: Compiles a templated operand at a line into an OperandGetter, or returns an error message.
OperandCompiler = Callable[[str, int], OperandGetter | str]

OPERATORS: Final = ("eq", "ne", "gt", "ge", "lt", "le", "in", "not_in", "regex", "contains",
                    "startswith", "endswith", "exists")
COMBINATORS: Final = ("any", "all", "not")

_SEVERITY_NAMES: Final = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
_UPPERCASE_KEYS: Final = frozenset({"kind", "from_state", "to_state"})


def _always(*_: Any) -> bool:
    return True


def _never(*_: Any) -> bool:
    return False


# --- value semantics ------------------------------------------------------------------------------

def _eq(value: Any, operand: Any) -> bool:
    if value is MISSING:
        return False
    if operand is None:
        return value is None
    if isinstance(operand, bool):
        if isinstance(value, bool):
            return value is operand
        return isinstance(value, str) and value.lower() == ("true" if operand else "false")
    if isinstance(operand, int | float):
        number = as_number(value)
        return number is not None and number == operand
    if isinstance(value, str | bool):
        return as_text(value) == operand
    number, wanted = as_number(value), as_number(operand)
    return number is not None and wanted is not None and number == wanted


def _compare(value: Any, operand: Any) -> int | None:
    """-1/0/1 comparing value to operand, or None when they are not comparable."""
    if value is MISSING or value is None:
        return None
    if isinstance(operand, str) and isinstance(value, str):
        return (value > operand) - (value < operand)
    number, wanted = as_number(value), as_number(operand)
    if number is None or wanted is None or math.isnan(number):
        return None
    return (number > wanted) - (number < wanted)


def _contains(value: Any, operand: Any) -> bool:
    if isinstance(value, str):
        text = as_text(operand)
        return text is not None and text in value
    if isinstance(value, list):
        return any(_eq(item, operand) for item in value)
    if isinstance(value, Mapping):
        return operand in value
    return False


def _affix(method: str) -> Callable[[Any, Any], bool]:
    def test(value: Any, operand: Any) -> bool:
        text = as_text(value)
        return text is not None and getattr(text, method)(operand)

    return test


_BINARY: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "eq": _eq,
    "ne": lambda v, o: v is not MISSING and not _eq(v, o),
    "gt": lambda v, o: (c := _compare(v, o)) is not None and c > 0,
    "ge": lambda v, o: (c := _compare(v, o)) is not None and c >= 0,
    "lt": lambda v, o: (c := _compare(v, o)) is not None and c < 0,
    "le": lambda v, o: (c := _compare(v, o)) is not None and c <= 0,
    "in": lambda v, o: any(_eq(v, x) for x in o),
    "not_in": lambda v, o: v is not MISSING and not any(_eq(v, x) for x in o),
    "regex": lambda v, o: (t := as_text(v)) is not None and o.search(t) is not None,
    "contains": _contains,
    "startswith": _affix("startswith"),
    "endswith": _affix("endswith"),
    "exists": lambda v, o: (v is not MISSING and v is not None) is o,
}
#: Operators whose operand may be looked up per event (a template).
_LOOKED_UP_OPS: Final = frozenset({"eq", "ne", "gt", "ge", "lt", "le", "in", "not_in", "contains",
                                   "startswith", "endswith"})


# --- operand validation ---------------------------------------------------------------------------

def _is_scalar(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    return x is None or isinstance(x, str | bool | int)


def _normalise(key: str | None, operand: Any) -> Any:
    """Friendly operands: `severity: critical` means 2, `kind: metric` means METRIC."""
    if isinstance(operand, list):
        return [_normalise(key, x) for x in operand]
    if isinstance(operand, str):
        if key == "severity" and operand.upper() in _SEVERITY_NAMES:
            return _SEVERITY_NAMES[operand.upper()]
        if key in _UPPERCASE_KEYS:
            return operand.upper()
    return operand


def _check_operand(op: str, operand: Any) -> tuple[Any, str | None]:
    """The operand as the test uses it, or an error message."""
    if op in ("eq", "ne"):
        ok = _is_scalar(operand)
        return operand, None if ok else f"`{op}` needs a single value (string, number, bool or null)"
    if op in ("gt", "ge", "lt", "le"):
        ok = isinstance(operand, str) or (_is_scalar(operand) and isinstance(operand, int | float)
                                          and not isinstance(operand, bool))
        return operand, None if ok else f"`{op}` needs a number or a string, got {operand!r}"
    if op in ("in", "not_in"):
        if isinstance(operand, list) and all(_is_scalar(x) for x in operand):
            return operand, None
        return operand, f"`{op}` needs a list of values, e.g. {op}: [a, b]"
    if op == "regex":
        if not isinstance(operand, str):
            return operand, "`regex` needs a string pattern"
        try:
            return re.compile(operand), None
        except re.error as exc:
            return operand, f"bad regex {operand!r}: {exc}"
    if op == "contains":
        ok = _is_scalar(operand) and operand is not None
        return operand, None if ok else "`contains` needs a single value"
    if op in ("startswith", "endswith"):
        text = as_text(operand) if _is_scalar(operand) and operand is not None else None
        return text, None if text is not None else f"`{op}` needs a string"
    if op == "exists":
        ok = isinstance(operand, bool)
        return operand, None if ok else "`exists` needs true or false"
    raise AssertionError(op)  # pragma: no cover - callers pass known operators only


# --- compilation ----------------------------------------------------------------------------------

class _OperandMissing(Exception):
    """An operand looked up per event has no usable value: the whole condition does not hold."""


def _all_of(tests: list[Callable[..., bool]]) -> Callable[..., bool]:
    if not tests:
        return _always
    if len(tests) == 1:
        return tests[0]
    return lambda *args: all(t(*args) for t in tests)


def _any_of(tests: list[Callable[..., bool]]) -> Callable[..., bool]:
    return lambda *args: any(t(*args) for t in tests)


def _negate(test: Callable[..., bool]) -> Callable[..., bool]:
    return lambda *args: not test(*args)


def _lift(test: ValueTest) -> EventValueTest:
    """A static value test in the (value, event, event_type) form."""
    return lambda value, event, event_type: test(value)


def _combined(parts: list[tuple[Callable[..., bool], bool]]) -> tuple[list[Callable[..., bool]], bool]:
    """The tests of `parts` ((test, dynamic) pairs) in one form: lifted when any of them is dynamic."""
    dynamic = any(d for _, d in parts)
    return [(_lift(t) if dynamic and not d else t) for t, d in parts], dynamic


def _glob_test(pattern: str) -> ValueTest:
    matcher = glob_matcher(pattern)
    return lambda v: (t := as_text(v)) is not None and bool(matcher(t))


def _list_of(spec: Any, sink: ErrorSink, line: int, what: str, compile_item: Callable[..., Any]) -> list[Any]:
    if not isinstance(spec, list) or not spec:
        sink.add(line, f"`{what}` needs a non-empty list")
        return []
    return [compile_item(item, line_of(spec, i, line)) for i, item in enumerate(spec)]


def _bound(fn: Callable[[Any, Any], bool], operand: Any) -> ValueTest:
    """The test `fn(value, operand)` with its operand fixed."""
    return lambda value: fn(value, operand)


def _looked_up(fn: Callable[[Any, Any], bool], op: str, getter: OperandGetter) -> EventValueTest:
    """The test `fn(value, operand)` with its operand read per event (raises _OperandMissing when the
    operand is missing or of a type the operator cannot use)."""
    wants_list = op in ("in", "not_in")
    wants_text = op in ("startswith", "endswith")

    def test(value: Any, event: Mapping[str, Any], event_type: str) -> bool:
        operand = getter(event, event_type)
        # Looked-up data is JSON-like (dict, list, scalars): concrete isinstance checks are cheap.
        if wants_list:
            if not isinstance(operand, list):
                raise _OperandMissing()
        elif operand is MISSING or isinstance(operand, dict | list):
            raise _OperandMissing()
        elif wants_text:
            operand = as_text(operand)
            if operand is None:
                raise _OperandMissing()
        return fn(value, operand)

    return test


def _is_templated(operand: Any, operands: OperandCompiler | None) -> bool:
    return operands is not None and isinstance(operand, str) and "{{" in operand


def _operand_getter(operand: str, operands: OperandCompiler, sink: ErrorSink, line: int,
                    what: str) -> OperandGetter | None:
    getter = operands(operand, line)
    if isinstance(getter, str):
        sink.add(line, f"{what}: {getter}")
        return None
    return getter


def _compile_value(spec: Any, sink: ErrorSink, line: int, key: str | None,
                   operands: OperandCompiler | None) -> tuple[Callable[..., bool], bool]:
    """(test, dynamic): a static test takes the value; a dynamic one (value, event, event_type)."""
    what = key or "value"
    if _is_templated(spec, operands):
        assert operands is not None
        getter = _operand_getter(spec, operands, sink, line, what)
        return (_looked_up(_eq, "eq", getter), True) if getter is not None else (_never, False)
    spec = _normalise(key, spec)
    if isinstance(spec, str):
        return (_glob_test(spec) if is_glob(spec) else (lambda v: _eq(v, spec))), False
    if isinstance(spec, Mapping):
        parts: list[tuple[Callable[..., bool], bool]] = []
        for op, operand in spec.items():
            op_line = line_of(spec, op, line)
            if op in ("any", "all"):
                items = _list_of(operand, sink, op_line, op,
                                 lambda s, ln: _compile_value(s, sink, ln, key, operands))
                tests, dynamic = _combined(items)
                parts.append(((_any_of if op == "any" else _all_of)(tests) if tests else _never, dynamic))
            elif op == "not":
                test, dynamic = _compile_value(operand, sink, op_line, key, operands)
                parts.append((_negate(test), dynamic))
            elif op in _LOOKED_UP_OPS and _is_templated(operand, operands):
                assert operands is not None
                getter = _operand_getter(operand, operands, sink, op_line, what)
                parts.append((_looked_up(_BINARY[op], op, getter), True) if getter is not None else (_never, False))
            elif op in _BINARY:
                value, error = _check_operand(op, _normalise(key, operand))
                if error:
                    sink.add(op_line, f"{what}: {error}")
                    parts.append((_never, False))
                else:
                    parts.append((_bound(_BINARY[op], value), False))
            else:
                choices = (*OPERATORS, *COMBINATORS)
                sink.add(op_line, f"{what}: unknown operator `{op}`{did_you_mean(op, choices)}; "
                                  f"operators are {', '.join(choices)}")
                parts.append((_never, False))
        if not parts:
            sink.add(line, f"{what}: empty operator mapping (e.g. {{gt: 20}})")
            return _never, False
        tests, dynamic = _combined(parts)
        return _all_of(tests), dynamic
    if isinstance(spec, list):
        sink.add(line, f"{what}: a list is not a condition; use {{in: [...]}} to match any of them")
        return _never, False
    if not _is_scalar(spec):
        sink.add(line, f"{what}: {spec!r} is not a condition (use a string, number or operators)")
        return _never, False
    return (lambda v: _eq(v, spec)), False


def compile_value_test(spec: Any, sink: ErrorSink, line: int, *, key: str | None = None) -> ValueTest:
    """Compile one field condition: glob string, plain value (eq), or operator mapping."""
    return _compile_value(spec, sink, line, key, None)[0]


def _holds_unless_missing(test: EventValueTest) -> EventValueTest:
    def guarded(value: Any, event: Mapping[str, Any], event_type: str) -> bool:
        try:
            return test(value, event, event_type)
        except _OperandMissing:
            return False

    return guarded


def compile_event_value_test(spec: Any, sink: ErrorSink, line: int, *, key: str | None = None,
                             operands: OperandCompiler | None = None) -> EventValueTest:
    """Compile a field condition whose operands may be templates read per event (`operands` compiles
    them: app.lookups.operands); a condition whose operand finds nothing does not hold."""
    test, dynamic = _compile_value(spec, sink, line, key, operands)
    return _holds_unless_missing(test) if dynamic else _lift(test)


def _field_test(ref: FieldRef, test: ValueTest) -> Predicate:
    get = ref.get
    return lambda event, event_type: test(get(event, event_type))


def _event_field_test(ref: FieldRef, test: EventValueTest) -> Predicate:
    get = ref.get
    return lambda event, event_type: test(get(event, event_type), event, event_type)


def _compile_match(spec: Any, sink: ErrorSink, line: int, operands: OperandCompiler | None) -> tuple[Predicate, bool]:
    if spec is None:
        return _always, False
    if not isinstance(spec, Mapping):
        sink.add(line, "`match` must be a mapping of field: condition, e.g. {name: load, tags.class: client}")
        return _never, False
    predicates: list[Predicate] = []
    dynamic = False
    for key, value in spec.items():
        key_line = line_of(spec, key, line)
        if key in ("any", "all"):
            items = _list_of(value, sink, key_line, key, lambda s, ln: _compile_match(s, sink, ln, operands))
            predicates.append((_any_of if key == "any" else _all_of)([p for p, _ in items]) if items else _never)
            dynamic = dynamic or any(d for _, d in items)
        elif key == "not":
            predicate, inner = _compile_match(value, sink, key_line, operands)
            predicates.append(_negate(predicate))
            dynamic = dynamic or inner
        else:
            ref = parse_field(key)
            if isinstance(ref, str):
                sink.add(key_line, f"match: {ref}")
                predicates.append(_never)
                continue
            test, looked_up = _compile_value(value, sink, key_line, key, operands)
            predicates.append(_event_field_test(ref, test) if looked_up else _field_test(ref, test))
            dynamic = dynamic or looked_up
    return _all_of(predicates), dynamic


def _matches_unless_missing(predicate: Predicate) -> Predicate:
    def guarded(event: Mapping[str, Any], event_type: str) -> bool:
        try:
            return predicate(event, event_type)
        except _OperandMissing:
            return False

    return guarded


def compile_match(spec: Any, sink: ErrorSink, line: int, *, operands: OperandCompiler | None = None) -> Predicate:
    """Compile a `match:` mapping (all keys must hold) into a predicate over (event, event_type).

    operands: compiles templated operands (`{gt: "{{ lookup('load_max') }}"}`, app.lookups.operands),
    read per event; when one finds nothing the whole match does not hold (also under `not`).
    Without it a templated operand is plain text."""
    predicate, dynamic = _compile_match(spec, sink, line, operands)
    return _matches_unless_missing(predicate) if dynamic else predicate


def _holds_at(bit: int) -> Callable[[int], bool]:
    return lambda mask: mask & bit != 0


def match_on_atoms(spec: Any, atoms: list[tuple[str, ValueTest]]) -> Callable[[int], bool]:
    """`spec` (a `match:` mapping without templated operands) as a function of which of its field
    conditions hold: each condition is appended to `atoms` as (field key, value test) and is bit i
    of the mask, i its index in `atoms`. The grammar and answers of compile_match (a condition
    holds when its test holds for the field's value, MISSING when absent), for callers that decide
    many events by a few fields whose values repeat: they test each distinct value of a field once
    and decide the rest on the mask (the routes: app.routing.router). Errors in `spec` make the
    parts they are in never hold, as compile_match does (which reports them)."""
    sink = ErrorSink("(atoms)")

    def build(node: Any) -> Callable[[int], bool]:
        if node is None:
            return _always
        if not isinstance(node, Mapping):
            return _never
        parts: list[Callable[[int], bool]] = []
        for key, value in node.items():
            if key in ("any", "all"):
                items = [build(item) for item in value] if isinstance(value, list) and value else []
                parts.append((_any_of if key == "any" else _all_of)(items) if items else _never)
            elif key == "not":
                parts.append(_negate(build(value)))
            elif isinstance(parse_field(key), str):
                parts.append(_never)
            else:
                parts.append(_holds_at(1 << len(atoms)))
                atoms.append((key, compile_value_test(value, sink, 0, key=key)))
        return _all_of(parts)

    return build(spec)


def literal_names(spec: Any) -> frozenset[str] | None:
    """Event names a match can only accept (for dispatch by name), or None if any name may match."""
    if not isinstance(spec, Mapping) or "name" not in spec:
        return None
    value = spec["name"]
    if isinstance(value, Mapping) and len(value) == 1:
        ((op, operand),) = value.items()
        value = operand if op in ("eq", "in") else None
    values = value if isinstance(value, list) else [value]
    if values and all(isinstance(v, str) and not is_glob(v) for v in values):
        return frozenset(values)
    return None


def match_fields(spec: Any) -> frozenset[str]:
    """The field keys a `match:` mapping reads (inside any/all/not too), e.g. {"subject", "tags.env"}:
    what a caller must look at to decide it (the router decides routes over repeating fields without a match)."""
    found: set[str] = set()
    if isinstance(spec, Mapping):
        for key, value in spec.items():
            if key in ("any", "all"):
                for item in value if isinstance(value, list) else []:
                    found |= match_fields(item)
            elif key == "not":
                found |= match_fields(value)
            elif isinstance(key, str):
                found.add(key)
    return frozenset(found)
