"""The meshd command line.

Commands that only ask a running daemon (peers, status, routes; revoke, which signs here and
hands the revocation to the daemon) must feel instant, and ``meshd up`` should not carry
typer's parse into its daemon. :func:`main` first offers the command line to the quick path
(meshd.cli.quick, meshd.cli.quick_up), which runs those commands without importing typer;
anything it does not fully understand goes to the typer app (meshd.cli.app), the reference
for help, argument errors and exit statuses. Nothing heavy is imported at module level here:
the daemon and libp2p are imported inside the commands that run them.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None, *, quick: bool = True) -> None:
    """Entry point: run a command; a failure becomes one line and its exit status
    (meshd.cli.failures, the README's table).

    ``quick=False`` always takes the typer app (the tests and benchmarks compare both ways).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if argv is None:  # a terminal that cannot show a character gets it escaped, not a crash
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="backslashreplace")
    if argv is None and (args[:1] == ["up"] or "MESHD_DAEMON_CONFIG_FD" in os.environ):
        from meshd.daemon import early_signals  # a daemon to be: SIGHUP from now on is no end

        early_signals.hold()
    try:
        if argv is None and "MESHD_DAEMON_CONFIG_FD" in os.environ:  # `up`, exec'd again
            from meshd.daemon.reexec import run_passed  # (meshd/daemon/reexec.py)

            run_passed()
            status = 0
        else:
            status = _run(args, quick)
    except BrokenPipeError:
        sys.exit(0)
    except (Exception, KeyboardInterrupt, BaseExceptionGroup) as exc:  # noqa: BLE001 (every failure ends in one line)
        from meshd.cli.failures import report

        sys.exit(report(exc))
    if status:
        sys.exit(status)


def _run(args: list[str], quick: bool) -> int:
    if quick:
        from meshd.cli.quick import recognise

        command = recognise(args)
        if command is not None:
            command()
            return 0
    from meshd.cli.app import run_app

    return run_app(args)
