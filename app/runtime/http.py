"""The worker's small HTTP server: /healthz, /metrics, and the routes it is given for queries of
its stages' tables (e.g. the status API). Runs in a thread; handlers only read.

Built-in stages hand their routes and metrics to the worker explicitly. Plugin modules declare
theirs with `@route` and `serve_metrics` (into the plugin registry, like `@agent`).

With a token (app.api_token: VIGIL_API_TOKEN or VIGIL_API_TOKEN_FILE) every path but the open
ones needs `Authorization: Bearer <token>` (401 otherwise): /healthz is always open for probes,
/metrics when VIGIL_API_METRICS_OPEN is set."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from app.api_token import is_authorized
from app.runtime.agent import AgentRegistry, default_registry

__all__ = ["HEALTH_PATH", "METRICS_PATH", "READY_PATH", "HttpApi", "MergedCollectors", "Route", "route",
           "serve_metrics"]

log = logging.getLogger(__name__)

class MergedCollectors(CollectorRegistry):
    """Several registries as one for /metrics: families of the same name (e.g. each stage's
    vigil_state_expired) become one family with all their samples, since the text format allows a
    metric name only once."""

    def __init__(self, registries: list[Any]) -> None:
        super().__init__()
        self.registries = registries

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for registry in self.registries:
            for family in registry.collect():
                seen = merged.get(family.name)
                if seen is None:
                    merged[family.name] = family
                else:
                    seen.samples = [*seen.samples, *family.samples]
        yield from merged.values()


#: handler(query params) -> (HTTP status, JSON-serialisable body)
Route = Callable[[dict[str, list[str]]], tuple[int, Any]]
HEALTH_PATH = "/healthz"
#: Readiness (Kubernetes' readiness probe): 503 while the process still lacks state it needs
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"

def serve_metrics(collector: CollectorRegistry, *, registry: AgentRegistry | None = None) -> CollectorRegistry:
    """A plugin module's Prometheus registry, served at /metrics by the worker that runs the
    plugins of `registry` (default: the plugin registry `vigil worker --plugins` uses)."""
    (registry or default_registry).add_collector(collector)
    return collector


def route(path: str, *, registry: AgentRegistry | None = None) -> Callable[[Route], Route]:
    """Declare a read-only JSON endpoint of the worker's HTTP API in a plugin module, e.g. for
    querying a table:

        @route("/counts")
        def counts_api(query):            # query: dict of lists, as parse_qs returns
            return 200, dict(counts.all_items())

    Handlers run under the worker's processing lock, so tables are consistent while read."""

    def wrap(fn: Route) -> Route:
        (registry or default_registry).add_route(path, fn)
        return fn

    return wrap


class HttpApi:
    """/healthz, /metrics (`registry` plus `collectors`) and `routes`, served from a thread; with
    `token`, every path but /healthz (and /metrics when `metrics_open`) requires it."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Callable[[], tuple[bool, dict]],
                 lock: Any = None, *, routes: dict[str, Route] | None = None,
                 collectors: list[CollectorRegistry] | None = None, token: bytes | None = None,
                 metrics_open: bool = False, ready: Callable[[], tuple[bool, dict]] | None = None) -> None:
        self.token = token
        self.open_paths = frozenset({HEALTH_PATH, READY_PATH, *((METRICS_PATH,) if metrics_open else ())})
        #: /readyz; without it readiness is the health check
        self.ready = ready or health
        self.routes: dict[str, Route] = dict(routes or {})
        self.collectors = list(collectors or [])
        self.lock = lock or threading.Lock()
        self.registry = registry
        self.health = health
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("http: " + fmt, *args)

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _unauthorized(self) -> None:
                body = json.dumps({"error": "a valid token is required: send 'Authorization: Bearer "
                                            "<VIGIL_API_TOKEN>'"}).encode()
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer realm="vigil"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if api.token is not None and url.path not in api.open_paths \
                        and not is_authorized(self.headers.get("Authorization"), api.token):
                    self._unauthorized()
                    return
                try:
                    if url.path == METRICS_PATH:
                        body = generate_latest(MergedCollectors([api.registry, *api.collectors]))
                        self._send(200, body, CONTENT_TYPE_LATEST)
                        return
                    if url.path in (HEALTH_PATH, READY_PATH):
                        ok, detail = api.health() if url.path == HEALTH_PATH else api.ready()
                        status, answer = (200 if ok else 503), {"ok": ok, **detail}
                    elif url.path in api.routes:
                        with api.lock:
                            status, answer = api.routes[url.path](parse_qs(url.query))
                    else:
                        status, answer = 404, {"error": f"no route {url.path}", "routes": sorted(api.routes)}
                except Exception as exc:  # a query bug must not kill the server
                    log.exception("http handler for %s failed", url.path)
                    status, answer = 500, {"error": f"{type(exc).__name__}: {exc}"}
                self._send(status, json.dumps(answer, default=str).encode(), "application/json")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="vigil-http", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def route(self, path: str, handler: Route) -> None:
        self.routes[path] = handler

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
