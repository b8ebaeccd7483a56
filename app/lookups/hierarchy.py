"""`hierarchy.yaml` -> levels, and an event -> the data paths of its levels (pure).

    levels:                       # most specific first
      - host/{{ subject }}
      - name: role                # a level may be a mapping with a name (shown by `vigil lookup`)
        path: role/{{ tags.role }}
      - env/{{ tags.env }}
      - common

A path template is text with `{{ FIELD }}` placeholders, FIELD being a rule field key (`subject`,
`name`, `tags.role`, `data.site`: app.rules.fields). A level whose placeholder reads a field the
event lacks (or an empty one) is skipped for that event. Values are used as they are: the paths
name data already loaded (app.lookups.loader), no file is opened at lookup time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.rules.fields import MISSING, FieldRef, as_text, parse_field
from app.rules.source import ErrorSink, LineDict, RuleError, line_of, load_yaml_text

__all__ = ["HIERARCHY_FILE", "HIERARCHY_KEYS", "Hierarchy", "Level", "parse_hierarchy_text"]

#: The hierarchy's file name, at the top of the rules directory.
HIERARCHY_FILE: Final = "hierarchy.yaml"
HIERARCHY_KEYS: Final = ("levels",)
LEVEL_KEYS: Final = ("name", "path")
_PLACEHOLDER: Final = re.compile(r"\{\{(.*?)\}\}")
_FIELD_KEY: Final = re.compile(r"[A-Za-z0-9_.:-]+")
_PATH_TEXT: Final = re.compile(r"[A-Za-z0-9_.@+=,-]+(/[A-Za-z0-9_.@+=,-]+)*/?")


@dataclass(frozen=True, slots=True)
class Level:
    """One level: its name, its path template (text parts and field refs, alternating) and its line."""

    name: str
    template: str
    line: int
    #: text, field, text, field, ..., text (len = 2 * fields + 1)
    texts: tuple[str, ...]
    fields: tuple[FieldRef, ...]

    def path(self, event: Mapping[str, Any], event_type: str) -> str | None:
        """The level's data path for `event`, or None when a field it needs is missing or empty."""
        if not self.fields:
            return self.texts[0]
        texts = self.texts
        parts = [texts[0]]
        for i, ref in enumerate(self.fields):
            value = ref.get(event, event_type)
            text = None if value is MISSING or value is None else as_text(value)
            if not text:
                return None
            parts.append(text)
            parts.append(texts[i + 1])
        return "".join(parts)


@dataclass(frozen=True)
class Hierarchy:
    """The levels, most specific first, and the file they came from."""

    levels: tuple[Level, ...] = ()
    file: str = ""

    def paths(self, event: Mapping[str, Any], event_type: str) -> tuple[str, ...]:
        """The data paths of the levels that apply to `event`, most specific first."""
        return tuple(p for p in (level.path(event, event_type) for level in self.levels) if p is not None)


def _compile_template(template: str, sink: ErrorSink, line: int) -> tuple[tuple[str, ...], tuple[FieldRef, ...]]:
    texts: list[str] = []
    fields: list[FieldRef] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        texts.append(template[position:match.start()])
        key = match.group(1).strip()
        ref = parse_field(key) if _FIELD_KEY.fullmatch(key) else \
            "a placeholder holds one field key, e.g. {{ tags.role }} (no filters or expressions)"
        if isinstance(ref, str):
            sink.add(line, f"level {template!r}: {ref}")
        else:
            fields.append(ref)
        position = match.end()
    texts.append(template[position:])
    for text in texts:
        if "{{" in text or "}}" in text or "{%" in text:
            sink.add(line, f"level {template!r}: only `{{{{ FIELD }}}}` placeholders are allowed in a path "
                           "(e.g. role/{{ tags.role }})")
            break
    fixed = "x".join(texts)  # the path with every placeholder as a plain word
    if not _PATH_TEXT.fullmatch(fixed) or any(part in ("", ".", "..") for part in fixed.rstrip("/").split("/")):
        sink.add(line, f"level {template!r}: a path is words (letters, digits, _.@+=,-) separated by '/', "
                       "relative to the data folder, without a file suffix (e.g. role/{{ tags.role }})")
    return tuple(texts), tuple(fields)


def _level(item: Any, sink: ErrorSink, line: int, index: int) -> Level | None:
    if isinstance(item, Mapping):
        sink.unknown_keys(item, LEVEL_KEYS, f"level {index + 1}")
        template, name = item.get("path"), item.get("name")
        line = line_of(item, "path", line)
        if name is not None and not isinstance(name, str):
            sink.add(line_of(item, "name", line), f"level {index + 1}: `name` must be text")
            name = None
    else:
        template, name = item, None
    if not isinstance(template, str) or not template.strip():
        sink.add(line, f"level {index + 1}: expected a path template such as role/{{{{ tags.role }}}}, "
                       f"or a mapping {{name: role, path: ...}}; got {template!r}")
        return None
    template = template.strip()
    errors_before = len(sink.errors)
    texts, fields = _compile_template(template, sink, line)
    if len(sink.errors) > errors_before:
        return None
    return Level(name or template, template, line, texts, fields)


def parse_hierarchy_text(text: str, file: str) -> tuple[Hierarchy | None, list[RuleError]]:
    """The hierarchy in `text` (the content of `file`), or None and every error with its line."""
    sink = ErrorSink(file)
    doc = load_yaml_text(text, sink)
    if sink:
        return None, sink.errors
    if not isinstance(doc, LineDict) or "levels" not in doc:
        sink.add(line_of(doc, default=1), "expected a top-level mapping with a `levels:` list, most specific "
                                          "first (e.g. levels: [host/{{ subject }}, role/{{ tags.role }}, common])")
        return None, sink.errors
    sink.unknown_keys(doc, HIERARCHY_KEYS, "hierarchy")
    items, items_line = doc["levels"], line_of(doc, "levels")
    if not isinstance(items, list) or not items:
        sink.add(items_line, "`levels:` must be a non-empty list of path templates")
        return None, sink.errors
    levels: list[Level] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        level = _level(item, sink, line_of(items, i, items_line), i)
        if level is None:
            continue
        if level.template in seen:
            sink.add(level.line, f"level {level.template!r} is listed twice (first at line {seen[level.template]})")
        seen.setdefault(level.template, level.line)
        levels.append(level)
    if sink:
        return None, sink.errors
    return Hierarchy(tuple(levels), file), []
