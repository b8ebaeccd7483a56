"""The current status of every identity, in memory, for the board (pure: no Kafka, no HTTP).

Fed by the compacted `status` topic (app.web.ingest): each record replaces its identity's row, a
tombstone removes it. Every change gets the revision the live stream gave it (`rev`), so a client
holding rows from a page and from the stream keeps the newer one.

Kept in order as they change, so a page never needs a pass over every identity:
- all identities in key order (subject, then name), and per state;
- all identities by `since` and by `last_seen`;
- who has which name, and which value of each tag key;
- counts per state, and of flapping identities;
- for the last few filters a gate asked about (`tally`): their rows per state and their `since`s
  in order, kept as changes are applied, so judging a gate is not a pass over the rows it selects.
A query takes its candidates from the narrowest of these (a subject glob's literal prefix, a name,
a tag value, a state), checks the rest of the filter on those only, and pages the result; the
board's own query (every identity, worst state first) is index arithmetic. At 50,000 identities a
filtered page takes a few milliseconds; the grouped board (one pass per change of the index) is
cached per revision while a client pages through it.

A status row is the vigil.Status record as the workers published it: `state`, `since` and
`flapping` are exact; `last_seen`, `event_count` and `text` are as of the last published change
(the workers publish on a change of state or flapping, not on every event).
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Final

from sortedcontainers import SortedList

from app.globs import glob_matcher, is_glob
from app.model.events import State
from app.pipeline.query import literal_prefix

__all__ = ["SORTS", "STATES", "STATES_WORST_FIRST", "GroupLine", "Row", "StatusFilter", "StatusIndex", "StatusPage",
           "StatusTally", "group_key_of"]

STATES: Final = tuple(s.value for s in State)
#: Worst first: what needs a person's attention comes first when sorting by state.
STATES_WORST_FIRST: Final = ("CRITICAL", "EXPIRED", "UNKNOWN", "WARNING", "OK")
_RANK: Final = {state: rank for rank, state in enumerate(STATES_WORST_FIRST)}
#: Sort orders of a status page (a leading '-' reverses: `-since` is the most recent change first).
SORTS: Final = ("subject", "name", "state", "since", "last_seen")
_CACHED_QUERIES: Final = 8
#: Filters whose tallies are kept up to date (each costs one match per change applied).
_TALLIED_FILTERS: Final = 32
Identity = tuple[str, str]


@dataclass(slots=True, eq=False)
class Row:
    """One identity's published status and the revision of its last change (the fields queries use
    read out of the record once)."""

    subject: str
    name: str
    record: dict[str, Any]
    rev: int
    state: str = ""
    rank: int = 0
    since: int = 0
    last_seen: int = 0
    flapping: bool = False
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.record
        self.state = str(r.get("state") or "UNKNOWN")
        self.rank = _RANK.get(self.state, len(_RANK))
        self.since = int(r.get("since") or 0)
        self.last_seen = int(r.get("last_seen") or 0)
        self.flapping = bool(r.get("flapping"))
        tags = r.get("tags")
        self.tags = tags if isinstance(tags, dict) else {}

    @property
    def key(self) -> Identity:
        return self.subject, self.name

    def to_json(self) -> dict[str, Any]:
        """The status record plus `rev`."""
        return {**self.record, "rev": self.rev}


@dataclass(frozen=True)
class StatusFilter:
    """Which identities a query wants (globs are shell-style, case-sensitive)."""

    subject: str = "*"
    name: str = "*"
    states: frozenset[str] = frozenset()
    #: tag key -> glob its value must match (the tag must be present)
    tags: Mapping[str, str] = field(default_factory=dict)
    flapping: bool | None = None

    @property
    def only_states(self) -> bool:
        """Nothing but (maybe) states: answered from the per-state indexes alone."""
        return self.subject == "*" and self.name == "*" and not self.tags and self.flapping is None

    def cache_key(self) -> tuple[Any, ...]:
        return self.subject, self.name, tuple(sorted(self.states)), tuple(sorted(self.tags.items())), self.flapping

    def matcher(self, *, with_state: bool = True) -> Callable[[Row], bool]:
        """One predicate for the whole filter (`with_state=False`: everything but the states, which is
        what the per-state counts are over)."""
        checks: list[Callable[[Row], bool]] = []
        if self.subject != "*":
            match_subject = glob_matcher(self.subject)
            checks.append(lambda r: bool(match_subject(r.subject)))
        if self.name != "*":
            match_name = glob_matcher(self.name)
            checks.append(lambda r: bool(match_name(r.name)))
        for key, pattern in self.tags.items():
            checks.append(_tag_check(key, pattern))
        if self.flapping is not None:
            wanted = self.flapping
            checks.append(lambda r: r.flapping == wanted)
        if with_state and self.states:
            states = self.states
            checks.append(lambda r: r.state in states)
        if not checks:
            return lambda r: True
        if len(checks) == 1:
            return checks[0]
        return lambda r: all(check(r) for check in checks)


def _tag_check(key: str, pattern: str) -> Callable[[Row], bool]:
    matches = glob_matcher(pattern)

    def check(row: Row) -> bool:
        value = row.tags.get(key)
        return value is not None and bool(matches(value))

    return check


@dataclass
class StatusPage:
    """One page of a filtered, sorted status query."""

    total: int
    offset: int
    limit: int
    rows: list[Row]
    #: matches per state, ignoring the state filter (what a state chip would show)
    counts: dict[str, int]
    flapping: int
    revision: int

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "offset": self.offset, "limit": self.limit, "counts": self.counts,
                "flapping": self.flapping, "revision": self.revision, "items": [r.to_json() for r in self.rows]}


@dataclass
class GroupLine:
    """A line of the grouped board: a group's header, or up to `per_line` of its identities."""

    group: str
    header: bool
    rows: list[Row] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        if self.header:
            worst = next((s for s in STATES_WORST_FIRST if self.counts.get(s)), "OK")
            return {"kind": "group", "group": self.group, "size": self.size, "counts": self.counts, "worst": worst}
        return {"kind": "items", "group": self.group, "items": [r.to_json() for r in self.rows]}


