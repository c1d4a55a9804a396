"""``meshd up`` and ``meshd join`` read without typer: their command line, their environment
and their config file.

Typer's parse of ``up`` costs about 0.5 s of CPU on an idle machine (1.5 to 2.8 s at a load of
6 to 7) and leaves pydantic's ~10 MiB in the process, which is why the typer path hands the
daemon to a fresh interpreter (meshd.daemon.reexec). The quick path reads the same words
itself: :func:`recognise_up` returns the command ready to run, and the daemon then runs in
this interpreter, which never imported typer, click or pydantic. :func:`recognise_join` does
the same for ``join`` (its own options from the same table: ``--invite``, including ``-`` and
``@FILE``, which meshd.cli.starting.run_join reads as typer's ``join`` does, ``--name``,
``--no-up``, ``--bootstrap``), whose daemon, once admitted, runs in this interpreter too.

It reads a value from where typer's ``up`` reads it, first to last: the command line
(``--opt VALUE``, ``--opt=VALUE``; a repeatable option collects, any other takes the last
one given); the environment (the option's own variable, then ``MESHD_<NAME>``, as click's
``auto_envvar_prefix`` does; a repeatable option's value split on whitespace; an empty
variable counts as unset); then the config file and the deprecated variables, settled by the
same function the typer command uses (meshd.cli.configfile.settling.settled), and the
DaemonConfig is built by the same function too (meshd.cli.starting.prepare, prepare_join).

It takes only what it fully understands: an unknown option, ``--help``, a positional word,
a missing or empty value, one that starts with ``-``, a number not written as plain digits
(``+5``, ``1e3``, `` 5``), a value out of range, a flag given a value, a flag variable that
is not plainly true or false, any problem in the config file and any value the daemon's
configuration refuses make it return None, and the typer app then says what is wrong, as it
always has (message and exit status). :data:`OPTIONS` repeats what the typer app declares
for ``up`` and ``join``; tests/cli/test_cli_quick_up.py checks it against the typer app's
own parameters, and the DaemonConfig both ways for a table of command lines
(tests/cli/test_cli_quick_join.py: what ``join`` runs with, both ways).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from meshd.cli.configfile.keys import ENV_PREFIX, NOT_KEYS, REQUIRED, Key
from meshd.cli.configfile.settling import settled
from meshd.cli.quick import _NotUnderstood, _path


@dataclass(frozen=True, slots=True)
class Option:
    """One option of ``up`` or ``join`` as the typer app declares it."""

    flag: str
    kind: type = str
    """Of one value: str, int, float, bool (a flag) or Path."""
    default: Any = None
    many: bool = False
    """Repeatable (a list)."""
    minimum: float | None = None
    maximum: float | None = None
    envvar: str | None = None
    """Read before ``MESHD_<NAME>``."""
    commands: tuple[str, ...] = ("up", "join")


_UP: Final = ("up",)
_JOIN: Final = ("join",)

OPTIONS: Final[Mapping[str, Option]] = {
    "listen": Option("--listen", many=True),
    "state_dir": Option("--state-dir", Path, envvar="MESHD_STATE_DIR"),
    "wg_backend": Option("--wg-backend", default="auto"),
    "interface": Option("--interface", default="meshd0"),
    "listen_port": Option("--listen-port", int, 51820, minimum=1, maximum=65535),
    "mtu": Option("--mtu", int, None, minimum=1280, maximum=65535),
    "endpoint": Option("--endpoint", many=True),
    "announce_interval": Option("--announce-interval", default="2h"),
    "announce_ttl": Option("--announce-ttl", default="6h"),
    "degree": Option("--degree", int, 6, minimum=1, maximum=64),
    "babel_interface": Option("--babel-interface", many=True, commands=_UP),
    "babel_hello_interval": Option("--babel-hello-interval", float, 4.0, minimum=0.05, maximum=655),
    "babel_originate": Option("--babel-originate", many=True, commands=_UP),
    "babel_key": Option("--babel-key", many=True, commands=_UP),
    "babel_redistribute": Option("--babel-redistribute", many=True, commands=_UP),
    "metrics": Option("--metrics"),
    "log_level": Option("--log-level", default="info"),
    "log_format": Option("--log-format", default="text"),
    "config_file": Option("--config", Path, envvar="MESHD_CONFIG"),
    "relay": Option("--relay", default="auto"),
    "public_addr": Option("--public-addr", many=True),
    "auto_renew": Option("--auto-renew", bool, False, commands=_UP),
    "renew_window": Option("--renew-window", default="30d", commands=_UP),
    "renew_for": Option("--renew-for", default="365d", commands=_UP),
    "bootstrap": Option("--bootstrap", many=True),
    "invite": Option("--invite", default="", commands=_JOIN),
    "name": Option("--name", default="", commands=_JOIN),
    "no_up": Option("--no-up", bool, False, commands=_JOIN),
}
"""Every option of ``up`` and ``join`` by parameter name, in the order they declare them."""

FLAGS: Final[Mapping[str, Mapping[str, str]]] = {
    command: {o.flag: name for name, o in OPTIONS.items() if command in o.commands}
    for command in ("up", "join")
}
"""Each command's flags -> the parameter each sets."""
_STDIN: Final = {"invite"}
"""Options whose value may be ``-`` (read from stdin when the command runs)."""
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_FLOAT: Final = re.compile(r"[0-9]+(\.[0-9]+)?")


