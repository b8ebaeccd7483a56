"""`vigil registry serve`: run the Confluent Schema Registry API (routes.py) over a SchemaStore.

`serve` runs in the foreground until SIGTERM/SIGINT; `start_registry_in_thread` runs one in a
background thread (tests, benchmarks, the outage stack). Either way the store is closed after the
server has stopped, and a failure while closing is logged, never raised over the one that ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from app.config import Settings
from app.registry.routes import CONTENT_TYPE, make_app
from app.registry.store import SCHEMAS_TOPIC, KafkaSchemaStore, SchemaStore

__all__ = ["CONTENT_TYPE", "RegistryHandle", "make_app", "serve", "start_registry_in_thread"]

log = logging.getLogger(__name__)


def _close_quietly(store: SchemaStore) -> None:
    # Closing runs on the way out, often because of another error: it must not replace that one.
    try:
        store.close()
    except Exception:
        log.exception("closing the registry store failed")


@dataclass
class _Running:
    """An app bound to a socket on some event loop; `stop` is set to shut it down."""

    runner: web.AppRunner
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def port(self) -> int:
        return int(self.runner.addresses[0][1])


async def _start(store: SchemaStore, host: str, port: int) -> _Running:
    runner = web.AppRunner(make_app(store), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return _Running(runner)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8081, *,
          store: SchemaStore | None = None, startup_timeout_s: float = 60.0) -> None:
    """Run the registry until SIGTERM or SIGINT (blocking). Raises StoreError if Kafka is unusable."""
    store = store or KafkaSchemaStore(settings, start_timeout_s=startup_timeout_s).start()

    async def main() -> None:
        running = await _start(store, host, port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, running.stop.set)
        log.info("schema registry listening on http://%s:%d (topic %s)", host, running.port,
                 settings.topic(SCHEMAS_TOPIC))
        try:
            await running.stop.wait()
        finally:
            await running.runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        _close_quietly(store)


class RegistryHandle:
    """A registry running in a background thread: `.url`, `.stop()`."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop, running: _Running, thread: threading.Thread,
                 store: SchemaStore) -> None:
        self.url = url
        self._loop = loop
        self._running = running
        self._thread = thread
        self._store = store

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop serving, then close the store (idempotent)."""
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._running.stop.set)
            self._thread.join(timeout_s)
        _close_quietly(self._store)


def start_registry_in_thread(settings: Settings, *, host: str = "127.0.0.1", port: int = 0,
                             store: SchemaStore | None = None, timeout_s: float = 60.0) -> RegistryHandle:
    """Start a registry in a daemon thread; return once it answers HTTP. port=0 picks a free one."""
    store = store or KafkaSchemaStore(settings).start()
    started: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        async def main() -> None:
            try:
                running = await _start(store, host, port)
            except BaseException as exc:
                started["error"] = exc
                ready.set()
                raise
            started.update(loop=asyncio.get_running_loop(), running=running)
            ready.set()
            try:
                await running.stop.wait()
            finally:
                await running.runner.cleanup()

        with contextlib.suppress(Exception):  # a start failure is reported through `started`
            asyncio.run(main())

    thread = threading.Thread(target=run, name=f"registry-{host}:{port}", daemon=True)
    thread.start()
    if not ready.wait(timeout_s) or "error" in started:
        _close_quietly(store)
        raise RuntimeError(f"schema registry did not start on {host}:{port}: {started.get('error', 'timed out')}")
    url = f"http://{host}:{started['running'].port}"
    handle = RegistryHandle(url, started["loop"], started["running"], thread, store)
    _wait_until_answers(url, timeout_s, handle)
    return handle


def _wait_until_answers(url: str, timeout_s: float, handle: RegistryHandle) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while True:
            try:
                if client.get(f"{url}/").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                handle.stop()
                raise RuntimeError(f"schema registry at {url} did not answer within {timeout_s:.0f}s")
            time.sleep(0.05)
