"""Which members speak Babel with each other on the mesh (pure).

Babel on the mesh is for what a direct WireGuard path does not cover: a member's overlay
/128 through a relay when the two cannot reach each other directly, and the site prefixes a
gateway's certificate grants. Two members that both only reach each other directly need no
Babel between them: each one's overlay /128 is on the other's WireGuard peer
(:func:`meshd.mesh.desired.desired_peers`), and whether their direct path works is the
punching service's to say (:mod:`meshd.daemon.peer_paths`), from WireGuard itself. So two
members speak Babel when either of them

* **relays**: its signed announcement says it can (:attr:`meshd.records.Announcement.relays`:
  ``--relay on``, or ``--relay auto`` on a public address), and it is one of the
  :data:`ACTIVE_RELAYS` such members of lowest rank (:func:`relay_rank`, a hash of the node
  key). A relay carries the pairs that have no direct path, so it is every member's
  neighbour: in a mesh of public machines, where ``--relay auto`` says yes on every one,
  only a few are the mesh's relays, not all; or
* **is a gateway**: its certificate grants it prefixes beyond its own /128, whose routes
  every member learns from it over Babel.

The rule reads only what both ends know alike (signed announcements and certificates; our
own side from *our own announcement*, not from the relaying service's latest word), so it
holds in both directions: a Hello is never sent to a member that will not answer it. A
member with no announcement yet neither relays nor, until its certificate is known, is a
gateway.

Each member that neither relays nor routes for a site then has the relays and gateways as
its Babel neighbours, a handful, where it had every member: its Hellos and IHUs no longer
grow with the mesh. A relay still has every member as neighbour.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
from array import array
from collections.abc import (
    Callable,
    Collection,
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    ValuesView,
)
from dataclasses import dataclass
from typing import Any, Final

from meshd.addressing import HostPrefix, address_of, host_int
from meshd.babel.options import MemberOrigins
from meshd.membership import Member
from meshd.mesh.column_views import ColumnItems, ColumnValues
from meshd.trust.keys import WgKey
from meshd.wg.addresses import link_local_prefix
from meshd.wg.model import IPAddress, IPNetwork

ACTIVE_RELAYS: Final = 8
"""How many of the members that can relay are the mesh's relays: each is a Babel neighbour
of every member, so each costs every member a neighbour's Hellos (~28 bytes a second at 4 s
Hellos), and each relay carries a share of the pairs without a direct path."""

Grants = Callable[[bytes], Sequence[IPNetwork]]
"""A member's grants by node key: its overlay /128 and its certificate's prefixes."""


def can_relay(member: Member) -> bool:
    """Whether the member's signed announcement says it relays for others."""
    announcement = member.announcement
    return announcement is not None and announcement.relays


def relay_rank(node_key: bytes) -> bytes:
    """A member's rank among those that can relay (lowest first), alike everywhere."""
    return hashlib.blake2b(b"meshd relay rank\x00" + node_key, digest_size=16).digest()


def active_relays(members: Iterable[Member], count: int = ACTIVE_RELAYS) -> frozenset[bytes]:
    """The node keys of the mesh's relays: the ``count`` members of lowest rank among
    those whose announcement says they can relay."""
    able = sorted((relay_rank(m.node_key), m.node_key) for m in members if can_relay(m))
    return frozenset(key for _, key in able[:count])


def is_gateway(member: Member, grants: Grants) -> bool:
    """Whether the member's certificate grants it any prefix beyond its overlay /128."""
    own = member.overlay_prefix  # interned: the grants' own, found, not made
    return any(prefix is not own and prefix != own for prefix in grants(member.node_key))


def babel_neighbours(
    own: Member | None,
    peers: Mapping[ipaddress.IPv6Address, Member],
    grants: Grants,
    relays: Collection[bytes],
) -> set[ipaddress.IPv6Address]:
    """The link-local addresses (of ``peers``, every other admitted member by its
    WireGuard link-local) that we speak Babel with: all of them if we are a relay
    (``relays``: :func:`active_relays` of every member, us included) or a gateway (``own``,
    our own member entry; None before we are one: then by theirs alone), else the relays
    and gateways among them."""

    if own is not None and _speaks(own, grants, relays):
        return set(peers)
    return {address for address, member in peers.items() if _speaks(member, grants, relays)}


def _speaks(member: Member, grants: Grants, relays: Collection[bytes]) -> bool:
    return member.node_key in relays or is_gateway(member, grants)


def link_local_table(members: Iterable[Member]) -> dict[int, Member]:
    """``members`` by the int of their interned link-local /128 (the last of those with
    one), in the order they came."""
    return {host_int(link_local_prefix(m.wg_key)): m for m in members}