@dataclass(frozen=True)
class StatusTally:
    """Of the identities a filter selects: how many, the latest `since`, and the rows picked by state."""

    count: int
    latest_since: int | None
    rows: list[Row]


class _Tally:
    """One filter's rows per state and their `since`s in order, updated as rows come and go."""

    def __init__(self, match: Callable[[Row], bool], rows: Iterable[Row]) -> None:
        self.match = match
        self.by_state: dict[str, dict[Identity, Row]] = {}
        self.sinces: SortedList = SortedList()
        for row in rows:
            self.add(row)

    def add(self, row: Row) -> None:
        self.by_state.setdefault(row.state, {})[row.key] = row
        self.sinces.add(row.since)

    def remove(self, row: Row) -> None:
        rows = self.by_state.get(row.state)
        if rows is not None and rows.pop(row.key, None) is not None:
            self.sinces.remove(row.since)


def group_key_of(group_by: str) -> Callable[[Row], str]:
    """The group of a row: `subject`, `name` or `tag:KEY` (rows without the tag: "")."""
    if group_by == "subject":
        return lambda r: r.subject
    if group_by == "name":
        return lambda r: r.name
    if group_by.startswith("tag:") and len(group_by) > 4:
        key = group_by[4:]
        return lambda r: str(r.tags.get(key, ""))
    raise ValueError(f"{group_by!r}: group by subject, name or tag:KEY")


def _sort_key(sort: str) -> Callable[[Row], Any]:
    field_name = sort.lstrip("-")
    if field_name == "subject":
        return lambda r: (r.subject, r.name)
    if field_name == "name":
        return lambda r: (r.name, r.subject)
    if field_name == "state":
        return lambda r: (r.rank, r.subject, r.name)
    if field_name == "since":
        return lambda r: (r.since, r.subject, r.name)
    if field_name == "last_seen":
        return lambda r: (r.last_seen, r.subject, r.name)
    raise ValueError(f"{sort!r}: sort by {', '.join(SORTS)} (a leading - reverses)")


