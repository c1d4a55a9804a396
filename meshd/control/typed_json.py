"""The typed control commands to and from their JSON (pure).

:func:`to_json` gives a request's ``args`` or an answer as the JSON value on the wire.
:func:`decode_request` reads the daemon's untrusted input, a command name and its arguments
from the control socket, into the command's request type: an unknown command or malformed
arguments is a :class:`~meshd.errors.ControlDecodeError`, which the server answers as a typed
error. :func:`decode_answer` reads the daemon's answer back into the answer type the CLI asked
for.

Answers decode leniently in one way only: keys this CLI does not know (a newer daemon's) are
ignored; a missing key or a value of the wrong type is a DecodeError.
"""

from __future__ import annotations

import sys
import types
import typing
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain, compress, repeat
from operator import and_, is_, not_
from typing import Any, TypeVar, Union

from meshd.control.commands import LISTS, REQUESTS, PeerRow, Request
from meshd.control.rows import read_rows
from meshd.control.wire import MISSING, Wire, fields, is_wire
from meshd.errors import ControlDecodeError, DecodeError

A = TypeVar("A")


# --- encoding -------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """A request's args, or an answer, as the JSON value on the wire."""
    if isinstance(value, Wire):
        encode = _ENCODERS.get(type(value))
        if encode is None:
            encode = _ENCODERS[type(value)] = _encoder(type(value))
        return encode(value)
    if isinstance(value, tuple | list):
        if len(value) > 1 and isinstance(value[0], Wire):
            kinds = set(map(type, value))
            if len(kinds) == 1:
                return _rows_to_json(kinds.pop(), value)
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if type(value) not in _PLAIN and _is_address(value):
        # An address or network is its text on the wire, whatever it is besides: an interned
        # /128 is also an int (meshd.addressing), which JSON would write as a number.
        return str(value)
    return value


def _is_address(value: Any) -> bool:
    """Whether ``value`` is an IP address or network (none can be while ``ipaddress`` is not
    imported: the command line's quick path does not import it for this)."""
    ipaddress = sys.modules.get("ipaddress")
    return ipaddress is not None and isinstance(
        value,
        ipaddress.IPv4Address
        | ipaddress.IPv6Address
        | ipaddress.IPv4Network
        | ipaddress.IPv6Network,
    )


_PLAIN = frozenset({str, int, float, bool})
"""The types a value is on the wire as it is (None aside)."""
_ENCODERS: dict[type[Any], Callable[[Any], Any]] = {}


