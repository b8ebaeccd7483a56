from __future__ import annotations

from pathlib import Path

import pytest

from app.lookups.loader import load_lookups
from app.lookups.resolve import CACHE_SIZE, LookupData, merge_values
from app.rules.fields import EVENT_TYPE, MISSING

DB1 = {"subject": "db1", "tags": {"role": "db", "dc": "fra"}}
WEB1 = {"subject": "web1", "tags": {"role": "web"}}


@pytest.fixture
def data(rules_dir: Path) -> LookupData:
    loaded, errors = load_lookups(rules_dir)
    assert errors == []
    return loaded


def test_first__the_most_specific_level_that_has_the_key_answers(data: LookupData, rules_dir: Path) -> None:
    answer = data.lookup("thresholds.load", DB1, EVENT_TYPE)
    assert answer.value == 4
    assert [(s.path, s.file, s.line) for s in answer.sources] == [("role/db", str(rules_dir / "data/role/db.yaml"), 2)]
    assert answer.paths == ("host/db1", "role/db", "dc/fra", "common")
    assert data.lookup("thresholds.load", WEB1, EVENT_TYPE).value == 20  # host/web1.json
    assert data.lookup("thresholds.disk", DB1, EVENT_TYPE).value == 80  # dc/fra
    assert data.lookup("thresholds.disk", WEB1, EVENT_TYPE).value == 90  # common


def test_dotted_key__digs_into_mappings_and_finds_nothing_past_a_scalar(data: LookupData) -> None:
    assert data.lookup("thresholds", WEB1, EVENT_TYPE).value == {"load": 20}
    assert data.lookup("thresholds.load.more", DB1, EVENT_TYPE).value is MISSING
    assert not data.lookup("no.such.key", DB1, EVENT_TYPE).found
    assert not data.lookup("", DB1, EVENT_TYPE).found
    assert not data.lookup("a..b", DB1, EVENT_TYPE).found


def test_unique__arrays_of_every_level_most_specific_first_without_duplicates(data: LookupData) -> None:
    answer = data.lookup("admins", DB1, EVENT_TYPE, "unique")
    assert answer.value == ["dba@example.org", "ops@example.org", "fra-oncall@example.org"]
    assert [s.path for s in answer.sources] == ["role/db", "dc/fra", "common"]


def test_hash__shallow_the_more_specific_level_wins(data: LookupData) -> None:
    assert data.lookup("owner", DB1, EVENT_TYPE, "hash").value == {"team": "dba", "pager": "ops-pager"}
    # shallow: role/db's `thresholds` replaces common's whole mapping
    assert data.lookup("thresholds", {"subject": "db9", "tags": {"role": "db"}}, EVENT_TYPE, "hash").value == \
        {"load": 4, "disk": 90}


def test_deep__merges_nested_mappings(data: LookupData) -> None:
    answer = data.lookup("thresholds", DB1, EVENT_TYPE, "deep")
    assert answer.value == {"load": 4, "disk": 80}
    assert [s.path for s in answer.sources] == ["role/db", "dc/fra", "common"]


@pytest.mark.parametrize(("merge", "values", "expected", "used"), [
    ("first", [1, 2], 1, (0,)),
    ("first", [], MISSING, ()),
    ("unique", [[1, 2], 2, [3, 1]], [1, 2, 3], (0, 1, 2)),
    ("unique", [[True], [1]], [True, 1], (0, 1)),
    ("unique", [{"a": 1}, [1]], [1], (1,)),
    ("hash", [{"a": 1}, 5, {"a": 2, "b": 3}], {"a": 1, "b": 3}, (0, 2)),
    ("hash", [5], MISSING, ()),
    ("deep", [{"a": {"x": 1}, "l": [1]}, {"a": {"y": 2}, "l": [2, 1]}], {"a": {"x": 1, "y": 2}, "l": [1, 2]}, (0, 1)),
    ("deep", [{"a": 1}, {"a": {"y": 2}}], {"a": 1}, (0, 1)),
])
def test_merge_values(merge: str, values: list, expected: object, used: tuple[int, ...]) -> None:
    assert merge_values(merge, values) == (expected, used)


def test_unknown_merge__is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown merge strategy 'mix'"):
        merge_values("mix", [1])


def test_answers__cached_per_level_path_tuple(data: LookupData) -> None:
    first = data.lookup("thresholds.load", DB1, EVENT_TYPE)
    # another host of the same role and dc maps to other paths (its host level): its own entry
    other = data.lookup("thresholds.load", {"subject": "db2", "tags": {"role": "db", "dc": "fra"}}, EVENT_TYPE)
    assert data.lookup("thresholds.load", dict(DB1), EVENT_TYPE) is first
    assert other is not first and other.value == first.value
    assert data.cached == 2


def test_cache__starts_afresh_when_full() -> None:
    data = LookupData()
    for i in range(CACHE_SIZE + 1):
        data.resolve("k", (f"host/{i}",))
    assert data.cached == 1
