"""`vigil ui`: the HTTP API, the live stream and the web UI's assets, served by one aiohttp process that
materialises what it serves:

    status (compacted) ──> live tailer ──> status index (memory) ──┐
    silences (compacted) ─┘          └──> history store (SQLite) ├─> /api/v1 ... ─> browser
    alerts, actions, results, suppressed ─┘                       ├─> /api/v1/stream (SSE, ring)
    metrics (closed windows) ──> metrics tailer ──> history store ┘
    workers' query routes (windows, archive index, rules) <── asked per request

/healthz answers while the process runs; /readyz once the status and silences topics were read to
where they were at the start (before that, the board would show a partial picture).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp_cors
from aiohttp import web

from app.api_token import load_api_token
from app.config import Settings
from app.model.serde import AvroSerde
from app.orchestration.definitions import DefinitionsLoader
from app.pipeline.config import PipelineConfig
from app.registry.client import RegistryClient
from app.web.api import API_PREFIX, CTX, UiContext, api_routes, auth_middleware, error_middleware, json_response
from app.web.backtests import BacktestJobs
from app.web.config import UiConfig
from app.web.gates import GateService
from app.web.hub import LiveHub
from app.web.ingest import Tailer, live_feeds, metrics_feeds
from app.web.live import LiveRing
from app.web.silences import SilenceWriter
from app.web.store import HistoryStore, Retention
from app.web.stream import stream
from app.web.workers import WorkersClient

__all__ = ["UI_DIST", "UiHandle", "UiServer", "start_ui_in_thread"]

log = logging.getLogger(__name__)

#: Where `make` builds the web UI (from app/web/ui, by Vite): package data of the wheel.
UI_DIST: Final = Path(__file__).resolve().parent / "static"
_PRUNE_EVERY_S: Final = 60.0
_NOT_BUILT: Final = """<!doctype html><meta charset="utf-8"><title>Vigil</title>
<p>The web UI is not built. Run <code>make</code> (it builds app/web/ui with npm), then reload.
The API is at <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>"""


class UiServer:
    """Everything `vigil ui` runs, built from settings; `start()` on an event loop, `stop()` to end."""

    def __init__(self, settings: Settings, config: UiConfig, *, rules_dir: Path | None = None,
                 dist: Path = UI_DIST) -> None:
        self.settings = settings
        self.config = config
        self.dist = dist
        pipeline = PipelineConfig.from_settings(settings)
        sizes = tuple(pipeline.window_sizes_ms)
        stored_sizes = config.metrics_window_sizes_ms or (max(sizes),)
        self.store = HistoryStore(config.store_path(settings), Retention(history_ms=config.history_retention_ms,
                                                                         metrics_ms=config.metrics_retention_ms))
        self.hub = LiveHub(LiveRing(config.stream_buffer))
        self._registries = [RegistryClient.from_settings(settings) for _ in range(2)]
        self.tailers = [
            Tailer(settings, live_feeds(config.history_retention_ms), self.store, AvroSerde(self._registries[0]),
                   self.hub.submit, name="live", poll_s=0.05),
            Tailer(settings, metrics_feeds(config.metrics_retention_ms), self.store, AvroSerde(self._registries[1]),
                   self.hub.submit, name="metrics", window_sizes_ms=stored_sizes, poll_s=0.5),
        ]
        rules = Path(rules_dir) if rules_dir is not None else Path(settings.rules_dir)
        self.ctx = UiContext(
            settings=settings, config=config, hub=self.hub, store=self.store,
            workers=WorkersClient(config.workers, token=load_api_token()),
            backtests=BacktestJobs(settings, deployed_dir=rules.resolve(),
                                   work_dir=config.store_path(settings).parent / "backtests",
                                   max_range_ms=config.backtest_max_range_ms),
            silences=SilenceWriter(settings), window_sizes_ms=sizes,
            worker_window_retention_ms=pipeline.window_retention_ms, rules_dir=rules.resolve(),
            gates=GateService(settings, DefinitionsLoader(rules.resolve())))
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._prune_task: asyncio.Task[None] | None = None
        self.port: int | None = None

    # -- the aiohttp application ----------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware, auth_middleware(self.config)],
                              client_max_size=2 * 1024 * 1024,
                              handler_args={"max_line_size": 65536, "max_field_size": 65536})
        app[CTX] = self.ctx
        app.add_routes(api_routes())
        app.router.add_get(f"{API_PREFIX}/stream", stream, allow_head=False)
        app.router.add_get("/healthz", self._healthz, allow_head=False)
        app.router.add_get("/readyz", self._readyz, allow_head=False)
        assets = self.dist / "assets"
        if assets.is_dir():
            app.router.add_static("/assets", assets, append_version=False)
        app.router.add_get("/api/{tail:.*}", self._api_not_found, allow_head=False)
        app.router.add_get("/{tail:.*}", self._index, allow_head=False)
        app.on_response_prepare.append(self._cache_headers)
        if self.config.cors_origins:
            cors = aiohttp_cors.setup(app, defaults={
                origin: aiohttp_cors.ResourceOptions(allow_headers=("Authorization", "Content-Type", "Last-Event-ID"),
                                                     allow_methods=["GET", "POST", "DELETE"])
                for origin in self.config.cors_origins})
            for route in list(app.router.routes()):
                if route.resource is not None and route.resource.canonical.startswith("/api/"):
                    cors.add(route)
        return app

    @staticmethod
    async def _cache_headers(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/assets/"):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"  # hashed names
        elif not request.path.startswith("/api/v1/stream"):
            response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        index = self.dist / "index.html"
        if not index.is_file():
            return web.Response(text=_NOT_BUILT, content_type="text/html")
        return web.FileResponse(index, headers={"Content-Type": "text/html; charset=utf-8"})

    async def _api_not_found(self, request: web.Request) -> web.Response:
        return json_response({"error": f"no such path: {request.path}"}, status=404)

    def health(self) -> dict[str, Any]:
        """What /healthz shows: readiness, what the tailers read, identities, stream clients."""
        return {"ok": True, "ready": self.hub.ready, "identities": len(self.hub.index),
                "stream": {"clients": self.hub.clients, "seq": self.hub.ring.seq},
                "tailers": {t.name: {"caught_up": t.caught_up.is_set(), "records": t.stats.records,
                                     "skipped": t.stats.skipped, "registry_waits": t.stats.registry_waits,
                                     "last_error": t.stats.last_error} for t in self.tailers}}

    async def _healthz(self, request: web.Request) -> web.Response:
        return json_response(self.health())

    async def _readyz(self, request: web.Request) -> web.Response:
        body = self.health()
        return json_response(body, status=200 if self.hub.ready else 503)

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> int:
        """Start the tailers and serve; returns the port (a free one when the config says port 0)."""
        self.hub.bind(asyncio.get_running_loop())
        for tailer in self.tailers:
            tailer.start()
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        self._prune_task = asyncio.create_task(self._prune_loop())
        return self.port

    async def _prune_loop(self) -> None:
        while True:
            try:
                deleted = await asyncio.to_thread(self.store.prune, int(time.time() * 1000))
                if any(deleted.values()):
                    log.info("ui: pruned history past retention: %s", deleted)
            except Exception as exc:  # a full disk must not stop the server
                log.warning("ui: pruning the history store failed: %s", exc)
            await asyncio.sleep(_PRUNE_EVERY_S)

    async def stop(self) -> None:
        """Stop serving, the tailers and the backtest runner; close the store and clients."""
        if self._prune_task is not None:
            self._prune_task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.to_thread(self._stop_threads)
        await self.ctx.workers.close()

    def _stop_threads(self) -> None:
        for tailer in self.tailers:
            tailer.stop()
        self.ctx.backtests.close()
        self.ctx.silences.close()
        if self.ctx.gates is not None:
            self.ctx.gates.close()
        self.ctx.close()
        for registry in self._registries:
            registry.close()
        self.store.close()


@dataclass
class UiHandle:
    """A UI server running in a thread of its own (tests, benchmarks)."""

    server: UiServer
    url: str
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        future = asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop)
        try:
            future.result(timeout_s)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the server has read the status and silences topics (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout_s
        while not self.server.hub.ready:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the UI server was not ready within {timeout_s:.0f}s: {self.server.health()}")
            time.sleep(0.05)


def start_ui_in_thread(settings: Settings, config: UiConfig, **kwargs: Any) -> UiHandle:
    """Start a UiServer on an event loop in a daemon thread; returns once it listens."""
    server = UiServer(settings, config, **kwargs)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="vigil-ui", daemon=True)
    thread.start()
    started.wait(60)
    if failure:
        raise failure[0]
    return UiHandle(server, f"http://{config.host}:{server.port}", loop, thread)
