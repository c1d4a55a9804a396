"""Addresses derived from WireGuard public keys.

Every meshd interface carries one IPv6 link-local address computed from its own public key,
so a peer's link-local address is known the moment its key is: Babel talks unicast to it and
each peer's allowed-ips hold the other's /128. The rule is cunicu's, so meshd and cunicu
nodes agree on each other's addresses:

    fe80::/64  ||  first 8 bytes of SipHash-2-4-128(key=ADDR_HASH_KEY, message=public key)

SipHash is implemented here (it is short) and checked against the reference vectors of its
authors; the standard library's siphash is internal and 64-bit only.
"""

from __future__ import annotations

import ipaddress
import struct

from meshd.wg.model import check_key

#: The 16-byte SipHash key cunicu uses for its address derivation (pkg/crypto/types.go).
ADDR_HASH_KEY = bytes.fromhex("67672c05d13e1194bb3891ff4f80b397")

LINK_LOCAL_PREFIX = ipaddress.IPv6Network("fe80::/64")

_MASK64 = 0xFFFFFFFFFFFFFFFF
_TWO_U64 = struct.Struct("<QQ")
_U64 = struct.Struct("<Q")


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK64


def _sip_rounds(v: list[int], rounds: int) -> None:
    v0, v1, v2, v3 = v
    for _ in range(rounds):
        v0 = (v0 + v1) & _MASK64
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _MASK64
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _MASK64
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _MASK64
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
    v[:] = [v0, v1, v2, v3]


def siphash24_128(key: bytes, message: bytes) -> bytes:
    """SipHash-2-4 with 128-bit output, as the reference implementation writes it (16 bytes).

    Raises ValueError unless ``key`` is 16 bytes.
    """
    if len(key) != 16:
        raise ValueError("a SipHash key is 16 bytes")
    k0, k1 = _TWO_U64.unpack(key)
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D ^ 0xEE,  # 128-bit output variant
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]
    whole = len(message) - len(message) % 8
    for offset in range(0, whole, 8):
        (m,) = _U64.unpack_from(message, offset)
        v[3] ^= m
        _sip_rounds(v, 2)
        v[0] ^= m
    last = ((len(message) & 0xFF) << 56) | int.from_bytes(message[whole:], "little")
    v[3] ^= last
    _sip_rounds(v, 2)
    v[0] ^= last

    v[2] ^= 0xEE
    _sip_rounds(v, 4)
    first = v[0] ^ v[1] ^ v[2] ^ v[3]
    v[1] ^= 0xDD
    _sip_rounds(v, 4)
    second = v[0] ^ v[1] ^ v[2] ^ v[3]
    return _TWO_U64.pack(first, second)


def link_local_from_wg_key(public_key: bytes) -> ipaddress.IPv6Address:
    """The link-local address of the interface that owns ``public_key`` (cunicu's rule)."""
    digest = siphash24_128(ADDR_HASH_KEY, check_key(public_key, "public key"))
    interface_id = int.from_bytes(digest[:8], "big")
    return ipaddress.IPv6Address(int(LINK_LOCAL_PREFIX.network_address) | interface_id)


def link_local_interface(public_key: bytes) -> ipaddress.IPv6Interface:
    """The same address with its /64, as it is assigned to the interface."""
    return ipaddress.IPv6Interface(f"{link_local_from_wg_key(public_key)}/64")
