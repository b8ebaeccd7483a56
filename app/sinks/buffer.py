"""A bounded on-disk queue of encoded batches, for a sink whose destination is down.

One file per batch (`<sequence>.batch`: a header with a CRC and the batch's sample count, then
the payload), written to a temporary name and renamed, so a crash leaves whole batches or none.
A restart finds them again in order. The total stays under `max_bytes`: to take a new batch the
oldest are dropped, and their samples counted (the newest data is worth most, and receivers such as
Prometheus refuse samples that are too old anyway). A directory is held by one process at a time
(an flock on `LOCK`); `claim` gives a second worker on the same state_dir a directory of its own
beside the first (`<dir>-2`, ...), so workers on one host never share a buffer.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from app.sinks.types import Payload

__all__ = ["BufferLocked", "DiskBuffer", "Stored", "claim_buffer"]

#: How many directories `claim_buffer` tries (workers with one state_dir on one host).
MAX_CLAIMS: Final = 64

log = logging.getLogger(__name__)

_MAGIC: Final = b"VSB1"
#: magic, crc32 of the payload, sample count
_HEADER: Final = struct.Struct(">4sIQ")
_SUFFIX: Final = ".batch"


class BufferLocked(Exception):
    """Another process holds the buffer directory."""


@dataclass(frozen=True, slots=True)
class Stored:
    """A batch in the buffer: its sequence number, size on disk and sample count."""

    seq: int
    size: int
    samples: int


class DiskBuffer:
    """Batches on disk, oldest first. Not thread-safe: one sender thread owns it.

    `on_drop(reason, samples)` is told of every batch given up: "buffer_full" (pushed out by a new
    batch), "corrupt" (a file that does not read back)."""

    def __init__(self, directory: Path, *, max_bytes: int, on_drop: Callable[[str, int], None]) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "LOCK", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise BufferLocked(f"{directory}: another process holds this sink buffer (two workers with one "
                               "state_dir? give each its own state_dir or buffer_dir)") from None
        self._items: deque[Stored] = deque()
        self.bytes = 0
        self._load()

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    def _load(self) -> None:
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)  # a write cut short by a crash: never renamed, never counted
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                seq = int(path.stem)
                with path.open("rb") as f:
                    magic, _, samples = _HEADER.unpack(f.read(_HEADER.size))
                if magic != _MAGIC:
                    raise ValueError("bad magic")
                size = path.stat().st_size
            except (ValueError, struct.error, OSError) as exc:
                log.warning("sink buffer %s: dropping unreadable %s: %s", self.directory, path.name, exc)
                path.unlink(missing_ok=True)
                self.on_drop("corrupt", 0)
                continue
            self._items.append(Stored(seq, size, samples))
            self.bytes += size
        if self._items:
            log.info("sink buffer %s: %d batch(es), %d bytes left from before", self.directory, len(self._items),
                     self.bytes)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self._items)

    def append(self, payload: Payload) -> bool:
        """Store a batch (dropping the oldest to make room); False when it alone exceeds max_bytes
        (then it is dropped and counted as buffer_full)."""
        size = _HEADER.size + len(payload.body)
        if size > self.max_bytes:
            self.on_drop("buffer_full", payload.samples)
            return False
        while self._items and self.bytes + size > self.max_bytes:
            self.on_drop("buffer_full", self._pop_oldest().samples)
        seq = self._items[-1].seq + 1 if self._items else 0
        path = self._path(seq)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(_HEADER.pack(_MAGIC, zlib.crc32(payload.body), payload.samples))
            f.write(payload.body)
        tmp.rename(path)
        self._items.append(Stored(seq, size, payload.samples))
        self.bytes += size
        return True

    def oldest(self) -> Payload | None:
        """The oldest batch (None: empty). A file that does not read back whole is dropped (corrupt)
        and the next one is tried."""
        while self._items:
            item = self._items[0]
            try:
                data = self._path(item.seq).read_bytes()
                magic, crc, samples = _HEADER.unpack_from(data)
                body = data[_HEADER.size:]
                if magic != _MAGIC or zlib.crc32(body) != crc:
                    raise ValueError("checksum mismatch")
            except (OSError, ValueError, struct.error) as exc:
                log.warning("sink buffer %s: dropping unreadable batch %d: %s", self.directory, item.seq, exc)
                self.on_drop("corrupt", self._pop_oldest().samples)
                continue
            return Payload(body, samples)
        return None

    def pop_oldest(self) -> None:
        """Forget the oldest batch (it was delivered, or refused for good)."""
        if self._items:
            self._pop_oldest()

    def _pop_oldest(self) -> Stored:
        item = self._items.popleft()
        self._path(item.seq).unlink(missing_ok=True)
        self.bytes -= item.size
        return item

    def close(self) -> None:
        """Release the directory (the batches stay for the next start)."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def claim_buffer(directory: Path, *, max_bytes: int, on_drop: Callable[[str, int], None]) -> DiskBuffer:
    """The buffer at `directory`, or when another process holds it, at the first free of
    `<directory>-2`, `-3`, ... (a restarted worker finds its batches again when it is alone, or
    takes over another's, which it sends just the same)."""
    for n in range(1, MAX_CLAIMS + 1):
        candidate = directory if n == 1 else directory.with_name(f"{directory.name}-{n}")
        try:
            return DiskBuffer(candidate, max_bytes=max_bytes, on_drop=on_drop)
        except BufferLocked:
            continue
    raise BufferLocked(f"{directory}: {MAX_CLAIMS} processes hold this sink buffer and its siblings; give the "
                       "workers state_dirs of their own (or sinks.<sink>.buffer_dir)")
