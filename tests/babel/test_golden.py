"""The codec against real babeld 1.12.1 packets (tests/babel/vectors, see its README)."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from meshd.babel.codec import decode_packet_untrusted, encode_packet
from meshd.babel.expand import RequestAllRoutes, RequestSeqno, Route, expand, expand_routes
from meshd.babel.packet import ChallengeReply, ChallengeRequest, Mac, Pc
from meshd.babel.subtlv_types import HelloTimestamp, IhuTimestamp, SourcePrefix
from meshd.babel.tlv import Hello, Ihu, Update
from tests.babel.conftest import CAPTURES, VECTORS, golden
from tests.babel.pcap import Datagram


def decoded_hex() -> list[bytes]:
    """The raw UDP payloads quoted in tlv-decoded.txt."""
    text = (VECTORS / "tlv-decoded.txt").read_text()
    return [bytes.fromhex(h) for h in re.findall(r"raw UDP payload \(hex\): ([0-9a-f]+)", text)]


def test_every_capture_holds_babel_packets() -> None:
    assert len(CAPTURES) == 7
    for path in CAPTURES:
        assert golden(path.name), path.name


def test_every_captured_packet_decodes_and_reencodes_byte_exact(
    all_datagrams: list[Datagram],
) -> None:
    assert len(all_datagrams) > 100
    for datagram in all_datagrams:
        packet = decode_packet_untrusted(datagram.payload)
        assert encode_packet(packet) == datagram.payload, datagram


def test_every_captured_packet_expands(all_datagrams: list[Datagram]) -> None:
    for datagram in all_datagrams:
        list(expand(decode_packet_untrusted(datagram.payload), datagram.src))


@pytest.mark.parametrize("payload", decoded_hex(), ids=lambda p: p[:12].hex())
def test_tshark_examples_round_trip_and_are_in_the_captures(
    payload: bytes, all_datagrams: list[Datagram]
) -> None:
    assert encode_packet(decode_packet_untrusted(payload)) == payload
    assert payload in {datagram.payload for datagram in all_datagrams}


def _frame(capture: str, frame: int) -> Datagram:
    (datagram,) = [d for d in golden(capture) if d.frame == frame]
    return datagram


def test_hello_ihu_router_id_next_hop_update() -> None:
    datagram = _frame("babeld-ring4-n1-e4.pcap", 25)
    assert datagram.src == IPv6Address("fe80::cc61:55ff:fe1c:e42e")
    messages = list(expand(decode_packet_untrusted(datagram.payload), datagram.src))
    assert messages == [
        Hello(seqno=0x70D1, interval=400),
        Ihu(96, 1200, 3, IPv6Address("fe80::74c3:36ff:feed:a0e8")),
        Route(
            prefix=IPv4Network("10.255.0.2/32"),
            seqno=0x9F52,
            metric=65535,
            interval=1600,
            router_id=bytes.fromhex("f848a21d77780cd6"),
            next_hop=IPv4Address("10.1.4.1"),
        ),
    ]


def test_wildcard_route_request() -> None:
    datagram = _frame("babeld-ring4-n1-e4.pcap", 1)
    messages = list(expand(decode_packet_untrusted(datagram.payload), datagram.src))
    assert messages == [Hello(seqno=0x70C8, interval=400), RequestAllRoutes()]


def test_seqno_requests() -> None:
    datagram = _frame("babeld-ring4-n1-e4.pcap", 15)
    messages = list(expand(decode_packet_untrusted(datagram.payload), datagram.src))
    router_id = bytes.fromhex("883677d8de9766be")
    assert messages == [
        RequestSeqno(IPv4Network("10.255.0.1/32"), 0xAE40, 125, router_id),
        RequestSeqno(IPv6Network("fd00:255::1/128"), 0xAE40, 125, router_id),
    ]


def test_source_specific_update() -> None:
    payload = decoded_hex()[-1]
    packet = decode_packet_untrusted(payload)
    update = packet.tlvs[-1]
    assert isinstance(update, Update)
    assert update.sub_tlvs == (SourcePrefix(48, bytes.fromhex("fd0000aa0000")),)
    (route,) = expand_routes(packet, IPv6Address("fe80::b833:25ff:fe59:18fd"))
    assert route.prefix == IPv6Network("fd00:99::/64")
    assert route.source == IPv6Network("fd00:aa::/48")
    assert route.metric == 128
    assert route.seqno == 0xE764
    assert route.router_id == bytes.fromhex("2c2cf3f0bd54813c")


def test_timestamps_and_ipv4_via_ipv6_inside_wireguard() -> None:
    datagram = _frame("wg-p2p-tunnel-timestamps-v4viav6.pcap", 7)
    assert datagram.src == IPv6Address("fe80::2")
    packet = decode_packet_untrusted(datagram.payload)
    hello, ihu = packet.tlvs[0], packet.tlvs[1]
    assert isinstance(hello, Hello)
    assert hello.interval == 0
    assert hello.timestamp == 869438472
    assert hello.sub_tlvs == (HelloTimestamp(869438472),)
    assert isinstance(ihu, Ihu)
    assert ihu.timestamps == IhuTimestamp(869345823, 869364224)
    routes = list(expand_routes(packet, datagram.src))
    assert [(str(r.prefix), r.metric, r.next_hop) for r in routes] == [
        ("fd00:254::2/128", 0, IPv6Address("fe80::2")),
        ("10.254.0.2/32", 0, IPv6Address("fe80::2")),
        ("fd00:254::1/128", 65535, IPv6Address("fe80::2")),  # 15 bytes omitted
        ("10.254.0.1/32", 65535, IPv6Address("fe80::2")),
    ]
    assert routes[2].router_id == bytes.fromhex("98afa769b18e8e32")


def test_authenticated_packets_carry_their_tlvs() -> None:
    payload = decoded_hex()[3]
    packet = decode_packet_untrusted(payload)
    assert [type(tlv) for tlv in packet.tlvs] == [ChallengeRequest, Pc]
    assert [type(tlv) for tlv in packet.trailer] == [Mac]
    assert len(packet.macs[0]) == 32
    reply = decode_packet_untrusted(decoded_hex()[4])
    assert [type(tlv) for tlv in reply.tlvs] == [ChallengeRequest, ChallengeReply, Pc]
    pc = reply.tlvs[2]
    assert isinstance(pc, Pc)
    assert pc.pc == 3
