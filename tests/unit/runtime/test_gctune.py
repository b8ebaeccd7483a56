"""Pausing the cyclic garbage collector around a block (app.runtime.gctune.gc_paused)."""

from __future__ import annotations

import gc

import pytest

from app.runtime.gctune import gc_paused


def test_off_inside_on_again_after_even_when_the_block_fails() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
