"""Property tests: untrusted bytes give a Packet or DecodeError; valid packets round-trip."""

from __future__ import annotations

from ipaddress import IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from meshd.babel.codec import decode_packet_untrusted, encode_packet
from meshd.babel.expand import Route, build_updates, expand, expand_routes
from meshd.babel.packet import Packet
from meshd.errors import DecodeError
from tests.babel.conftest import CAPTURES
from tests.babel.pcap import read_babel_datagrams
from tests.babel.strategies import packets, routes

LINK_SOURCE = IPv6Address("fe80::1")
GOLDEN = sorted({d.payload for path in CAPTURES for d in read_babel_datagrams(path)})


def decodes_or_rejects(data: bytes) -> None:
    """The decoder's contract, checked on one input."""
    try:
        packet = decode_packet_untrusted(data)
    except DecodeError:
        return
    assert encode_packet(packet) == data  # whatever decodes re-encodes byte for byte
    list(expand(packet, LINK_SOURCE))  # and the parser state walk never fails


@given(st.binary(max_size=300))
def test_any_bytes_give_a_packet_or_decode_error(data: bytes) -> None:
    decodes_or_rejects(data)


@given(st.binary(max_size=300))
def test_any_body_behind_a_valid_header_gives_a_packet_or_decode_error(body: bytes) -> None:
    decodes_or_rejects(b"\x2a\x02" + len(body).to_bytes(2, "big") + body)


@given(packets())
def test_valid_packets_round_trip(packet: Packet) -> None:
    data = encode_packet(packet)
    decoded = decode_packet_untrusted(data)
    assert decoded == packet
    assert encode_packet(decoded) == data
    list(expand(decoded, LINK_SOURCE))


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    """A golden packet with a few bytes changed, inserted, deleted, or cut off."""
    data = bytearray(draw(st.sampled_from(GOLDEN)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and data:
            del data[at]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


@given(mutations())
def test_mutated_golden_packets_give_a_packet_or_decode_error(data: bytes) -> None:
    decodes_or_rejects(data)


@given(st.lists(routes(LINK_SOURCE), max_size=12), st.booleans())
def test_built_updates_expand_to_the_same_routes(built: list[Route], compress: bool) -> None:
    tlvs = build_updates(built, source=LINK_SOURCE, compress=compress)
    data = encode_packet(Packet(tuple(tlvs)))
    assert set(expand_routes(decode_packet_untrusted(data), LINK_SOURCE)) == set(built)
