"""Babel address encodings and prefix compression (RFC 8966 4.1.5 and 4.5, RFC 9229).

An address encoding (AE) says how an address or prefix sits on the wire:

===  =======================  ==========================================================
AE   what                      wire form
===  =======================  ==========================================================
0    wildcard                  no bytes; "any address" / "all prefixes"
1    IPv4                      up to 4 bytes, compressible against the AE 1 default prefix
2    IPv6                      up to 16 bytes, compressible against the AE 2 default prefix
3    IPv6 link-local           the low 8 bytes; ``fe80::/64`` is implied; never compressed
4    IPv4 via IPv6 next hop    as AE 1, with its own default prefix (RFC 9229)
===  =======================  ==========================================================

A prefix of length ``plen`` occupies ``ceil(plen / 8)`` bytes of its full address (for AE 3
the first 8 of those are the implied ``fe80::/64`` and are not sent). Of these, the first
``omitted`` bytes may be left out and taken from the default prefix of the same AE that an
earlier Update of the same packet set (flag 0x80).

Everything here is a pure function. Invalid arguments raise :class:`ValueError`; the packet
decoder turns that into :class:`meshd.errors.DecodeError` at the boundary.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final

from meshd.addressing import interned

AE_WILDCARD: Final = 0
AE_IPV4: Final = 1
AE_IPV6: Final = 2
AE_LINK_LOCAL: Final = 3
AE_IPV4_VIA_IPV6: Final = 4

KNOWN_AES: Final = frozenset({AE_WILDCARD, AE_IPV4, AE_IPV6, AE_LINK_LOCAL, AE_IPV4_VIA_IPV6})

LINK_LOCAL_HIGH: Final = bytes.fromhex("fe80000000000000")
"""The implied upper half of an AE 3 address."""

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def check_ae(ae: int) -> None:
    """Raise ValueError unless ``ae`` is an address encoding this codec understands."""
    if ae not in KNOWN_AES:
        raise ValueError(f"unknown address encoding {ae}")


def is_ipv4(ae: int) -> bool:
    """True for the encodings whose prefixes are IPv4 (AE 1 and AE 4)."""
    return ae in (AE_IPV4, AE_IPV4_VIA_IPV6)


def full_size(ae: int) -> int:
    """Bytes of a full address of this AE's family: 4, 16, or 0 for the wildcard."""
    check_ae(ae)
    if ae == AE_WILDCARD:
        return 0
    return 4 if is_ipv4(ae) else 16


def address_size(ae: int) -> int:
    """Bytes an address (IHU, Next Hop) takes on the wire in this AE."""
    check_ae(ae)
    return 8 if ae == AE_LINK_LOCAL else full_size(ae)


def check_plen(ae: int, plen: int) -> None:
    """Raise ValueError unless ``plen`` is a prefix length this AE can carry.

    The wildcard carries only ``plen`` 0; AE 3 prefixes lie inside ``fe80::/64``, so their
    length is 64 to 128.
    """
    check_ae(ae)
    if ae == AE_WILDCARD:
        if plen != 0:
            raise ValueError(f"wildcard prefix with length {plen}")
    elif ae == AE_LINK_LOCAL:
        if not 64 <= plen <= 128:
            raise ValueError(f"link-local prefix length {plen} outside 64..128")
    elif not 0 <= plen <= full_size(ae) * 8:
        raise ValueError(f"prefix length {plen} too long for AE {ae}")


def prefix_size(ae: int, plen: int, omitted: int = 0) -> int:
    """Bytes a prefix takes on the wire: ``ceil(plen / 8) - omitted`` (AE 3: minus 8 more).

    Raises ValueError if the combination is impossible: an AE that cannot compress with a
    non-zero ``omitted``, or more omitted bytes than the prefix has.
    """
    check_plen(ae, plen)
    whole = (plen + 7) // 8
    if ae in (AE_WILDCARD, AE_LINK_LOCAL):
        if omitted != 0:
            raise ValueError(f"AE {ae} cannot omit bytes (omitted {omitted})")
        return whole - 8 if ae == AE_LINK_LOCAL else 0
    if not 0 <= omitted <= whole:
        raise ValueError(f"omitted {omitted} bytes of a {plen}-bit prefix")
    return whole - omitted


def _mask(full: bytes, plen: int) -> bytes:
    """Zero every bit of ``full`` past the first ``plen``."""
    value = int.from_bytes(full, "big")
    bits = len(full) * 8
    value &= ((1 << plen) - 1) << (bits - plen) if plen else 0
    return value.to_bytes(len(full), "big")


