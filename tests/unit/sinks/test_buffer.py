"""The on-disk buffer: order, the byte bound (oldest dropped and counted), restarts, damage."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from app.sinks.buffer import BufferLocked, DiskBuffer, claim_buffer
from app.sinks.types import Payload


def _buffer(path: Path, drops: Counter, max_bytes: int = 1000) -> DiskBuffer:
    return DiskBuffer(path, max_bytes=max_bytes, on_drop=lambda reason, n: drops.update({reason: n}))


def _drain(buffer: DiskBuffer) -> list[Payload]:
    out = []
    while (payload := buffer.oldest()) is not None:
        out.append(payload)
        buffer.pop_oldest()
    return out


def test_oldest_first__and_bytes_counted(tmp_path: Path) -> None:
    drops: Counter = Counter()
    buffer = _buffer(tmp_path, drops)
    for i in range(3):
        assert buffer.append(Payload(f"batch{i}".encode(), i + 1))
    assert len(buffer) == 3 and buffer.samples == 6 and buffer.bytes > 18
    assert _drain(buffer) == [Payload(b"batch0", 1), Payload(b"batch1", 2), Payload(b"batch2", 3)]
    assert buffer.bytes == 0 and not drops
    buffer.close()


def test_bounded__the_oldest_batches_go_and_their_samples_are_counted(tmp_path: Path) -> None:
    drops: Counter = Counter()
    buffer = _buffer(tmp_path, drops, max_bytes=200)
    for i in range(10):
        buffer.append(Payload(bytes([i]) * 50, 10))
    assert buffer.bytes <= 200
    kept = _drain(buffer)
    assert [p.body[0] for p in kept] == list(range(10 - len(kept), 10))
    assert drops == {"buffer_full": 10 * (10 - len(kept))}
    assert not buffer.append(Payload(b"x" * 500, 7))  # larger than the whole buffer: dropped at once
    assert drops["buffer_full"] == 10 * (10 - len(kept)) + 7
    buffer.close()


def test_survives_a_restart_in_order(tmp_path: Path) -> None:
    drops: Counter = Counter()
    first = _buffer(tmp_path, drops)
    first.append(Payload(b"one", 1))
    first.append(Payload(b"two", 2))
    first.close()
    (tmp_path / "00000000000000000009.tmp").write_bytes(b"half a write")  # a crash mid-write
    second = _buffer(tmp_path, drops)
    assert second.bytes > 0
    second.append(Payload(b"three", 3))
    assert _drain(second) == [Payload(b"one", 1), Payload(b"two", 2), Payload(b"three", 3)]
    assert not list(tmp_path.glob("*.tmp")) and not drops
    second.close()


def test_a_damaged_batch_is_dropped_and_counted_the_rest_delivered(tmp_path: Path) -> None:
    drops: Counter = Counter()
    buffer = _buffer(tmp_path, drops)
    buffer.append(Payload(b"first", 4))
    buffer.append(Payload(b"second", 5))
    damaged = sorted(tmp_path.glob("*.batch"))[0]
    damaged.write_bytes(damaged.read_bytes()[:-2] + b"XX")
    assert _drain(buffer) == [Payload(b"second", 5)]
    assert drops == {"corrupt": 4}
    buffer.close()


def test_one_process_per_directory(tmp_path: Path) -> None:
    drops: Counter = Counter()
    held = _buffer(tmp_path, drops)
    with pytest.raises(BufferLocked, match="another process"):
        _buffer(tmp_path, drops)
    held.close()
    _buffer(tmp_path, drops).close()


def test_claim__a_second_process_on_the_same_state_dir_gets_a_sibling(tmp_path: Path) -> None:
    drops: Counter = Counter()
    first = claim_buffer(tmp_path / "graphite", max_bytes=1000, on_drop=lambda r, n: None)
    second = claim_buffer(tmp_path / "graphite", max_bytes=1000, on_drop=lambda r, n: None)
    assert (first.directory.name, second.directory.name) == ("graphite", "graphite-2")
    second.append(Payload(b"kept", 1))
    second.close()
    again = claim_buffer(tmp_path / "graphite", max_bytes=1000, on_drop=lambda r, n: None)
    assert again.directory.name == "graphite-2" and again.oldest() == Payload(b"kept", 1)
    first.close()
    again.close()
    assert not drops