def recognise_up(words: Sequence[str]) -> Callable[[], None] | None:
    """``meshd up`` with ``words`` (what follows ``up``), ready to run; None unless every
    word, variable and config file value is understood and the configuration holds."""
    from meshd.cli import starting

    try:
        values, given = read(words, os.environ)
        up = starting.prepare(settled("up", values, given, file_keys()))
        starting.with_metrics(up.config, up.metrics)  # checked again where it is added
    except Exception:  # noqa: BLE001 (whatever it is, typer's parse says it, in its words)
        return None
    return functools.partial(starting.run, up)


def recognise_join(words: Sequence[str]) -> Callable[[], None] | None:
    """``meshd join`` with ``words`` (what follows ``join``), ready to run; None unless every
    word, variable and config file value is understood and the configuration holds. The
    invite (``-``, ``@FILE``) is read only when the command runs, as typer's ``join`` reads
    it: what goes to typer has read nothing from stdin."""
    from meshd.cli import starting

    try:
        values, given = read(words, os.environ, "join")
        join = starting.prepare_join(settled("join", values, given, file_keys()))
    except Exception:  # noqa: BLE001 (whatever it is, typer's parse says it, in its words)
        return None
    return functools.partial(starting.run_join, join)


def read(
    words: Sequence[str], environ: Mapping[str, str], command: str = "up"
) -> tuple[dict[str, Any], set[str]]:
    """``command``'s values by parameter name from its command line over ``environ`` over the
    defaults, and the names the command line or the environment gave (the config file
    fills in the others); _NotUnderstood for anything else."""
    flags = FLAGS[command]
    line: dict[str, Any] = {}
    rest = list(words)
    while rest:
        word = rest.pop(0)
        flag, eq, inline = word.partition("=")
        name = flags.get(flag) if word.startswith("--") else None
        if name is None:
            raise _NotUnderstood(word)
        option = OPTIONS[name]
        if option.kind is bool:
            if eq:
                raise _NotUnderstood(word)
            line[name] = True
            continue
        value = inline if eq else rest.pop(0) if rest else ""
        # An empty value, or one that looks like an option, is typer's to judge.
        if not value or (value.startswith("-") and not (value == "-" and name in _STDIN)):
            raise _NotUnderstood(word)
        one = _convert(option, value)
        if option.many:
            line.setdefault(name, []).append(one)
        else:
            line[name] = one
    values: dict[str, Any] = {}
    given = set(line)
    for name in flags.values():
        option = OPTIONS[name]
        text = None if name in line else _variable(name, option, environ)
        if name in line:
            values[name] = line[name]
        elif text is None:
            values[name] = option.default
        else:
            given.add(name)
            values[name] = _from_variable(option, text)
    return values, given


def _variable(name: str, option: Option, environ: Mapping[str, str]) -> str | None:
    for variable in (option.envvar, f"{ENV_PREFIX}_{name.upper()}"):
        if variable is not None and environ.get(variable):
            return environ[variable]
    return None


def _from_variable(option: Option, text: str) -> Any:
    if option.many:
        items = text.split()
        if not items:
            raise _NotUnderstood(text)
        return [_convert(option, item) for item in items]
    if option.kind is bool:
        word = text.strip().lower()
        if word not in _TRUE | _FALSE:
            raise _NotUnderstood(text)
        return word in _TRUE
    return _convert(option, text)


def _convert(option: Option, text: str) -> Any:
    """One value as typer converts it, where it is plainly written; else _NotUnderstood."""
    if option.kind is str:
        return text
    if option.kind is Path:
        return _path(text)
    if not text.isascii():
        raise _NotUnderstood(text)
    number: float
    if option.kind is int and text.isdigit():
        number = int(text)
    elif option.kind is float and _FLOAT.fullmatch(text):
        number = float(text)
    else:
        raise _NotUnderstood(text)
    low, high = option.minimum, option.maximum
    if (low is not None and number < low) or (high is not None and number > high):
        raise _NotUnderstood(text)
    return number


@functools.cache
def file_keys() -> tuple[Key, ...]:
    """The config file's keys as meshd.cli.configfile.keys.keys() reads them from the typer
    app, without their help text (and with the defaults of the parameters, not of their help)."""
    return tuple(
        Key(
            name=name,
            flag=option.flag,
            kind=option.kind,
            many=option.many,
            default=_shown(option.default),
            commands=option.commands,
            help="",
            minimum=option.minimum,
            maximum=option.maximum,
            required=name in REQUIRED,
        )
        for name, option in OPTIONS.items()
        if name not in NOT_KEYS
    )


def _shown(default: Any) -> str:
    if default is None or default == "":
        return ""
    return str(default).lower() if isinstance(default, bool) else str(default)
