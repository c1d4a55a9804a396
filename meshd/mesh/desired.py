"""Desired WireGuard peers from the membership: a pure function of member views.

Rules (docs/mesh.md):

* a peer for every member that is ``admitted`` (not revoked, not expired), except this node;
* its public key is the member's WireGuard key; its allowed-ips are the key-derived
  link-local /128 and the member's overlay /128, plus any extra prefixes the caller routes
  through it (Babel's choices); a prefix never goes to two peers. A link-local /128 always
  stays on its own peer; an overlay /128 moves to another peer when an extra prefix says so
  (Babel routes the member through a relay), and is on its own peer otherwise, and always
  while the member is *held* (a new direct neighbour, :mod:`meshd.mesh.holddown`);
* its endpoint is chosen from the member's announced endpoints by :func:`choose_endpoint`,
  a function of the announced *set* and of what this node can reach, so it only changes when
  the announcement (or our underlay) does; without a usable one the peer has no endpoint and
  waits for the member to reach us;
* two members announcing one WireGuard key: one that enrolled with it before one that
  rotated to it, then the earliest admitted or rotated (ties by node key) is programmed,
  the others are reported as shadowed and left out; a member holding this node's own
  WireGuard key is never programmed.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import operator
from collections.abc import (
    Collection,
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    ValuesView,
)
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar, cast

from meshd.membership import Member, MemberState
from meshd.mesh.column_views import ColumnItems, ColumnValues
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.addresses import link_local_prefix
from meshd.wg.model import (
    MAX_KEEPALIVE,
    IPAddress,
    IPNetwork,
    PeerConfig,
    canonical_networks,
    check_key,
    format_endpoint,
    parse_endpoint,
)

#: Seconds between keepalives: keeps NAT mappings open and, set on a new peer, makes
#: WireGuard send a first packet (hence a handshake) at once.
DEFAULT_KEEPALIVE = 25


@dataclass(frozen=True, slots=True)
class Underlay:
    """What this node can reach: address families it has a usable address in, and the
    networks it is directly attached to (an endpoint inside one is preferred)."""

    families: frozenset[int] = frozenset({4, 6})
    networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class Shadowed:
    """A member left out because another one holds the same WireGuard key."""

    member: Member
    holder: NodeKey  # node key of the member programmed with that key (or this node's own)


_V = TypeVar("_V", PeerConfig, Member)


class _ByKey(Mapping[WgKey, _V]):
    """Values by WireGuard key, held as one tuple of them in key order (each value carries
    its key: :attr:`_key` reads it) and looked up by bisection: 8 bytes a value, where a
    table of them cost ~30 (its entry and its share of the index). Iterated in key order."""

    __slots__ = ("_values",)
    _key: ClassVar[operator.attrgetter[Any]]  # an attrgetter: called, not bound

    def __init__(self, values: Iterable[_V] = ()) -> None:
        key = self._key
        ordered = tuple(sorted(values, key=key))
        for left, right in itertools.pairwise(ordered):
            if key(left) == key(right):
                raise ValueError("a key appears twice")
        self._values: tuple[_V, ...] = ordered

    @classmethod
    def ordered(cls, values: tuple[_V, ...]) -> Self:
        """Values already in strictly increasing key order (not checked again)."""
        made = cls.__new__(cls)
        made._values = values
        return made

    def _find(self, key: object) -> _V | None:
        values = self._values
        if type(key) is not bytes:
            if not isinstance(key, bytes):
                return None
            key = bytes(key)
        i = bisect.bisect_left(values, key, key=self._key)
        found: _V | None = values[i] if i < len(values) else None
        return found if found is not None and self._key(found) == key else None

    def __getitem__(self, key: WgKey) -> _V:
        found = self._find(key)
        if found is None:
            raise KeyError(key)
        return found

    def get(self, key: WgKey, default: _V | None = None) -> _V | None:  # type: ignore[override]
        return default if (found := self._find(key)) is None else found

    def __contains__(self, key: object) -> bool:
        return self._find(key) is not None

    def __iter__(self) -> Iterator[WgKey]:
        return map(self._key, self._values)

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> ValuesView[_V]:
        return ColumnValues(self)

    def items(self) -> ItemsView[WgKey, _V]:
        return ColumnItems(self)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values == other._values
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({list(self._values)!r})"


class PeersByKey(_ByKey[PeerConfig]):
    """Peers by public key (:class:`_ByKey`): a round's desired peers, kept to the next."""

    __slots__ = ()
    _key = operator.attrgetter("public_key")


