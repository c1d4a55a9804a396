"""The typer app: every command's definition, help text and argument errors.

This is the reference for how meshd is called. meshd.cli.main runs it for anything the quick
path (meshd.cli.quick) does not fully understand; importing it costs about 0.1 s (typer, its
vendored click and pydantic), which is why the commands that only ask the daemon avoid it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from meshd import __version__

app = typer.Typer(
    name="meshd",
    help="Decentralised membership and peer discovery for WireGuard mesh networks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="MESHD_STATE_DIR",
        help="Where this node keeps its keys and store [default: /var/lib/meshd].",
        show_default=False,
        readable=False,  # one we may not read is a permission error (5), said by the command
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


def load_commands() -> typer.Typer:
    """The app with every command registered."""
    from meshd.cli import (  # noqa: F401  (registers the commands)
        admin_cmds,
        commands,
        config_cmds,
        daemon_cmds,
        demo_cmds,
        issued,
        lifecycle_cmds,
        root_cmds,
        rotate_cmds,
        routes_cmds,
    )

    return app


def run_app(args: list[str]) -> int:
    """Run one command through typer; return its exit status.

    Typer's own outcomes (an exit, an abort, bad arguments) are handled here; a MeshdError
    or any other exception a command raises goes up to meshd.cli.main.
    """
    load_commands()
    try:
        # Without standalone mode, an Exit raised by a command comes back as its status.
        status = app(args=args, prog_name="meshd", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("meshd: interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # `meshd` (or `meshd admin`) alone: the help, as --help prints it, as a usage error.
            print(exc.format_message(), file=sys.stderr)
            return 2
        # Bad arguments: one line, and where to read how to call the command (never an
        # invite token given in the wrong place: its text is a secret).
        from meshd.cli.failures import redact

        variable = _from_environment(exc)
        if variable is not None:
            # The value came from the environment, not from the option the message names.
            detail = " ".join(str(getattr(exc, "message", exc)).split()).rstrip(".")
            given = f"{variable}={os.environ[variable]!r} in the environment"
            print(f"meshd: {redact(given)}: {redact(detail)}; fix or unset it", file=sys.stderr)
            return 2
        message = " ".join(exc.format_message().split()).rstrip(".")
        where = " (see `meshd --help`)" if message.endswith("?") else "; see `meshd --help`"
        if redact(message) != message and args[:1] == ["join"]:
            where = "; give the token as `meshd join --invite TOKEN` (or --invite @FILE, or -)"
        print(f"meshd: {redact(message)}{where}", file=sys.stderr)
        return 2
    if status == 130:
        # Typer turns Ctrl-C in a command into exit 130 without a word.
        print("meshd: interrupted", file=sys.stderr)
    return status if isinstance(status, int) else 0


def _from_environment(exc: Exception) -> str | None:
    """The variable a bad value came from (``MESHD_DEGREE``), if it came from the
    environment; None if it was given on the command line (or is no parameter's)."""
    ctx, param = getattr(exc, "ctx", None), getattr(exc, "param", None)
    if not isinstance(exc, typer.BadParameter) or ctx is None or param is None:
        return None
    name = param.name
    source = ctx.get_parameter_source(name) if name is not None else None
    if source is None or source.name != "ENVIRONMENT":
        return None
    envvar = param.envvar
    names = [envvar] if isinstance(envvar, str) else list(envvar or ())
    if ctx.auto_envvar_prefix is not None:
        names.append(f"{ctx.auto_envvar_prefix}_{name.upper()}")
    set_ones = [n for n in names if os.environ.get(n)]
    return set_ones[0] if set_ones else None
