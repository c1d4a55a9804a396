"""The codec's rules: what is malformed, what is kept, what the parser state makes of it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from meshd.babel.codec import decode_packet_untrusted, encode_packet
from meshd.babel.expand import (
    RequestAllRoutes,
    RequestRoute,
    RetractAll,
    Route,
    build_updates,
    expand,
    expand_routes,
    ihu,
    route_request,
    seqno_request,
    wildcard_retraction,
)
from meshd.babel.packet import Packet, UnknownTlv
from meshd.babel.subtlv_types import UnknownSubTlv
from meshd.babel.tlv import Hello, NextHop, Pad1, RouterId, Update
from meshd.errors import DecodeError

SRC = IPv6Address("fe80::1")
ROUTER = bytes.fromhex("0102030405060708")


def packet(body_hex: str, trailer_hex: str = "") -> bytes:
    body = bytes.fromhex(body_hex)
    return b"\x2a\x02" + len(body).to_bytes(2, "big") + body + bytes.fromhex(trailer_hex)


def tlv(kind: int, body_hex: str) -> str:
    """A TLV in hex, its length computed."""
    return f"{kind:02x}{len(body_hex) // 2:02x}{body_hex}"


def update(
    ae: int,
    plen: int,
    omitted: int,
    prefix: str,
    *,
    flags: int = 0,
    metric: int = 0,
    subs: str = "",
) -> str:
    """An Update TLV in hex: interval 1600, seqno 1."""
    return tlv(8, f"{ae:02x}{flags:02x}{plen:02x}{omitted:02x}06400001{metric:04x}{prefix}{subs}")


ROUTER_ID_TLV = tlv(6, "0000" + ROUTER.hex())

MALFORMED = {
    "empty": b"",
    "short header": b"\x2a\x02\x00",
    "bad magic": bytes.fromhex("2b020000"),
    "bad version": bytes.fromhex("2a010000"),
    "body past the end": bytes.fromhex("2a020004000000"),
    "TLV header cut": packet("04"),
    "TLV body cut": bytes.fromhex("2a0200040406000000"),
    "Hello too short": packet(tlv(4, "00000001")),
    "IHU address cut": packet(tlv(5, "02000060012c" + "fe800000")),
    "Router-Id too short": packet(tlv(6, "0000" + "01" * 6)),
    "Update too short": packet(tlv(8, "0100200006400001")),
    "IPv4 plen 33": packet(update(1, 33, 0, "0aff000200")),
    "IPv6 plen 129": packet(update(2, 129, 0, "00" * 17)),
    "omitted beyond plen": packet(update(1, 8, 2, "")),
    "omitted beyond address": packet(update(2, 128, 17, "")),
    "AE 3 with omitted": packet(update(3, 128, 1, "00" * 7)),
    "AE 3 plen 63": packet(update(3, 63, 0, "")),
    "AE 0 with plen": packet(update(0, 8, 0, "")),
    "prefix cut": packet(update(1, 32, 0, "0a00")),
    "request prefix cut": packet(tlv(9, "01200a")),
    "seqno request cut": packet(tlv(10, "0120000101000102030405060708" + "0a00")),
    "sub-TLV cut": packet(tlv(4, "000000010190" + "0306")),
    "sub-TLV header cut": packet(tlv(4, "000000010190" + "03")),
    "source prefix too long": packet(update(1, 32, 0, "0a000001", subs="800121")),
    "source prefix size": packet(update(1, 32, 0, "0a000001", subs="80022000")),
    "source prefix empty": packet(update(1, 32, 0, "0a000001", subs="8000")),
    "PC index too long": packet(tlv(17, "00" * 37)),
    "nonce too long": packet(tlv(18, "00" * 193)),
    "trailer cut": packet("", "1020" + "00" * 4),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_packets_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_packet_untrusted(data)


def test_the_trailer_is_kept_apart() -> None:
    trailer = "00" + tlv(1, "aaaa") + tlv(16, "deadbeef") + tlv(4, "ff")
    data = packet(tlv(4, "000000010190"), trailer)
    decoded = decode_packet_untrusted(data)
    assert decoded.tlvs == (Hello(1, 400),)
    assert decoded.macs == (bytes.fromhex("deadbeef"),)
    assert decoded.trailer[0] == Pad1()
    assert decoded.trailer[-1] == UnknownTlv(4, b"\xff")  # a Hello in the trailer is not one
    assert encode_packet(decoded) == data


def test_unknown_tlvs_and_aes_are_kept_and_ignored() -> None:
    data = packet(tlv(42, "010203") + tlv(5, "090000600190cafe") + update(9, 0, 0, "0002"))
    decoded = decode_packet_untrusted(data)
    assert decoded.tlvs == (
        UnknownTlv(42, b"\x01\x02\x03"),
        UnknownTlv(5, bytes.fromhex("090000600190cafe")),
        UnknownTlv(8, bytes.fromhex("09000000064000010000") + b"\x00\x02"),
    )
    assert encode_packet(decoded) == data
    assert list(expand(decoded, SRC)) == []


def test_unknown_optional_sub_tlv_is_kept_and_the_tlv_used() -> None:
    data = packet(tlv(4, "000000010190" + "40020102"))
    (hello,) = decode_packet_untrusted(data).tlvs
    assert hello == Hello(1, 400, 0, (UnknownSubTlv(0x40, b"\x01\x02"),))
    assert list(expand(decode_packet_untrusted(data))) == [hello]
    assert encode_packet(decode_packet_untrusted(data)) == data


def test_unknown_mandatory_sub_tlv_ignores_the_tlv_but_not_its_parser_state() -> None:
    # An Update setting the default prefix 10.1.2.0/24 and carrying mandatory sub-TLV 200,
    # then one for 10.1.2.3/32 that omits the 3 bytes it shares with it.
    data = packet(
        ROUTER_ID_TLV
        + tlv(7, "0100" + "0a000001")
        + update(1, 24, 0, "0a0102", flags=0x80, subs="c800")
        + update(1, 32, 3, "03")
    )
    decoded = decode_packet_untrusted(data)
    first = decoded.tlvs[2]
    assert isinstance(first, Update)
    assert first.has_unknown_mandatory
    routes = list(expand_routes(decoded, SRC))
    assert [route.prefix for route in routes] == [IPv4Network("10.1.2.3/32")]
    assert routes[0].next_hop == IPv4Address("10.0.0.1")
    assert routes[0].router_id == ROUTER


def test_source_prefix_outside_its_tlvs_is_an_unknown_mandatory_sub_tlv() -> None:
    data = packet(tlv(4, "000000010190" + "8003200a00"))
    (hello,) = decode_packet_untrusted(data).tlvs
    assert isinstance(hello, Hello)
    assert hello.sub_tlvs == (UnknownSubTlv(128, bytes.fromhex("200a00")),)
    assert list(expand(decode_packet_untrusted(data))) == []


def test_compressed_prefix_without_default_is_ignored() -> None:
    data = packet(ROUTER_ID_TLV + update(2, 128, 15, "01"))
    assert list(expand(decode_packet_untrusted(data), SRC)) == []


def test_finite_update_needs_router_id_and_next_hop() -> None:
    no_router_id = packet(update(2, 16, 0, "2001"))
    assert list(expand(decode_packet_untrusted(no_router_id), SRC)) == []
    retraction = packet(update(2, 16, 0, "2001", metric=0xFFFF))
    (route,) = expand_routes(decode_packet_untrusted(retraction), SRC)
    assert route.router_id is None
    assert route.retraction
    ipv4_without_ipv4_next_hop = packet(ROUTER_ID_TLV + update(1, 32, 0, "0a000001"))
    assert list(expand(decode_packet_untrusted(ipv4_without_ipv4_next_hop), SRC)) == []


def test_bad_router_ids_are_not_used() -> None:
    data = packet(tlv(6, "0000" + "00" * 8) + update(2, 16, 0, "2001"))
    assert list(expand(decode_packet_untrusted(data), SRC)) == []


def test_router_id_from_prefix_flag() -> None:
    prefix = IPv6Address("2001:db8::102:304:506:708")
    body = update(2, 128, 0, prefix.packed.hex(), flags=0x40)
    (route,) = expand_routes(decode_packet_untrusted(packet(body)), SRC)
    assert route.router_id == ROUTER
    assert route.prefix == IPv6Network(f"{prefix}/128")


def test_next_hop_ae_4_is_ignored_and_ae_3_applies() -> None:
    body = (
        ROUTER_ID_TLV
        + tlv(7, "0400" + "0a000001")
        + tlv(7, "0300" + "0000000000000099")
        + update(4, 32, 0, "0a000001")
    )
    (route,) = expand_routes(decode_packet_untrusted(packet(body)), SRC)
    assert route.next_hop == IPv6Address("fe80::99")
    assert route.prefix == IPv4Network("10.0.0.1/32")


def test_wildcards() -> None:
    retract = packet(update(0, 0, 0, "") + update(0, 0, 0, "", metric=0xFFFF))
    assert list(expand(decode_packet_untrusted(retract), SRC)) == [RetractAll(1600, 1)]
    request = packet(tlv(9, "0000"))
    assert list(expand(decode_packet_untrusted(request), SRC)) == [RequestAllRoutes()]
    seqno = packet(tlv(10, "0000000101000102030405060708"))
    assert list(expand(decode_packet_untrusted(seqno), SRC)) == []


def test_builders_round_trip() -> None:
    tlvs = (
        route_request(None),
        route_request(IPv6Network("fd00:99::/64"), IPv6Network("fd00:aa::/48")),
        seqno_request(IPv4Network("10.255.0.1/32"), 7, 64, ROUTER),
        ihu(96, 1200, IPv6Address("fe80::2")),
        ihu(96, 1200, None),
        wildcard_retraction(1600),
    )
    data = encode_packet(Packet(tlvs))
    decoded = decode_packet_untrusted(data)
    assert decoded.tlvs == tlvs
    messages = list(expand(decoded, SRC))
    assert messages[0] == RequestAllRoutes()
    assert messages[1] == RequestRoute(IPv6Network("fd00:99::/64"), IPv6Network("fd00:aa::/48"))
    assert messages[-1] == RetractAll(1600)


def _route(prefix: str, next_hop: str = str(SRC), router_id: bytes = ROUTER) -> Route:
    """A route with metric 96 via ``next_hop``, the packet's source address by default."""
    network = IPv4Network(prefix) if "." in prefix else IPv6Network(prefix)
    hop = IPv4Address(next_hop) if "." in next_hop else IPv6Address(next_hop)
    return Route(network, 1, 96, 400, router_id, hop)


