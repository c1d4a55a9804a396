"""``meshd config check [PATH]`` and ``meshd config keys``: the config file of up and join."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from meshd.cli.app import Json, app
from meshd.cli.configfile import presenting, settling
from meshd.cli.configfile.keys import keys as known_keys
from meshd.cli.output import emit_json

config_app = typer.Typer(
    help="Check a config file of `meshd up` and `meshd join`, and list its keys.",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config")


@config_app.command()
def check(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="The file [default: $MESHD_CONFIG, else /etc/meshd/meshd.toml].",
            show_default=False,
            readable=False,
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Check a config file: print each problem as PATH:LINE: what is wrong (exit 78 if any)."""
    chosen = settling.chosen_path(path) or settling.DEFAULT_PATH
    known = known_keys()
    try:
        checked = settling.read(chosen, known)
    except settling.ConfigError as exc:
        settling.refuse(exc)
    if json:
        emit_json(
            {
                "path": str(chosen),
                "ok": not checked.problems,
                "values": {k: _plain(v) for k, v in checked.values.items()},
                "problems": [
                    {"line": p.line, "key": p.key or None, "message": p.message}
                    for p in checked.problems
                ],
            }
        )
    elif checked.problems:
        for problem in checked.problems:
            print(problem.format(chosen))
    else:
        count = len(checked.values)
        print(f"{chosen}: ok ({count} key{'' if count == 1 else 's'} set)")
    if checked.problems:
        count = len(checked.problems)
        if not json:
            print(f"meshd: {count} problem{'' if count == 1 else 's'} in {chosen}", file=sys.stderr)
        raise typer.Exit(settling.EXIT_STATUS)


def _plain(value: object) -> object:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


@config_app.command()
def show(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="The file [default: $MESHD_CONFIG, else /etc/meshd/meshd.toml if it exists].",
            show_default=False,
            readable=False,
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Print what up and join would run with, and where each value comes from (the
    environment, the file, the default); options given on their command line win over all."""
    import os

    chosen = settling.chosen_path(path)
    try:
        values = presenting.effective(chosen, known_keys(), os.environ)
    except settling.ConfigError as exc:
        settling.refuse(exc)
    if json:
        emit_json(
            {
                "path": str(chosen) if chosen else None,
                "values": {
                    v.key.name: {
                        "value": _plain(v.value) if v.value is not None else None,
                        "default": v.key.default or None,
                        "source": v.source,
                        "commands": list(v.key.commands),
                    }
                    for v in values
                },
            }
        )
        return
    print(f"# config file: {chosen or 'none'}")
    for item in values:
        only = "" if len(item.key.commands) > 1 else f", {item.key.commands[0]} only"
        if item.value is None:
            shown = item.key.default or ("required" if item.key.required else "none")
            print(f"# {item.key.name}: {shown} (default{only})")
        else:
            line = f"{item.key.name} = {presenting.toml_value(item.value)}"
            print(f"{line:<40}  # {item.source}{only}")


@config_app.command()
def keys(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the table of docs/config.md.")
    ] = False,
    json: Json = False,
) -> None:
    """List the keys of the config file: type, option, environment variable, default."""
    known = known_keys()
    if json:
        emit_json(presenting.as_json(known))
    elif markdown:
        sys.stdout.write(presenting.markdown_table(known))
    else:
        width = max(len(k.name) for k in known)
        for key in known:
            default = f" [default: {key.default}]" if key.default else ""
            print(f"{key.name:<{width}}  {key.help}{default}")
