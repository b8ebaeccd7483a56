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
from dataclasses import dataclass, field
from typing import Any, Final

from app.rules.fields import MISSING, TOP_LEVEL_FIELDS, FieldRef, as_text, parse_field
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


_TOP, _TAG, _REF = 0, 1, 2


def _read_plan(ref: FieldRef) -> tuple[int, str, FieldRef]:
    if ref.key in TOP_LEVEL_FIELDS:
        return _TOP, ref.key, ref
    if ref.key.startswith("tags."):
        return _TAG, ref.key[len("tags."):], ref
    return _REF, ref.key, ref


def _as_part(value: Any) -> str | None:
    """A field value as a path part; None when missing or empty (the level is skipped)."""
    if value is MISSING or value is None:
        return None
    return as_text(value) or None


@dataclass(frozen=True)
class Hierarchy:
    """The levels, most specific first, and the file they came from."""

    levels: tuple[Level, ...] = ()
    file: str = ""
    #: the distinct fields the levels read: their values decide the paths (`values`, `paths_of`)
    fields: tuple[FieldRef, ...] = field(init=False, repr=False, compare=False)

    #: per level, the index in `fields` of each of its placeholders
    _slots: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    #: how `values` reads each field: (_TOP | _TAG | _REF, name, ref)
    _plan: tuple[tuple[int, str, FieldRef], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_key = {ref.key: ref for level in self.levels for ref in level.fields}
        index = {key: i for i, key in enumerate(by_key)}
        object.__setattr__(self, "fields", tuple(by_key.values()))
        object.__setattr__(self, "_plan", tuple(_read_plan(ref) for ref in self.fields))
        object.__setattr__(self, "_slots", tuple(tuple(index[ref.key] for ref in level.fields)
                                                 for level in self.levels))

    def paths(self, event: Mapping[str, Any], event_type: str) -> tuple[str, ...]:
        """The data paths of the levels that apply to `event`, most specific first."""
        return self.paths_of(self.values(event, event_type))

    def values(self, event: Mapping[str, Any], event_type: str) -> tuple[Any, ...]:
        """The values of `fields` in `event`: events with equal values have equal paths."""
        # Per event, on the rules' hot path: top-level fields and tags of a plain dict are read
        # directly (what their FieldRef reads, without its generic Mapping checks); the rest by ref.
        tags = event.get("tags")
        plain_tags = tags if type(tags) is dict else None
        out = []
        for where, name, ref in self._plan:
            if where == _TOP:
                out.append(event.get(name, MISSING))
            elif where == _TAG and plain_tags is not None:
                out.append(plain_tags.get(name, MISSING))
            else:
                out.append(ref.get(event, event_type))
        return tuple(out)

    def paths_of(self, values: tuple[Any, ...]) -> tuple[str, ...]:
        """The paths of the levels that apply to an event whose `fields` have `values`."""
        paths: list[str] = []
        for level, slots in zip(self.levels, self._slots, strict=True):
            texts = level.texts
            parts = [texts[0]]
            for i, slot in enumerate(slots):
                part = _as_part(values[slot])
                if part is None:
                    break
                parts.append(part)
                parts.append(texts[i + 1])
            else:
                paths.append("".join(parts))
        return tuple(paths)


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
