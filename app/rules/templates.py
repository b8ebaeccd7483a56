"""Action parameter templates: compiled once at load, rendered in a Jinja sandbox per firing.

The sandbox is immutable (a template cannot change the event it reads), undefined names are
errors (StrictUndefined), output is plain text (no HTML autoescape), and obviously runaway
expressions (`'x' * 10**9`, huge powers, unbounded output) fail instead of eating the worker.
Event values are only ever *data* in the context: nothing from an event is compiled as a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from app.rules.source import ErrorSink, is_json_value, line_of

__all__ = [
    "MAX_RENDERED_CHARS",
    "CompiledTemplate",
    "RenderError",
    "compile_template",
    "compile_tree",
    "parse_template",
    "render_tree",
]

#: Longest text one template may render (bigger output is a failure, not a truncation).
MAX_RENDERED_CHARS: Final = 65_536
_MAX_EXPONENT: Final = 256
_TEMPLATE_MARKERS: Final = ("{{", "{%", "{#")


class _Sandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that also refuses sequence repetition and powers beyond sane sizes."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {_MAX_EXPONENT}")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and \
                        len(seq) * times > MAX_RENDERED_CHARS:
                    raise SecurityError(f"repetition would build {len(seq) * times} items "
                                        f"(limit {MAX_RENDERED_CHARS})")
        return super().call_binop(context, operator, left, right)


_ENV: Final = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


class RenderError(Exception):
    """A template failed to render; `str()` names the parameter path and the reason."""


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A string parameter with template syntax, compiled once."""

    source: str
    template: jinja2.Template

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with `context`; raises RenderError for any template problem."""
        size = 0
        parts: list[str] = []
        try:
            # generate() lets us stop a runaway loop's output instead of buffering it all.
            for chunk in self.template.generate(context):
                size += len(chunk)
                if size > MAX_RENDERED_CHARS:
                    raise RenderError(f"rendered text exceeds {MAX_RENDERED_CHARS} characters")
                parts.append(chunk)
        except RenderError:
            raise
        except Exception as exc:  # template code is user code: any failure drops the action
            raise RenderError(f"{type(exc).__name__}: {exc}") from exc
        return "".join(parts)


def compile_template(source: str) -> CompiledTemplate | str:
    """Compile one template string; returns an error message on syntax errors."""
    try:
        return CompiledTemplate(source, _ENV.from_string(source))
    except jinja2.TemplateSyntaxError as exc:
        return f"template syntax error in {source!r}: {exc.message} (template line {exc.lineno})"


def parse_template(source: str) -> jinja2.nodes.Template:
    """The syntax tree of a template (for checks that read what a template calls); raises
    jinja2.TemplateSyntaxError."""
    return _ENV.parse(source)


def compile_tree(value: Any, sink: ErrorSink, line: int, path: str) -> Any:
    """Compile every template string inside a params value (nested dicts/lists); other values stay.

    Errors (syntax, non-JSON values such as unquoted dates) go to `sink` at the line of their key.
    """
    if isinstance(value, str):
        if not any(marker in value for marker in _TEMPLATE_MARKERS):
            return value
        compiled = compile_template(value)
        if isinstance(compiled, str):
            sink.add(line, f"{path}: {compiled}")
            return value
        return compiled
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                sink.add(line_of(value, key, line), f"{path}: parameter names must be strings, got {key!r}")
                continue
            out[key] = compile_tree(item, sink, line_of(value, key, line), f"{path}.{key}")
        return out
    if isinstance(value, list):
        return [compile_tree(item, sink, line_of(value, i, line), f"{path}[{i}]") for i, item in enumerate(value)]
    if not is_json_value(value):
        sink.add(line, f"{path}: {value!r} ({type(value).__name__}) is not a JSON value; quote it")
    return value


def render_tree(node: Any, context: Mapping[str, Any], path: str = "params") -> Any:
    """Render a compiled params tree into plain JSON values; raises RenderError naming the path."""
    if isinstance(node, CompiledTemplate):
        try:
            return node.render(context)
        except RenderError as exc:
            raise RenderError(f"{path}: {exc}") from exc
    if isinstance(node, dict):
        return {k: render_tree(v, context, f"{path}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [render_tree(v, context, f"{path}[{i}]") for i, v in enumerate(node)]
    return node
