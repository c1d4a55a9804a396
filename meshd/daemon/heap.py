"""The C heap of a long-running daemon: what glibc's malloc gives back to the system.

glibc serves an allocation of 128 KiB or more with a mapping of its own, returned to the system
when freed, but it raises that threshold to the size of every such block freed (up to 32 MiB):
after the daemon's first large buffers (the store's rows at start-up, a device read of every
WireGuard peer, a full sync message) came and went, every later one of that size was carved
from the heap instead, and what was freed there stayed in RSS, spread between live objects.
At 10,000 members that was ~3 MiB (~0.3 KiB a member) that ``malloc_trim`` could have given
back at any time (docs/footprint.md).

:func:`keep_heap_lean`, called once as the daemon starts, fixes the threshold at glibc's
default (a fixed value turns the raising off) and has free memory at the heap's top given back
past 256 KiB instead of 128 KiB, so the heap does not shrink and grow again for every
buffer that comes and goes. It also keeps every thread's allocations in the one heap (one
arena): glibc gives each thread that allocates an arena of its own, whose free memory stays
with it, and the daemon's few worker threads (the rest of the daemon imported in one at
start, the store's fsync, signature checks of a gossip batch, a metrics page) allocate
little and rarely at once: ~0.7 MiB of RSS less idle (61.8 against 62.5 MiB, docs/footprint.md).
An operator's own ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or
``MALLOC_ARENA_MAX`` (glibc's environment tunables) wins; on another C library nothing is
done.
"""

from __future__ import annotations

import os
from typing import Final

MMAP_THRESHOLD: Final = 128 * 1024
TRIM_THRESHOLD: Final = 256 * 1024
ARENA_MAX: Final = 1

# mallopt's parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_M_ARENA_MAX: Final = -8

# (parameter, its environment variable, its name in GLIBC_TUNABLES, our value)
_SETTINGS: Final = (
    (_M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold", MMAP_THRESHOLD),
    (_M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold", TRIM_THRESHOLD),
    (_M_ARENA_MAX, "MALLOC_ARENA_MAX", "glibc.malloc.arena_max", ARENA_MAX),
)


def keep_heap_lean() -> list[str]:
    """Set glibc's thresholds (see the module documentation); the names of those set."""
    if not _on_glibc():
        return []
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return []
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    done = []
    for param, variable, tunable, value in _SETTINGS:
        if variable in os.environ or tunable in tunables:
            continue  # the operator's choice
        if mallopt(param, value) == 1:
            done.append(variable)
    return done


def _on_glibc() -> bool:
    if "CS_GNU_LIBC_VERSION" not in os.confstr_names:
        return False
    version = os.confstr("CS_GNU_LIBC_VERSION")
    return bool(version) and str(version).startswith("glibc ")