class MembersByKey(_ByKey[Member]):
    """Members by WireGuard key (:class:`_ByKey`): :func:`peer_members`, kept by punching."""

    __slots__ = ()
    _key = operator.attrgetter("wg_key")


@dataclass(frozen=True, slots=True)
class DesiredMesh:
    """The peers to program, keyed by WireGuard key, and what was left out and why.

    ``programmed`` is the members the peers stand for, in WireGuard key order: the members
    themselves, not a table made of them each round (:attr:`members` is one, made when
    asked)."""

    peers: Mapping[WgKey, PeerConfig] = field(default_factory=PeersByKey)
    programmed: tuple[Member, ...] = ()
    shadowed: tuple[Shadowed, ...] = ()
    refused_prefixes: tuple[tuple[WgKey, IPNetwork], ...] = ()  # (WireGuard key, prefix)

    @property
    def members(self) -> dict[WgKey, NodeKey]:
        """WireGuard key -> node key of each member programmed."""
        return {m.wg_key: m.node_key for m in self.programmed}


class ExtraPrefixes(Mapping[WgKey, tuple[IPNetwork, ...]]):
    """Prefixes routed through peers (Babel's choices), by WireGuard key, as the mesh keeps
    them between rounds. A peer's one prefix (the rule: a member routed directly, its own
    overlay /128) is held by itself, not in a tuple of one (48 bytes a member); read, it is
    that tuple. Peers without a prefix are left out."""

    __slots__ = ("_by_key",)

    def __init__(self, extra: Mapping[WgKey, Sequence[IPNetwork]] | None = None) -> None:
        by_key: dict[WgKey, IPNetwork | tuple[IPNetwork, ...]] = {}
        for key, nets in (extra or {}).items():
            if len(nets) == 1:
                by_key[key] = nets[0]
            elif nets:
                by_key[key] = tuple(nets)
        self._by_key = by_key

    def __getitem__(self, key: WgKey) -> tuple[IPNetwork, ...]:
        found = self._by_key[key]
        return found if type(found) is tuple else (found,)  # type: ignore[return-value]

    def __iter__(self) -> Iterator[WgKey]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ExtraPrefixes):
            return self._by_key == other._by_key
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ExtraPrefixes({dict(self.items())!r})"


def _usable(address: IPAddress) -> bool:
    # A link-local endpoint names no interface (the UAPI takes no scope), multicast and
    # unspecified addresses name no host.
    return not (address.is_unspecified or address.is_multicast or address.is_link_local)


def choose_endpoint(announced: Iterable[str], underlay: Underlay) -> str | None:
    """The endpoint to configure for a peer, or None if none of ``announced`` is usable.

    Candidates that do not parse or name no host are skipped. The rest are ranked: a family
    we can reach first, then one on a network we are attached to, then not loopback, then
    IPv4 before IPv6, then by address and port. The order of ``announced`` does not matter.
    """
    ranked: list[tuple[tuple[bool, bool, bool, int, int, int], str]] = []
    for text in announced:
        try:
            address, port = parse_endpoint(text)
        except ValueError:
            continue
        if not _usable(address):
            continue
        on_link = any(address in net for net in underlay.networks if net.version == address.version)
        rank = (
            address.version not in underlay.families,
            not on_link,
            address.is_loopback,
            address.version,
            int(address),
            port,
        )
        canonical = format_endpoint(address, port)
        # The announced string itself when canonical: held already, not a copy per round.
        ranked.append((rank, text if canonical == text and type(text) is str else canonical))
    return min(ranked)[1] if ranked else None


