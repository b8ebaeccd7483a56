"""WindowedTable: per-key aggregates in tumbling or hopping event-time windows with grace,
closing callbacks and expiry.

    load = WindowedTable("load", size="10s", grace="5s", default=0.0)

    @agent("events", tables=[load])
    def track(event, ctx):
        load.apply(ctx.key, lambda total: total + event["metrics"].get("load1", 0.0))

    @load.on_close
    def emit(key, window, value, ctx):
        ctx.send("load-10s", key, {"start": window.start_ms, "total": value})

Events whose windows are all closed (watermark >= end + grace) are late: counted and dropped.
Closed windows are kept for `retention` (for queries of recent windows), then deleted.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from app.durations import parse_duration_ms
from app.runtime.codecs import Codec
from app.runtime.context import AgentContext
from app.runtime.store import MISSING, PartitionStore
from app.runtime.tables import Table
from app.runtime.windows import Window, is_closed, pack_window_key, unpack_window_key, window_prefix, windows_for

__all__ = ["CloseCallback", "WindowedTable"]

CloseCallback = Callable[[str, Window, Any, Any], None]


class _PartitionWindows:
    """Open-window index of one partition: a heap of (close_at, packed key)."""

    def __init__(self) -> None:
        self.closing: list[tuple[int, str]] = []
        self.expiring: list[tuple[int, str]] = []
        self.known: set[str] = set()


class WindowedTable(Table):
    """A table whose values live in event-time windows."""

    def __init__(self, name: str, *, size: str | int, step: str | int | None = None, grace: str | int = 0,
                 retention: str | int = 0, default: Any = None, codec: str | Codec | None = "json",
                 on_close: CloseCallback | None = None, help: str = "") -> None:
        super().__init__(name, default=default, codec=codec, help=help)
        self.size_ms = parse_duration_ms(size) if isinstance(size, str) else int(size)
        self.step_ms = (parse_duration_ms(step) if isinstance(step, str) else int(step)) if step else self.size_ms
        self.grace_ms = _duration_or_zero(grace)
        self.retention_ms = _duration_or_zero(retention)
        windows_for(0, size_ms=self.size_ms, step_ms=self.step_ms)  # validates size/step
        self.close_callback = on_close
        self.late_dropped = 0
        self._index: dict[int, _PartitionWindows] = {}
        #: set by the engine: (partition -> watermark) of the owning agent, and the current event time
        self.watermark_of: Callable[[], int] = lambda: -1
        self.event_time_of: Callable[[], int] = lambda: 0
        self.note_due: Callable[[int], None] = lambda due_ms: None

    def on_close(self, fn: CloseCallback) -> CloseCallback:
        """Decorator: `fn(key, window, value, ctx)` runs when a window closes."""
        self.close_callback = fn
        return fn

    # -- writes (inside an agent call) ----------------------------------------------------------------
    def apply(self, key: str, fn: Callable[[Any], Any], *, timestamp_ms: int | None = None) -> bool:
        """Update every open window containing the event time with `fn(old) -> new`.
        Returns False (and counts the event as late) when all its windows are already closed."""
        ts = self.event_time_of() if timestamp_ms is None else timestamp_ms
        wm = self.watermark_of()
        store = self._store()
        applied = False
        for w in windows_for(ts, size_ms=self.size_ms, step_ms=self.step_ms):
            if is_closed(w.end_ms, grace_ms=self.grace_ms, watermark_ms=wm):
                continue
            packed = pack_window_key(key, w.start_ms)
            old = store.get(packed, MISSING)
            if old is MISSING:
                old = self._default_value()
                self._track(store, packed, w)
            store[packed] = fn(old)
            applied = True
        if not applied:
            self.late_dropped += 1
        return applied

    def current(self, key: str, *, timestamp_ms: int | None = None) -> Any:
        """Value of the latest window containing the event time (the default if none yet)."""
        ts = self.event_time_of() if timestamp_ms is None else timestamp_ms
        w = windows_for(ts, size_ms=self.size_ms, step_ms=self.step_ms)[-1]
        value = self._store().get(pack_window_key(key, w.start_ms), MISSING)
        return self._default_value() if value is MISSING else value

    # -- reads ------------------------------------------------------------------------------------------
    def windows(self, key: str, *, store: PartitionStore | None = None) -> list[tuple[Window, Any]]:
        """Stored (open and retained closed) windows of a key, oldest first; searches every local
        partition when called outside an agent."""
        stores = [store] if store is not None else ([self.active] if self.active else list(self.stores.values()))
        out: list[tuple[Window, Any]] = []
        for st in stores:
            for packed, value in st.items(window_prefix(key)):
                _, start = unpack_window_key(packed)
                out.append((Window(start, start + self.size_ms), value))
        return sorted(out, key=lambda item: item[0])

    # -- engine hooks ---------------------------------------------------------------------------------
    def _track(self, store: PartitionStore, packed: str, w: Window) -> None:
        idx = self._index.get(id(store))
        if idx is None or packed in idx.known:
            return
        idx.known.add(packed)
        heapq.heappush(idx.closing, (w.end_ms + self.grace_ms, packed))
        self.note_due(w.end_ms + self.grace_ms)

    def attach(self, store: PartitionStore, watermark_ms: int) -> None:
        """Rebuild the open/retained window index of a newly assigned partition from its store."""
        idx = self._index[id(store)] = _PartitionWindows()
        for packed, _ in store.items():
            _, start = unpack_window_key(packed)
            end = start + self.size_ms
            if is_closed(end, grace_ms=self.grace_ms, watermark_ms=watermark_ms):
                heapq.heappush(idx.expiring, (end + self.grace_ms + self.retention_ms, packed))
            else:
                idx.known.add(packed)
                heapq.heappush(idx.closing, (end + self.grace_ms, packed))

    def detach(self, store: PartitionStore) -> None:
        self._index.pop(id(store), None)

    def next_due(self, store: PartitionStore) -> int | None:
        idx = self._index.get(id(store))
        if idx is None:
            return None
        dues = [h[0][0] for h in (idx.closing, idx.expiring) if h]
        return min(dues) if dues else None

    def close_due(self, store: PartitionStore, watermark_ms: int, ctx: AgentContext) -> int:
        """Close windows whose end + grace <= watermark (calling on_close), expire old closed ones.
        Returns how many windows closed."""
        idx = self._index.get(id(store))
        if idx is None:
            return 0
        closed = 0
        while idx.closing and idx.closing[0][0] <= watermark_ms:
            close_at, packed = heapq.heappop(idx.closing)
            idx.known.discard(packed)
            value = store.get(packed, MISSING)
            if value is MISSING:
                continue
            key, start = unpack_window_key(packed)
            if self.close_callback is not None:
                self.close_callback(key, Window(start, start + self.size_ms), value, ctx)
            closed += 1
            if self.retention_ms > 0:
                heapq.heappush(idx.expiring, (close_at + self.retention_ms, packed))
                self.note_due(close_at + self.retention_ms)
            else:
                del store[packed]
        while idx.expiring and idx.expiring[0][0] <= watermark_ms:
            _, packed = heapq.heappop(idx.expiring)
            if packed not in idx.known:
                store.pop(packed)
        return closed


def _duration_or_zero(value: str | int | None) -> int:
    """A duration in ms where 0 / "0" / "" / None mean none."""
    if isinstance(value, str):
        return 0 if value.strip() in ("", "0") else parse_duration_ms(value)
    return int(value or 0)
