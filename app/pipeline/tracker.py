"""Status and metric windows of every identity, in one table.

One value per identity ("subject/name") holds its StatusState and its open metric windows of every
configured size (app.pipeline.status, app.pipeline.windows): an event costs one table read and one
write, and a commit writes each changed identity once, instead of once per concern. Per identity:

- Status: folded from each event; changes go to `status` (vigil.Status), alerts to `alerts`.
- Absence: a wall-clock timer (key: the identity) at the deadline the last event's ttl promised;
  see `Tracker.absence_due` for how it fires on time without firing during a catch-up.
- Windows: an event-time timer (key: CLOSE_TIMER_PREFIX + identity) at the earliest end + grace
  of its open windows; closed windows go to `metrics` (vigil.WindowAggregate) and, for queries,
  to the `metric-windows` table for `window_retention`.
- Archive: the references (time, id) of its newest events, handed to the archive index as a page
  once there are PAGE_SIZE of them (app.pipeline.archive).
- Expiry: an event-time timer (key: EXPIRE_TIMER_PREFIX + identity) at the check time of its last
  event (app.runtime.expiry); an identity not seen for `state_retention` is forgotten then, unless
  an absence deadline or an open window still holds it: its waiting references become an archive
  page, its row is deleted and a tombstone goes to `status` (the compacted topic forgets it too).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson

from app.globs import glob_matcher, is_glob
from app.pipeline.archive import PAGE_SIZE, EventRef, refs_from_json
from app.pipeline.buckets import BUCKET_MS, BucketedTable
from app.pipeline.config import PipelineConfig
from app.pipeline.query import key_prefix
from app.pipeline.status import StatusState, copy_status, expire, fold_into, fold_status, to_status_record
from app.pipeline.validate import NormalizedEvent
from app.pipeline.windows import (
    JSON_OPTIONS,
    OpenWindows,
    Sample,
    WindowCodec,
    WindowValue,
    add_samples,
    close_due,
    copy_windows,
    new_windows,
    to_window_record,
    window_from_json,
)
from app.runtime.context import AgentContext
from app.runtime.expiry import ExpiryMetrics, check_at_ms, decide, moves_check
from app.runtime.keys import SEP, identity_part, pack, pack_int, pack_time, prefix, unpack, unpack_int, unpack_time
from app.runtime.tables import Table

__all__ = ["ALERTS_TOPIC", "CLOSE_TIMER_PREFIX", "EXPIRE_TIMER_PREFIX", "METRICS_TOPIC", "STATUS_TOPIC", "Tracked",
           "Tracker", "TrackerBatch", "held_until_ms"]

STATUS_TOPIC: Final = "status"
ALERTS_TOPIC: Final = "alerts"
METRICS_TOPIC: Final = "metrics"
#: Window-closing timers are keyed by this + the identity (absence timers by the identity itself).
CLOSE_TIMER_PREFIX: Final = SEP + "close" + SEP
#: Expiry check timers are keyed by this + the identity.
EXPIRE_TIMER_PREFIX: Final = SEP + "expire" + SEP
#: How often an absence deadline that passed on the wall clock is checked again while the
#: partition's event time is still catching up (see Tracker.absence_due).
ABSENCE_RECHECK_MS: Final = 1000
#: (subject, name, references, ctx) -> None
PageWriter = Callable[[str, str, tuple[EventRef, ...], Any], None]


def close_delay_ms(key: str, spread_ms: int) -> int:
    """The fixed delay (0 <= delay < spread_ms; 0 when spread_ms is 0) of an identity's window-closing
    timer (see app.pipeline.config.DEFAULT_CLOSE_SPREAD_MS). Lateness is unaffected: it is decided by
    the window's end + grace, not by the timer. A stable hash (not Python's salted one): replays
    publish at the same point."""
    return zlib.crc32(key.encode()) % spread_ms if spread_ms > 0 else 0


@dataclass(slots=True)
class Tracked:
    """What the tracker keeps per identity. Once in the table a value never changes: updates work
    on a private `copy()` and store that (the copy shares the status: the tracker folds a batch's
    events into a `copy_status` of it)."""

    status: StatusState
    #: open windows per configured size (app.pipeline.windows.OpenWindows)
    windows: OpenWindows
    #: when the identity's window-closing timer is armed for, None when none is
    close_at_ms: int | None
    #: references (app.pipeline.archive.EventRef) of the events not yet in a page of the archive's find index
    recent: list[EventRef]

    def copy(self) -> Tracked:
        """A private copy to update in place (windows copy-on-write: see app.pipeline.windows)."""
        return Tracked(self.status, copy_windows(self.windows), self.close_at_ms, self.recent.copy())


class TrackedCodec:
    """Table codec for Tracked: JSON written by orjson directly (StatusState as an object), with the
    window sizes alongside, so changing the configured sizes keeps the windows of sizes still
    configured."""

    name = "vigil-tracked"

    def __init__(self, sizes_ms: tuple[int, ...]) -> None:
        self.sizes_ms = sizes_ms

    def encode(self, value: Tracked) -> bytes:
        return orjson.dumps((self.sizes_ms, value.status, value.windows, value.close_at_ms, value.recent),
                            option=JSON_OPTIONS)

    def decode(self, data: bytes) -> Tracked:
        sizes, status, stored, close_at_ms, recent = orjson.loads(data)
        by_size = dict(zip(sizes, stored, strict=True))
        windows = [[[start, window_from_json(v)] for start, v in by_size.get(size, ())] for size in self.sizes_ms]
        return Tracked(StatusState.from_dict(status), windows, close_at_ms, refs_from_json(recent))


class TrackerBatch:
    """The identities one batch of events touched: a private copy of each one's state (status
    updated in place, event after event), the metrics of their events (added to their windows at
    the end, all of an identity's at once), and what their timers were before, to arm or move them
    once at the end."""

    __slots__ = ("before", "samples", "states", "watermark_ms")

    def __init__(self, watermark_ms: int) -> None:
        #: identity -> its state as updated so far (a private copy)
        self.states: dict[str, Tracked] = {}
        #: identity -> the metrics of its events in this batch, for its windows
        self.samples: dict[str, list[Sample]] = {}
        #: identity -> (absence deadline, close timer, last seen) before the batch (None: a new identity)
        self.before: dict[str, tuple[int | None, int | None, int | None]] = {}
        #: the partition's event-time watermark at the event being applied
        self.watermark_ms = watermark_ms


class Tracker:
    """Status, alerts, absence and metric windows per identity."""

    def __init__(self, config: PipelineConfig, *, on_page: PageWriter, window_records: bool = True) -> None:
        #: called with (subject, name, references, ctx) when PAGE_SIZE references are waiting
        self.on_page = on_page
        #: whether closed windows are sent as vigil.WindowAggregate records; when nothing reads them
        #: (a backtest) they are only counted, in windows_unsent (encoding the sketch, quantiles: ~6%)
        self.window_records = window_records
        self.windows_unsent = 0
        self.flap = config.flap_policy
        self.sizes_ms: tuple[int, ...] = config.window_sizes_ms
        self.grace_ms = config.grace_ms
        self.close_spread_ms = config.close_spread_effective_ms
        self.table = Table("identities", codec=TrackedCodec(self.sizes_ms),
                           help="identity -> status and open metric windows")
        self.closed = BucketedTable("metric-windows", retention_ms=config.window_retention_ms, codec=WindowCodec(),
                                    help="closed windows kept for queries")
        self.keep_closed = config.window_retention_ms > 0
        #: events dropped from windows as late (per window size), since start
        self.late_dropped = 0
        #: an identity without events for this long (event time) is forgotten; 0: never
        self.retention_ms = config.state_retention_ms
        #: identities forgotten (kind "identity")
        self.expiry = ExpiryMetrics()

    @property
    def tables(self) -> tuple[Table, ...]:
        return self.table, *self.closed.tables

    def take_unsent_windows(self) -> int:
        """The window records closed and not sent (window_records off) since the last call."""
        unsent, self.windows_unsent = self.windows_unsent, 0
        return unsent

    # -- inside the agent -----------------------------------------------------------------------------
    def apply(self, key: str, ev: NormalizedEvent, ref: EventRef, ctx: AgentContext, batch: TrackerBatch) -> None:
        """Fold one accepted event into its identity: status and alerts now; its metrics are kept
        for `finish`, which adds them to the windows, stores the copies and arms timers."""
        states = batch.states
        tracked = states.get(key)
        if tracked is None:
            stored = self.table.get(key)
            if stored is not None:
                tracked = states[key] = stored.copy()
                tracked.status = copy_status(stored.status)  # the batch's events fold into it in place
                batch.before[key] = (stored.status.expected_by_ms, stored.close_at_ms, stored.status.last_seen_ms)
        if tracked is None:  # the identity's first event
            update = fold_status(None, ev, flap=self.flap)
            status = update.state
            changed, alert = update.changed, update.alert
            tracked = states[key] = Tracked(status, new_windows(self.sizes_ms), None, [ref])
            batch.before[key] = (None, None, None)
        else:
            status = tracked.status
            folded = fold_into(status, ev, flap=self.flap)
            if folded is None:
                return  # a duplicate delivery of the last event: nothing changes, windows included
            changed, alert = folded
            recent = tracked.recent
            # A page holds one hour of one identity (so it ages out with its hour) and at most PAGE_SIZE.
            if recent and (len(recent) >= PAGE_SIZE or recent[0][0] // BUCKET_MS != ev.time_ms // BUCKET_MS):
                self.on_page(status.subject, status.name, tuple(recent), ctx)
                recent.clear()
            recent.append(ref)
        if ev.metrics:
            sample = (ev.time_ms, ev.metrics, batch.watermark_ms)
            samples = batch.samples.get(key)
            if samples is None:
                batch.samples[key] = [sample]
            else:
                samples.append(sample)
        self._publish(key, status, changed, alert, ctx)

    def finish(self, batch: TrackerBatch, ctx: AgentContext) -> None:
        """Add the batch's metrics to the windows, store the updated identities and arm, move or
        cancel their timers."""
        all_samples = batch.samples
        for key, tracked in batch.states.items():
            samples = all_samples.get(key)
            if samples is not None:
                late, opened_close_ms = add_samples(tracked.windows, self.sizes_ms, samples, grace_ms=self.grace_ms)
                self.late_dropped += late
                if opened_close_ms is not None and (tracked.close_at_ms is None
                                                    or opened_close_ms < tracked.close_at_ms):
                    tracked.close_at_ms = opened_close_ms
            self.table[key] = tracked
            deadline_before, close_before, seen_before = batch.before[key]
            if tracked.close_at_ms is not None and tracked.close_at_ms != close_before:
                self._arm_close(ctx, key, tracked.close_at_ms)
            deadline = tracked.status.expected_by_ms
            if deadline != deadline_before:
                if deadline is not None:
                    # The payload names the deadline the timer was armed for: `expire` ignores a timer
                    # that a newer event has since replaced (exactly one expiry per silence).
                    ctx.timers.schedule(key, deadline, kind="wall", payload=[deadline, None])
                else:
                    ctx.timers.cancel(key)
            seen = tracked.status.last_seen_ms
            if seen != seen_before and moves_check(seen_before, seen, self.retention_ms):
                ctx.timers.schedule(EXPIRE_TIMER_PREFIX + key, check_at_ms(seen, self.retention_ms), kind="event")

    def owns_timer(self, timer_key: str) -> bool:
        return (timer_key.startswith(CLOSE_TIMER_PREFIX) or timer_key.startswith(EXPIRE_TIMER_PREFIX)
                or self.closed.owns_timer(timer_key))

    def on_timer(self, timer_key: str, payload: Any, ctx: AgentContext) -> None:
        """A window-closing, expiry check or closed-window pruning timer fired."""
        if timer_key.startswith(CLOSE_TIMER_PREFIX):
            self._close_windows(timer_key[len(CLOSE_TIMER_PREFIX):], ctx)
        elif timer_key.startswith(EXPIRE_TIMER_PREFIX):
            self._check_expiry(timer_key[len(EXPIRE_TIMER_PREFIX):], ctx)
        else:
            self.closed.prune(timer_key)

    def _check_expiry(self, key: str, ctx: AgentContext) -> None:
        """The expiry check of an identity is due: forget it if it was not seen for the retention and
        owes nothing (app.runtime.expiry.decide), else check again when the verdict says."""
        stored = self.table.get(key)
        if stored is None:
            return
        status = stored.status
        verdict = decide(active_ms=status.last_seen_ms, watermark_ms=ctx.watermark, retention_ms=self.retention_ms,
                         held_until_ms=held_until_ms(stored, self.close_spread_ms))
        if verdict.expire:
            if stored.recent:  # still findable by id and in `vigil events find` for the archive's retention
                self.on_page(status.subject, status.name, tuple(stored.recent), ctx)
            del self.table[key]
            ctx.send(STATUS_TOPIC, key, None)
            self.expiry.count("identity")
        elif verdict.recheck_at_ms is not None:
            ctx.timers.schedule(EXPIRE_TIMER_PREFIX + key, verdict.recheck_at_ms, kind="event")

    def absence_due(self, key: str, payload: list[Any], ctx: AgentContext) -> None:
        """The wall clock passed the absence deadline of `key`.

        The wall clock alone cannot tell a silent identity from a partition whose backlog is still
        being read (after a restart, say): there the next event may be waiting unread. So the
        identity expires when the partition's event time (watermark) has passed the deadline too,
        or when the watermark did not move since the previous check (nothing is flowing: the wall
        clock decides). Otherwise the deadline is checked again ABSENCE_RECHECK_MS later."""
        deadline_ms, watermark_then = payload
        if ctx.watermark < deadline_ms and ctx.watermark != watermark_then:
            ctx.timers.schedule(key, ctx.now_ms() + ABSENCE_RECHECK_MS, kind="wall",
                                payload=[deadline_ms, ctx.watermark])
            return
        tracked = self.table.get(key)
        if tracked is None:
            return
        update = expire(tracked.status, deadline_ms=deadline_ms, flap=self.flap)
        if update.changed:
            # windows and references are shared with the stored value, which nothing changes
            self.table[key] = Tracked(update.state, tracked.windows, tracked.close_at_ms, tracked.recent)
            self._publish(key, update.state, update.changed, update.alert, ctx)

    def _close_windows(self, key: str, ctx: AgentContext) -> None:
        stored = self.table.get(key)
        if stored is None:
            return
        tracked = stored.copy()
        closed, next_close_ms = close_due(tracked.windows, self.sizes_ms, grace_ms=self.grace_ms,
                                          watermark_ms=ctx.watermark)
        status = tracked.status
        for size_ms, start_ms, value in closed:
            if not self.window_records:
                self.windows_unsent += len(value)
            else:
                for metric, obs in value.items():
                    record = to_window_record(obs, subject=status.subject, name=status.name, metric=metric,
                                              window_start_ms=start_ms, size_ms=size_ms)
                    ctx.send(METRICS_TOPIC, key, record, schema="vigil.WindowAggregate")
            if self.keep_closed:
                self.closed.put(start_ms, _closed_key(status.subject, status.name, size_ms, start_ms), value, ctx)
        tracked.close_at_ms = next_close_ms
        self.table[key] = tracked
        if next_close_ms is not None:
            self._arm_close(ctx, key, next_close_ms)

    def _arm_close(self, ctx: AgentContext, key: str, close_at_ms: int) -> None:
        ctx.timers.schedule(CLOSE_TIMER_PREFIX + key, close_at_ms + close_delay_ms(key, self.close_spread_ms),
                            kind="event")

    @staticmethod
    def _publish(key: str, status: StatusState, changed: bool, alert: dict[str, Any] | None, ctx: AgentContext) -> None:
        if changed:
            ctx.send(STATUS_TOPIC, key, to_status_record(status), schema="vigil.Status")
        if alert is not None:
            ctx.send(ALERTS_TOPIC, key, alert, schema="vigil.Alert")

    def bound_refs(self) -> Iterator[tuple[str, str, list[EventRef]]]:
        """(subject, name, waiting references) of every identity of the bound partition (inside
        the agent: on_rebuild)."""
        for _, tracked in self.table.items():
            yield tracked.status.subject, tracked.status.name, tracked.recent

    # -- outside agents (HTTP queries) ----------------------------------------------------------------
    def statuses(self, *, subject: str = "*", name: str = "*", state: str | None = None) -> list[dict[str, Any]]:
        """Statuses of matching identities in the local partitions, sorted by subject and name."""
        match_subject, match_name = glob_matcher(subject), glob_matcher(name)
        out = []
        for tracked in self._candidates(subject, name):
            status = tracked.status
            if match_subject(status.subject) and match_name(status.name) and (state is None or status.state == state):
                out.append({**to_status_record(status), "expected_by": status.expected_by_ms})
        out.sort(key=lambda s: (s["subject"], s["name"]))
        return out

    def _candidates(self, subject: str, name: str) -> Iterator[Tracked]:
        if not is_glob(subject) and not is_glob(name):
            found = self.table.lookup(f"{subject}/{name}")
            if found is not None:
                yield found
            return
        for _, tracked in self.table.all_items(key_prefix(subject, name, separator="/")):
            yield tracked

    def waiting_refs(self, *, subject: str = "*", name: str = "*") -> list[tuple[str, str, tuple[EventRef, ...]]]:
        """(subject, name, event references not yet in an archive page) of identities that may match
        the globs (the archive's find filters them exactly)."""
        return [(t.status.subject, t.status.name, tuple(t.recent)) for t in self._candidates(subject, name) if t.recent]

    def windows(self, *, subject: str, name: str, metric: str | None = None, size_ms: int | None = None,
                last: int = 10) -> list[dict[str, Any]]:
        """The latest `last` windows (open, or closed within retention) of one identity per size, oldest
        first, as WindowAggregate fields without the sketch bytes plus `closed`."""
        found: dict[int, dict[int, tuple[WindowValue, bool]]] = {size: {} for size in self.sizes_ms}
        identity = identity_part(subject, name)
        for partition in self.closed.partitions():
            for rest, value in self.closed.scan(partition, prefix=prefix(identity)):
                stored_identity, size_part, start_part = unpack(rest, 3)
                size = unpack_int(size_part)
                if stored_identity == identity and size in found:  # (a name may hold the separator)
                    found[size][unpack_time(start_part)] = (value, True)
        tracked = self.table.lookup(f"{subject}/{name}")
        if tracked is not None:
            for size, open_ in zip(self.sizes_ms, tracked.windows, strict=True):
                for start, value in open_:
                    found[size][start] = (value, False)
        out: list[dict[str, Any]] = []
        for size, by_start in found.items():
            if size_ms is not None and size != size_ms:
                continue
            for start in sorted(by_start)[-last:] if last > 0 else []:
                value, closed = by_start[start]
                for m, obs in value.items():
                    if metric is None or m == metric:
                        record = to_window_record(obs, subject=subject, name=name, metric=m, window_start_ms=start,
                                                  size_ms=size)
                        del record["sketch"]
                        out.append({**record, "closed": closed})
        return out


def held_until_ms(tracked: Tracked, close_spread_ms: int) -> int | None:
    """Until when an identity still owes something, so expiry must wait: its absence deadline (the
    alert for a broken ttl promise fires first) and the closing of its open windows; None: nothing."""
    deadline = tracked.status.expected_by_ms
    close = tracked.close_at_ms
    if close is None:
        return deadline
    close += close_spread_ms
    return close if deadline is None or close > deadline else deadline


def _closed_key(subject: str, name: str, size_ms: int, start_ms: int) -> str:
    """The key of a closed window in `metric-windows` after its hour bucket: (identity, size, start)."""
    return pack(identity_part(subject, name), pack_int(size_ms), pack_time(start_ms))
