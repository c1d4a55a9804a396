"""RFC 8967 MAC authentication: compute, add and verify the MACs of a packet's trailer.

A MAC covers a pseudo-header (source address, source port, destination address,
destination port; addresses are 16 bytes for IPv6 and 4 for IPv4, ports big-endian) followed
by the packet's header and body, up to the body length: never the trailer. A packet is
accepted if any MAC of its trailer equals the MAC computed with any of the keys.

Only the MAC arithmetic lives here. The replay protection of RFC 8967 (PC, index,
challenges) is neighbour state and belongs to the routing core.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from meshd.babel.codec import HEADER, decode_packet_untrusted, encode_packet
from meshd.babel.packet import Mac, Packet
from meshd.babel.prefix import IPAddress
from meshd.errors import VerifyError

_PORT: Final = struct.Struct("!H")
BLAKE2S_MAX_KEY: Final = 32


class MacAlgorithm(enum.Enum):
    """The MAC algorithms of RFC 8967 (names as in babeld's configuration)."""

    HMAC_SHA256 = "hmac-sha256"
    BLAKE2S_128 = "blake2s128"


@dataclass(frozen=True, slots=True)
class MacKey:
    """A MAC key: ``key_id`` names it in configuration only, it never goes on the wire."""

    key_id: str
    algorithm: MacAlgorithm
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError(f"MAC key {self.key_id!r} is empty")
        if self.algorithm is MacAlgorithm.BLAKE2S_128 and len(self.secret) > BLAKE2S_MAX_KEY:
            raise ValueError(f"BLAKE2s key {self.key_id!r} is longer than {BLAKE2S_MAX_KEY}")


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The UDP endpoints of a packet: what the RFC 8967 pseudo-header holds."""

    src: IPAddress
    src_port: int
    dst: IPAddress
    dst_port: int

    def __post_init__(self) -> None:
        if self.src.version != self.dst.version:
            raise ValueError(f"source {self.src} and destination {self.dst} differ in family")
        for port in (self.src_port, self.dst_port):
            if not 0 <= port <= 0xFFFF:
                raise ValueError(f"port {port} out of range")

    def pseudo_header(self) -> bytes:
        """The bytes that precede the packet in the MAC input."""
        return (
            self.src.packed
            + _PORT.pack(self.src_port)
            + self.dst.packed
            + _PORT.pack(self.dst_port)
        )


def compute_mac(key: MacKey, covered: bytes, pseudo: bytes) -> bytes:
    """The MAC of ``pseudo`` (:meth:`Endpoints.pseudo_header`) then ``covered``."""
    if key.algorithm is MacAlgorithm.HMAC_SHA256:
        return hmac.digest(key.secret, pseudo + covered, "sha256")
    return hashlib.blake2s(pseudo + covered, digest_size=16, key=key.secret).digest()


def covered_bytes(packet: Packet) -> bytes:
    """The part of a packet its MACs cover: the header and the body."""
    return encode_packet(Packet(packet.tlvs))


def sign_packet(packet: Packet, keys: Sequence[MacKey], ends: Endpoints) -> Packet:
    """The packet with one MAC per key appended to its trailer."""
    pseudo = ends.pseudo_header()
    covered = covered_bytes(packet)
    macs = tuple(Mac(compute_mac(key, covered, pseudo)) for key in keys)
    return Packet(packet.tlvs, packet.trailer + macs)


def _check(covered: bytes, macs: Sequence[bytes], keys: Sequence[MacKey], pseudo: bytes) -> None:
    if not keys:
        raise VerifyError("bad-mac", "no MAC key to verify the packet with")
    if not macs:
        raise VerifyError("bad-mac", "packet carries no MAC")
    for key in keys:
        expected = compute_mac(key, covered, pseudo)
        if any(hmac.compare_digest(expected, mac) for mac in macs):
            return
    raise VerifyError("bad-mac", f"none of the {len(macs)} MACs matches any of {len(keys)} keys")


def verify_packet(packet: Packet, keys: Sequence[MacKey], ends: Endpoints) -> None:
    """Return if a MAC in the trailer matches a key; raise VerifyError("bad-mac") if not."""
    pseudo = ends.pseudo_header()
    _check(covered_bytes(packet), packet.macs, keys, pseudo)


def decode_verified_untrusted(data: bytes, keys: Sequence[MacKey], ends: Endpoints) -> Packet:
    """Decode a datagram and verify its MACs over the bytes as received.

    Raises DecodeError if it does not parse, VerifyError("bad-mac") if no MAC matches.
    """
    packet = decode_packet_untrusted(data)
    (_, _, body_length) = HEADER.unpack_from(data)
    covered = data[: HEADER.size + body_length]
    _check(covered, packet.macs, keys, ends.pseudo_header())
    return packet
