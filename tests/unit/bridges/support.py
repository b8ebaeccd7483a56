"""Shared test helpers for the bridges: sample files, a fixed receipt time, waiting without sleeping."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from app.bridges.sink import MemorySink

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "bridges"


def data_bytes(relative: str) -> bytes:
    """A sample file's bytes (tests/data/bridges/<relative>)."""
    return (DATA_DIR / relative).read_bytes()


def data_json(relative: str) -> Any:
    """A sample file parsed as JSON."""
    return json.loads(data_bytes(relative))


def iso_ms(text: str) -> int:
    """ISO 8601 time as ms since the epoch."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


class _WakeOnLog(logging.Handler):
    """Calls `wake` for every log record: bridges log each drop, so a test can wait for one."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__(logging.DEBUG)
        self.wake = wake

    def emit(self, record: logging.LogRecord) -> None:
        self.wake()


async def wait_until(predicate: Callable[[], bool], *, sink: MemorySink, timeout_s: float = 10.0) -> None:
    """Wait (without sleeping) until `predicate()` holds, re-checking whenever the sink receives
    something or a bridge logs (drops are logged); fail after `timeout_s` (a deadline, not a
    timing assertion)."""
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wake() -> None:  # sinks and loggers may be called from worker threads (the HTTP bridge sends there)
        loop.call_soon_threadsafe(changed.set)

    sink.listeners.append(wake)
    handler = _WakeOnLog(wake)
    logging.getLogger("app.bridges").addHandler(handler)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                changed.clear()
                if predicate():
                    return
                await changed.wait()
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout_s}s; sink has {len(sink.events)} events") from None
    finally:
        sink.listeners.remove(wake)
        logging.getLogger("app.bridges").removeHandler(handler)
