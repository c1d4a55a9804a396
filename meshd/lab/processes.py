"""The processes a lab runs in its hosts' namespaces: commands, daemons, and stopping them.

:class:`LabProcesses` is the part of :class:`meshd.lab.lab.Lab` that runs a command to
completion (``exec``), starts a long-running one such as meshd or wireguard-go (``spawn``)
and stops one; :func:`stop_children` is how ``stop()`` and ``close()`` stop them. Processes
left inside a run's namespaces by someone else are meshd.lab.teardown's.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from meshd.lab.commands import in_netns
from meshd.lab.plumbing import Host
from meshd.lab.state import LabState

log = logging.getLogger("meshd.lab")

EXEC_TIMEOUT = 30.0

Stream = int | IO[Any] | None


class LabProcesses(LabState):
    """Commands and long-running processes inside the hosts' namespaces."""

    def exec(
        self,
        host: str | Host,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = EXEC_TIMEOUT,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside a host's namespace and capture its output.

        ``env`` adds variables to the inherited environment. With ``check``, a non-zero exit
        raises ``subprocess.CalledProcessError``; past ``timeout`` the command is killed and
        ``subprocess.TimeoutExpired`` is raised.
        """
        self._check_built()
        return subprocess.run(
            in_netns(self.host(host).netns, argv),
            check=check,
            timeout=timeout,
            input=input,
            capture_output=True,
            text=True,
            env={**os.environ, **env} if env else None,
        )

    def spawn(
        self,
        host: str | Host,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: Stream = subprocess.DEVNULL,
        stdout: Stream = None,
        stderr: Stream = subprocess.STDOUT,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside a host's namespace; ``close()`` stops it.

        ``env`` adds variables to the inherited environment. Without ``stdout``, output goes
        to a log file in ``self.dir / "logs"`` (named in the debug log). The process gets its
        own session, so a terminal's Ctrl-C reaches only the lab's owner, which stops it.
        """
        self._check_built()
        h = self.host(host)
        log_file: IO[bytes] | None = None
        if stdout is None:
            self._log_count += 1
            logs = self.dir / "logs"
            logs.mkdir(exist_ok=True)
            program = Path(argv[0]).name
            log_file = open(logs / f"{h.name}-{self._log_count}-{program}.log", "wb")  # noqa: SIM115
            stdout = log_file
        try:
            process = subprocess.Popen(
                in_netns(h.netns, argv),
                env={**os.environ, **env} if env else None,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            if log_file is not None:
                log_file.close()
        self._processes.append(process)
        log.debug("lab %s: %s started %s as %d", self.run_id, h.name, list(argv), process.pid)
        return process

    @property
    def pids(self) -> list[int]:
        """The PIDs of the processes started with ``spawn`` that have not been reaped."""
        return [p.pid for p in self._processes if p.poll() is None]

    def stop(self, process: subprocess.Popen[bytes], timeout: float | None = None) -> int:
        """Stop one spawned process (SIGTERM, then SIGKILL after ``timeout``); its status."""
        stop_children([process], self.stop_timeout if timeout is None else timeout)
        return process.returncode


def stop_children(processes: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every live process, wait up to ``timeout`` in all, SIGKILL the rest, reap.

    Then close the pipes of every process given.
    """
    live = [p for p in processes if p.poll() is None]
    for p in live:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in live:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("lab: pid %d ignored SIGTERM for %.1f s, killing it", p.pid, timeout)
            p.kill()
            p.wait()
    for p in processes:
        # Pipes opened by spawn(stdout=PIPE...) die with the process they served.
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                stream.close()
