"""``meshd up`` runs its daemon in a fresh interpreter, without what parsing its options cost.

The command line is parsed by typer, which builds a pydantic ``TypeAdapter`` for each of
``up``'s two dozen options: pydantic and its compiled core stay in memory for the daemon's
whole life, about 10 MiB of an idle daemon's RSS, for a parse that is over in milliseconds.
So once ``up`` has checked its options and the state dir, it hands the resulting
:class:`~meshd.daemon.config.DaemonConfig` to a fresh interpreter that it ``exec``\\ s in its
own place: the same process (same PID for systemd, same file descriptors, environment and
command line, so ``ps`` shows the same ``meshd up ...``), started again with the same
interpreter options. The configuration crosses the ``exec`` through a pipe whose number is
in ``MESHD_DAEMON_CONFIG_FD`` (the options may hold secrets, such as Babel keys, which an
environment variable would show in ``/proc``); the new interpreter's ``meshd`` sees the
variable, removes it, reads the configuration and runs the daemon, skipping the command
line (:func:`meshd.cli.main`).

Only a process that was started as ``meshd up`` is replaced (``python -m meshd up`` or the
``meshd`` script): ``up`` called in-process (tests) runs the daemon in place, as before.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from meshd.daemon.config import DaemonConfig

ENV: Final = "MESHD_DAEMON_CONFIG_FD"
_PIPE_ROOM: Final = 60_000  # a pipe holds 64 KiB: the write must not block before the exec


def started_as_up() -> bool:
    """Whether this process was started as ``meshd up`` (and may replace itself)."""
    program = Path(sys.argv[0]).name if sys.argv else ""
    return program in ("meshd", "__main__.py") and sys.argv[1:2] == ["up"]


def replace_process(config: DaemonConfig, log_level: str, log_format: str) -> None:
    """Run the daemon for ``config`` in a fresh interpreter in this process's place.

    Returns (having done nothing) when the configuration does not fit the pipe; otherwise
    it does not return.
    """
    payload = pickle.dumps((config, log_level, log_format), protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > _PIPE_ROOM:
        return
    read, write = os.pipe()
    os.write(write, payload)
    os.close(write)
    os.set_inheritable(read, True)
    os.environ[ENV] = str(read)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, sys.orig_argv)  # noqa: S606 (this program, as it was started)
    except OSError:
        del os.environ[ENV]
        os.close(read)


def passed() -> bool:
    """Whether this interpreter was started by :func:`replace_process`."""
    return ENV in os.environ


def run_passed() -> None:
    """Run the daemon handed over by :func:`replace_process` (raises what ``up`` raises)."""
    fd = int(os.environ.pop(ENV))
    with os.fdopen(fd, "rb") as pipe:
        # Written by this same program into a pipe it made before exec: not untrusted data.
        config, log_level, log_format = pickle.load(pipe)  # noqa: S301
    from meshd.cli.logs import configure

    configure(log_level, log_format)
    run_daemon(config)


def run_daemon(config: DaemonConfig) -> None:
    """Run the daemon for ``config`` until stopped; Ctrl-C ends it as interrupted."""
    import signal

    import trio

    from meshd.daemon.launch import run_until_signalled
    from meshd.node.statedir import NodeDir

    node = NodeDir.open(config.state_dir)
    try:
        stopped_by = trio.run(run_until_signalled, config, node)
    finally:
        node.close()
    if stopped_by == signal.SIGINT:
        raise KeyboardInterrupt
