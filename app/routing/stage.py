"""The routes stage: a batch agent on `events` that copies each event matching a route to the
route's topic, on the public agent API.

Cost per event: the agent reads the records the worker decoded once for every agent of `events`
(the pipeline's too: no second decode), as an eager agent (each slice of a turn as it is decoded,
while in the CPU's caches), decides with the router (app.routing.router: a lookup per field read in
small tables of field values, for routes over identity, tags and severity), and forwards the consumed bytes
(key, value, headers, timestamp unchanged: nothing is re-encoded) with one `ctx.forward` per route
and batch, which the worker produces without an Output object or encoding step per copy.
Counters are added per batch.

Delivery: the copies are outputs of the worker's commit. Under exactly-once they are in the
worker's transaction with its offsets (a crash neither loses nor repeats one); under at-least-once a
copy may be sent again after a crash (its record is processed again from the last commit).

A route to a topic that does not exist is counted (vigil_route_errors_total{reason="missing
topic"}), logged at most once a minute per route with how to create it, and skipped; the worker
keeps running and uses the topic once it exists (app.routing.catalog).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from app.config import Settings
from app.routing.catalog import KafkaTopicCatalog, TopicCatalog
from app.routing.loader import RouteSetLoader, routes_dir
from app.routing.router import Router, route_batch
from app.routing.spec import SOURCE_TOPIC
from app.runtime.agent import Agent, AgentRegistry, agent, kafka_time
from app.runtime.context import AgentContext
from app.runtime.stage import Stage

__all__ = ["AGENT_NAME", "MISSING_TOPIC", "RoutesConfig", "RoutesStage"]

log = logging.getLogger(__name__)

AGENT_NAME: Final = "routes"
#: vigil_route_errors_total's reason for a copy whose topic does not exist
MISSING_TOPIC: Final = "missing topic"
#: A missing destination is logged at most this often per route (every copy is counted).
_LOG_EVERY_S: Final = 60.0


@dataclass(frozen=True)
class RoutesConfig:
    """Where the route files are, how often they are checked, and the cluster (None: no topic
    checks, as in the in-memory harness)."""

    directory: Path
    reload_interval_s: float = 2.0
    settings: Settings | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutesConfig:
        """`<rules_dir>/routes` of the settings' rules directory."""
        return cls(routes_dir(settings.rules_dir), settings=settings)


class RoutesStage:
    """The routes agent, its loader, router, topic catalog and counters."""

    def __init__(self, config: RoutesConfig, *, catalog: TopicCatalog | None = None,
                 registry: AgentRegistry | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.loader = RouteSetLoader(config.directory, interval_s=config.reload_interval_s, clock=clock)
        self.catalog = catalog
        self.clock = clock
        self.router = Router(())
        self._version = -1
        #: logical destination names found missing in the catalog's last answer
        self._missing: frozenset[str] = frozenset()
        self._missing_of: tuple[int, frozenset[str] | None] | None = None
        self._logged_at: dict[str, float] = {}
        r = self.metrics = CollectorRegistry(auto_describe=True)
        self.routed = Counter("vigil_routed", "events copied to a route's topic, per route", ["route"], registry=r)
        self.sampled_out = Counter("vigil_route_sampled_out", "events a route matched but its sample left out",
                                   ["route"], registry=r)
        self.errors = Counter("vigil_route_errors", "copies not sent, per route and reason (a missing topic)",
                              ["route", "reason"], registry=r)
        self.file_errors = Gauge("vigil_route_file_errors", "errors in the route files now (broken files keep "
                                 "their last good version)", registry=r)
        self.active = Gauge("vigil_routes_active", "enabled routes", registry=r)
        # eager: run on each slice of a turn as it is decoded, while its records are in the CPU's
        # caches (after the pipeline's pass over a whole turn they are read back from memory:
        # measured, 1M events: 3.0-3.5 s of the routes' CPU, 2.2-2.5 s eager); the Kafka timestamp
        # as event time: the routes read none, and the engine then makes no call per record for it
        self.agent: Agent = agent(SOURCE_TOPIC, name=AGENT_NAME, batch=True, eager=True, timestamp=kafka_time,
                                  registry=registry or AgentRegistry())(self.process)

    def stage(self) -> Stage:
        """The routes agent and its counters, for a worker to run."""
        return Stage("routes", [self.agent], collectors=[self.metrics], close=self.close)

    def close(self) -> None:
        """Stop reading the cluster's topic names."""
        if self.catalog is not None:
            self.catalog.close()

    # -- per batch ----------------------------------------------------------------------------------
    def current(self) -> Router:
        """The router of the current route files (reloaded at most every reload interval)."""
        routes = self.loader.current()
        if routes.version != self._version:
            self._version = routes.version
            self.router = Router(routes)
            self._missing_of = None
            self.file_errors.set(len(routes.errors))
            self.active.set(len(self.router.routes))
            for error in routes.errors:
                log.warning("routes: %s", error)
            log.info("routes: %d active (%s)", len(self.router.routes),
                     "; ".join(r.describe() for r in self.router.routes) or "none")
        return self.router

    def _missing_topics(self, settings: Settings | None) -> frozenset[str]:
        """Destinations of the current routes that the cluster does not have (as last seen)."""
        if settings is None:
            settings = self.config.settings
        if self.catalog is None and settings is not None:
            self.catalog = KafkaTopicCatalog(settings)  # here, not when built: only a running worker reads Kafka
        names = self.catalog.topics() if self.catalog is not None else None
        if self._missing_of is None or self._missing_of[1] is not names or self._missing_of[0] != self._version:
            prefix = settings.topic_prefix if settings is not None else ""
            self._missing = frozenset() if names is None else frozenset(
                r.to for r in self.router.routes if prefix + r.to not in names)
            self._missing_of = (self._version, names)
        return self._missing

    def process(self, values: list[Any], ctx: AgentContext) -> None:
        """Copy each record of the batch to the topic of every route it takes."""
        router = self.current()
        if not router:
            return
        missing = self._missing_topics(ctx.settings)
        counts = route_batch(router, ctx.records, missing, ctx.forward)
        for route, n in counts.routed.items():
            self.routed.labels(route.name).inc(n)
        for route, n in counts.sampled_out.items():
            self.sampled_out.labels(route.name).inc(n)
        for route, n in counts.missing.items():
            self.errors.labels(route.name, MISSING_TOPIC).inc(n)
            self._report_missing(route.name, route.to, n, ctx.settings)

    def _report_missing(self, route: str, topic: str, copies: int, settings: Settings | None) -> None:
        now = self.clock()
        if now - self._logged_at.get(route, -_LOG_EVERY_S) < _LOG_EVERY_S:
            return
        self._logged_at[route] = now
        real = settings.topic(topic) if settings is not None else topic
        log.error("route %s: topic %s does not exist: %d copy(ies) not sent (counted in vigil_route_errors_total); "
                  "create it: declare %s in topics.yaml and run `vigil topics apply` (routes use it once it exists)",
                  route, real, copies, topic)
