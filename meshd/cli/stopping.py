"""``meshd down``: stop the running daemon through its control socket, and wait for it.

Runs through the quick path (meshd.cli.quick) as well as the typer app: the standard
library, the control client and meshd.node.layout only. The daemon answers ``down`` and shuts
down as on SIGTERM (meshd.daemon.lifecycle); it has stopped when the state dir's lock
(``meshd.lock``, held by the daemon until its interface is gone) is free.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from meshd.cli.output import note
from meshd.control.client import ask
from meshd.control.commands import DownAnswer, DownRequest
from meshd.errors import ControlError, UsageError
from meshd.node.layout import Paths, resolve

DEFAULT_TIMEOUT = 30.0
_POLL = 0.05


def lock_held(path: Path) -> bool:
    """Whether a daemon holds the state dir lock at ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def down(state_dir: Path | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Ask the daemon of ``state_dir`` to stop; return once it has, or fail after ``timeout``."""
    paths = Paths(resolve(state_dir))
    pid: int | None
    try:
        answer = ask(paths.socket, DownRequest(), DownAnswer)
        stopping, pid = answer.stopping, answer.pid
    except ControlError as exc:
        if "closed the connection without answering" not in str(exc):
            raise
        stopping, pid = True, None  # it went down before its answer left
    if not stopping:
        raise UsageError(
            f"the daemon of {paths.root} cannot be stopped through its control socket",
            hint="it was not started by `meshd up`: stop it the way it was started",
        )
    wait_stopped(paths.root, pid, timeout)


def wait_stopped(root: Path, pid: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Return once the daemon of ``root`` has stopped (its lock is free); fail after
    ``timeout``."""
    paths = Paths(root)
    who = f" (pid {pid})" if pid is not None else ""
    lock = paths.root / "meshd.lock"
    deadline = time.monotonic() + timeout
    while lock_held(lock):
        if time.monotonic() >= deadline:
            raise ControlError(
                f"the daemon of {paths.root}{who} is still stopping after {timeout:g} s",
                hint="see its log; SIGTERM or, last, SIGKILL ends it"
                + (f" (`kill {pid}`)" if who else ""),
            )
        time.sleep(_POLL)
    note(f"meshd: the daemon of {paths.root}{who} stopped")


def raise_if_revoked(root: Path) -> None:
    """Fail with NodeRevoked (exit 10) if the daemon of ``root`` stopped for a revocation."""
    from meshd.errors import NodeRevoked

    try:
        reason = (root / "revoked").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return
    raise NodeRevoked.because(reason)