def expand_prefix(ae: int, plen: int, omitted: int, raw: bytes, default: bytes | None) -> bytes:
    """The full address bytes (4 or 16, host bits zero) of a prefix sent as ``raw``.

    ``default`` is the current default prefix of this AE (full address bytes), needed when
    ``omitted`` is not zero. The wildcard expands to ``b""``.
    """
    if len(raw) != prefix_size(ae, plen, omitted):
        raise ValueError(f"prefix of {len(raw)} bytes does not match plen {plen}")
    if ae == AE_WILDCARD:
        return b""
    if ae == AE_LINK_LOCAL:
        full = LINK_LOCAL_HIGH + raw + bytes(16 - 8 - len(raw))
        return _mask(full, plen)
    size = full_size(ae)
    head = b""
    if omitted:
        if default is None or len(default) != size:
            raise ValueError(f"{omitted} bytes omitted but AE {ae} has no default prefix")
        head = default[:omitted]
    full = head + raw
    return _mask(full + bytes(size - len(full)), plen)


def compress_prefix(ae: int, plen: int, full: bytes, default: bytes | None) -> tuple[int, bytes]:
    """Encode a prefix against a default prefix: return ``(omitted, raw)``.

    Omits as many leading bytes as ``full`` shares with ``default`` (none without a default,
    or for AEs that do not compress). ``full`` must be the prefix's full address bytes.
    """
    check_plen(ae, plen)
    if len(full) != full_size(ae):
        raise ValueError(f"AE {ae} prefix must be {full_size(ae)} bytes, not {len(full)}")
    full = _mask(full, plen)
    whole = (plen + 7) // 8
    if ae == AE_WILDCARD:
        return 0, b""
    if ae == AE_LINK_LOCAL:
        if full[:8] != LINK_LOCAL_HIGH:
            raise ValueError("AE 3 prefix outside fe80::/64")
        return 0, full[8:whole]
    omitted = 0
    if default is not None and len(default) == len(full):
        while omitted < whole and full[omitted] == default[omitted]:
            omitted += 1
    return omitted, full[omitted:whole]


def to_network(ae: int, plen: int, full: bytes) -> IPNetwork:
    """The network of an expanded prefix (``full`` as returned by :func:`expand_prefix`)."""
    # Interned: a route's prefix is the object the membership and WireGuard hold for it.
    if is_ipv4(ae):
        return interned(IPv4Network((full, plen)))
    if ae in (AE_IPV6, AE_LINK_LOCAL):
        return interned(IPv6Network((full, plen)))
    raise ValueError(f"AE {ae} has no network")


def network_ae(network: IPNetwork, *, via_ipv6: bool = False) -> int:
    """The AE a network is announced with: AE 1 (AE 4 with ``via_ipv6``) or AE 2."""
    if isinstance(network, IPv4Network):
        return AE_IPV4_VIA_IPV6 if via_ipv6 else AE_IPV4
    return AE_IPV6


def decode_address(ae: int, raw: bytes) -> IPAddress:
    """The address an IHU or Next Hop carries in ``raw`` (AE 1 to 4, exact length)."""
    if ae == AE_WILDCARD:
        raise ValueError("the wildcard AE carries no address")
    if len(raw) != address_size(ae):
        raise ValueError(f"AE {ae} address must be {address_size(ae)} bytes, not {len(raw)}")
    if is_ipv4(ae):
        return IPv4Address(raw)
    if ae == AE_LINK_LOCAL:
        return IPv6Address(LINK_LOCAL_HIGH + raw)
    return IPv6Address(raw)


def encode_address(ae: int, address: IPAddress | None) -> bytes:
    """The wire bytes of an address in ``ae``; raise ValueError if it does not fit the AE."""
    check_ae(ae)
    if ae == AE_WILDCARD:
        if address is not None:
            raise ValueError("the wildcard AE carries no address")
        return b""
    if address is None:
        raise ValueError(f"AE {ae} needs an address")
    if is_ipv4(ae) != isinstance(address, IPv4Address):
        raise ValueError(f"{address} does not fit AE {ae}")
    packed = address.packed
    if ae == AE_LINK_LOCAL:
        if packed[:8] != LINK_LOCAL_HIGH:
            raise ValueError(f"{address} is not in fe80::/64, so AE 3 cannot carry it")
        return packed[8:]
    return packed


def address_ae(address: IPAddress) -> int:
    """The most compact AE for an address: AE 1, AE 3 for ``fe80::/64``, else AE 2."""
    if isinstance(address, IPv4Address):
        return AE_IPV4
    return AE_LINK_LOCAL if address.packed[:8] == LINK_LOCAL_HIGH else AE_IPV6