class _ByHost:
    """Members by a /128 of each, kept as two tuples in the order of the /128s' ints: the
    ints (the ones the interned /128s hold, not copies) and the members. 16 bytes a member,
    where a dict of them cost ~30 (its entry and its share of the index); looked up by
    bisection of the ints (~0.3 us at 10,000, a dict's ~0.06)."""

    __slots__ = ("_keys", "_values")

    def __init__(self, by_int: Mapping[int, Member]) -> None:
        keys = sorted(by_int)
        self._keys: tuple[int, ...] = tuple(keys)
        self._values: tuple[Member, ...] = tuple(map(by_int.__getitem__, keys))

    def __len__(self) -> int:
        return len(self._keys)


class ByLinkLocal(_ByHost, Mapping[ipaddress.IPv6Address, Member]):
    """Members by their link-local address (the last of those with one address), kept by
    the int their interned link-local /128 holds: no address object a member (56 bytes), the
    addresses made when iterated; no table entry either (:class:`_ByHost`)."""

    __slots__ = ()

    def __init__(
        self, members: Iterable[Member] = (), *, table: Mapping[int, Member] | None = None
    ) -> None:
        """Of ``members``, or of ``table`` (:func:`link_local_table`) when given."""
        super().__init__(link_local_table(members) if table is None else table)

    def __getitem__(self, address: ipaddress.IPv6Address) -> Member:
        found = self.get(address)
        if found is None:
            raise KeyError(address)
        return found  # type: ignore[no-any-return]

    def get(self, address: object, default: object = None) -> Any:
        if address.__class__ is not ipaddress.IPv6Address:
            return default
        value, keys = address._ip, self._keys  # type: ignore[attr-defined]
        i = bisect.bisect_left(keys, value)
        return self._values[i] if i < len(keys) and keys[i] == value else default

    def __contains__(self, address: object) -> bool:
        return self.get(address) is not None

    def __iter__(self) -> Iterator[ipaddress.IPv6Address]:
        return map(address_of, self._keys)

    def values(self) -> ValuesView[Member]:
        return ColumnValues(self)

    def items(self) -> ItemsView[ipaddress.IPv6Address, Member]:
        return ColumnItems(self)


class ByOverlay(_ByHost, Mapping[IPNetwork, Member]):
    """Members by their overlay /128 (the last of those with one /128), kept by the int
    their interned /128 holds (:class:`_ByHost`); iterated, the members' own /128s.

    Made of the members of a :class:`ByLinkLocal` (``within``), it keeps beside its ints
    each member's place in that table's tuple (2 bytes a member below 65,536 members, 4
    above), not a tuple of the members of its own (8 bytes a member)."""

    __slots__ = ("_places", "_within")

    def __init__(
        self, members: Iterable[Member] = (), *, within: ByLinkLocal | None = None
    ) -> None:
        by_int = {host_int(m.overlay_prefix): m for m in members}
        self._within: tuple[Member, ...] = ()
        self._places: array[int] | None = None
        held = within._values if within is not None else ()
        place = {id(m): i for i, m in enumerate(held)}
        keys = sorted(by_int)
        if within is None or any(id(by_int[k]) not in place for k in keys):
            super().__init__(by_int)  # a tuple of the members of its own
            return
        self._keys = tuple(keys)
        self._values = ()
        self._places = array(
            "H" if len(held) < 1 << 16 else "I", [place[id(by_int[k])] for k in keys]
        )
        self._within = held

    def _member(self, i: int) -> Member:
        places = self._places
        return self._values[i] if places is None else self._within[places[i]]

    def __getitem__(self, prefix: IPNetwork) -> Member:
        found = self.get(prefix)
        if found is None:
            raise KeyError(prefix)
        return found  # type: ignore[no-any-return]

    def get(self, prefix: object, default: object = None) -> Any:
        if prefix.__class__ is HostPrefix:
            value = prefix._value
        elif isinstance(prefix, ipaddress.IPv6Network) and prefix.prefixlen == 128:
            value = int(prefix.network_address)
        else:
            return default
        keys = self._keys
        i = bisect.bisect_left(keys, value)
        return self._member(i) if i < len(keys) and keys[i] == value else default

    def __contains__(self, prefix: object) -> bool:
        return self.get(prefix) is not None

    def __iter__(self) -> Iterator[IPNetwork]:
        return (m.overlay_prefix for m in self._members())

    def _members(self) -> Iterable[Member]:
        places = self._places
        return self._values if places is None else map(self._within.__getitem__, places)

    def values(self) -> ValuesView[Member]:
        return _OverlayValues(self)

    def items(self) -> ItemsView[IPNetwork, Member]:
        return _OverlayItems(self)


