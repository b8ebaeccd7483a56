"""Several instances on one topic: they agree on every id and see each other's writes at once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from app.config import Settings
from app.registry.client import RegistryClient
from app.registry.server import RegistryHandle
from tests.unit.registry.compat_cases import HOST, record


def distinct(i: int) -> str:
    return record(HOST, name=f"R{i}")


def test_two_instances__concurrent_distinct_schemas_get_unique_agreed_ids(
        fresh_registry_settings: Settings, start_registry: Callable[[Settings], RegistryHandle]) -> None:
    a, b = start_registry(fresh_registry_settings), start_registry(fresh_registry_settings)
    count = 24

    def register(i: int) -> tuple[int, int]:
        client = RegistryClient((a if i % 2 else b).url)
        return i, client.register(f"s{i}", distinct(i))

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = dict(pool.map(register, range(count)))

    assert sorted(ids.values()) == list(range(1, count + 1)), Counter(ids.values()).most_common(3)
    for handle in (a, b):
        client = RegistryClient(handle.url)
        seen = {i: client.lookup(f"s{i}", distinct(i)).id for i in range(count)}
        assert seen == ids
        assert {i: json.loads(client.schema_by_id(ids[i]))["name"] for i in range(count)} == {
            i: f"R{i}" for i in range(count)}


def test_two_instances__same_schema_at_once_is_one_version_one_id(
        fresh_registry_settings: Settings, start_registry: Callable[[Settings], RegistryHandle]) -> None:
    a, b = start_registry(fresh_registry_settings), start_registry(fresh_registry_settings)
    schema = record(HOST, name="Shared")

    def register(i: int) -> int:
        return RegistryClient((a if i % 2 else b).url).register("shared", schema)

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(register, range(12))) == {1}
    assert RegistryClient(a.url).versions("shared") == [1] == RegistryClient(b.url).versions("shared")


def test_read_your_writes__a_write_on_one_instance_is_visible_on_the_other_immediately(
        fresh_registry_settings: Settings, start_registry: Callable[[Settings], RegistryHandle]) -> None:
    a, b = start_registry(fresh_registry_settings), start_registry(fresh_registry_settings)
    on_a, on_b = RegistryClient(a.url), RegistryClient(b.url)
    for i in range(5):
        schema_id = on_a.register(f"ryw{i}", distinct(i))
        # No waiting: the read on b first folds up to the end offset it sees now.
        assert on_b.lookup(f"ryw{i}", distinct(i)).id == schema_id
        on_b.set_compatibility("NONE", f"ryw{i}")
        assert on_a.get_compatibility(f"ryw{i}") == "NONE"
