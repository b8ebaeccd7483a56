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
    "Predicate",
    "ValueTest",
    "compile_match",
    "compile_value_test",
    "literal_names",
]

#: A compiled `match`: (event, event Avro type full name) -> bool.
Predicate = Callable[[Mapping[str, Any], str], bool]
#: A compiled field condition over one value (which may be MISSING).
ValueTest = Callable[[Any], bool]

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


def compile_value_test(spec: Any, sink: ErrorSink, line: int, *, key: str | None = None) -> ValueTest:
    """Compile one field condition: glob string, plain value (eq), or operator mapping."""
    spec = _normalise(key, spec)
    if isinstance(spec, str):
        return _glob_test(spec) if is_glob(spec) else (lambda v: _eq(v, spec))
    if isinstance(spec, Mapping):
        tests: list[ValueTest] = []
        for op, operand in spec.items():
            op_line = line_of(spec, op, line)
            if op in ("any", "all"):
                items = _list_of(operand, sink, op_line, op,
                                 lambda s, ln: compile_value_test(s, sink, ln, key=key))
                tests.append((_any_of if op == "any" else _all_of)(items) if items else _never)
            elif op == "not":
                tests.append(_negate(compile_value_test(operand, sink, op_line, key=key)))
            elif op in _BINARY:
                value, error = _check_operand(op, _normalise(key, operand))
                if error:
                    sink.add(op_line, f"{key or 'value'}: {error}")
                    tests.append(_never)
                else:
                    tests.append(_bound(_BINARY[op], value))
            else:
                choices = (*OPERATORS, *COMBINATORS)
                sink.add(op_line, f"{key or 'value'}: unknown operator `{op}`{did_you_mean(op, choices)}; "
                                  f"operators are {', '.join(choices)}")
                tests.append(_never)
        if not tests:
            sink.add(line, f"{key or 'value'}: empty operator mapping (e.g. {{gt: 20}})")
            return _never
        return _all_of(tests)
    if isinstance(spec, list):
        sink.add(line, f"{key or 'value'}: a list is not a condition; use {{in: [...]}} to match any of them")
        return _never
    if not _is_scalar(spec):
        sink.add(line, f"{key or 'value'}: {spec!r} is not a condition (use a string, number or operators)")
        return _never
    return lambda v: _eq(v, spec)


def _field_test(ref: FieldRef, test: ValueTest) -> Predicate:
    get = ref.get
    return lambda event, event_type: test(get(event, event_type))


def compile_match(spec: Any, sink: ErrorSink, line: int) -> Predicate:
    """Compile a `match:` mapping (all keys must hold) into a predicate over (event, event_type)."""
    if spec is None:
        return _always
    if not isinstance(spec, Mapping):
        sink.add(line, "`match` must be a mapping of field: condition, e.g. {name: load, tags.class: client}")
        return _never
    predicates: list[Predicate] = []
    for key, value in spec.items():
        key_line = line_of(spec, key, line)
        if key in ("any", "all"):
            items = _list_of(value, sink, key_line, key, lambda s, ln: compile_match(s, sink, ln))
            predicates.append((_any_of if key == "any" else _all_of)(items) if items else _never)
        elif key == "not":
            predicates.append(_negate(compile_match(value, sink, key_line)))
        else:
            ref = parse_field(key)
            if isinstance(ref, str):
                sink.add(key_line, f"match: {ref}")
                predicates.append(_never)
            else:
                predicates.append(_field_test(ref, compile_value_test(value, sink, key_line, key=key)))
    return _all_of(predicates)


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