class _OverlayValues(ValuesView[Member]):
    _mapping: ByOverlay

    def __iter__(self) -> Iterator[Member]:
        return iter(self._mapping._members())


class _OverlayItems(ItemsView[IPNetwork, Member]):
    _mapping: ByOverlay

    def __iter__(self) -> Iterator[tuple[IPNetwork, Member]]:
        mapping = self._mapping
        return zip(iter(mapping), mapping._members(), strict=True)


@dataclass(frozen=True, slots=True)
class MeshMembers:
    """The admitted members as Babel on the mesh sees them, at one snapshot.

    Three tables a member: by link-local (:attr:`peers`), by overlay /128
    (:attr:`member_of_overlay`) and by router-id (:attr:`origins`, the only table of
    router-ids); the grants are the membership snapshot's own table. What the others were
    (a member's link-local by its /128, a neighbour's router-id) is one look-up in these
    away: :class:`~meshd.daemon.babel_wants.Wants` reads them so."""

    peers: Mapping[ipaddress.IPv6Address, Member]
    """Every other admitted member, by its key-derived link-local address."""
    member_of_overlay: Mapping[IPNetwork, Member]
    """The same members by overlay /128 (the same objects)."""
    origins: MemberOrigins
    """Every member's router-id (ours too) and what it may originate."""
    allowed: Mapping[bytes, Sequence[IPNetwork]]
    """Each member's grants (ours too), by node key."""
    neighbours: frozenset[ipaddress.IPv6Address]
    """Those we speak Babel with (:func:`babel_neighbours`)."""
    neighbour_keys: frozenset[WgKey]
    relays: frozenset[IPAddress]
    """The mesh's relays among the others (:func:`active_relays`)."""
    with_all: bool
    """We speak Babel with every member (one of the mesh's relays, or a gateway): only then
    may we carry routes between two others."""
    gateways: frozenset[IPAddress] = frozenset()
    """The gateways among the others (:func:`is_gateway`)."""
    gateway: bool = False
    """We are a gateway."""

    def quiet(self, prefix: IPNetwork) -> Member | None:
        """The member of this overlay /128 if we do not speak Babel with it."""
        member = self.member_of_overlay.get(prefix)
        return None if member is None or member.wg_key in self.neighbour_keys else member

    def quiet_members(self) -> Iterator[tuple[IPNetwork, Member]]:
        """The others we do not speak Babel with, by overlay /128 (most members, for one
        that is neither a relay nor a gateway: derived, not kept)."""
        speaking = self.neighbour_keys
        return ((p, m) for p, m in self.member_of_overlay.items() if m.wg_key not in speaking)


def mesh_members(
    members: Iterable[Member],
    grants: Callable[[Member], Sequence[IPNetwork]],
    node_key: bytes,
    known: MemberOrigins | None = None,
    *,
    allowed: Mapping[bytes, Sequence[IPNetwork]] | None = None,
) -> MeshMembers:
    """The view of ``members`` (the admitted ones) from the member ``node_key``;
    ``known``: the last view's origins, whose router-ids are reused; ``allowed``: every
    one of ``members``' grants by node key if the caller holds that table already (the
    membership snapshot's: shared, not copied), else made from ``grants``."""
    members = list(members)
    if allowed is None:
        allowed = {m.node_key: grants(m) for m in members}
    own: Member | None = None
    others: list[Member] = []
    for member in members:
        if member.node_key == node_key:
            own = member
        else:
            others.append(member)
    linked = link_local_table(others)
    peers = ByLinkLocal(table=linked)
    relays = active_relays(members)
    table = allowed

    def granted(key: bytes) -> Sequence[IPNetwork]:
        return table.get(key, ())

    neighbours = babel_neighbours(own, peers, granted, relays)
    return MeshMembers(
        peers=peers,
        # In the members' order, as the table by link-local made them: of two with one
        # /128, the same one stands as in the dict by /128 made of that table.
        member_of_overlay=ByOverlay(linked.values(), within=peers),
        origins=MemberOrigins(
            allowed,
            known.held() if known is not None else None,
            members=[m.node_key for m in members],
        ),
        allowed=allowed,
        neighbours=frozenset(neighbours),
        neighbour_keys=frozenset(peers[a].wg_key for a in neighbours),
        relays=frozenset(a for a, m in peers.items() if m.node_key in relays),
        with_all=own is not None and _speaks(own, granted, relays),
        gateways=frozenset(a for a, m in peers.items() if is_gateway(m, granted)),
        gateway=own is not None and is_gateway(own, granted),
    )


NO_MEMBERS: Final = MeshMembers(
    {}, {}, MemberOrigins({}), {}, frozenset(), frozenset(), frozenset(), False
)
