"""The registry's state lives in Kafka: a new instance on the same topic answers exactly the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from app.config import Settings
from app.registry.client import RegistryClient
from app.registry.server import RegistryHandle
from tests.unit.registry.compat_cases import BASE, HOST, VALUE, record

V2 = record(HOST, VALUE, {"name": "unit", "type": "string", "default": ""})
OTHER = record(HOST, name="Other")
DOOMED = record(HOST, name="Doomed")


def everything(url: str) -> dict[str, Any]:
    """Every answer a client could get, via the REST API."""
    with httpx.Client(base_url=url, timeout=10) as http:
        subjects = http.get("/subjects", params={"deleted": "true"}).json()
        out: dict[str, Any] = {"subjects": subjects, "live": http.get("/subjects").json(),
                               "global": http.get("/config").json()}
        for s in subjects:
            versions = http.get(f"/subjects/{s}/versions", params={"deleted": "true"}).json()
            out[s] = [http.get(f"/subjects/{s}/versions/{v}", params={"deleted": "true"}).json() for v in versions]
            out[f"config:{s}"] = http.get(f"/config/{s}", params={"defaultToGlobal": "true"}).json()
        ids = sorted({v["id"] for s in subjects for v in out[s]})
        out["ids"] = {i: http.get(f"/schemas/ids/{i}").json() for i in ids}
        return out


def test_restart__ids_versions_and_configs_survive(fresh_registry_settings: Settings,
                                                   start_registry: Callable[[Settings], RegistryHandle]) -> None:
    first = start_registry(fresh_registry_settings)
    c = RegistryClient(first.url)
    assert c.register("a", BASE) == 1
    assert c.register("a", V2) == 2
    assert c.register("b", OTHER) == 3
    assert c.register("c", BASE) == 1
    assert c.register("gone", DOOMED) == 4
    c.set_compatibility("FULL", "a")
    c.set_compatibility("NONE")
    c.delete_subject("b")
    c.delete_subject("gone")
    c.delete_subject("gone", permanent=True)
    before = everything(first.url)
    first.stop()

    second = start_registry(fresh_registry_settings)
    assert everything(second.url) == before
    c2 = RegistryClient(second.url)
    assert c2.lookup("a", V2).id == 2 and c2.lookup("a", V2).version == 2
    assert c2.register("c", BASE) == 1  # already there: same id, no new version
    assert c2.versions("c") == [1]
    # Id 4 was permanently deleted before the restart; it is never handed out again.
    assert c2.register("d", record(HOST, name="Fresh")) == 5
    assert c2.get_compatibility("a") == "FULL"
