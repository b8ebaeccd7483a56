"""Lookups along the hierarchy: first match or merged, and the cache that makes them cheap (pure).

Merge strategies (Hiera's names):
    first    the value of the most specific level that has the key (the default)
    unique   arrays of every level that has the key, concatenated most specific first, without
             duplicates (a scalar counts as a one-item array)
    hash     mappings of every level, merged shallowly: on a shared key the more specific level wins
    deep     mappings merged recursively (the more specific level wins on a shared scalar; arrays at
             the same place are merged as `unique`)
Levels whose value does not fit the strategy (a scalar under `hash`) do not contribute.

An answer depends only on the key, the strategy and the tuple of level paths an event maps to,
so it is computed once per distinct (paths, key, merge) and cached in the LookupData it came
from; a reload builds new LookupData, so nothing stale survives it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from app.lookups.data import DataFile, split_key
from app.lookups.hierarchy import Hierarchy
from app.rules.fields import MISSING

__all__ = ["CACHE_SIZE", "MERGES", "Answer", "LookupData", "Source", "merge_values"]

MERGES: Final = ("first", "unique", "hash", "deep")
#: Answers kept per LookupData before the cache starts afresh (distinct paths x keys x strategies).
CACHE_SIZE: Final = 65_536


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value came from: the level path, its file and the line of the key."""

    path: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome of one lookup. `value` is MISSING when no level has the key."""

    key: str
    merge: str
    value: Any
    #: the levels that answered (first: one; merges: each that contributed), most specific first
    sources: tuple[Source, ...]
    #: the level paths the event maps to, most specific first (those with a data file or not)
    paths: tuple[str, ...]

    @property
    def found(self) -> bool:
        """Whether some level had the key."""
        return self.value is not MISSING


def _identity(item: Any) -> Any:
    try:
        hash(item)
        return (type(item) is bool, item)  # True and 1 are different data
    except TypeError:
        return json.dumps(item, sort_keys=True, default=str)


def _unique(lists: Sequence[list[Any]]) -> list[Any]:
    out: list[Any] = []
    seen: set[Any] = set()
    for items in lists:
        for item in items:
            identity = _identity(item)
            if identity not in seen:
                seen.add(identity)
                out.append(item)
    return out


def _deep(higher: Mapping[str, Any], lower: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(lower)
    for key, value in higher.items():
        below = out.get(key, MISSING)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = _deep(value, below)
        elif isinstance(value, list) and isinstance(below, list):
            out[key] = _unique([value, below])
        else:
            out[key] = value
    return out


def merge_values(merge: str, values: Sequence[Any]) -> tuple[Any, tuple[int, ...]]:
    """Merge `values` (most specific first) by strategy `merge`: (result, indices that contributed);
    (MISSING, ()) when none fits. ValueError for an unknown strategy."""
    if merge == "first":
        return (values[0], (0,)) if values else (MISSING, ())
    if merge == "unique":
        lists = [v if isinstance(v, list) else [v] for v in values if not isinstance(v, Mapping)]
        used = tuple(i for i, v in enumerate(values) if not isinstance(v, Mapping))
        return (_unique(lists), used) if used else (MISSING, ())
    if merge in ("hash", "deep"):
        used = tuple(i for i, v in enumerate(values) if isinstance(v, Mapping))
        if not used:
            return MISSING, ()
        result: dict[str, Any] = {}
        for i in reversed(used):  # least specific first: the more specific level writes last
            result = {**result, **values[i]} if merge == "hash" else _deep(values[i], result)
        return result, used
    raise ValueError(f"unknown merge strategy {merge!r}; use one of {', '.join(MERGES)}")


@dataclass(eq=False)
class LookupData:
    """A hierarchy and the data files of its levels (one loaded version), with the answer cache."""

    hierarchy: Hierarchy = field(default_factory=Hierarchy)
    files: Mapping[str, DataFile] = field(default_factory=dict)
    #: content hash of the hierarchy and data files (equal digests: equal answers)
    digest: str = ""
    _answers: dict[tuple[tuple[str, ...], str, str], Answer] = field(default_factory=dict, repr=False)
    #: the same answers by the values of the fields the levels read (no paths built per event)
    _by_values: dict[tuple[tuple[Any, ...], str, str], Answer] = field(default_factory=dict, repr=False)

    def lookup(self, key: str, event: Mapping[str, Any], event_type: str, merge: str = "first") -> Answer:
        """The answer for `key` about `event` (ValueError for an unknown strategy)."""
        hierarchy = self.hierarchy
        values = hierarchy.values(event, event_type)
        cache_key = (values, key, merge)
        try:
            answer = self._by_values.get(cache_key)
        except TypeError:  # a field value that cannot be a dict key (a `data.*` list): no shortcut
            return self.resolve(key, hierarchy.paths_of(values), merge)
        if answer is None:
            answer = self.resolve(key, hierarchy.paths_of(values), merge)
            if len(self._by_values) >= CACHE_SIZE:
                self._by_values.clear()
            self._by_values[cache_key] = answer
        return answer

    def resolve(self, key: str, paths: tuple[str, ...], merge: str = "first") -> Answer:
        """The answer for `key` along the levels `paths` (most specific first); cached."""
        cache_key = (paths, key, merge)
        answer = self._answers.get(cache_key)
        if answer is None:
            answer = self._compute(key, paths, merge)
            if len(self._answers) >= CACHE_SIZE:
                self._answers.clear()
            self._answers[cache_key] = answer
        return answer

    def _compute(self, key: str, paths: tuple[str, ...], merge: str) -> Answer:
        parts = split_key(key)
        found: list[tuple[Any, Source]] = []
        if parts is not None:
            for path in paths:
                data = self.files.get(path)
                if data is None:
                    continue
                value, line = data.get(parts)
                if value is not MISSING:
                    found.append((value, Source(path, data.file, line)))
                    if merge == "first":
                        break
        value, used = merge_values(merge, [v for v, _ in found])
        return Answer(key, merge, value, tuple(found[i][1] for i in used), paths)

    def defines(self, key: str) -> bool:
        """Whether some data file has `key` (at any level)."""
        parts = split_key(key)
        return parts is not None and any(f.get(parts)[0] is not MISSING for f in self.files.values())

    @property
    def cached(self) -> int:
        """How many answers are cached now."""
        return len(self._answers)
