"""The control commands, typed (pure): a frozen request and answer type per command.

Every command is a :class:`Query` (it changes nothing) or a :class:`Change` (its answer waits
for the disk); :data:`REQUESTS` maps each command's name on the wire to its request type,
:data:`ANSWERS` each request type to its answer type. The types are
:class:`~meshd.control.wire.Wire` records; :mod:`meshd.control.typed_json` turns them into
JSON and back.

The daemon decodes each request into its type (:func:`~meshd.control.typed_json.decode_request`),
runs the handler its table has for that type, and answers the JSON of the answer. The CLI sends
the JSON of a request and reads the answer back into the same type; the quick path and the typer
path both go through :mod:`meshd.cli.asking` and :mod:`meshd.cli.revoking`. On the wire the JSON
is what it always was: the keys of a request's ``args`` and of an answer are the types' field
names, so ``meshd peers --json`` and ``meshd status --json`` print the same keys.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Final, TypeVar

from meshd.control.wire import OMIT, Wire, field

Views = tuple[dict[str, Any], ...]


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
    member: str = ""  # only the members it names (meshd.daemon.state_views.select_members)


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
    # Since when (Unix seconds) no member has been connected, others existing; None: one is.
    isolated_since: int | None = None
    # What a node with no member connected dials besides the members' last addresses: the
    # bootstrap option's, then those join kept (meshd.daemon.service.bootstrap_targets).
    bootstrap: tuple[str, ...] = ()
    # Rows the store could not take (its disk full), kept in memory until it can.
    store_unwritten: int = 0
    # The current root, since when, the roots being retired and who is anchored only to them.
    root: dict[str, Any] | None = None
    # What SIGHUPs did (meshd.daemon.reload.Reloader.view); None: not a running daemon's.
    config: dict[str, Any] | None = None


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
