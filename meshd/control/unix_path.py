"""A unix socket's path of any length, as ``bind`` and ``connect`` take it (Linux).

A socket address holds at most 107 bytes of path (``sun_path``, with its NUL): a state dir
deeper than ~95 bytes (a container's overlay, a home dir's nested checkout) put the control
socket out of reach, and the daemon ended right after it started, saying only ``AF_UNIX path
too long``. A longer path is reached through its directory, opened for the moment, as
``/proc/self/fd/N/NAME``: the kernel follows that link to the directory, and the socket is
made (or found) there, under its own name. Standard library only: the commands that ask the
daemon import it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Bytes of path a socket address holds (``sizeof(sun_path)`` is 108, with the NUL).
MAX_SUN_PATH = 107


@contextmanager
def reachable(path: Path) -> Iterator[str]:
    """``path`` as a socket address for ``bind`` or ``connect`` inside the block: itself when
    it fits, else through its directory opened (closed again on the way out). Raises what
    opening that directory raises (FileNotFoundError, NotADirectoryError, PermissionError)."""
    if len(os.fsencode(path)) <= MAX_SUN_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
