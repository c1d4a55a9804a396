"""The config file of ``meshd up`` and ``meshd join``, and where each option's value comes from.

The file is TOML (read with the standard library's tomllib): one flat table whose keys are the
options of ``up`` and ``join`` spelled with underscores (``state_dir``, ``wg_backend``; the
option's name with dashes is accepted too). A value comes from, first to last:

1. the command line (``--wg-backend none``);
2. the environment: ``MESHD_`` and the key in capitals (``MESHD_WG_BACKEND=none``), set on
   both commands by click's ``auto_envvar_prefix`` (:data:`CONTEXT`);
3. the config file: ``--config PATH`` (or ``MESHD_CONFIG``), else :data:`DEFAULT_PATH` if it
   exists;
4. the option's default.

The keys are not listed by hand: :func:`keys` reads them from the signatures of the ``up`` and
``join`` functions (their typer options), so an option added there is a key at once, and
``meshd config keys --markdown`` prints the table that docs/config.md holds (a test keeps
them equal). What a value must be is checked twice over: its TOML type against the option's
Python type, then its meaning (:data:`_MEANING`: a multiaddr, a backend, a duration, ...) with
the same parsers the command uses. Every problem carries the line it is on, and no content of
a file makes this module raise anything but :class:`ConfigError` (tests/cli/test_configfile.py
has the property).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import re
import typing
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from meshd.errors import CommandLineError, UsageError

DEFAULT_PATH: Final = Path("/etc/meshd/meshd.toml")
CONFIG_ENV: Final = "MESHD_CONFIG"
ENV_PREFIX: Final = "MESHD"
CONTEXT: Final[dict[str, Any]] = {"auto_envvar_prefix": ENV_PREFIX}
"""The ``context_settings`` of ``up`` and ``join``: every option reads ``MESHD_<KEY>``."""
DEPRECATED_ENV: Final = {"log_level": "MESHD_LOG"}
"""Older spellings still read (below the key's own variable, above the file)."""
NOT_KEYS: Final = frozenset({"config_file"})
COMMANDS: Final = ("up", "join")
MAX_SIZE: Final = 1 << 20
MAX_PROBLEMS: Final = 100
EXIT_STATUS: Final = 78
"""A config file that cannot be used (sysexits' EX_CONFIG)."""


class ConfigError(UsageError):
    """The config file cannot be read or holds something wrong (exit 78)."""

    exit_status = EXIT_STATUS


@dataclass(frozen=True, slots=True)
class Key:
    """One key of the config file: an option of ``up``, ``join`` or both."""

    name: str
    flag: str
    kind: type
    """str, int, float, bool or Path: the type of one value."""
    many: bool
    """A list (a repeatable option); one value alone is taken as a list of one."""
    default: str
    """As the docs show it."""
    commands: tuple[str, ...]
    help: str
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}_{self.name.upper()}"


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    message: str
    key: str = ""

    def format(self, path: Path | str) -> str:
        return f"{path}:{self.line}: {self.message}"


@dataclass(slots=True)
class Checked:
    """A file's values by key (converted to what the command takes), and what is wrong."""

    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


# -- the keys, read from the commands ---------------------------------------------------------

_DEFAULT_IN_HELP = re.compile(r"\s*\[default: ([^\]]*)\]\.?$")


def keys_of(commands: Mapping[str, Callable[..., Any]]) -> tuple[Key, ...]:
    """The keys of the commands' typer options, in the order the commands declare them."""
    found: dict[str, Key] = {}
    for command, function in commands.items():
        hints = typing.get_type_hints(function, include_extras=True)
        for name, parameter in inspect.signature(function).parameters.items():
            key = _key_of(command, name, parameter, hints[name])
            if key is None:
                continue
            if name in found:
                key = _also(found[name], command)
            found[name] = key
    return tuple(found.values())


def _also(key: Key, command: str) -> Key:
    return dataclasses.replace(key, commands=(*key.commands, command))


