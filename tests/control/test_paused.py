"""The cyclic collector held back while a large answer is built (meshd/control/paused.py)."""

from __future__ import annotations

import gc

import pytest

from meshd.control.paused import collector_paused


def test_the_collector_waits_for_the_block_and_is_left_as_it_was() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a caller's pause (the daemon's start) is kept
    finally:
        gc.enable()
    with pytest.raises(KeyError), collector_paused():
        raise KeyError("x")
    assert gc.isenabled()
