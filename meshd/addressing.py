"""Addresses derived from keys: the network's overlay prefix and each member's overlay address.

* The overlay prefix is an RFC 4193 unique local /48: ``fd`` followed by a 40-bit global ID.
  RFC 4193 takes the 40 bits from a hash of something unique; meshd hashes the root public
  key, so every member derives the same prefix from the trust root alone.
* A member's overlay address is that prefix, subnet 0, and a 64-bit interface identifier hashed
  from its node key, so nobody can claim another member's address without its key.

The link-local address on the WireGuard interface is derived from the WireGuard key instead
(see meshd/wg/addresses.py).
"""

from __future__ import annotations

import hashlib
import ipaddress

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


def overlay_prefix(root_public_key: bytes) -> ipaddress.IPv6Network:
    """The network's unique local /48, from its root key."""
    global_id = hashlib.sha256(b"meshd ula v1\x00" + root_public_key).digest()[:5]
    return ipaddress.IPv6Network((b"\xfd" + global_id + bytes(10), 48))


def overlay_address(root_public_key: bytes, node_public_key: bytes) -> ipaddress.IPv6Address:
    """A member's overlay address: the network's /48, subnet 0, a key-derived interface id."""
    iid = hashlib.sha256(b"meshd iid v1\x00" + node_public_key).digest()[:8]
    prefix = overlay_prefix(root_public_key).network_address.packed[:6]
    return ipaddress.IPv6Address(prefix + bytes(2) + iid)


def host_prefix(address: ipaddress.IPv6Address) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network((address, 128))


def prefix_within(inner: Prefix, outer: Prefix) -> bool:
    """True when ``inner`` is ``outer`` or lies inside it (same address family)."""
    if inner.version != outer.version:
        return False
    return inner.subnet_of(outer)  # type: ignore[arg-type]
