"""The control commands, typed (pure): a frozen request and answer type per command.

The daemon decodes each request into its type (:func:`decode_request`; an unknown command or
malformed arguments is a :class:`~meshd.errors.ControlDecodeError`, which the server answers as
a typed error), runs the handler its table has for that type, and answers :func:`to_json` of
the answer. The CLI sends :func:`to_json` of a request and reads the answer back with
:func:`decode_answer` into the same type; the quick path and the typer path both go through
:mod:`meshd.cli.asking` and :mod:`meshd.cli.revoking`. On the wire the JSON is what it always
was: the keys of a request's ``args`` and of an answer are the types' field names, so
``meshd peers --json`` and ``meshd status --json`` print the same keys.

Answers decode leniently in one way only: keys this CLI does not know (a newer daemon's) are
ignored; a missing key or a value of the wrong type is a DecodeError.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Final, TypeVar, Union

from meshd.errors import ControlDecodeError, DecodeError

OMIT: Final = {"omit_if_none": True}
"""Field metadata: left out of the JSON when None (a column that only some daemons fill)."""

Views = tuple[dict[str, Any], ...]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class Field:
    """One field of a :class:`Wire` type: its name, default and metadata."""

    __slots__ = ("default", "metadata", "name")

    def __init__(self, name: str, default: Any, metadata: Mapping[str, Any]) -> None:
        self.name, self.default, self.metadata = name, default, metadata


class _FieldSpec:
    __slots__ = ("default", "metadata")

    def __init__(self, default: Any, metadata: Mapping[str, Any]) -> None:
        self.default, self.metadata = default, metadata


def field(*, default: Any = MISSING, metadata: Mapping[str, Any] | None = None) -> Any:
    """A field's default and metadata, as ``dataclasses.field`` gives them."""
    return _FieldSpec(default, metadata or {})


class FrozenError(AttributeError):
    """A :class:`Wire` value was assigned to: they are immutable."""


