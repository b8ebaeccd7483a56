"""`@beacon`: custom beacons, written in plugin modules and run by the same runner as the built-ins.

    # mybeacons.py  (run with: vigil beacon run --plugins mybeacons)
    from app.beacons import beacon

    @beacon(interval="10s")
    def queue_depth(state):
        \"\"\"Depth of the local mail queue.\"\"\"
        depth = count_queue()
        yield {"name": "mailq", "kind": "METRIC", "metrics": {"depth": depth}}
        if depth > 100 and not state.get("alerted"):
            state["alerted"] = True
            yield {"name": "mailq", "severity": 1, "text": f"{depth} mails waiting"}

A function takes no argument, or `state` (a dict kept between runs to remember what it saw). It
returns or yields events: Event objects, or dicts of Event fields where `subject` defaults to the
host, `name` to the beacon's name and `origin` to "beacon:<name>"; configured tags are added.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.beacons.base import Beacon, BeaconContext
from app.beacons.config import BUILTIN_BEACONS, BeaconConfigError, CustomConfig
from app.durations import DurationError, parse_duration_ms
from app.model.events import Event

__all__ = [
    "BeaconDefinition",
    "BeaconDefinitionError",
    "beacon",
    "build_custom",
    "load_plugins",
    "registered_beacons",
    "unregister",
]

_RESERVED = frozenset({*BUILTIN_BEACONS, "runner"})


class BeaconDefinitionError(ValueError):
    """A @beacon function or a plugin module is not usable; says which and why."""


@dataclass
class BeaconDefinition:
    """A registered @beacon function. Calling it calls the function (handy in its own tests)."""

    name: str
    interval_ms: int
    function: Callable[..., Any]
    module: str
    help: str
    wants_state: bool

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def to_beacon(self, interval_ms: int | None = None) -> Beacon:
        """The Beacon the runner schedules (at `interval_ms`, default the decorator's)."""

        def check(ctx: BeaconContext, state: dict[str, Any] | None) -> tuple[list[Event], dict[str, Any]]:
            state = {} if state is None else state
            result = self.function(state=state) if self.wants_state else self.function()
            return events_from(ctx, result), state

        return Beacon(self.name, interval_ms or self.interval_ms, check, description=self.help)


_registry: dict[str, BeaconDefinition] = {}
_lock = threading.Lock()


def beacon(interval: str | int | float = "30s", name: str | None = None,
           ) -> Callable[[Callable[..., Any]], BeaconDefinition]:
    """Register a function as a beacon run every `interval` ("10s", "5m"); name defaults to the
    function's name. Returns the BeaconDefinition (callable like the function)."""
    try:
        interval_ms = parse_duration_ms(interval)
    except DurationError as exc:
        raise BeaconDefinitionError(f"@beacon(interval=...): {exc}") from None

    def register(function: Callable[..., Any]) -> BeaconDefinition:
        label = name or function.__name__
        where = f"@beacon {label} ({function.__module__}.{function.__qualname__})"
        if label in _RESERVED:
            raise BeaconDefinitionError(f"{where}: {label!r} is a built-in beacon's name; pick another")
        params = inspect.signature(function).parameters
        required = [p for p, spec in params.items() if p != "state" and spec.default is inspect.Parameter.empty
                    and spec.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        if required:
            raise BeaconDefinitionError(f"{where}: takes no arguments or `state`, not {', '.join(required)}")
        definition = BeaconDefinition(label, interval_ms, function, function.__module__,
                                      inspect.getdoc(function) or "", "state" in params)
        with _lock:
            existing = _registry.get(label)
            same_place = existing is not None and (existing.module, existing.function.__qualname__) == (
                function.__module__, function.__qualname__)
            if existing is not None and not same_place:  # a re-import of the same module replaces
                raise BeaconDefinitionError(f"{where}: the name {label!r} is already used by "
                                            f"{existing.module}.{existing.function.__qualname__}")
            _registry[label] = definition
        return definition

    return register


def registered_beacons(module: str | None = None) -> list[BeaconDefinition]:
    """Registered definitions (only those defined in `module`, if given), by name."""
    with _lock:
        return sorted((d for d in _registry.values() if module is None or d.module == module), key=lambda d: d.name)


def unregister(name: str) -> None:
    """Forget a definition (tests; a plugin being unloaded)."""
    with _lock:
        _registry.pop(name, None)


def _import_plugin(spec: str) -> str:
    """Import a plugin by module name or by path to a .py file; returns its module name."""
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            raise BeaconDefinitionError(f"plugin {spec}: no such file")
        # A stable, unique module name per file, so loading it twice does not register twice.
        module_name = f"vigil_beacon_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if module_name not in sys.modules:
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise BeaconDefinitionError(f"plugin {spec}: not a Python module")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
        return module_name
    importlib.import_module(spec)
    return spec


def load_plugins(specs: Iterable[str]) -> list[BeaconDefinition]:
    """Import plugin modules (names or .py paths) and return the @beacon functions they define."""
    found: list[BeaconDefinition] = []
    for spec in specs:
        try:
            module_name = _import_plugin(spec)
        except BeaconDefinitionError:
            raise
        except Exception as exc:
            raise BeaconDefinitionError(f"plugin {spec}: cannot import it: {type(exc).__name__}: {exc}") from exc
        defined = registered_beacons(module_name)
        if not defined:
            raise BeaconDefinitionError(f"plugin {spec}: defines no @beacon function")
        found.extend(d for d in defined if d not in found)
    return found


def build_custom(definitions: Iterable[BeaconDefinition], config: Mapping[str, CustomConfig]) -> list[Beacon]:
    """Beacons of the given definitions, with their config (enabled, interval) applied."""
    definitions = list(definitions)
    unknown = sorted(set(config) - {d.name for d in definitions})
    if unknown:
        known = ", ".join(d.name for d in definitions) or "none loaded"
        raise BeaconConfigError(f"beacons.custom: no @beacon function named {', '.join(unknown)} "
                                f"(loaded: {known}; add its module to `plugins`)")
    beacons = []
    for definition in definitions:
        settings = config.get(definition.name, CustomConfig())
        if settings.enabled:
            beacons.append(definition.to_beacon(settings.interval_ms))
    return beacons


def events_from(ctx: BeaconContext, result: Any) -> list[Event]:
    """What a custom function returned or yielded, as Events (see the module docstring)."""
    if result is None:
        return []
    items = [result] if isinstance(result, Event | dict) else result
    try:
        iterator = iter(items)
    except TypeError:
        raise TypeError(_wrong_type(ctx, result)) from None
    return [_as_event(ctx, item) for item in iterator]


def _wrong_type(ctx: BeaconContext, item: Any) -> str:
    return (f"beacon {ctx.beacon} returned a value of type {type(item).__name__}: return an Event, "
            f"a dict of event fields, a list of them, or yield them")


def _as_event(ctx: BeaconContext, item: Any) -> Event:
    if isinstance(item, Event):
        return item.model_copy(update={"tags": {**ctx.tags, **item.tags}, "origin": item.origin or ctx.origin})
    if not isinstance(item, dict):
        raise TypeError(_wrong_type(ctx, item))
    fields = {"subject": ctx.subject, "name": ctx.beacon, "origin": ctx.origin, "time": ctx.now_ms, **item}
    fields["tags"] = {**ctx.tags, **(item.get("tags") or {})}
    if isinstance(fields.get("kind"), str):
        fields["kind"] = fields["kind"].upper()
    try:
        return Event(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(f"beacon {ctx.beacon} returned an invalid event: "
                         f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