def _key_of(command: str, name: str, parameter: inspect.Parameter, hint: Any) -> Key | None:
    base, *extras = typing.get_args(hint) or (hint,)
    info = next((e for e in extras if type(e).__name__ == "OptionInfo"), None)
    if info is None or name in NOT_KEYS:
        return None  # the context, an argument, or --config itself
    many = False
    kind = base
    for arm in typing.get_args(base) or (base,):
        if typing.get_origin(arm) is list:
            many, kind = True, typing.get_args(arm)[0]
            break
        if arm is not type(None):
            kind = arm
    decls = [d for d in (info.default, *info.param_decls) if isinstance(d, str)]
    flag = next((d for d in decls if d.startswith("--")), "--" + name.replace("_", "-"))
    text = info.help or ""
    shown = _DEFAULT_IN_HELP.search(text)
    if shown:
        text = text[: shown.start()].rstrip(".") + "."
    default = parameter.default
    if shown:
        default_text = shown.group(1)
    elif default is inspect.Parameter.empty or default is None or default == "":
        default_text = ""
    elif isinstance(default, bool):
        default_text = str(default).lower()
    else:
        default_text = str(default)
    return Key(
        name=name,
        flag=flag,
        kind=kind,
        many=many,
        default=default_text,
        commands=(command,),
        help=" ".join(text.split()),
        minimum=info.min,
        maximum=info.max,
        required=default is inspect.Parameter.empty or name in _REQUIRED,
    )


_REQUIRED: Final = frozenset({"invite"})
"""Options that are required although their typer default lets the file supply them."""


@functools.cache
def keys() -> tuple[Key, ...]:
    """Every key of the config file: the options of ``meshd up`` and ``meshd join``."""
    from meshd.cli import daemon_cmds

    return keys_of({"up": daemon_cmds.up, "join": daemon_cmds.join})


# -- reading a file ----------------------------------------------------------------------------


