"""Argument-vector templates of allowlisted commands: `["systemctl", "restart", "{service}"]`.

A template is a list of strings; `{name}` marks a slot that an action's params may fill, `{{` and
`}}` are literal braces, and nothing else is special. Rendering substitutes slot values as plain
text into single argv elements: the result goes to execve as a list, never through a shell, so a
value like `nginx; rm -rf /` is one literal argument. The program (first element) has no slots.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ArgvError", "ArgvTemplate", "parse_argv_template"]

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")


class ArgvError(ValueError):
    """A template or the values for it are invalid; the message says which and why."""


@dataclass(frozen=True)
class ArgvTemplate:
    """A parsed template: per element, a tuple of literal strings and slot names (`Slot`)."""

    parts: tuple[tuple[str | _Slot, ...], ...]

    @property
    def slots(self) -> frozenset[str]:
        """Names of every slot."""
        return frozenset(p.name for element in self.parts for p in element if isinstance(p, _Slot))

    def render(self, values: Mapping[str, object], *, allow_option_values: bool = False) -> list[str]:
        """The argv with every slot filled from `values` (each a plain string).

        Unknown names, missing slots, non-string values and NUL characters are refused; values
        starting with '-' are refused unless `allow_option_values` (they could turn into options
        of the program, e.g. `--config=/elsewhere`)."""
        unknown = sorted(set(values) - self.slots)
        if unknown:
            declared = ", ".join(sorted(self.slots)) or "none"
            raise ArgvError(f"argument(s) {', '.join(unknown)} not declared by the command (slots: {declared})")
        missing = sorted(self.slots - set(values))
        if missing:
            raise ArgvError(f"missing argument(s) {', '.join(missing)}")
        for name, value in values.items():
            if not isinstance(value, str):
                raise ArgvError(f"argument {name} must be a string, got {type(value).__name__}")
            if "\x00" in value:
                raise ArgvError(f"argument {name} contains a NUL character")
            if value.startswith("-") and not allow_option_values:
                raise ArgvError(f"argument {name} starts with '-' ({value[:20]!r}); the command does not allow "
                                f"option-like values (allow_option_values: true)")
        return ["".join(values[p.name] if isinstance(p, _Slot) else p for p in element)  # type: ignore[misc]
                for element in self.parts]


@dataclass(frozen=True)
class _Slot:
    name: str


def _parse_element(text: str) -> tuple[str | _Slot, ...]:
    parts: list[str | _Slot] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            parts.append(text[pos:m.start()])
        token = m.group(0)
        if m.group(1):
            parts.append(_Slot(m.group(1)))
        elif token in ("{{", "}}"):
            parts.append(token[0])
        else:
            raise ArgvError(f"{text!r}: a lone {token!r} (write {token * 2} for a literal brace; slots are "
                            f"{{name}} with letters, digits and _)")
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    return tuple(parts)


def parse_argv_template(argv: list[str]) -> ArgvTemplate:
    """Parse and check a template (non-empty, program without slots)."""
    if not argv:
        raise ArgvError("the command is empty: give the program and its arguments as a list")
    parts = tuple(_parse_element(element) for element in argv)
    if any(isinstance(p, _Slot) for p in parts[0]):
        raise ArgvError(f"the program {argv[0]!r} must be fixed: slots may only fill arguments")
    if not "".join(p for p in parts[0] if isinstance(p, str)):
        raise ArgvError("the program (first element) is empty")
    return ArgvTemplate(parts)