def _canonical(own: list[IPNetwork], extra: list[IPNetwork] | None) -> tuple[IPNetwork, ...]:
    """A peer's allowed-ips in canonical order (:func:`meshd.wg.model.canonical_networks`):
    ``own`` its link-local and, if on this peer, its overlay /128; ``extra`` the prefixes
    Babel gives it, if any. Without those they are the member's own /128s, interned and
    distinct (its link-local in fe80::/64, its overlay address in the network's fd00::/8
    /48): ordered by address without the general sort. Babel's prefixes go through the
    general one."""
    if extra is not None:
        return canonical_networks(own + extra)
    if len(own) == 2 and own[1] < own[0]:  # type: ignore[operator]  # interned /128s: by int
        return (own[1], own[0])
    return tuple(own)


def _same(have: tuple[IPNetwork, ...], nets: tuple[IPNetwork, ...]) -> bool:
    """Whether two canonical allowed-ips hold the same (interned) networks."""
    return len(have) == len(nets) and all(a is b for a, b in zip(have, nets, strict=True))


def _in_order(
    previous: Mapping[WgKey, PeerConfig], keys: list[WgKey]
) -> Iterator[PeerConfig | None]:
    """``previous.get(key)`` for each of ``keys`` (increasing): for a :class:`PeersByKey`
    one walk along both, not a bisection a peer (~1 us each, 10 ms a round at 10,000)."""
    if not isinstance(previous, PeersByKey):
        yield from map(previous.get, keys)
        return
    values, i, count = previous._values, 0, len(previous)
    for key in keys:
        while i < count and values[i].public_key < key:
            i += 1
        yield values[i] if i < count and values[i].public_key == key else None


def base_allowed_ips(member: Member) -> tuple[ipaddress.IPv6Network, ipaddress.IPv6Network]:
    """A member's own addresses: its key-derived link-local and its overlay address (both
    interned: the same objects every round, and the ones the membership and Babel hold)."""
    return (link_local_prefix(member.wg_key), member.overlay_prefix)


def peer_members(
    members: Iterable[Member], *, own_node_key: NodeKey, own_wg_key: WgKey
) -> MembersByKey:
    """The members programmed as peers, by WireGuard key (what :func:`desired_peers` uses)."""
    chosen = _choose(members, own_node_key, own_wg_key)[0]
    return MembersByKey.ordered(tuple(map(chosen.__getitem__, sorted(chosen))))


def _choose(
    members: Iterable[Member], own_node_key: NodeKey, own_wg_key: WgKey
) -> tuple[dict[WgKey, Member], list[Shadowed]]:
    # A key one member holds (the rule) stands for that member itself, not a list of one:
    # a list a member made on each pass, ~125 bytes a member while it ran.
    standing: dict[WgKey, Member | list[Member]] = {}
    for member in members:
        if member.state is MemberState.ADMITTED and member.node_key != own_node_key:
            found = standing.get(member.wg_key)
            if found is None:
                standing[member.wg_key] = member
            elif isinstance(found, list):
                found.append(member)
            else:
                standing[member.wg_key] = [found, member]
    # The table becomes the chosen members' own, in place: no second table a member.
    shadowed: list[Shadowed] = []
    chosen = cast("dict[WgKey, Member]", standing)
    for wg_key, holders in standing.items():
        if not isinstance(holders, list):
            if wg_key == own_wg_key:
                shadowed.append(Shadowed(holders, own_node_key))
            continue
        # A key a member enrolled with goes before one it rotated to (a rotation cannot take
        # another member's key), then the earliest claim, then the node key.
        holders.sort(
            key=lambda m: (
                m.wg_counter > 0,
                m.wg_since if m.wg_counter else m.admitted_at,
                m.node_key,
            )
        )
        if wg_key == own_wg_key:
            shadowed.extend(Shadowed(m, own_node_key) for m in holders)
            continue
        chosen[wg_key] = holders[0]
        shadowed.extend(Shadowed(m, holders[0].node_key) for m in holders[1:])
    chosen.pop(own_wg_key, None)
    return chosen, shadowed


