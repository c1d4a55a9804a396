"""The keys of the config file, read from the typer options of ``meshd up`` and ``meshd join``.

A key is an option of ``up``, ``join`` or both, spelled with underscores (``state_dir``):
:func:`keys` reads them from the commands' signatures, so an option added there is a key at
once. Here too are the names every other part of the config file shares: the environment's
prefix (``MESHD_<KEY>``), the options that are no keys, the deprecated variables.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

ENV_PREFIX: Final = "MESHD"
CONTEXT: Final[dict[str, Any]] = {"auto_envvar_prefix": ENV_PREFIX}
"""The ``context_settings`` of ``up`` and ``join``: every option reads ``MESHD_<KEY>``."""
DEPRECATED_ENV: Final = {"log_level": "MESHD_LOG"}
"""Older spellings still read (below the key's own variable, above the file)."""
NOT_KEYS: Final = frozenset({"config_file"})
COMMANDS: Final = ("up", "join")
REQUIRED: Final = frozenset({"invite"})
"""Options that are required although their typer default lets the file supply them."""


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
        required=default is inspect.Parameter.empty or name in REQUIRED,
    )


@functools.cache
def keys() -> tuple[Key, ...]:
    """Every key of the config file: the options of ``meshd up`` and ``meshd join``."""
    from meshd.cli import daemon_cmds

    return keys_of({"up": daemon_cmds.up, "join": daemon_cmds.join})
