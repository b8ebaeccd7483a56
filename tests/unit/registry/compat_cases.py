"""Schema-change cases for compatibility tests, shared by the unit and HTTP (integration) suites."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["CASES", "TRANSITIVE_CASES", "CompatCase", "TransitiveCase", "record"]


def record(*fields: dict[str, Any], name: str = "Reading", **extra: Any) -> str:
    """Avro record schema text in namespace `t` with the given fields."""
    return json.dumps({"type": "record", "name": name, "namespace": "t", "fields": list(fields), **extra})


def enum(*symbols: str) -> dict[str, Any]:
    return {"type": "enum", "name": "Colour", "symbols": list(symbols)}


HOST = {"name": "host", "type": "string"}
VALUE = {"name": "value", "type": "int"}
BASE = record(HOST, VALUE)


@dataclass(frozen=True)
class CompatCase:
    """old -> new, and whether each non-transitive level accepts it; the reasons name one of `fields`."""

    name: str
    old: str
    new: str
    backward: bool
    forward: bool
    fields: tuple[str, ...] = ()

    @property
    def full(self) -> bool:
        return self.backward and self.forward

    def expected(self, level: str) -> bool:
        base = level.removesuffix("_TRANSITIVE")
        return {"NONE": True, "BACKWARD": self.backward, "FORWARD": self.forward, "FULL": self.full}[base]


CASES = [
    CompatCase("identical", BASE, BASE, backward=True, forward=True),
    CompatCase("whitespace and key order only", BASE,
               json.dumps(json.loads(BASE), indent=2, sort_keys=True), backward=True, forward=True),
    CompatCase("add optional field with default", BASE,
               record(HOST, VALUE, {"name": "unit", "type": "string", "default": ""}), backward=True, forward=True),
    CompatCase("add nullable field with null default", BASE,
               record(HOST, VALUE, {"name": "note", "type": ["null", "string"], "default": None}),
               backward=True, forward=True),
    CompatCase("add field without default", BASE,
               record(HOST, VALUE, {"name": "unit", "type": "string"}), backward=False, forward=True, fields=("unit",)),
    CompatCase("remove field without default", BASE, record(HOST), backward=True, forward=False, fields=("value",)),
    CompatCase("remove field that had a default", record(HOST, {"name": "value", "type": "int", "default": 0}),
               record(HOST), backward=True, forward=True),
    CompatCase("change type int to string", BASE, record(HOST, {"name": "value", "type": "string"}),
               backward=False, forward=False, fields=("value",)),
    CompatCase("widen int to long", BASE, record(HOST, {"name": "value", "type": "long"}),
               backward=True, forward=False, fields=("value",)),
    CompatCase("rename field with alias", BASE, record(HOST, {"name": "reading", "type": "int", "aliases": ["value"]}),
               backward=True, forward=False, fields=("value",)),
    CompatCase("rename field without alias", BASE, record(HOST, {"name": "reading", "type": "int"}),
               backward=False, forward=False, fields=("reading", "value")),
    CompatCase("rename record with alias", BASE, record(HOST, VALUE, name="Sample", aliases=["t.Reading"]),
               backward=True, forward=False),
    CompatCase("add enum symbol", record({"name": "colour", "type": enum("RED")}),
               record({"name": "colour", "type": enum("RED", "BLUE")}), backward=True, forward=False,
               fields=("colour",)),
    CompatCase("make field nullable", BASE, record(HOST, {"name": "value", "type": ["null", "int"], "default": None}),
               backward=True, forward=False),  # the checker loses the path inside unions
]


@dataclass(frozen=True)
class TransitiveCase:
    """A history where the new schema suits the latest version but not an older one."""

    name: str
    history: tuple[str, ...]
    new: str
    level: str  # the non-transitive level that accepts it; its _TRANSITIVE form must refuse it
    field: str


TRANSITIVE_CASES = [
    # v2 gave `unit` a default; the new schema drops the default again, so it cannot read v1 data.
    TransitiveCase("BACKWARD", (record(HOST), record(HOST, {"name": "unit", "type": "string", "default": ""})),
                   record(HOST, {"name": "unit", "type": "string"}), "BACKWARD", "unit"),
    # v2 gave `value` a default; the new schema drops the field, which v1 readers still require.
    TransitiveCase("FORWARD", (BASE, record(HOST, {"name": "value", "type": "int", "default": 0})),
                   record(HOST), "FORWARD", "value"),
    TransitiveCase("FULL", (record(HOST), record(HOST, {"name": "unit", "type": "string", "default": ""})),
                   record(HOST, {"name": "unit", "type": "string"}), "FULL", "unit"),
]