class StatusIndex:
    """Rows by identity and the indexes of the module docstring. Not thread-safe: one owner (the
    server's event loop) applies changes and answers queries."""

    def __init__(self) -> None:
        self._rows: dict[Identity, Row] = {}
        self._order: SortedList = SortedList()
        self._by_state: dict[str, SortedList] = {s: SortedList() for s in STATES_WORST_FIRST}
        self._by_since: SortedList = SortedList()
        self._by_seen: SortedList = SortedList()
        self._by_name: dict[str, set[Identity]] = {}
        self._by_tag: dict[str, dict[str, set[Identity]]] = {}
        self._counts: dict[str, int] = dict.fromkeys(STATES, 0)
        self._flapping = 0
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._tallies: OrderedDict[tuple[Any, ...], _Tally] = OrderedDict()
        #: the revision of the last change applied (0: none yet)
        self.revision = 0
        self._version = 0

    def __len__(self) -> int:
        return len(self._rows)

    # -- changes --------------------------------------------------------------------------------------
    def apply(self, subject: str, name: str, record: dict[str, Any] | None, rev: int) -> Row | None:
        """Store an identity's new status (None: it was deleted). Returns the row, or None when deleted."""
        key = (subject, name)
        self.revision = max(self.revision, rev)
        self._version += 1
        old = self._rows.pop(key, None)
        if old is not None:
            self._unindex(old)
        if record is None:
            return None
        row = self._rows[key] = Row(subject, name, record, rev)
        self._index(row)
        return row

    def _index(self, row: Row) -> None:
        key = row.key
        self._order.add(key)
        self._by_state.setdefault(row.state, SortedList()).add(key)
        self._by_since.add((row.since, key))
        self._by_seen.add((row.last_seen, key))
        self._by_name.setdefault(row.name, set()).add(key)
        for tag, value in row.tags.items():
            self._by_tag.setdefault(tag, {}).setdefault(str(value), set()).add(key)
        self._counts[row.state] = self._counts.get(row.state, 0) + 1
        self._flapping += row.flapping
        for tally in self._tallies.values():
            if tally.match(row):
                tally.add(row)

    def _unindex(self, row: Row) -> None:
        key = row.key
        self._order.remove(key)
        self._by_state[row.state].remove(key)
        self._by_since.remove((row.since, key))
        self._by_seen.remove((row.last_seen, key))
        _discard(self._by_name, row.name, key)
        for tag, value in row.tags.items():
            values = self._by_tag.get(tag)
            if values is not None:
                _discard(values, str(value), key)
                if not values:
                    del self._by_tag[tag]
        self._counts[row.state] -= 1
        self._flapping -= row.flapping
        for tally in self._tallies.values():
            tally.remove(row)

    def get(self, subject: str, name: str) -> Row | None:
        """One identity's row."""
        return self._rows.get((subject, name))

    # -- candidates -----------------------------------------------------------------------------------
    def _subject_keys(self, subject_glob: str) -> tuple[int, Iterable[Identity]]:
        """(how many, the keys in key order) under the subject glob's literal prefix."""
        prefix = literal_prefix(subject_glob)
        if not prefix:
            return len(self._order), self._order
        if not is_glob(subject_glob):
            low, high = (prefix, ""), (prefix, "\U0010ffff")
        else:
            low, high = (prefix, ""), (prefix + "\U0010ffff", "")
        start, stop = self._order.bisect_left(low), self._order.bisect_left(high)
        return stop - start, self._order.islice(start, stop)

    def _set_keys(self, index: dict[str, set[Identity]], pattern: str) -> set[Identity]:
        """The identities under every value of `index` matching the glob."""
        if not is_glob(pattern):
            return index.get(pattern, set())
        matches = glob_matcher(pattern)
        found: set[Identity] = set()
        for value, keys in index.items():
            if matches(value):
                found |= keys
        return found

    def _candidates(self, flt: StatusFilter) -> Iterable[Row]:
        """Rows that may match: from the narrowest index (the rest of the filter is checked after)."""
        size, keys = self._subject_keys(flt.subject)
        options: list[tuple[int, Iterable[Identity]]] = [(size, keys)]
        if flt.name != "*":
            by_name = self._set_keys(self._by_name, flt.name)
            options.append((len(by_name), by_name))
        for tag, pattern in flt.tags.items():
            by_tag = self._set_keys(self._by_tag.get(tag, {}), pattern)
            options.append((len(by_tag), by_tag))
        if flt.states and len(flt.states) == 1:
            by_state = self._by_state.get(next(iter(flt.states)), SortedList())
            options.append((len(by_state), by_state))
        _, narrowest = min(options, key=lambda o: o[0])
        rows = self._rows
        return (rows[k] for k in narrowest)

    def matching(self, flt: StatusFilter, *, with_state: bool = True) -> Iterator[Row]:
        """Rows matching the filter (in key order when taken from the key order, else in none)."""
        match = flt.matcher(with_state=with_state)
        return (r for r in self._candidates(flt) if match(r))

    # -- queries --------------------------------------------------------------------------------------
    def tally(self, flt: StatusFilter, states: frozenset[str], *, inside: bool) -> StatusTally:
        """How many identities the filter selects (its own states ignored), their latest `since`, and
        those whose state is (`inside`) or is not in `states`. The first call for a filter is a pass over
        its candidates; the filter's tally is then kept as changes are applied (for the last
        _TALLIED_FILTERS filters asked about), so later calls cost the rows picked only."""
        key = StatusFilter(flt.subject, flt.name, frozenset(), flt.tags, flt.flapping).cache_key()
        tally = self._tallies.get(key)
        if tally is None:
            match = flt.matcher(with_state=False)
            tally = self._tallies[key] = _Tally(match, self.matching(flt, with_state=False))
            while len(self._tallies) > _TALLIED_FILTERS:
                self._tallies.popitem(last=False)
        else:
            self._tallies.move_to_end(key)
        picked = [row for state, rows in tally.by_state.items() if (state in states) == inside
                  for row in rows.values()]
        count = sum(len(rows) for rows in tally.by_state.values())
        return StatusTally(count, tally.sinces[-1] if tally.sinces else None, picked)

    def query(self, flt: StatusFilter, *, sort: str = "subject", offset: int = 0, limit: int = 100) -> StatusPage:
        """One page of matching rows in `sort` order, the total, and the counts per state."""
        key = _sort_key(sort)  # ValueError for an unknown order, before any work
        if flt.only_states and sort.lstrip("-") != "name":
            return self._query_by_states(flt.states, sort, offset, limit)
        found, counts, flapping = self._cached(("query", flt.cache_key(), sort), lambda: self._scan(flt, key, sort))
        return StatusPage(len(found), offset, limit, found[offset:offset + limit], dict(counts), flapping,
                          self.revision)

    def _scan(self, flt: StatusFilter, key: Callable[[Row], Any], sort: str) -> tuple[list[Row], dict[str, int], int]:
        counts = dict.fromkeys(STATES, 0)
        flapping = 0
        states = flt.states
        found: list[Row] = []
        # the state filter is left to the loop: the counts are over every state
        unstated = StatusFilter(flt.subject, flt.name, frozenset(), flt.tags, flt.flapping)
        for row in self.matching(unstated, with_state=False):
            counts[row.state] = counts.get(row.state, 0) + 1
            flapping += row.flapping
            if not states or row.state in states:
                found.append(row)
        found.sort(key=key, reverse=sort.startswith("-"))
        return found, counts, flapping

    def _query_by_states(self, states: frozenset[str], sort: str, offset: int, limit: int) -> StatusPage:
        """Every identity (or those in some states) from the indexes alone: no pass over them."""
        chosen = [s for s in STATES_WORST_FIRST if not states or s in states]
        total = sum(self._counts.get(s, 0) for s in chosen)
        field_name, reverse = sort.lstrip("-"), sort.startswith("-")
        keys: Iterable[Identity]
        if field_name == "state":
            lists = [self._by_state[s] for s in (reversed(chosen) if reverse else chosen)]
            keys = _slice_lists(lists, offset, limit, reverse=reverse)
        elif field_name == "subject" and not states:
            keys = _page_of(self._order, offset, limit, reverse=reverse)
        elif field_name == "subject":
            lists = [reversed(self._by_state[s]) if reverse else self._by_state[s] for s in chosen]
            keys = islice(heapq.merge(*lists, reverse=reverse), offset, offset + limit)
        else:
            ordered = self._by_since if field_name == "since" else self._by_seen
            if not states:
                pairs: Iterable[tuple[int, Identity]] = _page_of(ordered, offset, limit, reverse=reverse)
            else:
                by_key = self._rows
                pairs = islice((p for p in (reversed(ordered) if reverse else ordered)
                                if by_key[p[1]].state in states), offset, offset + limit)
            keys = (p[1] for p in pairs)
        rows = [self._rows[k] for k in keys]
        return StatusPage(total, offset, limit, rows, dict(self._counts), self._flapping, self.revision)

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """A result for this index version (paging through one query reuses it)."""
        full = (*key, self._version)
        hit = self._cache.get(full)
        if hit is None:
            hit = self._cache[full] = compute()
            while len(self._cache) > _CACHED_QUERIES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(full)
        return hit

    def group_lines(self, flt: StatusFilter, *, group_by: str, per_line: int, sort: str = "subject",
                    group_order: str = "group", offset: int = 0, limit: int | None = None
                    ) -> tuple[list[GroupLine], int, int]:
        """Lines offset..offset+limit of the grouped board (each group: a header line, then its rows
        `per_line` at a time), the number of lines and of groups. Groups in name order, or worst first
        (`group_order="worst"`). One pass groups the rows; only the lines asked for are made."""
        group_of = group_key_of(group_by)
        key = _sort_key(sort)
        groups, starts = self._cached(("groups", flt.cache_key(), group_by, per_line, group_order),
                                      lambda: self._groups(flt, group_of, per_line, group_order))
        total = starts[-1] if starts else 0
        stop = total if limit is None else min(total, offset + limit)
        lines: list[GroupLine] = []
        g = max(0, bisect_right(starts, offset) - 1)
        reverse = sort.startswith("-")
        while g < len(groups) and starts[g] < stop:
            name, rows, counts = groups[g]
            ordered = sorted(rows, key=key, reverse=reverse)
            for line in range(max(offset, starts[g]) - starts[g], min(stop, starts[g + 1]) - starts[g]):
                if line == 0:
                    lines.append(GroupLine(name, True, counts=counts, size=len(rows)))
                else:
                    lines.append(GroupLine(name, False, rows=ordered[(line - 1) * per_line:line * per_line]))
            g += 1
        return lines, total, len(groups)

    def _groups(self, flt: StatusFilter, group_of: Callable[[Row], str], per_line: int,
                group_order: str) -> tuple[list[tuple[str, list[Row], dict[str, int]]], list[int]]:
        """The groups in order (name, rows, counts per state) and where each starts in lines (and, last,
        the number of lines)."""
        members: dict[str, list[Row]] = {}
        worst: dict[str, int] = {}
        for row in self.matching(flt):
            group = group_of(row)
            found = members.get(group)
            if found is None:
                members[group] = [row]
                worst[group] = row.rank
            else:
                found.append(row)
                if row.rank < worst[group]:
                    worst[group] = row.rank
        names = sorted(members, key=(lambda n: (worst[n], n)) if group_order == "worst" else None)
        groups = []
        starts = [0]
        for name in names:
            rows = members[name]
            counts: dict[str, int] = {}
            for row in rows:
                counts[row.state] = counts.get(row.state, 0) + 1
            groups.append((name, rows, counts))
            starts.append(starts[-1] + 1 + -(-len(rows) // per_line))
        return groups, starts


def _discard(index: dict[str, set[Identity]], value: str, key: Identity) -> None:
    keys = index.get(value)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[value]


def _page_of(items: SortedList, offset: int, limit: int, *, reverse: bool) -> Iterator[Any]:
    """Items offset..offset+limit of a sorted list, ascending, or descending (from its end) when
    `reverse`."""
    if not reverse:
        return items.islice(offset, offset + limit)
    stop = max(0, len(items) - offset)
    return items.islice(max(0, stop - limit), stop, reverse=True)


def _slice_lists(lists: list[SortedList], offset: int, limit: int, *, reverse: bool) -> Iterator[Identity]:
    """Items offset..offset+limit of the lists one after the other (each read from its end when
    `reverse`)."""
    remaining = limit
    for items in lists:
        if remaining <= 0:
            return
        if offset >= len(items):
            offset -= len(items)
            continue
        taken = list(_page_of(items, offset, remaining, reverse=reverse))
        yield from taken
        remaining -= len(taken)
        offset = 0
