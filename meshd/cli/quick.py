"""The quick path: commands that only ask the daemon, run without importing typer.

Typer (with its vendored click and pydantic) takes about 0.1 s to import, several times what
``meshd peers`` needs to ask the daemon and print the answer. :func:`recognise` reads the
command line of the few commands listed in :data:`COMMANDS`, and only when it understands
every word of it; it returns None for anything else (``--help``, an unknown option, a typo,
``--``, a missing value), and meshd.cli.main then runs the typer app, whose help, errors and
exit statuses are the reference. A command runs the same function either way (meshd.cli.asking,
meshd.cli.revoking), so the output cannot differ.

The table repeats each command's option names; tests/cli/test_cli_fast.py checks it against the
typer app's own definitions, so that the two cannot drift apart unnoticed.

``meshd up`` and ``meshd join`` have their own reader (meshd.cli.quick_up: their options also
come from the environment and the config file), and run their daemon in this interpreter.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any


class _NotUnderstood(Exception):
    """A word the quick path does not take on: let typer handle the whole line."""


def _text(value: str) -> str:
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise _NotUnderstood(value) from None
    if not 0.1 <= seconds <= 3600:  # typer's range, and its error
        raise _NotUnderstood(value)
    return seconds


def _path(value: str) -> Path:
    return Path(value)


class Quick:
    """A command the quick path runs: its function and the words of its command line.

    The function is named (``module:function``) and imported only for the command that runs:
    ``meshd revoke`` loads neither the asking commands nor ``meshd down``'s."""

    __slots__ = ("arguments", "flags", "options", "target")

    def __init__(
        self,
        target: str,
        flags: Mapping[str, str] | None = None,
        options: Mapping[str, tuple[str, Callable[[str], Any]]] | None = None,
        arguments: tuple[str, ...] = (),
    ) -> None:
        self.target = target
        self.flags: Mapping[str, str] = flags or {}
        """``--json`` -> the parameter it sets to True."""
        self.options: Mapping[str, tuple[str, Callable[[str], Any]]] = options or {}
        """``--state-dir`` -> (the parameter, how its value is converted)."""
        self.arguments = arguments
        """The optional positional parameters, in order."""

    @property
    def action(self) -> Callable[..., None]:
        module, _, name = self.target.partition(":")
        action: Callable[..., None] = getattr(importlib.import_module(module), name)
        return action


_JSON = {"--json": "json"}
_STATE_DIR = {"--state-dir": ("state_dir", _path)}

COMMANDS: Mapping[str, Quick] = {
    "peers": Quick("meshd.cli.asking:peers", _JSON, _STATE_DIR, arguments=("member",)),
    "status": Quick("meshd.cli.asking:status", _JSON, _STATE_DIR),
    "routes": Quick("meshd.cli.asking:routes", _JSON, _STATE_DIR),
    "netcheck": Quick("meshd.cli.netcheck:netcheck", _JSON, _STATE_DIR),
    "down": Quick(
        "meshd.cli.stopping:down", {}, {**_STATE_DIR, "--timeout": ("timeout", _seconds)}
    ),
    "revoke": Quick(
        "meshd.cli.revoking:revoke",
        _JSON,
        {
            "--invite": ("invite_id", _text),
            "--admin": ("admin_id", _text),
            "--reason": ("reason", _text),
            "--root-key": ("root_key", _path),
            **_STATE_DIR,
        },
        arguments=("node_ref",),
    ),
}


def recognise(args: Sequence[str]) -> Callable[[], None] | None:
    """The command ``args`` asks for, ready to run; None unless every word is understood."""
    if args and args[0] == "up":
        from meshd.cli.quick_up import recognise_up

        return recognise_up(args[1:])
    if args and args[0] == "join":
        from meshd.cli.quick_up import recognise_join

        return recognise_join(args[1:])
    if not args or args[0] not in COMMANDS:
        return None
    quick = COMMANDS[args[0]]
    try:
        values, positional = _parse(quick, list(args[1:]))
    except _NotUnderstood:
        return None
    if len(positional) > len(quick.arguments):
        return None
    values.update(zip(quick.arguments, positional, strict=False))
    return partial(quick.action, **values)


def _parse(quick: Quick, words: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Options (``--opt VALUE``, ``--opt=VALUE``, flags; the last one given wins) and the rest."""
    values: dict[str, Any] = {}
    positional: list[str] = []
    while words:
        word = words.pop(0)
        if not word.startswith("-"):
            positional.append(word)
            continue
        name, eq, inline = word.partition("=")
        if name in quick.flags and not eq:
            values[quick.flags[name]] = True
        elif name in quick.options:
            value = inline if eq else words.pop(0) if words else ""
            # An empty value, or one that looks like an option, is typer's to judge.
            if not value or value.startswith("-"):
                raise _NotUnderstood(word)
            parameter, convert = quick.options[name]
            values[parameter] = convert(value)
        else:
            raise _NotUnderstood(word)
    return values, positional
