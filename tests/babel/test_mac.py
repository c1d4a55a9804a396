"""RFC 8967 MACs, checked against babeld's HMAC-SHA256 capture (key id k1, bytes 00..1f)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

import pytest

from meshd.babel.codec import decode_packet_untrusted, encode_packet
from meshd.babel.mac import (
    Endpoints,
    MacAlgorithm,
    MacKey,
    decode_verified_untrusted,
    sign_packet,
    verify_packet,
)
from meshd.babel.packet import Packet
from meshd.babel.tlv import Hello, PadN
from meshd.errors import DecodeError, VerifyError
from tests.babel.conftest import golden
from tests.babel.pcap import Datagram

K1 = MacKey("k1", MacAlgorithm.HMAC_SHA256, bytes(range(32)))
WRONG = MacKey("k2", MacAlgorithm.HMAC_SHA256, bytes(range(1, 33)))
LINK = Endpoints(IPv6Address("fe80::1"), 6696, IPv6Address("fe80::2"), 6696)


def _ends(d: Datagram) -> Endpoints:
    return Endpoints(d.src, d.src_port, d.dst, d.dst_port)


@pytest.fixture(scope="module")
def signed() -> list[Datagram]:
    datagrams = golden("babeld-hmac-sha256-n1-e2.pcap")
    assert len(datagrams) > 10
    return datagrams


def test_every_mac_in_the_capture_verifies(signed: list[Datagram]) -> None:
    for d in signed:
        packet = decode_verified_untrusted(d.payload, [K1], _ends(d))
        assert packet.macs
        verify_packet(packet, [K1], _ends(d))


def test_a_wrong_key_fails(signed: list[Datagram]) -> None:
    for d in signed:
        with pytest.raises(VerifyError) as info:
            decode_verified_untrusted(d.payload, [WRONG], _ends(d))
        assert info.value.reason == "bad-mac"


def test_any_matching_key_is_enough(signed: list[Datagram]) -> None:
    d = signed[0]
    packet = decode_packet_untrusted(d.payload)
    verify_packet(packet, [WRONG, K1], _ends(d))


def test_the_pseudo_header_is_covered(signed: list[Datagram]) -> None:
    d = signed[0]
    packet = decode_packet_untrusted(d.payload)
    for src, src_port, dst in [
        (d.dst, d.src_port, d.dst),
        (d.src, d.src_port + 1, d.dst),
        (d.src, d.src_port, IPv6Address("fe80::1")),
    ]:
        with pytest.raises(VerifyError):
            verify_packet(packet, [K1], Endpoints(src, src_port, dst, d.dst_port))


def test_the_body_is_covered_and_the_trailer_is_not(signed: list[Datagram]) -> None:
    d = signed[0]
    ends = _ends(d)
    packet = decode_packet_untrusted(d.payload)
    padded_trailer = replace(packet, trailer=(PadN(b"\0\0"), *packet.trailer))
    verify_packet(padded_trailer, [K1], ends)
    padded_body = replace(packet, tlvs=(*packet.tlvs, PadN(b"")))
    with pytest.raises(VerifyError):
        verify_packet(padded_body, [K1], ends)


@pytest.mark.parametrize("algorithm", list(MacAlgorithm))
@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (IPv6Address("fe80::1"), IPv6Address("ff02::1:6")),
        (IPv4Address("192.0.2.1"), IPv4Address("224.0.0.111")),
    ],
)
def test_sign_then_verify(
    algorithm: MacAlgorithm, src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address
) -> None:
    key = MacKey("k", algorithm, b"secret key")
    ends = Endpoints(src, 6696, dst, 6696)
    packet = sign_packet(Packet((Hello(1, 400),)), [key], ends)
    assert len(packet.macs[0]) == (32 if algorithm is MacAlgorithm.HMAC_SHA256 else 16)
    wire = encode_packet(packet)
    assert decode_verified_untrusted(wire, [key], ends) == packet
    other = MacKey("k", algorithm, b"other key")
    with pytest.raises(VerifyError):
        decode_verified_untrusted(wire, [other], ends)


def test_no_mac_or_no_key_fails() -> None:
    ends = LINK
    with pytest.raises(VerifyError, match="no MAC"):
        verify_packet(Packet((Hello(1, 400),)), [K1], ends)
    signed = sign_packet(Packet((Hello(1, 400),)), [K1], ends)
    with pytest.raises(VerifyError, match="no MAC key"):
        verify_packet(signed, [], ends)


def test_a_malformed_datagram_is_a_decode_error() -> None:
    ends = LINK
    with pytest.raises(DecodeError):
        decode_verified_untrusted(b"\x2a\x02\x00\x09", [K1], ends)


def test_keys_are_checked() -> None:
    with pytest.raises(ValueError, match="empty"):
        MacKey("k", MacAlgorithm.HMAC_SHA256, b"")
    with pytest.raises(ValueError, match="longer"):
        MacKey("k", MacAlgorithm.BLAKE2S_128, bytes(33))
    assert "secret" not in repr(MacKey("k", MacAlgorithm.HMAC_SHA256, b"secret"))
    with pytest.raises(ValueError, match="family"):
        Endpoints(IPv4Address("192.0.2.1"), 1, IPv6Address("::1"), 1)
