"""From TLVs to what they mean, and back: the parser state of RFC 8966 section 4.5.

A decoded :class:`~meshd.babel.packet.Packet` keeps the wire choices (compressed prefixes,
flags, Router-Id and Next Hop TLVs). :func:`expand` walks it once, in order, with the
parser state of the RFC:

- the default prefix of each compressible AE (1, 2 and 4), set by Updates with flag 0x80;
- the current router-id, set by Router-Id TLVs and by Updates with flag 0x40;
- the IPv4 and IPv6 next hops, set by Next Hop TLVs, at first the packet's source address;

and yields self-contained messages: a :class:`Route` per Update, requests with their
prefixes expanded, and the other TLVs that need no state. TLVs the RFCs say to ignore are
skipped, after updating the parser state where RFC 8966 4.4 says they still do.

:func:`build_updates` goes the other way: from routes to Router-Id, Next Hop and Update TLVs
that a receiver expands back to the same routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import TypeGuard

from meshd.babel.numbers import FLAG_DEFAULT_PREFIX, FLAG_ROUTER_ID, INFINITY
from meshd.babel.packet import ChallengeReply, ChallengeRequest, Packet, Pc, Tlv
from meshd.babel.prefix import (
    AE_IPV4,
    AE_IPV4_VIA_IPV6,
    AE_IPV6,
    AE_WILDCARD,
    IPAddress,
    IPNetwork,
    address_ae,
    compress_prefix,
    expand_prefix,
    is_ipv4,
    network_ae,
    to_network,
)
from meshd.babel.subtlv_types import SourcePrefix, SubTlv
from meshd.babel.tlv import (
    Ack,
    AckReq,
    Hello,
    Ihu,
    NextHop,
    RouteRequest,
    RouterId,
    SeqnoRequest,
    Update,
)

_COMPRESSIBLE = (AE_IPV4, AE_IPV6, AE_IPV4_VIA_IPV6)
_BAD_ROUTER_IDS = (bytes(8), b"\xff" * 8)


@dataclass(frozen=True, slots=True)
class Route:
    """One route announced (or retracted, ``metric`` 0xFFFF) by an Update.

    ``router_id`` is None only for a retraction sent without a router-id. ``next_hop`` is
    None only for a retraction without a next hop; an IPv4 prefix with an IPv6 next hop is
    an RFC 9229 route. ``interval`` is in centiseconds.
    """

    prefix: IPNetwork
    seqno: int
    metric: int
    interval: int
    router_id: bytes | None
    next_hop: IPAddress | None
    source: IPNetwork | None = None

    @property
    def retraction(self) -> bool:
        return self.metric == INFINITY


@dataclass(frozen=True, slots=True)
class RetractAll:
    """A wildcard retraction (AE 0 Update): every route from this neighbour is retracted."""

    interval: int
    seqno: int = 0


@dataclass(frozen=True, slots=True)
class RequestAllRoutes:
    """A wildcard Route Request: send a full routing table dump."""


@dataclass(frozen=True, slots=True)
class RequestRoute:
    """A Route Request for one prefix (and source prefix, RFC 9079)."""

    prefix: IPNetwork
    source: IPNetwork | None = None


@dataclass(frozen=True, slots=True)
class RequestSeqno:
    """A Seqno Request for one prefix, to be forwarded at most ``hop_count`` hops."""

    prefix: IPNetwork
    seqno: int
    hop_count: int
    router_id: bytes
    source: IPNetwork | None = None


Message = (
    Route
    | RetractAll
    | RequestAllRoutes
    | RequestRoute
    | RequestSeqno
    | Hello
    | Ihu
    | AckReq
    | Ack
    | Pc
    | ChallengeRequest
    | ChallengeReply
)


@dataclass(slots=True)
class _ParserState:
    """The RFC 8966 4.5 parser state; one per packet, never shared."""

    next_hop4: IPv4Address | None
    next_hop6: IPv6Address | None
    router_id: bytes | None = None
    defaults: dict[int, bytes] = field(default_factory=dict)

    @classmethod
    def for_source(cls, source: IPAddress | None) -> _ParserState:
        return cls(
            next_hop4=source if isinstance(source, IPv4Address) else None,
            next_hop6=source if isinstance(source, IPv6Address) else None,
        )

    def next_hop(self, ae: int) -> IPAddress | None:
        return self.next_hop4 if ae == AE_IPV4 else self.next_hop6


def router_id_from_prefix(ae: int, full: bytes) -> bytes:
    """The router-id an Update with flag 0x40 sets: the last 8 bytes of its prefix.

    IPv4 prefixes have only 4 bytes; like babeld, they are preceded by 4 zero bytes.
    """
    return bytes(4) + full if is_ipv4(ae) else full[8:]


def expand(packet: Packet, source: IPAddress | None = None) -> Iterator[Message]:
    """Walk a packet's body with the RFC parser state; yield what each TLV means.

    ``source`` is the packet's source address, the next hop of routes of its family unless a
    Next Hop TLV says otherwise. The trailer is not looked at (see :mod:`meshd.babel.mac`).
    """
    state = _ParserState.for_source(source)
    for tlv in packet.tlvs:
        if isinstance(tlv, RouterId):
            valid = tlv.router_id not in _BAD_ROUTER_IDS
            state.router_id = tlv.router_id if valid else None
        elif isinstance(tlv, NextHop):
            _set_next_hop(state, tlv)
        elif isinstance(tlv, Update):
            route = _expand_update(state, tlv)
            if route is not None:
                yield route
        elif isinstance(tlv, RouteRequest | SeqnoRequest):
            request = _expand_request(tlv)
            if request is not None:
                yield request
        elif _stateless_and_understood(tlv):
            yield tlv


def _stateless_and_understood(
    tlv: Tlv,
) -> TypeGuard[Hello | Ihu | AckReq | Ack | Pc | ChallengeRequest | ChallengeReply]:
    """A TLV that needs no parser state and is not to be ignored."""
    if isinstance(tlv, Ihu) and tlv.ae == AE_IPV4_VIA_IPV6:
        return False  # RFC 9229 gives AE 4 no meaning in an IHU.
    stateless = Hello | Ihu | AckReq | Ack | Pc | ChallengeRequest | ChallengeReply
    return isinstance(tlv, stateless) and not tlv.has_unknown_mandatory


def expand_routes(packet: Packet, source: IPAddress | None = None) -> Iterator[Route]:
    """Only the routes of :func:`expand` (a wildcard retraction is not a :class:`Route`)."""
    for message in expand(packet, source):
        if isinstance(message, Route):
            yield message


def _set_next_hop(state: _ParserState, tlv: NextHop) -> None:
    # RFC 8966 forbids AE 0 and RFC 9229 AE 4 in a Next Hop: those are ignored.
    if isinstance(tlv.address, IPv4Address) and tlv.ae == AE_IPV4:
        state.next_hop4 = tlv.address
    elif isinstance(tlv.address, IPv6Address):
        state.next_hop6 = tlv.address


def _source_network(ae: int, subs: tuple[SubTlv, ...]) -> tuple[bool, IPNetwork | None]:
    """``(acceptable, source)``: RFC 9079 allows one source prefix, never of length 0."""
    sources = [sub for sub in subs if isinstance(sub, SourcePrefix)]
    if not sources:
        return True, None
    if len(sources) > 1 or sources[0].plen == 0 or ae == AE_WILDCARD:
        return False, None
    only = sources[0]
    full = expand_prefix(ae, only.plen, 0, only.prefix, None)
    return True, to_network(ae, only.plen, full)


def _expand_update(state: _ParserState, tlv: Update) -> Route | RetractAll | None:
    if tlv.ae == AE_WILDCARD:
        wildcard_ok = tlv.metric == INFINITY and tlv.source is None
        if wildcard_ok and not tlv.has_unknown_mandatory:
            return RetractAll(tlv.interval, tlv.seqno)
        return None
    try:
        full = expand_prefix(tlv.ae, tlv.plen, tlv.omitted, tlv.prefix, state.defaults.get(tlv.ae))
    except ValueError:
        # Bytes omitted with no default prefix: ignored. A default it meant to set is
        # unknown now, so later compressed Updates of this AE are ignored too.
        if tlv.flags & FLAG_DEFAULT_PREFIX:
            state.defaults.pop(tlv.ae, None)
        return None
    if tlv.flags & FLAG_DEFAULT_PREFIX and tlv.ae in _COMPRESSIBLE:
        state.defaults[tlv.ae] = full
    if tlv.flags & FLAG_ROUTER_ID:
        router_id = router_id_from_prefix(tlv.ae, full)
        state.router_id = router_id if router_id not in _BAD_ROUTER_IDS else None
    if tlv.has_unknown_mandatory:
        return None
    acceptable, source = _source_network(tlv.ae, tlv.sub_tlvs)
    next_hop = state.next_hop(tlv.ae)
    if not acceptable:
        return None
    if tlv.metric != INFINITY and (state.router_id is None or next_hop is None):
        return None
    return Route(
        prefix=to_network(tlv.ae, tlv.plen, full),
        seqno=tlv.seqno,
        metric=tlv.metric,
        interval=tlv.interval,
        router_id=state.router_id,
        next_hop=next_hop,
        source=source,
    )


def _expand_request(
    tlv: RouteRequest | SeqnoRequest,
) -> RequestAllRoutes | RequestRoute | RequestSeqno | None:
    if tlv.has_unknown_mandatory:
        return None
    acceptable, source = _source_network(tlv.ae, tlv.sub_tlvs)
    if not acceptable:
        return None
    if tlv.ae == AE_WILDCARD:
        # A wildcard Seqno Request is forbidden; a wildcard Route Request asks for all.
        return RequestAllRoutes() if isinstance(tlv, RouteRequest) and source is None else None
    prefix = to_network(tlv.ae, tlv.plen, expand_prefix(tlv.ae, tlv.plen, 0, tlv.prefix, None))
    if isinstance(tlv, RouteRequest):
        return RequestRoute(prefix, source)
    return RequestSeqno(prefix, tlv.seqno, tlv.hop_count, tlv.router_id, source)


# --- building -------------------------------------------------------------------------------


def _source_sub_tlv(prefix: IPNetwork, source: IPNetwork | None) -> tuple[SubTlv, ...]:
    if source is None:
        return ()
    if source.version != prefix.version:
        raise ValueError(f"source {source} and prefix {prefix} are of different families")
    if source.prefixlen == 0:
        raise ValueError("RFC 9079 has no source prefix of length 0; leave it out")
    whole = (source.prefixlen + 7) // 8
    return (SourcePrefix(source.prefixlen, source.network_address.packed[:whole]),)


def _wire_prefix(prefix: IPNetwork) -> tuple[int, bytes]:
    whole = (prefix.prefixlen + 7) // 8
    return prefix.prefixlen, prefix.network_address.packed[:whole]


def route_request(prefix: IPNetwork | None, source: IPNetwork | None = None) -> RouteRequest:
    """A Route Request for ``prefix``, or for every route when ``prefix`` is None."""
    if prefix is None:
        if source is not None:
            raise ValueError("a wildcard request cannot carry a source prefix")
        return RouteRequest(AE_WILDCARD, 0, b"")
    plen, raw = _wire_prefix(prefix)
    return RouteRequest(network_ae(prefix), plen, raw, _source_sub_tlv(prefix, source))


def seqno_request(
    prefix: IPNetwork,
    seqno: int,
    hop_count: int,
    router_id: bytes,
    source: IPNetwork | None = None,
) -> SeqnoRequest:
    """A Seqno Request for ``prefix``."""
    plen, raw = _wire_prefix(prefix)
    subs = _source_sub_tlv(prefix, source)
    return SeqnoRequest(network_ae(prefix), plen, seqno, hop_count, router_id, raw, 0, subs)


def wildcard_retraction(interval: int, seqno: int = 0) -> Update:
    """An AE 0 Update retracting every route we announced on the link."""
    return Update(AE_WILDCARD, 0, 0, 0, interval, seqno, INFINITY, b"")


def ihu(rxcost: int, interval: int, address: IPAddress | None) -> Ihu:
    """An IHU for a neighbour's address in its most compact AE (AE 0 when None)."""
    ae = AE_WILDCARD if address is None else address_ae(address)
    return Ihu(rxcost, interval, ae, address)


