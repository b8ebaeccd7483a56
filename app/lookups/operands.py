"""`lookup()` for rules: in action templates, as `match`/`when` operands, and the keys rules look up.

In templates, `lookup(KEY, event=EVENT, default=VALUE, merge='first')` answers about the firing's
event unless another is given; without a default, a key no level has fails the template
(LookupMissingError names the key), so the action goes to actions-dlq with that reason.

As an operand (`when: {gt: "{{ lookup('load_max') }}"}`), a template made of one `lookup()` call
with literal arguments is resolved without Jinja: the event's level paths, then the cached answer
(app.lookups.resolve). Other templates render per event (slower) and compare as text or number.
An operand that finds nothing (no value, no default) is MISSING: the condition does not hold, and
the LookupSource counts and logs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jinja2
from jinja2 import nodes

from app.lookups.loader import LookupSource
from app.lookups.resolve import MERGES, LookupData
from app.rules.fields import EVENT_TYPE, MISSING
from app.rules.templates import CompiledTemplate, RenderError, compile_template, parse_template

__all__ = [
    "LookupMissingError",
    "LookupUse",
    "OperandGetter",
    "compile_operand",
    "keys_without_data",
    "lookup_function",
    "template_lookups",
]

log = logging.getLogger(__name__)

#: An operand looked up per event: (event, event type) -> value, or MISSING.
OperandGetter = Callable[[Mapping[str, Any], str], Any]
_NO_DEFAULT: Final = object()
_FUNCTION: Final = "lookup"


class LookupMissingError(LookupError):
    """A lookup without a default found no value (or was asked wrongly); the message names the key."""

    def __init__(self, message: str, key: str = "", paths: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.key = key
        self.paths = paths


@dataclass(frozen=True, slots=True)
class LookupUse:
    """A literal key a rule looks up, where (line), and whether the call gives a default."""

    key: str
    line: int
    has_default: bool


def lookup_function(source: LookupSource | None, event: Mapping[str, Any], event_type: str) -> Callable[..., Any]:
    """The `lookup` templates call: about `event` (the firing's, of type `event_type`) unless given another."""
    firing_event, firing_type = event, event_type

    def lookup(key: Any, event: Any = None, default: Any = _NO_DEFAULT, merge: str = "first") -> Any:
        if not isinstance(key, str) or not key:
            raise LookupMissingError(f"lookup: the key must be text such as 'thresholds.load', got {key!r}")
        if merge not in MERGES:
            raise LookupMissingError(f"lookup('{key}'): unknown merge {merge!r}; use one of {', '.join(MERGES)}", key)
        about, about_type = (firing_event, firing_type) if event is None or event is firing_event \
            else (event, EVENT_TYPE)
        if not isinstance(about, Mapping):
            raise LookupMissingError(f"lookup('{key}'): the event must be a record, got {type(about).__name__}", key)
        value: Any = MISSING
        paths: tuple[str, ...] = ()
        if source is not None:
            answer = source.data.lookup(key, about, about_type, merge)
            value, paths = answer.value, answer.paths
        if value is not MISSING:
            return value
        if default is not _NO_DEFAULT:
            return default
        where = ", ".join(paths) or "no level (the event has none of the fields the levels need)"
        raise LookupMissingError(f"lookup: no value for key `{key}` at {where}, and no default=", key, paths)

    return lookup


def _literal_call(template: jinja2.nodes.Template) -> tuple[str, dict[str, Any]] | None:
    """(key, keyword arguments) when the template is exactly `{{ lookup('KEY', k=LITERAL...) }}`."""
    body = template.body
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return None
    call = body[0].nodes[0]
    if not isinstance(call, nodes.Call) or not isinstance(call.node, nodes.Name) or call.node.name != _FUNCTION:
        return None
    if len(call.args) != 1 or not isinstance(call.args[0], nodes.Const) or call.dyn_args or call.dyn_kwargs:
        return None
    kwargs: dict[str, Any] = {}
    for keyword in call.kwargs:
        if keyword.key not in ("default", "merge") or not isinstance(keyword.value, nodes.Literal):
            return None
        try:
            kwargs[keyword.key] = keyword.value.as_const()
        except nodes.Impossible:
            return None
    key = call.args[0].value
    return (key, kwargs) if isinstance(key, str) else None


def template_lookups(template: str, line: int) -> list[LookupUse]:
    """The literal keys `template` looks up (calls whose first argument is a string literal)."""
    try:
        tree = parse_template(template)
    except jinja2.TemplateSyntaxError:
        return []  # reported where the template is compiled
    uses = []
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name == _FUNCTION and call.args \
                and isinstance(call.args[0], nodes.Const) and isinstance(call.args[0].value, str):
            uses.append(LookupUse(call.args[0].value, line, any(k.key == "default" for k in call.kwargs)))
    return uses


def _fast_operand(source: LookupSource, key: str, default: Any, merge: str) -> OperandGetter:
    def get(event: Mapping[str, Any], event_type: str) -> Any:
        answer = source.data.lookup(key, event, event_type, merge)  # cached by the levels' field values
        if answer.value is not MISSING:
            return answer.value
        if default is not _NO_DEFAULT:
            return default
        source.missed(key, answer.paths)
        return MISSING

    return get


def _rendered_operand(source: LookupSource, compiled: CompiledTemplate) -> OperandGetter:
    failed: set[str] = set()

    def get(event: Mapping[str, Any], event_type: str) -> Any:
        context = {"event": event, "type": event_type, "lookup": lookup_function(source, event, event_type)}
        try:
            return compiled.render(context).strip()
        except RenderError as exc:
            cause = exc.__cause__
            if isinstance(cause, LookupMissingError) and cause.key:
                source.missed(cause.key, cause.paths)
            elif compiled.source not in failed:
                failed.add(compiled.source)
                log.warning("lookup: operand %r failed: %s; conditions using it do not hold (logged once)",
                            compiled.source, exc)
            return MISSING

    return get


def compile_operand(source: LookupSource, template: str) -> OperandGetter | str:
    """A getter for a templated operand, or an error message (syntax, unknown merge strategy)."""
    try:
        tree = parse_template(template)
    except jinja2.TemplateSyntaxError as exc:
        return f"template syntax error in {template!r}: {exc.message}"
    literal = _literal_call(tree)
    if literal is not None:
        key, kwargs = literal
        merge = kwargs.get("merge", "first")
        if merge not in MERGES:
            return f"lookup('{key}'): unknown merge {merge!r}; use one of {', '.join(MERGES)}"
        return _fast_operand(source, key, kwargs.get("default", _NO_DEFAULT), merge)
    compiled = compile_template(template)
    if isinstance(compiled, str):
        return compiled
    return _rendered_operand(source, compiled)


def keys_without_data(uses: Iterable[tuple[str, LookupUse]], data: LookupData) -> list[str]:
    """Warnings (`file:line: warning: ...`) for literal keys (file, use) that no data file defines."""
    warnings = []
    for file, use in uses:
        if not data.defines(use.key):
            fallback = "its default is used" if use.has_default else \
                "firings fail into actions-dlq and conditions do not hold"
            warnings.append(f"{file}:{use.line}: warning: lookup key `{use.key}` is defined in no data file "
                            f"({fallback})")
    return sorted(set(warnings))
