"""A table whose keys start with the hour of an event time, read by time range and pruned by age.

    windows = BucketedTable("metric-windows", retention_ms=3_600_000)
    windows.put(time_ms, "web1\\x1eload\\x1f...", value, ctx)      # inside the agent
    windows.scan(partition, since_ms=..., until_ms=..., prefix="web1\\x1e")  # a query

Keys are (bucket, rest) packed by app.runtime.keys, `<bucket>\\x1f<rest>` with the bucket as 8 hex
digits (offset by 2**28), so one bucket is one key prefix.
Each bucket of a partition arms an event-time timer at bucket end + retention; when the partition's
watermark passes it the agent calls `prune`, which deletes the bucket. The sorted list of live
buckets of a partition is kept in a small companion table (`<name>-buckets`), so queries read only
buckets that exist and the check per write is one cached lookup. Used by the archive's find index and by retained
closed metric windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from app.runtime import keys
from app.runtime.codecs import Codec
from app.runtime.context import AgentContext
from app.runtime.tables import Table

__all__ = ["BUCKET_MS", "LIVE_BUCKETS_KEY", "BucketedTable"]

#: Event time covered by one bucket (the unit of range reads and of pruning).
BUCKET_MS: Final = 3_600_000
#: Key of the sorted list of live buckets of a partition, in the companion table.
LIVE_BUCKETS_KEY: Final = "live"
_BUCKET_OFFSET: Final = 1 << 28  # keeps hex buckets non-negative and sorted for any ms time


class BucketedTable:
    """A Table keyed by (hour bucket of a time, rest of the key), with retention by event time."""

    def __init__(self, name: str, *, retention_ms: int, codec: str | Codec | None = "json", help: str = "") -> None:
        self.table = Table(name, codec=codec, help=help)
        self.buckets = Table(f"{name}-buckets", help=f"live hour buckets of {name} per partition")
        self.retention_ms = retention_ms
        #: timers of this table's buckets are named `<prefix><bucket>` (never contains "/")
        self.timer_prefix = f"prune:{name}:"

    @staticmethod
    def bucket_of(time_ms: int) -> int:
        return time_ms // BUCKET_MS

    @staticmethod
    def prefix(bucket: int) -> str:
        """The key prefix of every entry in a bucket."""
        return keys.prefix(keys.pack_int(bucket, offset=_BUCKET_OFFSET))

    @staticmethod
    def key(bucket: int, rest: str) -> str:
        """The store key of an entry of a bucket."""
        return keys.pack(keys.pack_int(bucket, offset=_BUCKET_OFFSET), rest)

    # -- inside the agent -----------------------------------------------------------------------------
    def put(self, time_ms: int, rest: str, value: Any, ctx: AgentContext) -> None:
        """Store `value` under the bucket of `time_ms`, arming the bucket's prune timer if it is new."""
        bucket = time_ms // BUCKET_MS
        self.table[self.key(bucket, rest)] = value
        live = self.buckets.get(LIVE_BUCKETS_KEY)
        if live and (live[-1] == bucket or bucket in live):  # usually the newest bucket: one comparison
            return
        self.buckets[LIVE_BUCKETS_KEY] = sorted({*(live or ()), bucket})
        ctx.timers.schedule(f"{self.timer_prefix}{bucket}", (bucket + 1) * BUCKET_MS + self.retention_ms,
                            kind="event")

    def delete(self, time_ms: int, rest: str) -> None:
        """Remove one entry (the bucket stays live until its timer prunes it)."""
        self.table.pop(self.key(time_ms // BUCKET_MS, rest))

    def owns_timer(self, timer_key: str) -> bool:
        return timer_key.startswith(self.timer_prefix)

    def prune(self, timer_key: str) -> list[tuple[str, Any]]:
        """The prune timer of a bucket fired: delete the bucket; returns its (rest of key, value)s."""
        bucket = int(timer_key[len(self.timer_prefix):])
        prefix = self.prefix(bucket)
        doomed = list(self.table.items(prefix))
        for key, _ in doomed:
            del self.table[key]
        self.buckets[LIVE_BUCKETS_KEY] = [b for b in self.buckets.get(LIVE_BUCKETS_KEY) or () if b != bucket]
        return [(key[len(prefix):], value) for key, value in doomed]

    # -- outside agents -------------------------------------------------------------------------------
    @property
    def tables(self) -> tuple[Table, Table]:
        return self.table, self.buckets

    def partitions(self) -> list[int]:
        """The locally assigned partitions."""
        return sorted(self.table.stores)

    def scan(self, partition: int, *, since_ms: int | None = None, until_ms: int | None = None, prefix: str = "",
             newest_first: bool = False) -> Iterator[tuple[str, Any]]:
        """(rest of key, value) of one local partition's entries in the buckets overlapping
        [since_ms, until_ms] (None: unbounded) whose rest starts with `prefix`, bucket by bucket
        (callers filter exact times themselves)."""
        live = self.buckets.partition(partition).get(LIVE_BUCKETS_KEY) or ()
        buckets = [b for b in live if (since_ms is None or b >= since_ms // BUCKET_MS)
                   and (until_ms is None or b <= until_ms // BUCKET_MS)]
        store = self.table.partition(partition)
        for bucket in reversed(buckets) if newest_first else buckets:
            head = self.prefix(bucket)
            for key, value in store.items(head + prefix):
                yield key[len(head):], value
