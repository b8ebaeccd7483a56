"""@beacon: custom beacons from plugin modules, run like the built-ins."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.beacons import beacon
from app.beacons.config import BeaconConfigError, CustomConfig
from app.beacons.registry import (
    BeaconDefinitionError,
    build_custom,
    events_from,
    load_plugins,
    registered_beacons,
    unregister,
)
from app.beacons.runner import Runner
from app.model.events import Event, Kind
from tests.unit.beacons.conftest import CollectingPublisher


@pytest.fixture
def unique() -> Iterator[str]:
    """A beacon name for this test only (the registry is process-wide)."""
    name = f"b_{uuid.uuid4().hex[:8]}"
    yield name
    unregister(name)


def test_decorator__registers_and_stays_callable(unique: str) -> None:
    @beacon(interval="10s", name=unique)
    def queue_depth() -> dict:
        """Depth of the queue."""
        return {"metrics": {"depth": 3.0}}

    (found,) = [d for d in registered_beacons(__name__) if d.name == unique]
    assert found is queue_depth
    assert (found.interval_ms, found.help, found.wants_state) == (10_000, "Depth of the queue.", False)
    assert queue_depth() == {"metrics": {"depth": 3.0}}


def test_state_is_kept_between_runs_and_yielded_events_are_filled_in(unique: str) -> None:
    @beacon(interval="1s", name=unique)
    def counter(state: dict) -> Iterator[dict]:
        state["n"] = state.get("n", 0) + 1
        yield {"kind": "metric", "metrics": {"n": float(state["n"])}}
        if state["n"] == 2:
            yield {"name": "counter-milestone", "severity": 1, "text": "two", "tags": {"role": "override"}}

    publisher = CollectingPublisher()
    runner = Runner([counter.to_beacon()], publisher, subject="web1", tags={"role": "web", "dc": "x"})
    runner.run_once()
    runner.run_once()
    first, second, milestone = publisher.events
    assert (first.subject, first.name, first.kind, first.origin) == ("web1", unique, Kind.METRIC, f"beacon:{unique}")
    assert (first.metrics, second.metrics) == ({"n": 1.0}, {"n": 2.0})
    assert first.tags == {"role": "web", "dc": "x"}
    assert (milestone.name, milestone.severity, milestone.tags) == ("counter-milestone", 1,
                                                                     {"role": "override", "dc": "x"})


@pytest.mark.parametrize("result", [
    None,
    [],
    Event(subject="db1", name="replication", tags={"x": "1"}),
    [{"name": "a"}, {"name": "b"}],
])
def test_events_from__accepts_the_documented_shapes(make_ctx, result: object) -> None:
    events = events_from(make_ctx("custom"), result)
    assert all(isinstance(e, Event) and e.origin and e.tags["role"] == "web" for e in events)
    if isinstance(result, Event):
        assert (events[0].subject, events[0].tags) == ("db1", {"role": "web", "x": "1"})


@pytest.mark.parametrize(("result", "message"), [
    (42, "beacon custom returned a value of type int: return an Event, a dict of event fields"),
    ([{"name": "a"}, "b"], "returned a value of type str"),
    ({"severity": 9}, "beacon custom returned an invalid event: severity: Input should be less than or equal to 3"),
    ({"metrics": {"x": "NaN"}}, "metrics: Value error, metric 'x' is nan"),
])
def test_events_from__wrong_shapes_are_errors_people_can_fix(make_ctx, result: object, message: str) -> None:
    with pytest.raises((TypeError, ValueError)) as err:
        events_from(make_ctx("custom"), result)
    assert message in str(err.value)


def test_a_raising_custom_beacon_is_reported_like_a_built_in(unique: str) -> None:
    @beacon(name=unique)
    def broken() -> None:
        raise KeyError("missing")

    publisher = CollectingPublisher()
    Runner([broken.to_beacon()], publisher, subject="web1").run_once()
    (failure,) = publisher.events
    assert (failure.name, failure.severity) == (f"beacon:{unique}", 2) and "KeyError: 'missing'" in failure.text


def test_definition_errors() -> None:
    with pytest.raises(BeaconDefinitionError, match=r"@beacon\(interval=...\): 'often' is not a duration"):
        beacon(interval="often")
    with pytest.raises(BeaconDefinitionError, match="'disk' is a built-in beacon's name"):
        beacon(name="disk")(lambda: None)
    with pytest.raises(BeaconDefinitionError, match="takes no arguments or `state`, not host"):
        beacon(name=f"b_{uuid.uuid4().hex[:8]}")(lambda host: None)


def test_a_name_used_by_another_function_is_refused(unique: str) -> None:
    beacon(name=unique)(lambda: None)
    with pytest.raises(BeaconDefinitionError, match=f"the name '{unique}' is already used by"):
        @beacon(name=unique)
        def other() -> None:
            pass


# -- plugins ------------------------------------------------------------------------------------------
def plugin_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / f"plugin_{uuid.uuid4().hex[:8]}.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_load_plugins__from_a_file_once_even_if_loaded_twice(tmp_path: Path) -> None:
    name = f"p_{uuid.uuid4().hex[:8]}"
    path = plugin_file(tmp_path, f"""\
        from app.beacons import beacon

        @beacon(interval="2s")
        def {name}(state):
            return {{"metrics": {{"ok": 1.0}}}}
    """)
    try:
        (definition,) = load_plugins([str(path)])
        assert (definition.name, definition.interval_ms) == (name, 2000)
        assert load_plugins([str(path)]) == [definition]
        (b,) = build_custom([definition], {name: CustomConfig(interval="1m")})
        assert b.interval_ms == 60_000
        assert build_custom([definition], {name: CustomConfig(enabled=False)}) == []
        with pytest.raises(BeaconConfigError, match=f"no @beacon function named nope \\(loaded: {name}"):
            build_custom([definition], {"nope": CustomConfig()})
    finally:
        unregister(name)


@pytest.mark.parametrize(("body", "message"), [
    ("import no_such_module_xyz\n", "cannot import it: ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    ("x = 1\n", "defines no @beacon function"),
])
def test_load_plugins__errors(tmp_path: Path, body: str, message: str) -> None:
    path = plugin_file(tmp_path, body)
    with pytest.raises(BeaconDefinitionError, match=message):
        load_plugins([str(path)])


def test_load_plugins__missing_file_and_module() -> None:
    with pytest.raises(BeaconDefinitionError, match=r"plugin /nonexistent/p\.py: no such file"):
        load_plugins(["/nonexistent/p.py"])
    with pytest.raises(BeaconDefinitionError, match="plugin no_such_plugin_mod: cannot import it"):
        load_plugins(["no_such_plugin_mod"])
