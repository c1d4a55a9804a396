"""A config file for a command: reading it, and settling the command line against it.

:func:`chosen_path` says which file (``--config``, ``MESHD_CONFIG``, else
:data:`DEFAULT_PATH` if it exists), :func:`load` reads and checks it (:class:`ConfigError`,
exit 78, on its first problem), and :func:`settled` fills in a command's values from it where
the command line and the environment gave none. Typer's ``up`` and ``join`` settle through
:func:`configurable`; the quick path (meshd.cli.quick_up) calls :func:`settled` itself.
"""

from __future__ import annotations

import functools
import os
import typing
from collections.abc import Callable, Container, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from meshd.cli.configfile.checking import MAX_SIZE, Checked, check_bytes
from meshd.cli.configfile.keys import DEPRECATED_ENV, Key, keys
from meshd.cli.configfile.validators import MEANING
from meshd.errors import CommandLineError, UsageError

DEFAULT_PATH: Final = Path("/etc/meshd/meshd.toml")
CONFIG_ENV: Final = "MESHD_CONFIG"
EXIT_STATUS: Final = 78
"""A config file that cannot be used (sysexits' EX_CONFIG)."""


class ConfigError(UsageError):
    """The config file cannot be read or holds something wrong (exit 78)."""

    exit_status = EXIT_STATUS


def read(path: Path, known: Sequence[Key]) -> Checked:
    """The file at ``path`` checked; ConfigError if it cannot be read."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SIZE + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror or exc}",
            hint="give an existing file to --config (or MESHD_CONFIG)",
        ) from None
    return check_bytes(data, known)


def load(path: Path, known: Sequence[Key]) -> Checked:
    """The file at ``path``, checked; ConfigError on the first problem."""
    checked = read(path, known)
    if checked.problems:
        first = checked.problems[0]
        more = len(checked.problems) - 1
        raise ConfigError(
            first.format(path) + (f" (and {more} more)" if more else ""),
            hint=f"`meshd config check {path}` lists what is wrong",
        )
    return checked


def refuse(error: ConfigError) -> typing.NoReturn:
    """End the command: the error in one line, exit status :data:`EXIT_STATUS`."""
    import sys

    import typer

    print(f"meshd: {error.one_line()}", file=sys.stderr)
    raise typer.Exit(EXIT_STATUS)


def chosen_path(given: Path | None) -> Path | None:
    """The config file to read: ``--config``/``MESHD_CONFIG``, else the default if it exists."""
    if given is not None:
        return given
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


_FROM_USER: Final = frozenset({"COMMANDLINE", "ENVIRONMENT", "PROMPT"})
_EVERY_SOURCE: Final = frozenset({"log_level", "log_format"})
"""Checked here whatever gave them (the command uses them before anything else)."""
_ALIASES: Final = {"warn": "warning", "critical": "error", "fatal": "error"}


class OptionRefused(CommandLineError):
    """A value a command's parse refuses once settled (typer reports it as a bad parameter)."""

    def __init__(self, flag: str, said: str) -> None:
        super().__init__(f"{flag} {said}")
        self.flag = flag
        self.said = said


def settled(
    command: str, values: Mapping[str, Any], given: Container[str], known: Sequence[Key]
) -> dict[str, Any]:
    """The command's values with the file's (and deprecated variables') filled in where the
    command line and the environment gave none: ``values`` by parameter name, ``given`` the
    names the command line or the environment gave. ConfigError for the file, OptionRefused
    for a value; typer's parse (:func:`settle`) and the quick path (meshd.cli.quick_up) both
    settle here."""
    path = chosen_path(values.get("config_file"))
    checked = load(path, known) if path is not None else Checked()
    out = dict(values)
    for key in known:
        if command not in key.commands or key.name not in values or key.name in given:
            continue
        old = DEPRECATED_ENV.get(key.name)
        if old and os.environ.get(old):
            out[key.name] = os.environ[old].lower()
        elif key.name in checked.values:
            out[key.name] = checked.values[key.name]
    for key in known:
        if command not in key.commands:
            continue
        if key.required and not out.get(key.name):
            raise OptionRefused(
                key.flag,
                f"missing; give {key.flag} (or {key.env}, or {key.name} in the config file)",
            )
        if key.name in _EVERY_SOURCE and key.name in out:
            out[key.name] = _ALIASES.get(out[key.name].lower(), out[key.name].lower())
            try:
                MEANING[key.name](out[key.name])
            except UsageError as exc:
                raise OptionRefused(key.flag, exc.one_line().removeprefix(key.flag + " ")) from None
    out["config_file"] = path
    return out


def settle(command: str, ctx: Any, values: dict[str, Any]) -> dict[str, Any]:
    """:func:`settled` for a typer command: ``values`` are typer's, ``ctx`` its context."""
    given = set()
    for name in values:
        source = ctx.get_parameter_source(name) if name != "ctx" else None
        if source is not None and source.name in _FROM_USER:
            given.add(name)
    try:
        return settled(command, values, given, keys())
    except OptionRefused as exc:
        import typer

        raise typer.BadParameter(exc.said, param_hint=f"'{exc.flag}'") from None


def configurable(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run a typer command with its values settled from the config file and the environment.

    The command takes ``ctx: typer.Context`` and ``config_file``; typer reads the wrapped
    function's signature, so the options stay declared in one place.
    """

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        try:
            settled = settle(command.__name__, values["ctx"], values)
        except ConfigError as exc:
            refuse(exc)
        return command(**settled)

    return run
