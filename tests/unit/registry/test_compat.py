"""Compatibility levels over the avro checker: the matrix, transitive forms, reasons, validation."""

from __future__ import annotations

import json

import pytest

from app.registry.compat import (
    COMPATIBILITY_LEVELS,
    InvalidLevel,
    InvalidSchema,
    check,
    normalize_level,
    parse_schema,
)

from .compat_cases import BASE, CASES, HOST, TRANSITIVE_CASES, CompatCase, record


@pytest.mark.parametrize("level", COMPATIBILITY_LEVELS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matrix__each_change_under_each_level(case: CompatCase, level: str) -> None:
    ok, messages = check(case.new, [case.old], level)
    assert ok is case.expected(level), messages
    if not ok:
        assert messages and all(m.startswith(f"{level}: ") for m in messages)
        if case.fields:
            assert any(f"'{name}'" in m for m in messages for name in case.fields), messages
    else:
        assert messages == []


@pytest.mark.parametrize("case", TRANSITIVE_CASES, ids=lambda c: c.name)
def test_transitive__checks_every_version_not_only_the_latest(case) -> None:
    ok, _ = check(case.new, list(case.history), case.level)
    assert ok
    ok, messages = check(case.new, list(case.history), f"{case.level}_TRANSITIVE",
                         labels=["version 1", "version 2"])
    assert not ok
    assert any("version 1" in m and f"'{case.field}'" in m for m in messages), messages
    assert not any("version 2" in m for m in messages), messages


def test_reasons__say_direction_version_and_field() -> None:
    ok, messages = check(record(HOST, {"name": "value", "type": "string"}), [BASE], "FULL", labels=["version 3"])
    assert not ok
    assert "the new schema cannot read data written with version 3" in messages[0]
    assert "version 3 cannot read data written with the new schema" in messages[1]
    assert all("field 'value'" in m and "string" in m and "int" in m for m in messages)


def test_missing_default__reason_suggests_a_default() -> None:
    _, messages = check(record(HOST, VALUE_UNIT := {"name": "unit", "type": "string"}), [record(HOST)], "BACKWARD")
    assert messages == ["BACKWARD: the new schema cannot read data written with schema #1: field 'unit' has no "
                        "default value in the reader and is missing in the writer (give it a default)"]
    assert VALUE_UNIT["name"] == "unit"


def test_several_problems__all_are_reported() -> None:
    new = record({"name": "a", "type": "string"}, {"name": "b", "type": "string"})
    ok, messages = check(new, [record(HOST)], "BACKWARD")
    assert not ok
    text = " ".join(messages)
    assert "'a'" in text and "'b'" in text


def test_no_existing_versions__always_compatible() -> None:
    assert check(BASE, [], "FULL_TRANSITIVE") == (True, [])


@pytest.mark.parametrize("raw", ["backward", " Full_Transitive ", "NONE"])
def test_normalize_level__accepts_any_case(raw: str) -> None:
    assert normalize_level(raw) == raw.strip().upper()


@pytest.mark.parametrize("raw", ["SIDEWAYS", "", None, 3])
def test_normalize_level__rejects_unknown_with_the_valid_list(raw: object) -> None:
    with pytest.raises(InvalidLevel, match="BACKWARD_TRANSITIVE"):
        normalize_level(raw)
    with pytest.raises(InvalidLevel):
        check(BASE, [BASE], raw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "reason"), [
    ("", "non-empty"),
    ("{not json", "not JSON"),
    ('{"type": "record", "fields": []}', "Name"),
    ('{"type": "nosuchtype"}', "nosuchtype"),
    (record({"name": "a", "type": "int", "default": "zero"}), "zero"),
    ('{"type": "enum", "name": "E", "symbols": ["A", "A"]}', "Duplicate"),
    (record({"name": "a", "type": "int"}, {"name": "a", "type": "int"}), "a"),
])
def test_parse_schema__invalid_schemas_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidSchema) as err:
        parse_schema(text)
    assert reason in err.value.reason


def test_parse_schema__non_string_is_invalid() -> None:
    with pytest.raises(InvalidSchema):
        parse_schema({"type": "string"})


def test_canonical_form__ignores_layout_but_not_meaning() -> None:
    spaced = json.dumps(json.loads(BASE), indent=4, sort_keys=True)
    assert parse_schema(spaced).canonical == parse_schema(BASE).canonical
    qualified = json.dumps({**json.loads(BASE), "name": "t.Reading"})
    qualified_obj = json.loads(qualified)
    del qualified_obj["namespace"]
    assert parse_schema(json.dumps(qualified_obj)).canonical == parse_schema(BASE).canonical
    with_default = record(HOST, {"name": "value", "type": "int", "default": 1})
    assert parse_schema(with_default).canonical != parse_schema(BASE).canonical
    reordered = record({"name": "value", "type": "int"}, HOST)
    assert parse_schema(reordered).canonical != parse_schema(BASE).canonical


def test_primitive_schemas__are_valid_and_checked() -> None:
    assert check('"long"', ['"int"'], "BACKWARD") == (True, [])
    ok, messages = check('"int"', ['"long"'], "BACKWARD")
    assert not ok and "the top-level type" in messages[0]
