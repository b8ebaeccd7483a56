"""@agent: a decorated Python function that processes the events of one topic.

    @agent("events", tables=[counts])
    def count(event, ctx):            # or: async def; or batch=True: def f(events, ctx)
        counts[ctx.key] += 1
        ctx.send("counts", ctx.key, {"n": counts[ctx.key]}, schema=None)

    @count.on_timer
    def expired(key, payload, ctx): ...

Plugin agents register themselves on import in `default_registry` (the plugin registry);
`vigil worker --plugins mymodule` imports plugin modules and runs every registered agent beside the
built-in stages, which are built explicitly (app.stages) and register nowhere.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.runtime.tables import Table

__all__ = ["DECODERS", "Agent", "AgentRegistry", "agent", "default_registry", "kafka_time", "load_plugins"]

log = logging.getLogger(__name__)

#: How an agent receives message values: decoded Confluent Avro dicts, raw bytes, or JSON.
DECODERS = ("avro", "raw", "json")


def kafka_time(value: Any, kafka_timestamp_ms: int) -> int:
    """An agent's `timestamp=` for event time = the record's Kafka timestamp. The engine recognises
    it and reads the timestamps without a call per record: for agents that read no event time
    (the routes)."""
    return kafka_timestamp_ms


@dataclass(eq=False)
class Agent:
    """One stream agent: a function bound to a source topic, its tables and its timers."""

    name: str
    topic: str
    fn: Callable[..., Any]
    tables: tuple[Table, ...] = ()
    batch: bool = False
    decode: str = "avro"
    dlq_topic: str = "events-dlq"
    timestamp: Callable[[Any, int], int] | None = None
    #: batch agents only: called with each slice of a turn's records as soon as it is decoded (see `agent`)
    eager: bool = False
    help: str = ""
    timer_fn: Callable[..., Any] | None = None
    rebuild_fn: Callable[..., Any] | None = None
    close_fn: Callable[[], Any] | None = None
    meta: Table = field(init=False)

    def __post_init__(self) -> None:
        if self.decode not in DECODERS:
            raise ValueError(f"agent {self.name}: decode={self.decode!r}, use one of {', '.join(DECODERS)}")
        if self.eager and not self.batch:
            raise ValueError(f"agent {self.name}: eager=True needs batch=True (it is called with slices of records)")
        names = [t.name for t in self.tables]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"agent {self.name}: table(s) {sorted(dupes)} listed twice")
        # Internal per-agent table: persisted timers and the partition watermark.
        self.meta = Table(f"{self.name}__meta", default=None)
        self.is_async = inspect.iscoroutinefunction(self.fn)

    @property
    def all_tables(self) -> tuple[Table, ...]:
        return (*self.tables, self.meta)

    def on_timer(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: `fn(key, payload, ctx)` runs when a timer set with ctx.timers.schedule fires."""
        self.timer_fn = fn
        self.timer_is_async = inspect.iscoroutinefunction(fn)
        return fn

    def on_rebuild(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: `fn(ctx)` refills the agent's local-only tables (`Table(changelog=False)`) of
        `ctx.partition` from its other tables, which are bound to that partition. It runs when the
        partition is assigned and its changelogged tables were restored from Kafka (or its local-only
        tables were never written here), with the local-only tables emptied first."""
        self.rebuild_fn = fn
        return fn

    def on_close(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Decorator: `fn()` (a function or a coroutine function) runs once when the engine that ran
        the agent closes, on its event loop before that loop is closed: to release what the agent's
        calls left open on the loop (kept HTTP connections)."""
        self.close_fn = fn
        return fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (handy in plain unit tests)."""
        return self.fn(*args, **kwargs)


class AgentRegistry:
    """Agents by name (a name registered again replaces the earlier agent: module reloads), plus the
    HTTP routes and Prometheus registries plugin modules declare for the worker that runs them."""

    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}
        #: path -> handler(query) -> (status, body); see app.runtime.http.route
        self.routes: dict[str, Callable[[dict[str, list[str]]], tuple[int, Any]]] = {}
        #: prometheus_client CollectorRegistry objects; see app.runtime.http.serve_metrics
        self.collectors: list[Any] = []

    def add_route(self, path: str, handler: Callable[[dict[str, list[str]]], tuple[int, Any]]) -> None:
        self.routes[path] = handler

    def add_collector(self, collector: Any) -> None:
        if collector not in self.collectors:
            self.collectors.append(collector)

    def add(self, a: Agent) -> Agent:
        if a.name in self._agents and self._agents[a.name].fn.__qualname__ != a.fn.__qualname__:
            log.warning("agent %s registered again by %s; replacing", a.name, a.fn.__qualname__)
        self._agents[a.name] = a
        return a

    def agents(self) -> list[Agent]:
        return list(self._agents.values())

    def get(self, name: str) -> Agent:
        return self._agents[name]

    def clear(self) -> None:
        self._agents.clear()
        self.routes.clear()
        self.collectors.clear()


default_registry = AgentRegistry()


def agent(topic: str, *, name: str | None = None, tables: Iterable[Table] = (), batch: bool = False,
          decode: str = "avro", dlq_topic: str = "events-dlq",
          timestamp: Callable[[Any, int], int] | None = None, eager: bool = False,
          registry: AgentRegistry | None = None) -> Callable[[Callable[..., Any]], Agent]:
    """Declare a stream agent on `topic`.

    - tables: the Tables/WindowedTables it uses (co-partitioned with the topic, restored on assignment)
    - batch: receive a list of values per call (all from one partition) instead of one value
    - decode: "avro" (Confluent-framed, default), "json" or "raw" (bytes)
    - timestamp: `fn(value, kafka_timestamp_ms) -> event time ms`; default: the value's `time`
      field when it has one, else the Kafka timestamp
    - eager (batch agents): the worker calls the agent with each slice of a turn's records (a few
      thousand) as soon as it is decoded, before the turn's other agents run, instead of once
      with the whole turn (up to 50,000 records) after them. For agents that read each record once
      and pay little per call (the routes): they then read records still in the CPU's caches
      (measured: the routes' CPU ~30% lower). Agents that fold many records of a key
      per call (the pipeline) want whole turns: leave it False. Under exactly-once the worker runs
      eager agents with the others (its transactions between a turn's partitions must not hold
      outputs of partitions not committed yet).
    """

    def wrap(fn: Callable[..., Any]) -> Agent:
        a = Agent(name=name or fn.__name__, topic=topic, fn=fn, tables=tuple(tables), batch=batch, decode=decode,
                  dlq_topic=dlq_topic, timestamp=timestamp, eager=eager, help=(inspect.getdoc(fn) or "").split("\n")[0])
        return (registry or default_registry).add(a)

    return wrap


def load_plugins(modules: Iterable[str]) -> None:
    """Import plugin modules so their @agent functions register (clear error if one is missing)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise ImportError(f"cannot import plugin module {module!r}: {exc}. Is it on PYTHONPATH?") from exc
