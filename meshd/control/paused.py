"""Building a large answer without the cyclic garbage collector (pure).

``meshd peers`` at 10,000 members makes some 300,000 objects on each side of the control
socket: the rows, their values, the typed rows, the JSON. Each 700 new objects start a
collection of the youngest, every tenth of those a larger one, and now and then one of
the whole heap (the daemon's holds its membership): about a fifth of each side's time,
spent looking for cycles where there are none (the rows are trees, freed by their
reference counts). :func:`collector_paused` holds collections back for a step that only
builds such values, and lets them run again after it, as they were.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection within the block; the collector as it was after it. Only around
    code that does not yield to other tasks (no ``await`` inside)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
