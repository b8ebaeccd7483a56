"""Data files -> mappings that remember the line of each key; dotted keys (pure).

A data file is `<rules_dir>/data/<path>.yaml` (or `.json`): a mapping (an empty file is an empty
mapping) of JSON values. `thresholds.load` digs: the key `load` inside the mapping `thresholds`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.rules.fields import MISSING
from app.rules.source import ErrorSink, LineDict, RuleError, is_json_value, line_of, load_yaml_text

__all__ = ["DATA_DIR", "DATA_SUFFIXES", "DataFile", "dig", "parse_data_text", "split_key"]

#: The data folder, at the top of the rules directory.
DATA_DIR: Final = "data"
DATA_SUFFIXES: Final = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class DataFile:
    """One level's data: its path (relative to the data folder, no suffix), file name and content."""

    path: str
    file: str
    data: Mapping[str, Any]

    def get(self, parts: tuple[str, ...]) -> tuple[Any, int]:
        """(value, line of its key) for a split dotted key, or (MISSING, 0)."""
        return dig(self.data, parts)


def split_key(key: str) -> tuple[str, ...] | None:
    """`thresholds.load` -> ("thresholds", "load"); None for an empty key or an empty part."""
    parts = tuple(key.split("."))
    return parts if key and all(parts) else None


def dig(data: Any, parts: tuple[str, ...]) -> tuple[Any, int]:
    """(value, line of its key) at the dotted path `parts` inside `data`, or (MISSING, 0)."""
    line = line_of(data)
    for part in parts:
        if not isinstance(data, Mapping) or part not in data:
            return MISSING, 0
        line = line_of(data, part, line)
        data = data[part]
    return data, line


def _check_values(node: Any, sink: ErrorSink, line: int, path: str) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            key_line = line_of(node, key, line)
            if not isinstance(key, str):
                sink.add(key_line, f"{path or 'data'}: keys must be strings, got {key!r} (quote it)")
            elif "." in key:
                sink.add(key_line, f"{path or 'data'}: key `{key}` has a dot; lookups read `a.b` as `b` inside "
                                   "`a`, so nest it instead")
            _check_values(value, sink, key_line, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _check_values(item, sink, line_of(node, i, line), f"{path}[{i}]")
    elif not is_json_value(node):
        sink.add(line, f"{path}: {node!r} ({type(node).__name__}) is not a JSON value; quote it")


def parse_data_text(text: str, file: str, path: str) -> tuple[DataFile | None, list[RuleError]]:
    """The data in `text` (the content of `file`, the data of level path `path`), or None and every
    error with its line."""
    sink = ErrorSink(file)
    doc: Any
    if file.endswith(".json"):
        try:
            plain = json.loads(text) if text.strip() else None
        except ValueError as exc:
            sink.add(getattr(exc, "lineno", 1), f"not valid JSON: {getattr(exc, 'msg', exc)}")
            return None, sink.errors
        lines = ErrorSink(file)
        doc = load_yaml_text(text, lines) if text.strip() else None  # JSON is YAML: keys get their lines
        if lines or doc != plain:
            doc = plain
    else:
        doc = load_yaml_text(text, sink)
        if sink:
            return None, sink.errors
    if doc is None:
        doc = LineDict()
    if not isinstance(doc, Mapping):
        found = "a list" if isinstance(doc, list) else f"{doc!r}"
        sink.add(line_of(doc, default=1), f"a data file must be a mapping of keys to values (e.g. `load_max: 8`), "
                                          f"got {found}")
        return None, sink.errors
    _check_values(doc, sink, line_of(doc, default=1), "")
    if sink:
        return None, sink.errors
    return DataFile(path, file, doc), []
