from __future__ import annotations

import pytest

from app.lookups.hierarchy import parse_hierarchy_text
from app.rules.fields import EVENT_TYPE

from .conftest import HIERARCHY


def _paths(event: dict) -> tuple[str, ...]:
    hierarchy, errors = parse_hierarchy_text(HIERARCHY, "hierarchy.yaml")
    assert errors == [] and hierarchy is not None
    return hierarchy.paths(event, EVENT_TYPE)


def test_levels__templated_from_subject_and_tags_most_specific_first() -> None:
    event = {"subject": "db1", "tags": {"role": "db", "dc": "fra"}}
    assert _paths(event) == ("host/db1", "role/db", "dc/fra", "common")


@pytest.mark.parametrize("tags", [{}, {"role": ""}, {"role": None}])
def test_level_whose_field_is_missing_or_empty__is_skipped(tags: dict) -> None:
    assert _paths({"subject": "db1", "tags": tags}) == ("host/db1", "common")


def test_level_names__default_to_the_template() -> None:
    hierarchy, _ = parse_hierarchy_text(HIERARCHY, "hierarchy.yaml")
    assert hierarchy is not None
    assert [level.name for level in hierarchy.levels] == ["host/{{ subject }}", "role", "dc/{{ tags.dc }}", "common"]
    assert [level.line for level in hierarchy.levels] == [2, 4, 5, 6]


def test_several_fields_in_one_level() -> None:
    hierarchy, errors = parse_hierarchy_text("levels: ['{{ tags.env }}/{{ tags.role }}-x']", "h.yaml")
    assert errors == [] and hierarchy is not None
    assert hierarchy.paths({"tags": {"env": "prod", "role": "db"}}, EVENT_TYPE) == ("prod/db-x",)


@pytest.mark.parametrize(("text", "expected"), [
    ("levels:\n  - host/{{ subjct }}\n", "h.yaml:2: level 'host/{{ subjct }}': unknown field `subjct` (did you mean "
                                         "`subject`?)"),
    ("levels:\n  - {path: common, nme: x}\n", "h.yaml:2: level 1: unknown key `nme` (did you mean `name`?)"),
    ("levels: [common]\nextra: 1\n", "h.yaml:2: hierarchy: unknown key `extra`"),
    ("levels: [common, common]\n", "h.yaml:1: level 'common' is listed twice"),
    ("levels: []\n", "h.yaml:1: `levels:` must be a non-empty list"),
    ("levels:\n  - ../secrets\n", "h.yaml:2: level '../secrets': a path is words"),
    ("levels:\n  - 'x/{{ tags.a | upper }}'\n",
     "h.yaml:2: level 'x/{{ tags.a | upper }}': a placeholder holds one field key"),
    ("levels:\n  - [1, 2\n", "h.yaml:3: not valid YAML"),
    ("- common\n", "h.yaml:1: expected a top-level mapping with a `levels:` list"),
])
def test_invalid_hierarchy__reported_with_its_line(text: str, expected: str) -> None:
    hierarchy, errors = parse_hierarchy_text(text, "h.yaml")
    assert hierarchy is None
    assert any(str(e).startswith(expected) for e in errors), errors