def test_build_updates_compresses_and_expands_back() -> None:
    routes = [
        _route("fd00:255::1/128"),
        _route("fd00:255::2/128"),
        _route("fd00:255::/64"),
        _route("10.255.0.1/32"),
        _route("10.255.0.2/32"),
        _route("10.1.0.0/16", "10.0.0.1"),
        _route("fd00:1::/48", "fe80::99", bytes(7) + b"\x01"),
    ]
    for compress in (True, False):
        tlvs = build_updates(routes, source=SRC, compress=compress)
        decoded = decode_packet_untrusted(encode_packet(Packet(tuple(tlvs))))
        assert set(expand_routes(decoded, SRC)) == set(routes)
        omitted = [tlv.omitted for tlv in tlvs if isinstance(tlv, Update)]
        assert any(omitted) is compress
    compressed = build_updates(routes, source=SRC)
    assert len(encode_packet(Packet(tuple(compressed)))) < len(
        encode_packet(Packet(tuple(build_updates(routes, source=SRC, compress=False))))
    )
    assert sum(isinstance(tlv, NextHop) for tlv in compressed) == 2
    assert sum(isinstance(tlv, RouterId) for tlv in compressed) == 2


def test_build_updates_uses_the_router_id_flag() -> None:
    own = IPv6Network("fd00::102:304:506:708/128")
    tlvs = build_updates([Route(own, 1, 0, 400, ROUTER, SRC)], source=SRC)
    assert [type(tlv) for tlv in tlvs] == [Update]
    assert list(expand_routes(Packet(tuple(tlvs)), SRC)) == [Route(own, 1, 0, 400, ROUTER, SRC)]


def test_build_updates_rejects_what_it_cannot_say() -> None:
    with pytest.raises(ValueError, match="router-id"):
        build_updates([Route(IPv6Network("fd00::/64"), 1, 0, 400, None, SRC)])
    with pytest.raises(ValueError, match="IPv4 next hop"):
        build_updates([Route(IPv6Network("fd00::/64"), 1, 0, 400, ROUTER, IPv4Address("10.0.0.1"))])


def test_constructors_validate() -> None:
    with pytest.raises(ValueError, match="16 bits"):
        Hello(1 << 16, 400)
    with pytest.raises(ValueError, match="does not match"):
        Update(1, 0, 32, 0, 400, 1, 0, b"\x0a")
    with pytest.raises(ValueError, match="AE 3"):
        NextHop(3, IPv6Address("2001:db8::1"))
    with pytest.raises(ValueError, match="too long"):
        encode_packet(
            Packet((UnknownTlv(42, bytes(255)), Hello(1, 400, 0, (UnknownSubTlv(9, bytes(255)),))))
        )
