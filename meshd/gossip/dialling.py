"""Dialling peers and reaching them: connections and the streams opened over them.

What :class:`meshd.gossip.host.GossipHost` does to reach a peer, as functions of the running
libp2p host: read a dial target from a multiaddr (:func:`dial_target`), dial it
(:func:`dial`, several at once with :func:`dial_all`), close every connection to a peer
(:func:`disconnect`), say where a peer's connection comes from (:func:`source_of_peer`,
:func:`remote_address_of`), and open a framed stream to it (:func:`open_framed`), telling a
protocol the peer refused (:class:`ProtocolNotSupported`) from a connection that failed.
A multiaddr that names its host (``/dns/NAME/..``, :mod:`meshd.gossip.names`) is looked
up first (:func:`resolve`), by the host's resolver, each time it is dialled.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.protocol_muxer.exceptions import MultiselectClientError

from meshd.gossip.config import parse_multiaddr
from meshd.gossip.dial_order import PROBE_WINDOW, Attempt, IPNetwork, dial_plan, probe_targets
from meshd.gossip.dial_order import on_link as is_on_link
from meshd.gossip.libp2p_workarounds.connections import forget_failed_dial
from meshd.gossip.names import NamedAddr, resolved_multiaddrs
from meshd.gossip.peers import ConnectResult, parse_peer_id
from meshd.gossip.strangers import inbound_source
from meshd.gossip.streams import (
    LIBP2P_ERRORS,
    FramedStream,
    FrameTimeout,
    TransportError,
    UndialableAddress,
)

__all__ = [
    "Lookups",
    "Probe",
    "ProtocolNotSupported",
    "dial",
    "dial_all",
    "dial_target",
    "disconnect",
    "open_framed",
    "refused_protocol",
    "remote_address_of",
    "resolve",
    "source_of_peer",
    "tcp_probe",
]

log = logging.getLogger(__name__)

#: What a name is looked up with (run in a worker thread): the host's resolver (``/etc/hosts``,
#: then its name servers), as every program on it.
Lookup = Callable[..., list[tuple[Any, ...]]]
#: Lookups under way at most, each in a worker thread of their own (a host's
#: :class:`Lookups`): a resolver that never answers holds its thread until its own timeout,
#: even once the dial gave up, and those threads are not the daemon's others (the store's
#: fsync, the address look), which share trio's default limit of 40.
MAX_LOOKUPS = 4
_FAMILIES: dict[tuple[int, ...], int] = {(4,): socket.AF_INET, (6,): socket.AF_INET6}


class ProtocolNotSupported(TransportError):
    """The peer answered that it does not serve the protocol asked for: not a fault of the
    connection (a member that has just enrolled serves sync only once its daemon runs)."""


def dial_target(addr: str, own: ID) -> PeerInfo:
    """The peer and address ``addr`` (a full multiaddr, ending in ``/p2p/<peer id>``) names.

    Raises :class:`UndialableAddress` if it cannot be dialled as written or names ``own``.
    """
    try:
        info = info_from_p2p_addr(parse_multiaddr(addr))
    except Exception as exc:  # the multiaddr package raises several unrelated types
        raise UndialableAddress(f"not a dialable /p2p multiaddr: {addr!r}") from exc
    if info.peer_id == own:
        raise UndialableAddress(f"refusing to dial ourselves: {addr}")
    return info


async def dial(host: IHost, info: PeerInfo, addr: str, dial_timeout: float) -> str:
    """Dial ``info`` (read from ``addr``), whatever failed before; return its peer id.

    Raises :class:`TransportError` if the dial fails or takes longer than ``dial_timeout``.
    """
    forget_failed_dial(host, info.peer_id)
    with trio.move_on_after(dial_timeout) as scope:
        try:
            await host.connect(info)
        except LIBP2P_ERRORS as exc:
            raise TransportError(f"dialling {addr} failed: {exc}") from exc
    if scope.cancelled_caught:
        raise TransportError(f"dialling {addr} took longer than {dial_timeout} s")
    return info.peer_id.to_base58()


class Lookups:
    """A host's name lookups: at most :data:`MAX_LOOKUPS` worker threads under way, a lookup
    that finds them all busy waiting for one (within its dial's time)."""

    def __init__(self, lookup: Lookup = socket.getaddrinfo, most: int = MAX_LOOKUPS) -> None:
        self.lookup = lookup
        self.most = most
        self._limiter: trio.CapacityLimiter | None = None

    async def __call__(self, name: str, port: int, family: int) -> list[tuple[Any, ...]]:
        if self._limiter is None:  # made in the run that uses it
            self._limiter = trio.CapacityLimiter(self.most)
        lookup = self.lookup

        def look() -> list[tuple[Any, ...]]:
            return lookup(name, port, family=family, type=socket.SOCK_STREAM)

        # trio_typing's stubs (which py-libp2p brings) still know it as ``cancellable``.
        return await trio.to_thread.run_sync(  # type: ignore[call-arg]
            look, limiter=self._limiter, abandon_on_cancel=True
        )

    @property
    def under_way(self) -> int:
        """Worker threads looking a name up now (an abandoned one until its resolver ends)."""
        return 0 if self._limiter is None else self._limiter.borrowed_tokens


async def resolve(named: NamedAddr, within: float, lookups: Lookups) -> list[str]:
    """The ``/ip4``/``/ip6`` multiaddrs ``named`` stands for now (its name looked up, at most
    :data:`meshd.gossip.names.MAX_RESOLVED`). Raises :class:`TransportError` if the name
    resolves to no usable address, the lookup fails, or it takes longer than ``within``
    seconds."""
    family = _FAMILIES.get(named.versions, socket.AF_UNSPEC)
    with trio.move_on_after(within):
        try:
            infos = await lookups(named.name, named.port, family)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise TransportError(f"looking up {named.name} failed: {why}") from None
        found = [
            (4 if info[0] == socket.AF_INET else 6, str(info[4][0]))
            for info in infos
            if info[0] in (socket.AF_INET, socket.AF_INET6)
        ]
        addrs = resolved_multiaddrs(named, found)
        if not addrs:
            versions = " or ".join(f"IPv{v}" for v in named.versions)
            raise TransportError(f"{named.name} has no {versions} address to dial")
        return addrs
    raise TransportError(f"looking up {named.name} took longer than {within} s")


#: Asks addresses (by their place in a peer's list: IP address and TCP port) for a bare TCP
#: connection, for at most the seconds given; the places of those that accepted one.
Probe = Callable[[Mapping[int, tuple[str, int]], float], Awaitable[frozenset[int]]]


async def tcp_probe(targets: Mapping[int, tuple[str, int]], window: float) -> frozenset[int]:
    """:data:`Probe` over TCP: each target asked at once, each connection closed as soon as
    it is made; returns once one accepted (with any that accepted at the same moment), all
    failed, or ``window`` seconds passed."""
    answered: set[int] = set()
    done = trio.Event()
    left = len(targets)
    if not left:
        return frozenset()

    async def ask(place: int, host: str, port: int) -> None:
        nonlocal left
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            pass
        else:
            await stream.aclose()
            answered.add(place)
            done.set()
        finally:
            left -= 1
            if not left:
                done.set()

    with trio.move_on_after(window):
        async with trio.open_nursery() as nursery:
            for place, (host, port) in targets.items():
                nursery.start_soon(ask, place, host, port)
            await done.wait()
            nursery.cancel_scope.cancel()
    return frozenset(answered)


async def dial_all(
    connect: Callable[[str, float | None], Awaitable[str]],
    addrs: Sequence[str],
    on_link: Sequence[IPNetwork] = (),
    probe: Probe | None = None,
) -> list[ConnectResult]:
    """``connect`` to ``addrs`` (each within the time given, None: the dial timeout): the
    addresses of one peer (their ``/p2p/`` id) one after another until one answers, those on
    a network of ours (``on_link``) first, briefly while others follow, and with ``probe``,
    of two or more others those that accept a TCP connection before those silent
    (:func:`meshd.gossip.dial_order.dial_plan`); different peers at once. One result per
    address, in the order given; an address left undialled because another of its peer
    answered is ok, with that peer.

    One peer's addresses are not dialled together: py-libp2p dials one address of a peer at
    a time (``Swarm.dial_peer`` waits for the dial in flight), so dials begun together
    shared the first one's fate, each within its own timeout: an address that never
    answered (a port that drops, a public address the LAN cannot reach itself at) failed
    the member's others too, though they worked."""
    results: list[ConnectResult | None] = [None] * len(addrs)
    peers: dict[str, list[int]] = {}
    for index, addr in enumerate(addrs):
        _, sep, peer = addr.rpartition("/p2p/")
        peers.setdefault(peer if sep and peer else f"#{index}", []).append(index)

    async def dial(indexes: list[int]) -> None:
        mine = [addrs[i] for i in indexes]
        plan = dial_plan(mine, on_link)
        # The addresses on a network of ours lead, the same with a probe or without: tried
        # before the others are asked anything (a member on our LAN costs its public
        # address no packet).
        near = sum(1 for a in plan.first if is_on_link(mine[a.index], on_link))
        for attempt in plan.first[:near]:
            if await tried(indexes, attempt):
                return
        targets = probe_targets(mine, on_link) if probe is not None else {}
        if probe is not None and targets:
            answered = await probe(targets, PROBE_WINDOW)
            log.debug("probed %s: %s answered", mine, sorted(answered) or "none")
            plan = dial_plan(mine, on_link, probed=targets.keys(), answered=answered)
        for attempt in (*plan.first[near:], *plan.again):
            if await tried(indexes, attempt):
                return

    async def tried(indexes: list[int], attempt: Attempt) -> bool:
        """Dial one address of a peer as ``attempt`` says; whether the peer answered."""
        index = indexes[attempt.index]
        try:
            peer = await connect(addrs[index], attempt.within)
        except TransportError as exc:
            results[index] = ConnectResult(addrs[index], None, str(exc))
            return False
        results[index] = ConnectResult(addrs[index], peer, None)
        for other in indexes:  # reached already: not dialled
            if results[other] is None:
                results[other] = ConnectResult(addrs[other], peer, None)
        return True

    async with trio.open_nursery() as nursery:
        for indexes in peers.values():
            nursery.start_soon(dial, indexes)
    return [r for r in results if r is not None]


async def disconnect(host: IHost, peer_id: str, dial_timeout: float) -> None:
    """Close every connection to ``peer_id``; :class:`TransportError` if that fails or takes
    longer than ``dial_timeout``."""
    with trio.move_on_after(dial_timeout):
        try:
            await host.disconnect(parse_peer_id(peer_id))
        except LIBP2P_ERRORS as exc:
            raise TransportError(f"disconnecting {peer_id} failed: {exc}") from exc
        return
    raise TransportError(f"disconnecting {peer_id} timed out")


def source_of_peer(host: IHost, peer_id: str) -> str | None:
    """The source (IPv4 address or IPv6 /64) of ``peer_id``'s inbound connection; None if
    ``host`` holds none."""
    for conn in host.get_network().get_connections(parse_peer_id(peer_id)):
        source = inbound_source(conn)
        if source is not None:
            return source
    return None


def remote_address_of(host: IHost, peer_id: str) -> str | None:
    """``ip:port`` of the far end of ``host``'s connection to ``peer_id``; None if none."""
    for conn in host.get_network().get_connections(parse_peer_id(peer_id)):
        secured = getattr(conn.muxed_conn, "secured_conn", None)
        remote = getattr(secured, "get_remote_address", lambda: None)()
        if isinstance(remote, tuple) and len(remote) >= 2:
            host_part = str(remote[0])
            return f"[{host_part}]:{remote[1]}" if ":" in host_part else f"{host_part}:{remote[1]}"
    return None


async def open_framed(
    host: IHost, peer_id: str, protocol_id: str, max_frame_size: int, stream_timeout: float
) -> FramedStream:
    """Open a framed stream to ``peer_id`` speaking ``protocol_id``.

    Raises :class:`ProtocolNotSupported` if the peer refuses the protocol,
    :class:`TransportError` if opening fails otherwise, and :class:`FrameTimeout` past
    ``stream_timeout``, which also bounds each frame's send and receive on the stream.
    """
    peer = parse_peer_id(peer_id)
    with trio.move_on_after(stream_timeout):
        try:
            stream = await host.new_stream(peer, [TProtocol(protocol_id)])
        except LIBP2P_ERRORS as exc:
            if refused_protocol(exc):
                raise ProtocolNotSupported(f"{peer_id} does not serve {protocol_id} (yet)") from exc
            raise TransportError(f"opening {protocol_id} to {peer_id} failed: {exc}") from exc
        return FramedStream(stream, max_frame_size=max_frame_size, timeout=stream_timeout)
    raise FrameTimeout(f"opening {protocol_id} to {peer_id} took longer than {stream_timeout} s")


def refused_protocol(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is multistream-select's "protocols not
    supported": the peer said ``na`` to every protocol offered."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, MultiselectClientError) and "not supported" in str(seen):
            return True
        seen = seen.__cause__
    return False
