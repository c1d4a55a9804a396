"""The meshd command line.

Commands that only ask a running daemon (peers, status, revoke with a daemon up) must stay
instant: this package imports nothing heavy at module level; the daemon and libp2p are imported
inside the commands that run them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from meshd import __version__
from meshd.errors import MeshdError

app = typer.Typer(
    name="meshd",
    help="Decentralised membership and peer discovery for WireGuard mesh networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="MESHD_STATE_DIR",
        help="Where this node keeps its keys and store [default: /var/lib/meshd].",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _version(value: bool) -> None:
    if value:
        print(f"meshd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Decentralised membership and peer discovery for WireGuard mesh networks."""


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command; any meshd error becomes one line and exit status 1."""
    from meshd.cli import commands, daemon_cmds, demo_cmds, routes_cmds  # noqa: F401  (registers the commands)

    try:
        # Without standalone mode, an Exit raised by a command comes back as its status.
        status = app(args=argv, prog_name="meshd", standalone_mode=False)
    except MeshdError as exc:
        print(f"meshd: {exc.one_line()}", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("meshd: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:
        # Bad arguments: one line, and where to read how to call the command.
        message = " ".join(exc.format_message().split())
        print(f"meshd: {message}; see `meshd --help`", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("meshd: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        # A bug, not a user error: still one line, unless asked for the whole story.
        if os.environ.get("MESHD_DEBUG"):
            raise
        print(
            f"meshd: internal error ({type(exc).__name__}: {exc}); "
            "rerun with MESHD_DEBUG=1 for details and report it",
            file=sys.stderr,
        )
        sys.exit(70)
    if isinstance(status, int) and status:
        sys.exit(status)
