"""The userspace backend's ``wireguard-go``: a child that dies with the daemon.

A daemon killed with SIGKILL (or by the OOM killer) runs no clean-up: its ``wireguard-go``
would stay behind with the interface and its UAPI socket, and the next ``meshd up`` would
find the interface taken. So the child asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``, set by util-linux's ``setpriv --pdeathsig`` just before it execs the
command, so no Python runs between fork and exec); on SIGTERM ``wireguard-go`` removes its
interface and socket itself.

The kernel sends that signal when the *thread* that forked the child ends, not the process:
trio's ``open_process`` forks in a worker thread, which ends after 10 s idle and would take
``wireguard-go`` with it. So the child is forked here, in the thread running trio (the
daemon's main thread, which lives as long as the process; the fork takes about a millisecond
of it), and waited for on a pidfd. Without ``setpriv`` the child is started all the same,
and does not follow the daemon.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Final

import trio

DEATH_SIGNAL: Final = "TERM"


def tied(command: Sequence[str], setpriv: str | None = None) -> list[str]:
    """``command`` run so that it gets SIGTERM when its parent thread ends (as is when
    ``setpriv`` is not installed)."""
    program = setpriv or shutil.which("setpriv")
    if program is None:
        return list(command)
    return [program, "--pdeathsig", DEATH_SIGNAL, "--", *command]


class ChildProcess:
    """A child started by :func:`spawn_tied`: what the userspace backend needs of it."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def poll(self) -> int | None:
        return self._popen.poll()

    def send_signal(self, sig: int) -> None:
        self._popen.send_signal(sig)  # nothing once it has been waited for

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        """Wait until the child has exited (and reap it); its exit status."""
        while (code := self._popen.poll()) is None:
            pidfd = os.pidfd_open(self._popen.pid)
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        return code


def spawn_tied(command: Sequence[str], env: Mapping[str, str]) -> ChildProcess:
    """Start ``command`` from this thread (trio's), tied to it by :func:`tied`; its stdin
    and stdout are /dev/null, its stderr ours. OSError when it cannot be started."""
    popen = subprocess.Popen(
        tied(command), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    return ChildProcess(popen)