@typing.dataclass_transform(eq_default=True, frozen_default=True, field_specifiers=(field,))
class Wire:
    """Base of every control request and answer: a frozen record of typed fields, declared
    like a frozen dataclass (mypy checks them as one).

    Not ``@dataclass`` itself: generating the methods of two dozen dataclasses cost the
    commands that only ask the daemon (``meshd peers``, ``status``) 15 ms at every start,
    a fifth of their time; this base builds a type's fields once, by reading its
    annotations, and shares one ``__init__``, ``__eq__`` and ``__repr__``."""

    __slots__ = ()
    _fields: ClassVar[tuple[Field, ...]] = ()

    def __init_subclass__(cls) -> None:
        fields = {f.name: f for f in cls._fields}
        # The class's own annotations (``inspect.get_annotations``, without importing
        # inspect: it costs the quick path several ms at every start).
        for name, hint in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
            if str(hint).startswith(("ClassVar", "typing.ClassVar")):
                continue
            value = cls.__dict__.get(name, MISSING)
            if isinstance(value, _FieldSpec):
                fields[name] = Field(name, value.default, value.metadata)
                delattr(cls, name)
            else:
                fields[name] = Field(name, value, {})
        cls._fields = tuple(fields.values())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = type(self)._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(fields)} fields")
        for f, value in zip(fields, args, strict=False):
            if f.name in kwargs:
                raise TypeError(f"{type(self).__name__}: {f.name} given twice")
            kwargs[f.name] = value
        for f in fields:
            value = kwargs.pop(f.name, f.default)
            if value is MISSING:
                raise TypeError(f"{type(self).__name__}: {f.name} is missing")
            object.__setattr__(self, f.name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field {sorted(kwargs)[0]!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise FrozenError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Wire)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"


def fields(value: Wire | type[Wire]) -> tuple[Field, ...]:
    """The fields of a :class:`Wire` type or value, in declaration order."""
    return value._fields


def is_wire(value: Any) -> bool:
    """Whether ``value`` is a :class:`Wire` type."""
    return isinstance(value, type) and issubclass(value, Wire)


class Request(Wire):
    """Base of the requests: ``command`` is the name on the wire.

    Every command is a :class:`Query` or a :class:`Change`, never a plain Request: whether
    its answer waits for the disk is part of its type (a command that is neither is refused
    when its class is made, and tests/control/test_commands.py checks every command)."""

    command: ClassVar[str]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        kind = cls.__module__ == __name__ and cls.__qualname__ in ("Query", "Change")
        if Request in cls.__bases__ and not kind:
            raise TypeError(f"{cls.__name__}: a command is a Query or a Change, not a Request")


class Query(Request):
    """A command that changes nothing: answered at once from the daemon's current state,
    never held back by the store's fsync (``meshd peers`` and ``status`` must stay instant
    while a join fills the store)."""


class Change(Request):
    """A command that changes the daemon's state: answered only once every record committed
    so far, its own included, is on disk (an acknowledged revocation survives kill -9 and a
    power cut)."""


# --- requests ------------------------------------------------------------------------------


class StatusRequest(Query):
    command: ClassVar[str] = "status"


class PeersRequest(Query):
    command: ClassVar[str] = "peers"


class RoutesRequest(Query):
    command: ClassVar[str] = "routes"


class InviteBootstrapRequest(Query):
    command: ClassVar[str] = "invite-bootstrap"


class PublishRequest(Change):
    command: ClassVar[str] = "publish"
    record: str  # base64


class ConnectRequest(Change):
    command: ClassVar[str] = "connect"
    addrs: tuple[str, ...]


class SponsoredRequest(Query):
    command: ClassVar[str] = "sponsored"
    target: str  # a node key in hex


class SyncRequest(Change):
    command: ClassVar[str] = "sync"


class RevokeRequest(Change):
    command: ClassVar[str] = "revoke"
    node: str
    reason: str = ""


class DownRequest(Change):
    command: ClassVar[str] = "down"


class RotateWgRequest(Change):
    command: ClassVar[str] = "rotate-wg"


class NetcheckRequest(Query):
    command: ClassVar[str] = "netcheck"


REQUESTS: Final[Mapping[str, type[Request]]] = {
    cls.command: cls
    for cls in (
        StatusRequest,
        PeersRequest,
        RoutesRequest,
        InviteBootstrapRequest,
        PublishRequest,
        ConnectRequest,
        SponsoredRequest,
        SyncRequest,
        RevokeRequest,
        DownRequest,
        RotateWgRequest,
        NetcheckRequest,
    )
}


# --- answers -------------------------------------------------------------------------------


class StatusAnswer(Wire):
    node_id: str
    name: str
    network: str
    network_id: str
    members: int
    expired: int
    revoked: int
    records: int
    pending: int
    pending_evicted: int
    digest: str
    accepted: int
    rejected: dict[str, int]
    listen_addrs: tuple[str, ...]
    endpoints: tuple[str, ...]
    wireguard: dict[str, Any]
    peer_id: str
    connected: int
    syncs: int
    budgets: dict[str, int]
    uptime: float
    tasks: int
    shed: dict[str, int]
    expiring: Views = ()
    # The current root, since when, the roots being retired and who is anchored only to them.
    root: dict[str, Any] | None = None


class PeerRow(Wire):
    name: str
    node_id: str
    node_key: str  # base64
    state: str
    reason: str
    overlay_ip: str
    link_local: str
    wg_public_key: str  # base64
    endpoints: tuple[str, ...]
    addrs: tuple[str, ...]
    last_seen: int | None
    admitted_at: int
    not_after: int
    credentials_end: int
    connected: bool
    wg_peer: bool
    wg_endpoint: str | None
    last_handshake: int | float | None
    rx_bytes: int | None
    tx_bytes: int | None
    expires: str | None = None
    revocation_reason: str | None = None
    retiring_root: bool | None = field(default=None, metadata=OMIT)
    """True when anchored only to a root being retired (it ends with that root's overlap)."""
    route: str | None = field(default=None, metadata=OMIT)
    metric: int | None = field(default=None, metadata=OMIT)
    path: str | None = field(default=None, metadata=OMIT)
    """``direct``, ``relay`` or ``none`` (meshd/mesh/seeing.py); None for this node."""
    path_endpoint: str | None = field(default=None, metadata=OMIT)
    """Direct: the endpoint WireGuard shows for the member."""
    path_via: str | None = field(default=None, metadata=OMIT)
    """Relay: the member traffic goes through (its name)."""
    path_state: str | None = field(default=None, metadata=OMIT)
    """What the daemon does for a direct path: ``trying`` candidates, ``direct``, ``relay``
    (every candidate failed; tried again later) or ``none`` (no candidate)."""
    routed: bool = field(default=False, metadata={"local": True})
    """Whether Babel filled ``route`` and ``metric`` (they are on the wire only then)."""


class PeersAnswer(Wire):
    rows: tuple[PeerRow, ...]


class RoutesAnswer(Wire):
    router_id: str
    routes: Views
    neighbours: Views
    seqno: int | None = field(default=None, metadata=OMIT)
    interfaces: tuple[str, ...] | None = field(default=None, metadata=OMIT)
    counters: dict[str, int] | None = field(default=None, metadata=OMIT)


class InviteBootstrapAnswer(Wire):
    addrs: tuple[str, ...]


class PublishAnswer(Wire):
    new: bool
    record_id: str
    excluded: tuple[str, ...]


class ConnectResultRow(Wire):
    addr: str
    peer_id: str | None
    error: str | None


class ConnectAnswer(Wire):
    results: tuple[ConnectResultRow, ...]


class SponsoredAnswer(Wire):
    sponsored: tuple[str, ...]  # record ids in hex
    legacy_only: bool


class SyncAnswer(Wire):
    requested: int


class RevokeAnswer(Wire):
    revocation_id: str
    target: str
    target_role: str
    target_id: str
    reason: str
    excluded: tuple[str, ...]
    sponsored_kept: int
    relisted: bool
    new: bool


class DownAnswer(Wire):
    stopping: bool
    pid: int


class RotateWgAnswer(Wire):
    wg_public_key: str
    counter: int
    record_id: str


class SeenRow(Wire):
    endpoint: str
    observers: int
    own: bool


class ReachRow(Wire):
    name: str
    node_id: str
    endpoint: str | None
    last_handshake: int | float


class NetcheckAnswer(Wire):
    listen_port: int | None
    local: tuple[str, ...]
    observing: bool
    """Whether this daemon gathers what members see of it (False: an older daemon)."""
    seen: tuple[SeenRow, ...]
    reflexive: tuple[str, ...]
    nat: str
    nat_why: str
    behind_nat: bool | None
    reachable_from: tuple[ReachRow, ...]
    members: int


ANSWERS: Final[Mapping[type[Request], type[Any]]] = {
    StatusRequest: StatusAnswer,
    PeersRequest: PeersAnswer,
    RoutesRequest: RoutesAnswer,
    InviteBootstrapRequest: InviteBootstrapAnswer,
    PublishRequest: PublishAnswer,
    ConnectRequest: ConnectAnswer,
    SponsoredRequest: SponsoredAnswer,
    SyncRequest: SyncAnswer,
    RevokeRequest: RevokeAnswer,
    DownRequest: DownAnswer,
    RotateWgRequest: RotateWgAnswer,
    NetcheckRequest: NetcheckAnswer,
}
LISTS: Final[Mapping[type[Any], str]] = {
    PeersAnswer: "rows",
    InviteBootstrapAnswer: "addrs",
    ConnectAnswer: "results",
}
"""Answers that are a JSON list on the wire (as they always were): the field holding it."""

A = TypeVar("A")


class Ask(typing.Protocol):
    """A command asked inside the daemon (systemd's notifier, the metrics endpoint): a request
    and its answer type in, the typed answer out, through the same handler table as the
    control socket (meshd.daemon.control.Control.ask)."""

    def __call__(self, request: Request, answer: type[A], /) -> typing.Awaitable[A]: ...


# --- encoding -------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """A request's args, or an answer, as the JSON value on the wire."""
    if isinstance(value, Wire):
        only = LISTS.get(type(value))
        if only is not None:
            return to_json(getattr(value, only))
        out: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("local"):
                continue
            if f.metadata.get("omit_if_none") and item is None and not _shown(value, f.name):
                continue
            out[f.name] = to_json(item)
        return out
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def _shown(value: Any, name: str) -> bool:
    """``route`` and ``metric`` are on the wire whenever Babel filled them, None or not."""
    return name in ("route", "metric") and bool(getattr(value, "routed", False))


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


def _build(cls: type[Any], value: Any, *, strict: bool) -> Any:
    if not isinstance(value, Mapping):
        raise DecodeError(f"{cls.__name__}: expected an object")
    hints = _hints(cls)
    known = {f.name: f for f in fields(cls) if not f.metadata.get("local")}
    if strict:
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise DecodeError(f"unknown argument {str(unknown[0])[:40]!r}")
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name not in value:
            if f.default is MISSING:
                raise DecodeError(f"{cls.__name__}: {name} is missing")
            continue
        kwargs[name] = _check(hints[name], value[name], name, strict=strict)
    if cls is PeerRow and ("route" in value or "metric" in value):
        kwargs["routed"] = True
    return cls(**kwargs)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = typing.get_type_hints(cls)
    return found


def _check(hint: Any, value: Any, name: str, *, strict: bool) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check(option, value, name, strict=strict)
            except DecodeError:
                continue
        raise DecodeError(f"{name}: {type(value).__name__} is not {hint}")
    if hint is type(None):
        if value is None:
            return None
        raise DecodeError(f"{name}: expected null")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise DecodeError(f"{name}: expected a list")
        (item, _) = typing.get_args(hint)
        return tuple(_check(item, v, name, strict=strict) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise DecodeError(f"{name}: expected an object")
        _, item = typing.get_args(hint)
        return {k: _check(item, v, name, strict=strict) for k, v in value.items()}
    if is_wire(hint):
        return _build(typing.cast(type[Any], hint), value, strict=strict)
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise DecodeError(f"{name}: {type(value).__name__} is not {getattr(hint, '__name__', hint)}")
