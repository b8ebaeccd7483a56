"""Byte-level store backends. The mapping API, caching and changelog batching live above these
(store.py), written once; a backend only gets, puts, deletes and iterates bytes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from rocksdict import Options, Rdict, ReadOptions, WriteBatch, WriteOptions

__all__ = ["MemoryBackend", "RocksBackend", "StoreBackend"]


class StoreBackend(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def write(self, puts: Iterable[tuple[bytes, bytes | None]], *, wal: bool = True) -> None:
        """Apply (key, value) puts (None = delete) atomically, in order (a later put of a key wins).
        wal=False: without a write-ahead log, so a crash may lose the last such writes (whole
        writes, newest first) until the backend is closed."""
        ...

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...


class MemoryBackend:
    """A dict; for the test harness and tests that need no disk."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def write(self, puts: Iterable[tuple[bytes, bytes | None]], *, wal: bool = True) -> None:
        for k, v in puts:
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        for k in sorted(self.data):
            if k.startswith(prefix):
                yield k, self.data[k]

    def close(self) -> None:
        pass


class RocksBackend:
    """One RocksDB (via rocksdict) per table partition, raw bytes in and out."""

    def __init__(self, path: Path, *, write_buffer_bytes: int | None = None) -> None:
        """write_buffer_bytes: the memtable size (RocksDB's default, 64 MiB, when None)."""
        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_keep_log_file_num(2)
        if write_buffer_bytes is not None:
            opts.set_write_buffer_size(write_buffer_bytes)
        self.path = path
        self.db = Rdict(str(path), options=opts)
        self._without_wal = WriteOptions()
        # a property at run time (rocksdict 0.3.x), a method in its stub
        self._without_wal.disable_wal = True  # type: ignore[method-assign,assignment]

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def write(self, puts: Iterable[tuple[bytes, bytes | None]], *, wal: bool = True) -> None:
        # pairs, not a dict: a restore hands its changelog records over as they came (building a
        # dict of them took ~7% of a cold restore)
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        for k, v in puts:
            if v is None:
                delete(k)
            else:
                put(k, v)
        if batch.is_empty():
            return
        if wal:
            self.db.write(batch)
        else:
            self.db.write(batch, self._without_wal)

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        it = self.db.iter(ReadOptions())
        it.seek(prefix)
        while it.valid():
            k = it.key()
            if not k.startswith(prefix):
                break
            yield k, it.value()
            it.next()

    def close(self) -> None:  # RocksDB flushes what was written without the log when it closes
        self.db.close()

    @staticmethod
    def destroy(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
