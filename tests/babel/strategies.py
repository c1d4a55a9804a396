"""Hypothesis strategies for valid Babel wire values (anything the encoder accepts)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from hypothesis import strategies as st

from meshd.babel.expand import Route
from meshd.babel.numbers import KNOWN_TLV_TYPES
from meshd.babel.packet import (
    ChallengeReply,
    ChallengeRequest,
    Mac,
    Packet,
    Pc,
    Tlv,
    TrailerTlv,
    UnknownTlv,
)
from meshd.babel.prefix import LINK_LOCAL_HIGH, IPAddress, full_size
from meshd.babel.subtlv_types import (
    Diversity,
    HelloTimestamp,
    IhuTimestamp,
    SourcePrefix,
    SubPad1,
    SubPadN,
    SubTlv,
    UnknownSubTlv,
)
from meshd.babel.tlv import (
    Ack,
    AckReq,
    Hello,
    Ihu,
    NextHop,
    Pad1,
    PadN,
    RouteRequest,
    RouterId,
    SeqnoRequest,
    Update,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
aes = st.integers(0, 4)
_KNOWN_SUB_TYPES = {0, 1, 2, 3, 128}


def addresses(ae: int) -> st.SearchStrategy[IPAddress | None]:
    """An address that AE ``ae`` can carry (None for the wildcard)."""
    if ae == 0:
        return st.none()
    if ae in (1, 4):
        return st.binary(min_size=4, max_size=4).map(IPv4Address)
    if ae == 3:
        return st.binary(min_size=8, max_size=8).map(lambda low: IPv6Address(LINK_LOCAL_HIGH + low))
    return st.binary(min_size=16, max_size=16).map(IPv6Address)


@st.composite
def source_prefixes(draw: st.DrawFn, ae: int) -> SourcePrefix:
    plen = draw(st.integers(0, full_size(ae) * 8))
    return SourcePrefix(plen, draw(st.binary(min_size=(plen + 7) // 8, max_size=(plen + 7) // 8)))


def sub_tlvs(source_ae: int | None = None) -> st.SearchStrategy[tuple[SubTlv, ...]]:
    """Sub-TLVs for a TLV; Source Prefixes only where ``source_ae`` allows them."""
    unknown_types = u8.filter(lambda kind: kind not in _KNOWN_SUB_TYPES)
    choices: list[st.SearchStrategy[SubTlv]] = [
        st.just(SubPad1()),
        st.builds(SubPadN, st.binary(max_size=6)),
        st.builds(Diversity, st.binary(max_size=4)),
        st.builds(HelloTimestamp, u32),
        st.builds(IhuTimestamp, u32, u32),
        st.builds(UnknownSubTlv, unknown_types, st.binary(max_size=6)),
        st.builds(
            UnknownSubTlv, st.just(3), st.binary(max_size=6).filter(lambda b: len(b) not in (4, 8))
        ),
    ]
    if source_ae in (1, 2, 4):
        choices.append(source_prefixes(source_ae))
    else:
        choices.append(st.builds(UnknownSubTlv, st.just(128), st.binary(max_size=6)))
    return st.lists(st.one_of(choices), max_size=3).map(tuple)


@st.composite
def prefix_fields(draw: st.DrawFn, ae: int, compressible: bool) -> tuple[int, int, bytes]:
    """``(plen, omitted, wire prefix)`` valid for ``ae``."""
    if ae == 0:
        return 0, 0, b""
    if ae == 3:
        plen = draw(st.integers(64, 128))
        size = (plen + 7) // 8 - 8
        return plen, 0, draw(st.binary(min_size=size, max_size=size))
    plen = draw(st.integers(0, full_size(ae) * 8))
    whole = (plen + 7) // 8
    omitted = draw(st.integers(0, whole)) if compressible else 0
    size = whole - omitted
    return plen, omitted, draw(st.binary(min_size=size, max_size=size))


@st.composite
def ihus(draw: st.DrawFn) -> Ihu:
    ae = draw(aes)
    return Ihu(draw(u16), draw(u16), ae, draw(addresses(ae)), draw(u8), draw(sub_tlvs()))


@st.composite
def next_hops(draw: st.DrawFn) -> NextHop:
    ae = draw(aes)
    return NextHop(ae, draw(addresses(ae)), draw(u8), draw(sub_tlvs()))


@st.composite
def updates(draw: st.DrawFn) -> Update:
    ae = draw(aes)
    plen, omitted, prefix = draw(prefix_fields(ae, compressible=True))
    fields = (draw(u8), plen, omitted, draw(u16), draw(u16), draw(u16), prefix)
    return Update(ae, *fields, draw(sub_tlvs(ae)))


@st.composite
def route_requests(draw: st.DrawFn) -> RouteRequest:
    ae = draw(aes)
    plen, _, prefix = draw(prefix_fields(ae, compressible=False))
    return RouteRequest(ae, plen, prefix, draw(sub_tlvs(ae)))


@st.composite
def seqno_requests(draw: st.DrawFn) -> SeqnoRequest:
    ae = draw(aes)
    plen, _, prefix = draw(prefix_fields(ae, compressible=False))
    router_id = draw(st.binary(min_size=8, max_size=8))
    fields = (draw(u16), draw(u8), router_id, prefix, draw(u8))
    return SeqnoRequest(ae, plen, *fields, draw(sub_tlvs(ae)))


def tlvs() -> st.SearchStrategy[Tlv]:
    """Any body TLV, in the form the decoder gives it."""
    unknown_types = u8.filter(lambda kind: kind not in KNOWN_TLV_TYPES)
    return st.one_of(
        st.just(Pad1()),
        st.builds(PadN, st.binary(max_size=8)),
        st.builds(AckReq, u16, u16, u16, sub_tlvs()),
        st.builds(Ack, u16, sub_tlvs()),
        st.builds(Hello, u16, u16, u16, sub_tlvs()),
        ihus(),
        st.builds(RouterId, st.binary(min_size=8, max_size=8), u16, sub_tlvs()),
        next_hops(),
        updates(),
        route_requests(),
        seqno_requests(),
        st.builds(Mac, st.binary(max_size=32)),
        st.builds(Pc, u32, st.binary(max_size=32)),
        st.builds(ChallengeRequest, st.binary(max_size=32)),
        st.builds(ChallengeReply, st.binary(max_size=32)),
        st.builds(UnknownTlv, unknown_types, st.binary(max_size=16)),
    )


def trailer_tlvs() -> st.SearchStrategy[TrailerTlv]:
    unknown_types = u8.filter(lambda kind: kind not in (0, 1, 16))
    return st.one_of(
        st.just(Pad1()),
        st.builds(PadN, st.binary(max_size=4)),
        st.builds(Mac, st.binary(max_size=32)),
        st.builds(UnknownTlv, unknown_types, st.binary(max_size=8)),
    )


def packets() -> st.SearchStrategy[Packet]:
    return st.builds(
        Packet,
        st.lists(tlvs(), max_size=8).map(tuple),
        st.lists(trailer_tlvs(), max_size=3).map(tuple),
    )


# --- routes, for the builder --------------------------------------------------------------

_router_ids = st.binary(min_size=8, max_size=8).filter(
    lambda rid: rid not in (bytes(8), b"\xff" * 8)
)


@st.composite
def routes(draw: st.DrawFn, link_source: IPv6Address) -> Route:
    """A route with a finite metric, announced by a speaker at ``link_source``."""
    ipv4 = draw(st.booleans())
    network: IPv4Network | IPv6Network
    source: IPv4Network | IPv6Network | None = None
    if ipv4:
        network = IPv4Network(
            (draw(st.binary(min_size=4, max_size=4)), draw(st.integers(0, 32))), strict=False
        )
        if draw(st.booleans()):
            source = IPv4Network(
                (draw(st.binary(min_size=4, max_size=4)), draw(st.integers(1, 32))), strict=False
            )
    else:
        network = IPv6Network(
            (draw(st.binary(min_size=16, max_size=16)), draw(st.integers(0, 128))), strict=False
        )
        if draw(st.booleans()):
            source = IPv6Network(
                (draw(st.binary(min_size=16, max_size=16)), draw(st.integers(1, 128))), strict=False
            )
    hops: list[IPAddress] = [link_source, IPv6Address("fe80::99"), IPv6Address("2001:db8::1")]
    if ipv4:
        hops.append(IPv4Address("192.0.2.1"))
    return Route(
        prefix=network,
        seqno=draw(u16),
        metric=draw(st.integers(0, 0xFFFE)),
        interval=draw(st.integers(1, 0xFFFF)),
        router_id=draw(_router_ids),
        next_hop=draw(st.sampled_from(hops)),
        source=source,
    )