def _encoder(cls: type[Any]) -> Callable[[Any], Any]:
    """How a value of the Wire type ``cls`` is written: its fields and their metadata read
    once, not for every value (10,000 rows of ``meshd peers``)."""
    only = LISTS.get(cls)
    if only is not None:
        return lambda value: to_json(getattr(value, only))
    plan = [
        (f.name, bool(f.metadata.get("omit_if_none")))
        for f in fields(cls)
        if not f.metadata.get("local")
    ]

    def encode(value: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, omit in plan:
            item = getattr(value, name)
            if item is None:
                if not omit or _shown(value, name):
                    out[name] = None
            elif type(item) in _PLAIN:
                out[name] = item
            else:
                out[name] = to_json(item)
        return out

    return encode


def _rows_to_json(cls: type[Any], rows: Sequence[Any]) -> list[Any]:
    """``[to_json(row) for row in rows]``, all of type ``cls``, a field at a time: each row's
    fields copied at once (its ``__dict__``: :class:`~meshd.control.wire.Wire` fills it with
    every field, in their order, and nothing else), then each field's column checked by
    loops that run in C (the values that are not plain written by :func:`to_json`), and the
    fields kept off the wire, and the Nones left out (``omit_if_none``, unless
    :func:`_shown`), taken out of the rows that have them; not a call for each field of
    each row (10,000 rows of ``meshd peers``, in the daemon and in the command line)."""
    every = [f.name for f in fields(cls)]
    first = getattr(rows[0], "__dict__", None)
    if cls in LISTS or not every or first is None or list(first) != every:
        return [to_json(row) for row in rows]
    count = len(rows)
    out: list[dict[str, Any]] = [dict(values) for values in map(vars, rows)]
    if set(map(len, out)) != {len(every)}:
        return [to_json(row) for row in rows]
    shown: list[bool] | None = None
    for f in fields(cls):
        name = f.name
        if f.metadata.get("local"):
            _drop(out, name)
            continue
        column = list(map(dict.__getitem__, out, repeat(name, count)))
        kinds = set(map(type, column))
        if not kinds <= _PLAIN_OR_NONE:
            plain = kinds <= _SEQUENCES
            if plain and set(map(type, chain.from_iterable(column))) <= _PLAIN_OR_NONE:
                column = list(map(list, column))  # what to_json makes of each
            else:
                column = list(map(to_json, column))
            deque(map(dict.__setitem__, out, repeat(name, count), column), maxlen=0)
        if f.metadata.get("omit_if_none"):
            gone: Iterable[bool] = map(is_, column, repeat(None, count))
            if name in _SHOWN:
                if shown is None:
                    shown = list(map(bool, map(getattr, rows, repeat("routed"), repeat(False))))
                gone = map(and_, gone, map(not_, shown))
            _drop(compress(out, gone), name)
    return out


def _drop(rows: Iterable[dict[str, Any]], name: str) -> None:
    """Take ``name`` out of each of ``rows`` (a loop that runs in C)."""
    deque(map(dict.__delitem__, rows, repeat(name)), maxlen=0)


_PLAIN_OR_NONE = _PLAIN | {type(None)}
_SEQUENCES = frozenset({tuple, list})
_SHOWN = frozenset({"route", "metric"})
"""What :func:`_shown` shows when None."""


def _shown(value: Any, name: str) -> bool:
    """``route`` and ``metric`` are on the wire whenever Babel filled them, None or not."""
    return name in _SHOWN and bool(getattr(value, "routed", False))


# --- decoding -------------------------------------------------------------------------------


def decode_request(cmd: str, args: Mapping[str, Any]) -> Request:
    """The typed request for a decoded control request. ControlDecodeError for an unknown
    command or arguments that are not the command's."""
    cls = REQUESTS.get(cmd)
    if cls is None:
        raise ControlDecodeError(f"the daemon knows no command {cmd!r}", hint="update the CLI")
    try:
        return typing.cast(Request, _build(cls, args, strict=True))
    except DecodeError as exc:
        raise ControlDecodeError(f"{cmd}: {exc}", hint="update the CLI") from None


def decode_answer(cls: type[A], value: Any) -> A:
    """Read an answer the daemon sent into ``cls``. Raises DecodeError only."""
    only = LISTS.get(cls)
    if only is not None:
        value = {only: value}
    return typing.cast(A, _build(cls, value, strict=False))


Check = Callable[[Any, str, bool], Any]
"""A hint's check, made once (:func:`_checker`): ``check(value, name, strict)`` returns the
value as the field holds it, or raises DecodeError."""

_CHECKS: dict[Any, Check] = {}
_BUILDERS: dict[type[Any], Callable[[Any, bool], Any]] = {}


def _build(cls: type[Any], value: Any, *, strict: bool) -> Any:
    builder = _BUILDERS.get(cls)
    if builder is None:
        builder = _BUILDERS[cls] = _builder(cls)
    return builder(value, strict)


def _builder(cls: type[Any]) -> Callable[[Any, bool], Any]:
    """How a value of the Wire type ``cls`` is read: its fields' checks made once, not
    worked out from their hints for every value (10,000 rows of ``meshd peers``: ~0.45 s,
    both in the daemon, which checks the answers it builds, and in the command line)."""
    hints = typing.get_type_hints(cls)
    known = [f for f in fields(cls) if not f.metadata.get("local")]
    names = {f.name for f in known}
    checks = [(f.name, f.default is MISSING, _checker(hints[f.name])) for f in known]
    peer_row = cls is PeerRow
    title = cls.__name__

    def build(value: Any, strict: bool) -> Any:
        if not isinstance(value, Mapping):
            raise DecodeError(f"{title}: expected an object")
        if strict:
            unknown = sorted(set(value) - names)
            if unknown:
                raise DecodeError(f"unknown argument {str(unknown[0])[:40]!r}")
        kwargs: dict[str, Any] = {}
        for name, required, check in checks:
            if name not in value:
                if required:
                    raise DecodeError(f"{title}: {name} is missing")
                continue
            kwargs[name] = check(value[name], name, strict)
        if peer_row and ("route" in value or "metric" in value):
            kwargs["routed"] = True
        return cls(**kwargs)

    return build


def _checker(hint: Any) -> Check:
    found = _CHECKS.get(hint)
    if found is None:
        found = _CHECKS[hint] = _compile(hint)
    return found


def _compile(hint: Any) -> Check:
    """The check of one hint (see :data:`Check`)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return lambda value, name, strict: value
    if origin in (Union, types.UnionType):
        options = [_checker(option) for option in typing.get_args(hint)]
        nullable = type(None) in typing.get_args(hint)

        def either(value: Any, name: str, strict: bool) -> Any:
            if value is None and nullable:
                return None  # what trying the options in order gives: only null takes None
            for option in options:
                try:
                    return option(value, name, strict)
                except DecodeError:
                    continue
            raise DecodeError(f"{name}: {type(value).__name__} is not {hint}")

        return either
    if hint is type(None):

        def null(value: Any, name: str, strict: bool) -> Any:
            if value is None:
                return None
            raise DecodeError(f"{name}: expected null")

        return null
    if origin is tuple:
        (item_hint, _) = typing.get_args(hint)
        item = _checker(item_hint)
        rows = read_rows(item_hint) if is_wire(item_hint) else None

        def items(value: Any, name: str, strict: bool) -> Any:
            if not isinstance(value, list | tuple):
                raise DecodeError(f"{name}: expected a list")
            if rows is not None and not strict:
                read = rows(value)
                if read is not None:
                    return read
            return tuple(item(v, name, strict) for v in value)

        return items
    if origin is dict:
        _, value_hint = typing.get_args(hint)
        entry = _checker(value_hint)

        def mapping(value: Any, name: str, strict: bool) -> Any:
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise DecodeError(f"{name}: expected an object")
            return {k: entry(v, name, strict) for k, v in value.items()}

        return mapping
    if is_wire(hint):
        cls = typing.cast(type[Any], hint)
        return lambda value, name, strict: _build(cls, value, strict=strict)
    expected = getattr(hint, "__name__", hint)

    def wrong(value: Any, name: str) -> DecodeError:
        return DecodeError(f"{name}: {type(value).__name__} is not {expected}")

    if hint is float:

        def number(value: Any, name: str, strict: bool) -> Any:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
            raise wrong(value, name)

        return number
    if hint is int:

        def integer(value: Any, name: str, strict: bool) -> Any:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise wrong(value, name)

        return integer
    if isinstance(hint, type):
        kind = hint

        def instance(value: Any, name: str, strict: bool) -> Any:
            if isinstance(value, kind):
                return value
            raise wrong(value, name)

        return instance

    def never(value: Any, name: str, strict: bool) -> Any:
        raise wrong(value, name)

    return never