def desired_peers(
    members: Iterable[Member],
    *,
    own_node_key: NodeKey,
    own_wg_key: WgKey,
    underlay: Underlay = Underlay(),
    keepalive: int | None = DEFAULT_KEEPALIVE,
    extra_prefixes: Mapping[WgKey, Sequence[IPNetwork]] | None = None,
    held: Collection[WgKey] = (),
    previous: Mapping[WgKey, PeerConfig] | None = None,
) -> DesiredMesh:
    """The WireGuard peers this node should have.

    ``extra_prefixes`` maps a peer's WireGuard key to further prefixes routed through it
    (Babel's choices). ``held`` names peers (WireGuard keys) whose overlay /128 stays on
    the peer itself whatever Babel says (new direct neighbours). Members' link-local /128s
    are claimed first, then the overlay /128s of held peers, then the extra prefixes (peers
    in key order), then each other overlay /128 for its own peer if no extra prefix moved
    it to another. An extra prefix already claimed is refused and reported.

    ``previous`` is the last round's peers: a peer that is the same again is that object,
    and one whose allowed-ips are the same holds those networks (interned: the same objects).
    """
    chosen, shadowed = _choose(members, own_node_key, own_wg_key)
    order = sorted(chosen)
    # Who holds each prefix: the first claim wins (dict.setdefault), in the order above. A
    # peer's allowed-ips follow from it: its link-local, its overlay /128 if it holds it, and
    # the extra prefixes it holds (``claimed``); no list of them a member while the pass
    # runs, nor a table of overlays (~160 bytes a member, work in flight).
    owner: dict[IPNetwork, WgKey] = {}
    # Each peer's link-local /128, derived once a round (a SipHash and a look-up, ~3 us).
    link_locals = [link_local_prefix(wg_key) for wg_key in order]
    for wg_key, link_local in zip(order, link_locals, strict=True):
        owner.setdefault(link_local, wg_key)
    for wg_key in sorted(chosen.keys() & set(held)):
        owner.setdefault(chosen[wg_key].overlay_prefix, wg_key)
    refused: list[tuple[WgKey, IPNetwork]] = []
    claimed: dict[WgKey, list[IPNetwork]] = {}
    extras = extra_prefixes or {}
    for wg_key in sorted(extras):
        if wg_key not in chosen:
            continue
        mine = claimed[wg_key] = []
        for net in extras[wg_key]:
            if owner.setdefault(net, wg_key) != wg_key:
                refused.append((wg_key, net))
            else:
                mine.append(net)
    for wg_key in order:
        # Unless routed through a relay, a member's overlay address is on its own peer.
        owner.setdefault(chosen[wg_key].overlay_prefix, wg_key)

    if keepalive is not None and not 0 < keepalive <= MAX_KEEPALIVE:
        raise ValueError("persistent_keepalive is 1..65535 seconds, or None for off")
    peers: list[PeerConfig] = []  # in key order
    programmed: list[Member] = []
    olds = _in_order(previous or {}, order)
    for wg_key, link_local, old in zip(order, link_locals, olds, strict=True):
        member = chosen[wg_key]
        programmed.append(member)
        announced = member.announcement.endpoints if member.announcement is not None else ()
        if old is not None and len(announced) == 1 and old.endpoint is announced[0]:
            # The one endpoint it announced, the very string chosen last round (as it was
            # written: canonical and usable, whatever the underlay): not parsed again.
            endpoint: str | None = old.endpoint
        else:
            endpoint = choose_endpoint(announced, underlay)
        overlay = member.overlay_prefix
        nets = _canonical(
            [link_local, overlay] if owner[overlay] == wg_key else [link_local],
            claimed.get(wg_key),
        )
        if (
            old is not None
            and old.endpoint == endpoint
            and old.persistent_keepalive == keepalive
            and _same(old.allowed_ips, nets)
        ):
            peers.append(old)
            continue
        # Made without checking again (PeerConfig.derived): the endpoint is one
        # choose_endpoint parsed and wrote canonically, the allowed-ips are put in their
        # canonical order here. The key is checked (a certificate may carry none).
        peers.append(PeerConfig.derived(check_key(wg_key, "public key"), endpoint, nets, keepalive))
    shadowed.sort(key=lambda s: (s.member.wg_key, s.member.node_key))
    return DesiredMesh(
        peers=PeersByKey.ordered(tuple(peers)),
        programmed=tuple(programmed),
        shadowed=tuple(shadowed),
        refused_prefixes=tuple(refused),
    )
