"""Addresses derived from WireGuard public keys.

Every meshd interface carries one IPv6 link-local address computed from its own public key,
so a peer's link-local address is known the moment its key is: Babel talks unicast to it and
each peer's allowed-ips hold the other's /128. The rule is cunicu's, so meshd and cunicu
nodes agree on each other's addresses:

    fe80::/64  ||  first 8 bytes of SipHash-2-4-128(key=ADDR_HASH_KEY, message=public key)

SipHash-2-4-128 is libsodium's (``crypto_shorthash_siphashx24``, through PyNaCl), checked
against the reference vectors of SipHash's authors (tests/wg/test_addresses.py). It replaced
a pure-Python SipHash that gave the same digests at ~80 us a key: 0.8 s of CPU for the
10,000 peers of a start-up, against 0.03 s (docs/footprint.md, start-up).
"""

from __future__ import annotations

import ipaddress

from nacl.bindings import crypto_shorthash_siphashx24

from meshd.addressing import host_prefix_of
from meshd.wg.model import check_key

#: The 16-byte SipHash key cunicu uses for its address derivation (pkg/crypto/types.go).
ADDR_HASH_KEY = bytes.fromhex("67672c05d13e1194bb3891ff4f80b397")

LINK_LOCAL_PREFIX = ipaddress.IPv6Network("fe80::/64")
_LINK_LOCAL_BASE = int(LINK_LOCAL_PREFIX.network_address)
_LINK_LOCAL_HEAD = LINK_LOCAL_PREFIX.network_address.packed[:8]


def siphash24_128(key: bytes, message: bytes) -> bytes:
    """SipHash-2-4 with 128-bit output, as the reference implementation writes it (16 bytes).

    Raises ValueError unless ``key`` is 16 bytes.
    """
    if len(key) != 16:
        raise ValueError("a SipHash key is 16 bytes")
    return crypto_shorthash_siphashx24(message, key)


def _link_local_int(public_key: bytes) -> int:
    digest = crypto_shorthash_siphashx24(check_key(public_key, "public key"), ADDR_HASH_KEY)
    return _LINK_LOCAL_BASE | int.from_bytes(digest[:8], "big")


def link_local_packed(public_key: bytes) -> bytes:
    """The 16 bytes of :func:`link_local_from_wg_key`'s address, its /128 not made (``meshd
    peers`` writes the text of 10,000 of them)."""
    digest = crypto_shorthash_siphashx24(check_key(public_key, "public key"), ADDR_HASH_KEY)
    return _LINK_LOCAL_HEAD + digest[:8]


def link_local_from_wg_key(public_key: bytes) -> ipaddress.IPv6Address:
    """The link-local address of the interface that owns ``public_key`` (cunicu's rule):
    the address of its interned /128 (:func:`link_local_prefix`), so that a member's
    link-local is one object however many modules hold it, not one more each time."""
    return link_local_prefix(public_key).network_address


def link_local_prefix(public_key: bytes) -> ipaddress.IPv6Network:
    """The /128 of that address, interned (:func:`meshd.addressing.host_prefix_of`)."""
    return host_prefix_of(_link_local_int(public_key))


def link_local_interface(public_key: bytes) -> ipaddress.IPv6Interface:
    """The same address with its /64, as it is assigned to the interface."""
    return ipaddress.IPv6Interface((_link_local_int(public_key), 64))
