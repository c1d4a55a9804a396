"""What ``meshd peers`` and ``meshd netcheck`` say of paths and NATs (pure: time is passed in).

**A member's path** (:func:`path_of`), from what this node's WireGuard device holds, which is
where traffic really goes (Babel's choice of next hop is programmed there as allowed-ips,
docs/mesh.md):

* ``direct IP:PORT``: the member's overlay address is routed to its own WireGuard peer, and
  that peer has a fresh handshake (younger than :data:`FRESH`: WireGuard's 180 s session
  lifetime); the endpoint is the one WireGuard shows, the source of the peer's latest
  authenticated packet;
* ``relay via NAME``: the member's overlay address is routed to another member's peer (Babel
  chose that member as next hop), and that member's peer has a fresh handshake;
* ``none``: anything else (no peer yet, no handshake, or a stale one).

**This node's NAT** (:func:`nat_of`), from what members observe of our WireGuard endpoint
(the endpoint their WireGuard shows for us):

* ``unknown``: no member reports where it sees us (yet), or a single member sees us from
  outside (one observer cannot tell a cone from a symmetric NAT);
* ``none``: every member that observes us sees us at one of our own addresses;
* ``cone``: at least two members see one and the same mapping of an address (the NAT maps
  every destination alike, so a hole can be punched);
* ``symmetric``: members see one public address with different ports (a mapping per
  destination: such a node needs a relay to reach members behind other NATs).

Only WireGuard's observations are port-exact; libp2p identify's are not used here.
See docs/nat.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from meshd.addressing import HostPrefix
from meshd.wg.model import IPAddress, PeerStatus, format_endpoint, parse_endpoint

#: Seconds a handshake counts as fresh: WireGuard rejects a session older than 180 s
#: (REJECT_AFTER_TIME), and one in use is renewed after 120 s.
FRESH = 180.0
#: A handshake dated up to this far in our future (another clock's rounding) still counts.
SKEW = 5.0

PathKind = Literal["direct", "relay", "none"]
NatKind = Literal["none", "cone", "symmetric", "unknown"]


@dataclass(frozen=True, slots=True)
class PeerPath:
    """How traffic to one member goes: ``endpoint`` when direct, ``via`` (the relay's
    WireGuard key) when relayed."""

    kind: PathKind
    endpoint: str | None = None
    via: bytes | None = None


def fresh(last_handshake: float | None, now: float) -> bool:
    """Whether a handshake at ``last_handshake`` (Unix seconds; None or 0: never) is live."""
    if not last_handshake:
        return False
    return -SKEW <= now - last_handshake < FRESH


class Owners:
    """Which peer WireGuard sends an address to (:meth:`owner`): every allowed-ip of the
    device's ``peers``, in one table per address family and prefix length, by network.
    Made once for a view of every member: a look-up is one probe per prefix length held
    (two for most devices: the /128s and Babel's prefixes), where going over every peer's
    allowed-ips for each member made ``meshd peers`` quadratic (~9 ms a member at 10,000
    peers: ~90 s; docs/nat.md)."""

    __slots__ = ("_tables",)

    def __init__(self, peers: Iterable[PeerStatus]) -> None:
        tables: dict[tuple[int, int], dict[int, bytes]] = {}
        for peer in peers:
            key = peer.public_key
            for network in peer.config.allowed_ips:
                table = tables.get((network.version, network.prefixlen))
                if table is None:
                    table = tables[network.version, network.prefixlen] = {}
                # The first peer that holds a prefix keeps it (as a pass over them did).
                value = (
                    int(network)  # an interned /128 is its int: a plain copy, no address made
                    if isinstance(network, HostPrefix)
                    else int(network.network_address)
                )
                table.setdefault(value, key)
        # Longest first, each with the mask of its length.
        self._tables = [
            (version, _mask(version, length), tables[version, length])
            for version, length in sorted(tables, key=lambda vl: -vl[1])
        ]

    def owner(self, address: IPAddress) -> bytes | None:
        """The key of the peer whose longest allowed-ip holds ``address`` (WireGuard's own
        rule), None if no peer's does."""
        version, value = address.version, int(address)
        for family, mask, table in self._tables:
            if family == version:
                found = table.get(value & mask)
                if found is not None:
                    return found
        return None


def _mask(version: int, length: int) -> int:
    bits = 32 if version == 4 else 128
    return ((1 << length) - 1) << (bits - length)


def owner_of(address: IPAddress, peers: Iterable[PeerStatus]) -> bytes | None:
    """The key of the peer WireGuard sends ``address`` to (:class:`Owners`, for one
    address)."""
    return Owners(peers).owner(address)


def path_of(
    wg_key: bytes,
    overlay: IPAddress,
    device: Mapping[bytes, PeerStatus],
    now: float,
    owners: Owners | None = None,
) -> PeerPath:
    """The path to the member with WireGuard key ``wg_key`` and overlay address ``overlay``,
    given the device's peers by key (``owners``: their :class:`Owners`, made once for a
    view of many members; made here if not given)."""
    if owners is None:
        owners = Owners(device.values())
    owner = owners.owner(overlay)
    if owner is None:
        return PeerPath("none")
    peer = device[owner]
    if not fresh(peer.last_handshake, now):
        return PeerPath("none")
    if owner == wg_key:
        return PeerPath("direct", endpoint=peer.config.endpoint)
    return PeerPath("relay", via=owner)


@dataclass(frozen=True, slots=True)
class Seen:
    """One ip:port members see us at, and how many distinct members see it."""

    endpoint: str
    observers: int
    own: bool
    """Whether the address is one of this node's own (no NAT on that path)."""


@dataclass(frozen=True, slots=True)
class NatReport:
    kind: NatKind
    why: str
    behind_nat: bool | None
    """None when no member reports anything yet."""
    mappings: tuple[Seen, ...]
    """Most observers first, then by address and port."""


def nat_of(
    observations: Iterable[tuple[bytes, str]],
    own_addresses: Iterable[IPAddress],
) -> NatReport:
    """This node's NAT from (observer's node key, ``ip:port`` it sees us at) pairs, one per
    observer (a later pair of the same observer replaces its earlier one); endpoints that do
    not parse are ignored (the caller checked them when they came in)."""
    latest: dict[bytes, tuple[IPAddress, int]] = {}
    for observer, text in observations:
        try:
            latest[observer] = parse_endpoint(text)
        except ValueError:
            continue
    own = {_plain(a) for a in own_addresses}
    seen: dict[tuple[IPAddress, int], set[bytes]] = {}
    for observer, (address, port) in latest.items():
        seen.setdefault((_plain(address), port), set()).add(observer)
    mappings = tuple(
        Seen(format_endpoint(address, port), len(observers), address in own)
        for (address, port), observers in sorted(
            seen.items(),
            key=lambda item: (-len(item[1]), item[0][0].version, int(item[0][0]), item[0][1]),
        )
    )
    if not latest:
        return NatReport("unknown", "no member has reported where it sees this node yet", None, ())
    outside = {k: v for k, v in seen.items() if k[0] not in own}
    if not outside:
        return NatReport("none", "members see this node at its own address", False, mappings)
    observers = {o for v in outside.values() for o in v}
    ports: dict[IPAddress, set[int]] = {}
    for address, port in outside:
        ports.setdefault(address, set()).add(port)
    if any(len(p) > 1 for p in ports.values()):
        spread = max(ports.values(), key=len)
        return NatReport(
            "symmetric",
            f"{len(observers)} members see {len(spread)} different ports: a mapping per "
            "destination",
            True,
            mappings,
        )
    shared = max(len(v) for v in outside.values())
    if shared >= 2:
        (address, port), _ = max(outside.items(), key=lambda item: len(item[1]))
        return NatReport(
            "cone",
            f"{shared} members see one mapping, {format_endpoint(address, port)}: "
            "the same for every destination",
            True,
            mappings,
        )
    return NatReport(
        "unknown",
        "one member sees this node from outside; a second one tells cone from symmetric",
        True,
        mappings,
    )


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
