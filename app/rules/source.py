"""Rule-file YAML with line numbers, and the error type every rule check reports.

Rule authors fix problems from `file:line: message`, so every mapping and list loaded from a rule
file remembers where each of its keys/items started. Checks collect errors into an `ErrorSink`
instead of raising, so one run reports every problem at once.
"""

from __future__ import annotations

import datetime
import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from app.durations import DurationError, parse_duration_ms

__all__ = [
    "ErrorSink",
    "LineDict",
    "LineList",
    "RuleError",
    "did_you_mean",
    "is_json_value",
    "line_of",
    "load_yaml_text",
]


@dataclass(frozen=True, slots=True, order=True)
class RuleError:
    """One problem in a rule file; `str()` is the `file:line: message` form editors understand."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class LineDict(dict[Any, Any]):
    """A YAML mapping that knows its own line and the line of each key (1-based)."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        """Line of `key`, or of the mapping itself when the key is absent."""
        return self.key_lines.get(key, self.line)


class LineList(list[Any]):
    """A YAML sequence that knows its own line and the line of each item (1-based)."""

    line: int = 0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines: list[int] = []


def line_of(node: Any, key: Any = None, default: int = 0) -> int:
    """Best line for `node[key]` (or `node` itself): works on plain values too (returns `default`)."""
    if isinstance(node, LineDict):
        return node.line_of(key) if key is not None else node.line
    if isinstance(node, LineList):
        if isinstance(key, int) and 0 <= key < len(node.item_lines):
            return node.item_lines[key]
        return node.line
    return default


@dataclass
class ErrorSink:
    """Collects errors for one file; checks call `add` and carry on."""

    file: str
    errors: list[RuleError] = field(default_factory=list)

    def add(self, line: int, message: str) -> None:
        self.errors.append(RuleError(self.file, line, message))

    def unknown_keys(self, mapping: Any, allowed: Iterable[str], what: str) -> None:
        """Report each key of `mapping` not in `allowed`, with the closest allowed key as a hint."""
        allowed = tuple(allowed)
        for key in mapping:
            if key not in allowed:
                self.add(line_of(mapping, key), f"{what}: unknown key `{key}`{did_you_mean(key, allowed)}; "
                                                f"allowed: {', '.join(allowed)}")

    def duration_ms(self, value: Any, line: int, what: str) -> int | None:
        """`value` parsed as a duration in ms, or None after reporting why it is not one."""
        try:
            return parse_duration_ms(value)
        except DurationError as exc:
            self.add(line, f"{what}: {exc}")
        except (TypeError, AttributeError):
            self.add(line, f"{what}: {value!r} is not a duration (use e.g. 500ms, 10s, 5m, 2h, 1d)")
        return None

    def __bool__(self) -> bool:
        return bool(self.errors)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean `x`?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings/sequences are LineDict/LineList; duplicate keys are recorded."""

    def __init__(self, stream: str, sink: ErrorSink) -> None:
        super().__init__(stream)
        self.sink = sink


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            loader.sink.add(key_line, "a mapping key must be a plain value, not a list or mapping")
            continue
        if key in result:
            # PyYAML silently keeps the last one; a rule author almost never means that.
            loader.sink.add(key_line, f"duplicate key `{key}` (first at line {result.key_lines[key]})")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_line
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_text(text: str, sink: ErrorSink) -> Any:
    """Parse one YAML document with line-aware containers; syntax errors go to `sink` (returns None)."""
    try:
        loader = _LineLoader(text, sink)  # the reader refuses non-printable characters right here
    except yaml.YAMLError as exc:
        sink.add(1, f"not valid YAML: {exc}")
        return None
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        sink.add(line, f"not valid YAML: {exc.problem or exc}".strip())
    except yaml.YAMLError as exc:
        sink.add(1, f"not valid YAML: {exc}")
    finally:
        loader.dispose()
    return None


def is_json_value(value: Any) -> bool:
    """True for what survives JSON unchanged (YAML can also produce dates, sets and binary)."""
    if isinstance(value, float):
        return math.isfinite(value)  # JSON has no NaN or infinity
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, datetime.date | bytes):
        return False
    if isinstance(value, list):
        return all(is_json_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json_value(v) for k, v in value.items())
    return False
