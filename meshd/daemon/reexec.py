"""``meshd up`` parsed by typer runs its daemon in a fresh interpreter, without the parse's cost.

A ``meshd up`` line is read by the quick path (meshd.cli.quick_up), which imports neither typer
nor pydantic, and its daemon runs in that same interpreter. A line only typer reads (a number
written ``+6``, a flag variable set to ``t``; meshd.cli.quick_up says which) is parsed by
typer, which builds a pydantic ``TypeAdapter`` for each of ``up``'s two dozen options:
pydantic and its compiled core would stay in memory for the daemon's whole life, about
10 MiB of an idle daemon's RSS, for a parse that is over in milliseconds. So once that ``up``
has checked its options, it hands the resulting :class:`~meshd.daemon.config.DaemonConfig` to
a fresh interpreter that it ``exec``\\ s in its own place (meshd.cli.starting.run, when
pydantic is loaded): the same process (same PID for systemd, same file descriptors,
environment and command line, so ``ps`` shows the same ``meshd up ...``), started again with
the same interpreter options. The configuration crosses the ``exec`` through a pipe whose
number is in ``MESHD_DAEMON_CONFIG_FD`` (the options may hold secrets, such as Babel keys,
which an environment variable would show in ``/proc``); the new interpreter's ``meshd`` sees
the variable, removes it, reads the configuration and runs the daemon, skipping the command
line (:func:`meshd.cli.main`).

Only a process that was started as ``meshd up`` is replaced (``python -m meshd up`` or the
``meshd`` script): ``up`` called in-process (tests) runs the daemon in place, as before.

The first interpreter does no more than the parse before its ``exec``: the daemon's imports
(trio among them), the state dir and the start-up checks all come in the fresh one
(:func:`run_daemon`, which the quick path calls in place), which would import and do them
again anyway. And trio is imported without the ``/sbin/ldconfig -p`` its thread cache runs
to find libpthread (:func:`import_trio`): with both interpreters importing trio, those two
subprocesses were 0.4 to 2 s of a start-up on a loaded machine (docs/footprint.md,
start-up); the quick path's one interpreter is spared it the same way.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

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
    from meshd.daemon import early_signals

    early_signals.ignore_across_exec()
    try:
        os.execv(sys.executable, sys.orig_argv)  # noqa: S606 (this program, as it was started)
    except OSError:
        early_signals.hold()
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


def run_daemon(config: DaemonConfig, options: Mapping[str, Any] | None = None) -> None:
    """Check ``config`` against its state dir and run the daemon until stopped; Ctrl-C ends
    it as interrupted. Raises the start-up checks' errors (one line each, as ``up`` did).
    ``options``: the settled values ``config`` was made from, where a SIGHUP can read them
    again (meshd.daemon.reload)."""
    import signal

    from meshd.daemon.heap import keep_heap_lean

    keep_heap_lean()
    import_trio()
    import trio

    from meshd.daemon.babel_site import refuse_ungranted_origins
    from meshd.daemon.launch import run_until_signalled
    from meshd.daemon.reload import Reloader
    from meshd.daemon.renewer import refuse_auto_renew_without_key
    from meshd.node.statedir import NodeDir

    node = NodeDir.open(config.state_dir)
    try:
        refuse_ungranted_origins(config, node)
        refuse_auto_renew_without_key(config, node)
        reloader = Reloader.of_this_process(options)
        stopped_by = trio.run(run_until_signalled, config, node, reloader)
    finally:
        node.close()
    if stopped_by == signal.SIGINT:
        raise KeyboardInterrupt


#: The library trio's thread cache asks ctypes for on glibc, and the name ctypes finds.
_GLIBC_PTHREAD: Final = ("pthread", "libpthread.so.0")


def import_trio() -> None:
    """Import trio (if not imported yet) without running ``/sbin/ldconfig -p``.

    trio names its worker threads through ``pthread_setname_np``, found at import with
    ``ctypes.util.find_library("pthread")``, which on Linux runs ``ldconfig -p`` in a
    subprocess and parses its listing. On glibc that finds ``libpthread.so.0`` (a part of
    glibc itself, present wherever glibc is), so the import is given that name directly;
    on any other C library the lookup runs as before.
    """
    if "trio" in sys.modules:
        return
    with _pthread_known():
        import trio  # noqa: F401


@contextlib.contextmanager
def _pthread_known() -> Iterator[None]:
    libc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None
    if not libc or not libc.startswith("glibc "):
        yield
        return
    import ctypes.util

    find_library = ctypes.util.find_library

    def known(name: str) -> str | None:
        return _GLIBC_PTHREAD[1] if name == _GLIBC_PTHREAD[0] else find_library(name)

    ctypes.util.find_library = known
    try:
        yield
    finally:
        ctypes.util.find_library = find_library
