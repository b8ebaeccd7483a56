from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.lookups.loader import LookupLoader, load_lookups
from app.rules.fields import EVENT_TYPE
from app.rules.loader import RuleSetLoader, rule_files

from .conftest import write

DB1 = {"subject": "db1", "tags": {"role": "db"}}


def _touch_later(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_no_hierarchy_and_no_data__every_lookup_finds_nothing(tmp_path: Path) -> None:
    data, errors = load_lookups(tmp_path)
    assert errors == [] and not data.lookup("k", DB1, EVENT_TYPE).found


def test_reload__a_changed_data_file_answers_and_the_cache_starts_empty(rules_dir: Path) -> None:
    loader = LookupLoader(rules_dir)
    assert loader.reload() is True
    before = loader.data
    assert before.lookup("thresholds.load", DB1, EVENT_TYPE).value == 4
    assert loader.reload() is False and loader.data is before  # nothing changed: same data, cache kept
    path = write(rules_dir, "data/role/db.yaml", "thresholds: {load: 6}\n")
    _touch_later(path)
    assert loader.reload() is True
    assert loader.data is not before and loader.data.cached == 0
    assert loader.data.lookup("thresholds.load", DB1, EVENT_TYPE).value == 6


def test_reload__a_broken_file_keeps_its_last_good_version_and_is_reported(rules_dir: Path) -> None:
    loader = LookupLoader(rules_dir)
    loader.reload()
    path = write(rules_dir, "data/role/db.yaml", "thresholds: {load: [6\n")
    _touch_later(path)
    loader.reload()
    assert [f"{e.file}:{e.line}" for e in loader.errors] == [f"{path}:2"]
    assert loader.data.lookup("thresholds.load", DB1, EVENT_TYPE).value == 4
    hierarchy = write(rules_dir, "hierarchy.yaml", 'levels: ["host/{{ subjct }}"]\n')
    _touch_later(hierarchy)
    loader.reload()
    assert [f"{e.file}:{e.line}" for e in loader.errors] == [f"{path}:2", f"{hierarchy}:1"]
    assert "unknown field `subjct`" in loader.errors[1].message
    assert loader.data.lookup("thresholds.load", DB1, EVENT_TYPE).value == 4  # the last good hierarchy


def test_reload__a_deleted_file_no_longer_answers(rules_dir: Path) -> None:
    loader = LookupLoader(rules_dir)
    loader.reload()
    (rules_dir / "data/role/db.yaml").unlink()
    assert loader.reload() is True
    assert loader.data.lookup("thresholds.load", DB1, EVENT_TYPE).value == 10


@pytest.mark.parametrize(("relative", "text", "expected"), [
    ("data/role/db.yaml", "- a\n- b\n", "data/role/db.yaml:1: a data file must be a mapping"),
    ("data/common.yaml", "a: [1\n", "data/common.yaml:2: not valid YAML"),
    ("data/x.json", '{"a": 1,}', "data/x.json:1: not valid JSON"),
    ("data/y.yaml", "when: 2024-01-01\n", "data/y.yaml:1: when: datetime.date(2024, 1, 1) (date) is not a JSON value"),
    ("data/z.yaml", "a.b: 1\n", "data/z.yaml:1: data: key `a.b` has a dot"),
    ("data/role/web.json", "[1]", "data/role/web.json:1: a data file must be a mapping"),
])
def test_invalid_data_file__reported_with_its_line(rules_dir: Path, relative: str, text: str, expected: str) -> None:
    write(rules_dir, relative, text)
    _, errors = load_lookups(rules_dir)
    assert any(str(e).startswith(str(rules_dir / expected.split(":")[0]) + ":" + expected.split(":", 1)[1])
               for e in errors), errors


def test_yaml_and_json_for_one_level_path__is_an_error(rules_dir: Path) -> None:
    write(rules_dir, "data/role/db.json", '{"thresholds": {"load": 1}}')
    _, errors = load_lookups(rules_dir)
    assert [str(e).split(": ", 1)[1] for e in errors] == [
        f"data for level path `role/db` is also in {rules_dir / 'data/role/db.json'}; keep one file per level path"]


def test_data_without_hierarchy__is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "data/common.yaml", "a: 1\n")
    _, errors = load_lookups(tmp_path)
    assert "no hierarchy.yaml" in errors[0].message


def test_rule_files__skip_the_hierarchy_and_data(rules_dir: Path) -> None:
    write(rules_dir, "load.yaml", "rules: []\n")
    write(rules_dir, "more/data/x.yaml", "rules: []\n")  # only the top-level data folder holds data
    assert [p.relative_to(rules_dir).as_posix() for p in rule_files(rules_dir)] == ["load.yaml", "more/data/x.yaml"]
    result = RuleSetLoader(rules_dir).reload()
    assert result.errors == []


def test_rule_set_loader__reports_lookup_errors_with_rule_errors(rules_dir: Path) -> None:
    write(rules_dir, "data/common.yaml", "- 1\n")
    write(rules_dir, "bad.yaml", "rules: 1\n")
    loader = RuleSetLoader(rules_dir)
    files = sorted(Path(e.file).name for e in loader.reload().errors)
    assert files == ["bad.yaml", "common.yaml"]
