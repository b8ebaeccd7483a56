"""The pipeline agent's per-event loop: each record of a batch is validated once, indexed in the
archive and folded into its identity by the tracker, in offset order; the batch's id index entries
and identity states are written at the end. Pure (it calls the stages and the callbacks it is given)
and compiled with the stages (app.native), so when built the loop itself costs no interpreter time
per event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.pipeline.archive import ArchiveIndex
from app.pipeline.tracker import Tracker, TrackerBatch
from app.pipeline.validate import EVENT_TYPE, Rejection, normalize_event
from app.runtime.context import AgentContext

__all__ = ["MisroutedHandler", "RejectHandler", "process_records"]

#: (rejection, record, ctx) -> None: dead-letter a record that failed validation
RejectHandler = Callable[[Rejection, Any, Any], None]
#: (Kafka key, identity key) -> None: an event keyed other than by its identity
MisroutedHandler = Callable[[Any, str], None]


def process_records(records: list[Any], event_times: list[int], ctx: AgentContext, *, archive: ArchiveIndex,
                    tracker: Tracker, max_future_ms: int, on_reject: RejectHandler,
                    on_misrouted: MisroutedHandler) -> None:
    """Run a batch of one partition's records (engine InRecords, in offset order, with their event
    times) through validation, the archive index and the tracker."""
    if len(records) != len(event_times):
        raise ValueError(f"{len(records)} records but {len(event_times)} event times")
    now_ms: int = ctx.now_ms()
    batch = TrackerBatch(ctx.watermark)
    ids: dict[str, str] = {}
    for i, record in enumerate(records):
        time_ms = event_times[i]
        if time_ms > batch.watermark_ms:
            batch.watermark_ms = time_ms
        ev = normalize_event(record.value, record.type_name or EVENT_TYPE, now_ms=now_ms,
                             max_future_ms=max_future_ms)
        if isinstance(ev, Rejection):
            on_reject(ev, record, ctx)
            continue
        key = f"{ev.subject}/{ev.name}"
        if key != record.key:
            on_misrouted(record.key, key)
        ref = ArchiveIndex.ref(ev, record.offset)
        ArchiveIndex.add(ids, ev.subject, ev.name, ref)
        tracker.apply(key, ev, ref, ctx, batch)
    archive.index(ids)
    tracker.finish(batch, ctx)