def check_bytes(data: bytes, known: Sequence[Key]) -> Checked:
    """What a file holding ``data`` sets, and what is wrong with it (never raises)."""
    if len(data) > MAX_SIZE:
        return Checked(problems=[Problem(1, f"the file is too large ({len(data)} bytes)")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return Checked(problems=[Problem(line, "not UTF-8 text (TOML files are UTF-8)")])
    return check_text(text, known)


def check_text(text: str, known: Sequence[Key]) -> Checked:
    """What TOML ``text`` sets, and what is wrong with it (never raises)."""
    import tomllib

    checked = Checked(lines=key_lines(text))
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        checked.problems.append(_syntax_problem(text, str(exc)))
        return checked
    except RecursionError:
        checked.problems.append(Problem(_deepest_line(text), "values nested too deeply"))
        return checked
    by_name = {key.name: key for key in known}
    seen: dict[str, str] = {}
    for written, value in document.items():
        name = written.replace("-", "_")
        line = checked.lines.get(written, 1)
        if len(checked.problems) >= MAX_PROBLEMS:
            checked.problems.append(Problem(line, "more problems from here on; fix these first"))
            break
        key = by_name.get(name)
        if key is None:
            checked.problems.append(Problem(line, _unknown(written, by_name), written))
            continue
        if name in seen:
            checked.problems.append(
                Problem(line, f"{written} and {seen[name]} are the same key; keep one", name)
            )
            continue
        seen[name] = written
        checked.lines[name] = line
        converted = _convert(key, value, text, line, checked.problems)
        if converted is not None:
            checked.values[name] = converted
    _check_together(checked, by_name)
    checked.problems.sort(key=lambda problem: problem.line)
    return checked


def key_lines(text: str) -> dict[str, int]:
    """The line of each top-level key (and table header) of TOML ``text``; a best effort
    that needs no valid TOML (tomllib reports no positions of what it parsed)."""
    found: dict[str, int] = {}
    in_table = False
    open_quote = ""
    for number, line in enumerate(text.split("\n"), 1):
        if open_quote:
            if line.count(open_quote) % 2:
                open_quote = ""
            continue
        table = _TABLE.match(line)
        if table:
            found.setdefault(_first(table), number)
            in_table = True
            continue
        if not in_table:
            key = _KEY.match(line)
            if key:
                found.setdefault(_first(key), number)
        for quote in ('"""', "'''"):
            if line.count(quote) % 2:
                open_quote = quote
    return found


_NAME = r"""(?:"([^"\n]*)"|'([^'\n]*)'|([A-Za-z0-9_-]+))"""
_KEY = re.compile(rf"^[ \t]*{_NAME}[ \t]*[=.]")
_TABLE = re.compile(rf"^[ \t]*\[\[?[ \t]*{_NAME}")
_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def _first(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group is not None)


def _last_line(text: str) -> int:
    lines = text.split("\n")
    return max((i for i, line in enumerate(lines, 1) if line.strip()), default=1)


def _syntax_problem(text: str, message: str) -> Problem:
    at = _AT_LINE.search(message)
    line = int(at.group(1)) if at else _last_line(text)
    line = min(max(line, 1), text.count("\n") + 1)
    reason = message[: at.start()].strip() if at else message.split(" (at ")[0].strip()
    return Problem(line, f"TOML syntax: {reason or 'invalid'}")


def _deepest_line(text: str) -> int:
    lines = text.split("\n")
    depth = [line.count("[") + line.count("{") for line in lines]
    return depth.index(max(depth)) + 1


def _unknown(written: str, by_name: Mapping[str, Key]) -> str:
    import difflib  # here: `meshd up`'s daemon runs in the interpreter that read its file

    guess = difflib.get_close_matches(written.replace("-", "_"), list(by_name), n=1)
    hint = f"; did you mean {guess[0]}?" if guess else "; `meshd config keys` lists them"
    return f"unknown key {written!r}{hint}"


_KIND_NAMES: Final[dict[type, str]] = {
    str: "a string",
    Path: "a path (a string)",
    int: "an integer",
    float: "a number",
    bool: "true or false",
}


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _convert(key: Key, value: Any, text: str, line: int, problems: list[Problem]) -> Any:
    """The value as the command takes it, or None after adding what is wrong to ``problems``."""
    if key.many:
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            found: list[Problem] = []
            one = _convert_one(key, item, line, found)
            if found:  # the item's own line, searched for only now (a list may be long)
                where = _item_line(text, line, item)
                problems.extend(dataclasses.replace(p, line=where) for p in found)
                return None
            out.append(one)
        return out
    return _convert_one(key, value, line, problems)


def _convert_one(key: Key, value: Any, line: int, problems: list[Problem]) -> Any:
    want = _KIND_NAMES.get(key.kind, "a string")
    if key.name in _DURATIONS and isinstance(value, int) and not isinstance(value, bool):
        value = f"{value}s"  # a number of seconds
    ok = (
        (key.kind is bool and isinstance(value, bool))
        or (key.kind is int and isinstance(value, int) and not isinstance(value, bool))
        or (key.kind is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (key.kind in (str, Path) and isinstance(value, str))
    )
    if not ok:
        plain = isinstance(value, str | int | float) and not isinstance(value, bool)
        shown = f" ({value!r})" if plain else ""
        if key.many:
            want = f"{want} or a list of them"
        problems.append(
            Problem(line, f"{key.name} must be {want}, not {_toml_type(value)}{shown}", key.name)
        )
        return None
    if key.kind is float:
        value = float(value)
    low, high = key.minimum, key.maximum
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and ((low is not None and value < low) or (high is not None and value > high)):
        problems.append(
            Problem(line, f"{key.name} {value} is out of range ({low} to {high})", key.name)
        )
        return None
    meaning = _MEANING.get(key.name)
    if meaning is not None:
        try:
            meaning(value)
        except (UsageError, ValueError) as exc:
            problems.append(Problem(line, _about(key, exc), key.name))
            return None
    if key.kind is Path:
        if not value.startswith("/"):
            problems.append(
                Problem(
                    line,
                    f"{key.name} {value!r} is not an absolute path; a config file's paths "
                    "must not depend on the directory meshd starts in",
                    key.name,
                )
            )
            return None
        return Path(value)
    return value


def _about(key: Key, exc: Exception) -> str:
    """A parser's message about a value, said of the key rather than of the flag."""
    text = exc.one_line() if isinstance(exc, UsageError) else str(exc)
    if text.startswith(key.flag + " "):
        return key.name + text[len(key.flag) :]
    text = text.replace(key.flag, key.name)
    return f"{key.name}: {text}"


def _item_line(text: str, start: int, item: Any) -> int:
    """The line of a list's item, searched from its key's line (the key's line if not found)."""
    if not isinstance(item, str):
        return start
    lines = text.split("\n")
    wanted = (json.dumps(item), f"'{item}'")
    for number in range(start, len(lines) + 1):
        if any(w in lines[number - 1] for w in wanted):
            return number
    return start


def _check_together(checked: Checked, by_name: Mapping[str, Key]) -> None:
    """What no single value shows: the announce TTL must outlast the interval."""
    from meshd.cli.parse import duration

    names = ("announce_interval", "announce_ttl")
    if not any(n in checked.values for n in names) or not all(n in by_name for n in names):
        return
    try:
        interval, ttl = (
            duration(checked.values.get(n) or by_name[n].default, option=n) for n in names
        )
    except UsageError:
        return
    if ttl <= interval:
        line = max(checked.lines.get(n, 0) for n in names if n in checked.values)
        checked.problems.append(
            Problem(
                line,
                f"announce_ttl ({ttl} s) must be longer than announce_interval ({interval} s): "
                "members would expire between two of their announcements",
                "announce_ttl",
            )
        )


# -- what values mean -------------------------------------------------------------------------


def _listen(text: str) -> None:
    from meshd.gossip.config import parse_multiaddr

    try:
        parsed = parse_multiaddr(text)
    except ValueError:
        raise UsageError(
            f"--listen {text!r} is not a multiaddr", hint="write it like /ip4/10.0.0.1/tcp/7100"
        ) from None
    protocols = [p.name for p in parsed.protocols()]
    if "tcp" not in protocols or protocols[0] not in ("ip4", "ip6"):
        raise UsageError(
            f"--listen {text!r} is not a TCP address",
            hint="write it like /ip4/10.0.0.1/tcp/7100 or /ip6/::/tcp/7100",
        )


def _endpoint(text: str) -> None:
    from meshd.wg.model import parse_endpoint

    parse_endpoint(text)


def _choice(flag: str, choices: Callable[[], Iterable[str]]) -> Callable[[str], None]:
    def check(text: str) -> None:
        allowed = tuple(choices())
        if text not in allowed:
            raise UsageError(f"{flag} {text!r} is not one of " + ", ".join(allowed))

    return check


def _backends() -> Iterable[str]:
    from meshd.daemon.config import WG_BACKENDS

    return WG_BACKENDS


def _levels() -> Iterable[str]:
    from meshd.cli.logs import LEVELS

    return LEVELS


def _formats() -> Iterable[str]:
    from meshd.cli.logs import FORMATS

    return FORMATS


def _interface(flag: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        from meshd.wg.backend import MAX_IFNAME

        if not 0 < len(text) <= MAX_IFNAME or not all(c.isalnum() or c in "-_." for c in text):
            raise UsageError(
                f"{flag} {text!r} is not a usable interface name",
                hint=f"use 1 to {MAX_IFNAME} of [A-Za-z0-9._-]",
            )

    return check


def _duration(flag: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        from meshd.cli.parse import duration

        duration(text, option=flag)

    return check


def _babel(parser: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        from meshd.babel import options

        getattr(options, parser)(text)

    return check


def _metrics(text: str) -> None:
    from meshd.metrics.http import parse_address

    parse_address(text)


def _relay_modes() -> Iterable[str]:
    from meshd.daemon.config import RELAY_MODES

    return RELAY_MODES


def _public_addr(text: str) -> None:
    from meshd.daemon.bootstrap import check_public_addr

    check_public_addr(text, 7100)


def _bootstrap(text: str) -> None:
    from meshd.daemon.bootstrap import check_bootstrap

    check_bootstrap(text)


def _not_empty(text: str) -> None:
    if not text.strip():
        raise UsageError("must not be empty")


_DURATIONS: Final = frozenset({"announce_interval", "announce_ttl", "renew_window", "renew_for"})
_MEANING: Final[dict[str, Callable[[Any], None]]] = {
    "listen": _listen,
    "endpoint": _endpoint,
    "wg_backend": _choice("--wg-backend", _backends),
    "interface": _interface("--interface"),
    "announce_interval": _duration("--announce-interval"),
    "announce_ttl": _duration("--announce-ttl"),
    "renew_window": _duration("--renew-window"),
    "renew_for": _duration("--renew-for"),
    "babel_interface": _interface("--babel-interface"),
    "babel_originate": _babel("parse_origin"),
    "babel_key": _babel("parse_key"),
    "babel_redistribute": _babel("parse_redistribute"),
    "log_level": _choice("--log-level", _levels),
    "log_format": _choice("--log-format", _formats),
    "metrics": _metrics,
    "invite": _not_empty,
    "relay": _choice("--relay", _relay_modes),
    "public_addr": _public_addr,
    "bootstrap": _bootstrap,
}


# -- a file for a command ----------------------------------------------------------------------


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
                _MEANING[key.name](out[key.name])
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


# -- the table of keys -------------------------------------------------------------------------


def markdown_table(known: Sequence[Key]) -> str:
    """The table of docs/config.md: one row per key."""
    rows = [
        "| key | type | command line | environment | default | commands | what |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in known:
        kind = {str: "string", Path: "path", int: "integer", float: "number", bool: "boolean"}
        what = "duration" if key.name in _DURATIONS else kind.get(key.kind, "string")
        if key.many:
            what = f"list of {what}s"
        env = f"`{key.env}`"
        old = DEPRECATED_ENV.get(key.name)
        if old:
            env += f" (or `{old}`, deprecated)"
        default = f"`{key.default}`" if key.default else ("required" if key.required else "-")
        text = key.help.replace("|", "\\|")
        rows.append(
            f"| `{key.name}` | {what} | `{key.flag}` | {env} | {default} | "
            f"{', '.join(key.commands)} | {text} |"
        )
    return "\n".join(rows) + "\n"


def as_json(known: Sequence[Key]) -> list[dict[str, Any]]:
    kinds = {str: "string", Path: "path", int: "integer", float: "number", bool: "boolean"}
    return [
        {
            "key": key.name,
            "type": ("list of " if key.many else "")
            + ("duration" if key.name in _DURATIONS else kinds.get(key.kind, "string")),
            "flag": key.flag,
            "env": key.env,
            "default": key.default or None,
            "commands": list(key.commands),
            "help": key.help,
        }
        for key in known
    ]


# -- what a command would run with -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Effective:
    """A key's value without command-line options, and where it comes from."""

    key: Key
    value: Any
    source: str
    """``env MESHD_X``, ``PATH:LINE`` or ``default``."""


def effective(path: Path | None, known: Sequence[Key], env: Mapping[str, str]) -> list[Effective]:
    """Every key's value from ``env`` over the file at ``path`` over the default (the
    command line would override any of them); ConfigError if the file has a problem."""
    checked = load(path, known) if path is not None else Checked()
    out = []
    for key in known:
        old = DEPRECATED_ENV.get(key.name)
        if env.get(key.env):
            raw = env[key.env]
            value = [_from_env(key, r) for r in raw.split()] if key.many else _from_env(key, raw)
            out.append(Effective(key, value, f"env {key.env}"))
        elif old and env.get(old):
            out.append(Effective(key, env[old].lower(), f"env {old} (deprecated)"))
        elif key.name in checked.values:
            line = checked.lines.get(key.name, 1)
            out.append(Effective(key, checked.values[key.name], f"{path}:{line}"))
        else:
            out.append(Effective(key, None, "default"))
    return [_masked(item) for item in out]


SECRETS: Final = frozenset({"invite"})
"""Keys whose value is a secret unless it names where to read it (``-``, ``@FILE``)."""


def _masked(item: Effective) -> Effective:
    value = item.value
    if item.key.name in SECRETS and isinstance(value, str) and value[:1] not in ("@", "-"):
        return dataclasses.replace(item, value="(secret)")
    return item


def _from_env(key: Key, raw: str) -> Any:
    """A variable's text as the key's type, where it reads as one (else the text)."""
    try:
        if key.kind is bool:
            return {"1": True, "true": True, "yes": True, "on": True}.get(raw.lower(), False)
        if key.kind is int:
            return int(raw)
        if key.kind is float:
            return float(raw)
    except ValueError:
        return raw
    return raw


def toml_value(value: Any) -> str:
    """``value`` written as TOML (strings, paths, numbers, booleans and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)