def _route_ae(route: Route, ipv4_via_ipv6: bool) -> int:
    if isinstance(route.prefix, IPv4Network):
        if route.next_hop is None:
            via_ipv6 = ipv4_via_ipv6
        else:
            via_ipv6 = isinstance(route.next_hop, IPv6Address)
        return network_ae(route.prefix, via_ipv6=via_ipv6)
    if isinstance(route.next_hop, IPv4Address):
        raise ValueError(f"IPv6 prefix {route.prefix} cannot have IPv4 next hop")
    return AE_IPV6


def _build_order(
    route: Route, source: IPAddress | None
) -> tuple[bool, str, bytes, int, bytes, int]:
    # Routes relying on the packet's source address come before any Next Hop TLV; grouping
    # by next hop and router-id saves TLVs, sorting by prefix helps compression.
    return (
        route.next_hop not in (None, source),
        str(route.next_hop or ""),
        route.router_id or b"",
        route.prefix.version,
        route.prefix.network_address.packed,
        route.prefix.prefixlen,
    )


def build_updates(
    routes: Iterable[Route],
    *,
    source: IPAddress | None = None,
    compress: bool = True,
    ipv4_via_ipv6: bool = True,
) -> list[Tlv]:
    """Router-Id, Next Hop and Update TLVs announcing ``routes``, in one packet's order.

    The result must be sent as one run of TLVs in one packet (the parser state does not
    cross packets), before any other Next Hop, Router-Id or Update, and the routes come out
    sorted. ``source`` is the address the packet will be sent from: a route whose
    ``next_hop`` is None or ``source`` needs no Next Hop TLV. An IPv4 route whose next hop
    is None goes as AE 4 (RFC 9229) when ``ipv4_via_ipv6``, else as AE 1 (the receiver then
    needs an IPv4 source address). With ``compress``, prefixes omit the
    bytes they share with the previous default prefix and router-ids come from the prefix
    (flag 0x40) where that saves a Router-Id TLV. A route with a finite metric needs a
    router-id; ValueError otherwise.
    """
    tlvs: list[Tlv] = []
    state = _ParserState.for_source(source)
    for route in sorted(routes, key=lambda route: _build_order(route, source)):
        ae = _route_ae(route, ipv4_via_ipv6)
        if route.router_id is None and not route.retraction:
            raise ValueError(f"route to {route.prefix} with a finite metric has no router-id")
        next_hop = route.next_hop
        if next_hop is not None and next_hop != state.next_hop(ae):
            tlvs.append(NextHop(address_ae(next_hop), next_hop))
            if isinstance(next_hop, IPv4Address):
                state.next_hop4 = next_hop
            else:
                state.next_hop6 = next_hop
        plen = route.prefix.prefixlen
        full = route.prefix.network_address.packed
        default = state.defaults.get(ae) if compress else None
        omitted, raw = compress_prefix(ae, plen, full, default)
        flags = 0
        if compress and (default is None or omitted == 0):
            flags |= FLAG_DEFAULT_PREFIX
            state.defaults[ae] = full
        if route.router_id is not None and route.router_id != state.router_id:
            if compress and ae == AE_IPV6 and router_id_from_prefix(ae, full) == route.router_id:
                flags |= FLAG_ROUTER_ID
            else:
                tlvs.append(RouterId(route.router_id))
            state.router_id = route.router_id
        subs = _source_sub_tlv(route.prefix, route.source)
        tlvs.append(
            Update(ae, flags, plen, omitted, route.interval, route.seqno, route.metric, raw, subs)
        )
    return tlvs


__all__ = [
    "Message",
    "RequestAllRoutes",
    "RequestRoute",
    "RequestSeqno",
    "RetractAll",
    "Route",
    "build_updates",
    "expand",
    "expand_routes",
    "ihu",
    "route_request",
    "router_id_from_prefix",
    "seqno_request",
    "wildcard_retraction",
]
