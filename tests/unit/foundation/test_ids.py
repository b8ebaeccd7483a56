"""Ids: deterministic ids are exactly the UUIDv5-layout strings of their SHA-256 digest."""

import hashlib
import uuid

from hypothesis import given
from hypothesis import strategies as st

from app.model.ids import deterministic_id, id_time_ms, new_id


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_deterministic_id_is_the_uuid5_layout_of_the_digest(parts: list[str]) -> None:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()[:16]
    assert deterministic_id(*parts) == str(uuid.UUID(bytes=digest, version=5))


def test_deterministic_id_is_stable_and_distinguishes_parts() -> None:
    assert deterministic_id("vigil.Alert", "web-1", "cpu") == deterministic_id("vigil.Alert", "web-1", "cpu")
    assert deterministic_id("a", "bc") != deterministic_id("ab", "c")
    assert uuid.UUID(deterministic_id("x")).version == 5


def test_new_id_carries_its_time() -> None:
    assert id_time_ms(new_id(1_700_000_000_123)) == 1_700_000_000_123
    assert id_time_ms("not an id") is None
