"""SIGHUP, SIGUSR1 and SIGUSR2 in the first second of a start, kept instead of fatal.

The daemon takes its signals once its event loop runs (meshd.daemon.launch); before that, for
the second or so of imports, the store's load and WireGuard's set-up, Python's default for
these three ended the process at once, leaving an interface or a lock behind (a log rotation
that sends SIGHUP, a ``kill -HUP`` while ``systemctl start`` is still waiting). ``meshd up``
calls :func:`hold` first (``meshd join``, which may wait long for its admission, ends on
them until its daemon runs, as a command in a closed terminal should): each such signal is
noted, and the daemon, once running, handles what came as if it came then
(:func:`taken`). A handler the embedding program installed (the memory benchmark's) is
left alone. Across the ``exec`` of meshd.daemon.reexec they are ignored
(:func:`ignore_across_exec`): what comes in that instant is dropped, not fatal, and the
fresh interpreter holds them again.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Final

EARLY: Final = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_seen: list[int] = []


def _note(signum: int, frame: FrameType | None) -> None:
    _seen.append(signum)


def hold() -> None:
    """Note :data:`EARLY` signals from now on where nothing else handles them."""
    for signum in EARLY:
        if signal.getsignal(signum) in (signal.SIG_DFL, signal.SIG_IGN):
            signal.signal(signum, _note)


def ignore_across_exec() -> None:
    """Ignore the held signals (an ignored signal stays so across ``exec``)."""
    for signum in EARLY:
        if signal.getsignal(signum) is _note:
            signal.signal(signum, signal.SIG_IGN)


def unhandled(signum: int) -> bool:
    """Whether nothing but this module (or the default) handles ``signum``."""
    return signal.getsignal(signum) in (signal.SIG_DFL, signal.SIG_IGN, _note)


def taken() -> list[int]:
    """The signals noted so far, in order; forgotten once taken."""
    found = _seen[:]
    del _seen[: len(found)]
    return found
