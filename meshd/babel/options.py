"""How a daemon runs Babel (``meshd up --babel-*``), and who may announce what on the mesh.

Pure: option parsing and the route-origin rule, no I/O. The router-id of a member is
defined here and only here (:func:`router_id_of`).
"""

from __future__ import annotations

import hashlib
import ipaddress
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, KeysView, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from meshd.babel.config import DEFAULT_MAX_ROUTES
from meshd.babel.mac import MacAlgorithm, MacKey
from meshd.babel.martians import martian
from meshd.babel.sources import IPNetwork
from meshd.errors import CommandLineError

DEFAULT_HELLO_INTERVAL = 4.0
"""Seconds, as babeld's default."""


Origin = tuple[IPNetwork, IPNetwork | None]
"""A prefix we announce, with its RFC 9079 source prefix (None: an ordinary route)."""


ROUTER_ID_LEN = 8


def router_id_of(node_key: bytes) -> bytes:
    """A member's Babel router-id: the first 8 bytes of SHA-256 over its node key."""
    return hashlib.sha256(node_key).digest()[:ROUTER_ID_LEN]


@dataclass(frozen=True, slots=True)
class RedistributeRule:
    """``PREFIX [ge N] [le N] allow|deny``: routes inside ``prefix`` whose length is within
    ``ge..le`` (by default the prefix's own length to the family's maximum)."""

    prefix: IPNetwork
    ge: int
    le: int
    allow: bool

    def matches(self, route: IPNetwork) -> bool:
        return (
            route.version == self.prefix.version
            and route.subnet_of(self.prefix)  # type: ignore[arg-type]
            and self.ge <= route.prefixlen <= self.le
        )


def redistribute_allows(rules: Sequence[RedistributeRule], route: IPNetwork) -> bool:
    """No rules: everything passes. Otherwise the first rule that matches decides, and a
    route no rule matches is denied. (From a site link into the mesh, no rules means
    nothing: :func:`site_route_allowed`.)"""
    if not rules:
        return True
    return next((rule.allow for rule in rules if rule.matches(route)), False)


def site_route_allowed(rules: Sequence[RedistributeRule], route: IPNetwork) -> bool:
    """Whether a route learnt on a site link may reach the mesh: only by an explicit
    ``allow`` rule that matches it first (no rules: nothing does)."""
    return bool(rules) and redistribute_allows(rules, route)


def crosses_allowed(
    rules: Sequence[RedistributeRule],
    *,
    mesh: str | None,
    learned_on: str | None,
    announced_on: str,
    route: IPNetwork,
) -> bool:
    """Whether a route may be announced on ``announced_on``: routes going from the mesh to an
    ordinary interface, or from an ordinary interface to the mesh, pass the filter; our own
    prefixes (``learned_on`` None) and routes staying on one side are not filtered."""
    if mesh is None or learned_on is None:
        return True
    if (learned_on == mesh) == (announced_on == mesh):
        return True
    return redistribute_allows(rules, route)


def parse_redistribute(text: str) -> RedistributeRule:
    """``PREFIX [ge N] [le N] allow|deny``, e.g. ``'10.0.0.0/8 le 24 allow'``."""
    hint = "write PREFIX [ge N] [le N] allow|deny, e.g. '10.1.0.0/16 le 24 allow'"
    words = text.split()
    if len(words) < 2 or words[-1] not in ("allow", "deny") or len(words) % 2:
        raise CommandLineError(f"--babel-redistribute {text!r} is not a rule", hint=hint)
    prefix = parse_prefix(words[0], option="--babel-redistribute")
    bound = {"ge": prefix.prefixlen, "le": prefix.max_prefixlen}
    seen: set[str] = set()
    for name, value in zip(words[1:-1:2], words[2:-1:2], strict=True):
        if name not in bound or name in seen or not value.isdigit():
            raise CommandLineError(f"--babel-redistribute {text!r}: bad {name!r}", hint=hint)
        seen.add(name)
        bound[name] = int(value)
    if not prefix.prefixlen <= bound["ge"] <= bound["le"] <= prefix.max_prefixlen:
        raise CommandLineError(
            f"--babel-redistribute {text!r}: need {prefix.prefixlen} <= ge <= le <= "
            f"{prefix.max_prefixlen}",
            hint=hint,
        )
    return RedistributeRule(prefix, bound["ge"], bound["le"], words[-1] == "allow")


@dataclass(frozen=True, slots=True)
class BabelConfig:
    """Babel settings of one daemon; empty ``interfaces`` and no mesh: Babel is off."""

    interfaces: tuple[str, ...] = ()
    """Ordinary (multicast) Babel interfaces, ``--babel-interface``."""
    hello_interval: float = DEFAULT_HELLO_INTERVAL
    originate: tuple[Origin, ...] = ()
    """Prefixes we announce besides our overlay /128, ``--babel-originate``."""
    keys: tuple[MacKey, ...] = ()
    """RFC 8967 keys for the ordinary interfaces, ``--babel-key``."""
    redistribute: tuple[RedistributeRule, ...] = ()
    """The filter between the mesh and the ordinary interfaces, ``--babel-redistribute``."""
    max_routes_site: int = DEFAULT_MAX_ROUTES
    """The route budget of each neighbour on an ordinary interface: a site router gives us
    its network's routes, a few hundred on any LAN babeld runs on."""
    max_routes_mesh: int = DEFAULT_MAX_ROUTES
    """The route budget of each member on the mesh. Not smaller than the site's: a member
    announces its own /128 and grants, but also relays every route it selected (every
    other member's /128 and grants), so one neighbour there holds about the whole mesh's
    routes."""

    def __post_init__(self) -> None:
        if not 0.05 <= self.hello_interval <= 655.35:
            raise CommandLineError(
                f"--babel-hello-interval {self.hello_interval} s is out of range",
                hint="use 0.05 s to 655 s",
            )
        if len(set(self.interfaces)) != len(self.interfaces):
            raise CommandLineError("a --babel-interface is given twice")
        if min(self.max_routes_site, self.max_routes_mesh) < 1:
            raise CommandLineError("a Babel route budget must be at least 1")

    @property
    def enabled(self) -> bool:
        return bool(self.interfaces)


def parse_prefix(text: str, *, option: str = "--babel-originate") -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise CommandLineError(
            f"{option} {text!r}: {exc}", hint="write a prefix such as 10.1.0.0/24"
        ) from None


def parse_origin(text: str) -> Origin:
    """``PREFIX`` or ``PREFIX from SOURCE`` (a source-specific route, RFC 9079)."""
    prefix_text, _, source_text = text.partition(" from ")
    prefix = parse_prefix(prefix_text.strip())
    source = parse_prefix(source_text.strip()) if source_text.strip() else None
    if martian(prefix) or martian(source):
        raise CommandLineError(
            f"--babel-originate {text!r} is a martian prefix (multicast, loopback, "
            "link-local, unspecified, IPv4-mapped or broadcast)",
            hint="announce a unicast prefix",
        )
    if source is None:
        return prefix, None
    if source.version != prefix.version or source.prefixlen == 0:
        raise CommandLineError(
            f"--babel-originate {text!r}: the source must be a non-default prefix of the "
            "same family"
        )
    return prefix, source


def parse_key(text: str) -> MacKey:
    """``ID:ALGORITHM:HEXKEY``, e.g. ``k1:hmac-sha256:0011...`` (babeld's names)."""
    hint = "write ID:ALGORITHM:HEX with ALGORITHM hmac-sha256 or blake2s128"
    parts = text.split(":")
    if len(parts) != 3 or not parts[0]:
        raise CommandLineError("--babel-key is not ID:ALGORITHM:HEXKEY", hint=hint)
    key_id, algorithm, secret = parts
    try:
        return MacKey(key_id, MacAlgorithm(algorithm), bytes.fromhex(secret))
    except ValueError as exc:
        raise CommandLineError(f"--babel-key {key_id!r}: {exc}", hint=hint) from None


def babel_config(
    interfaces: Sequence[str] = (),
    hello_interval: float = DEFAULT_HELLO_INTERVAL,
    originate: Sequence[str] = (),
    keys: Sequence[str] = (),
    redistribute: Sequence[str] = (),
) -> BabelConfig:
    """A :class:`BabelConfig` from command-line strings; UsageError on a bad one."""
    return BabelConfig(
        interfaces=tuple(interfaces),
        hello_interval=hello_interval,
        originate=tuple(parse_origin(p) for p in originate),
        keys=tuple(parse_key(k) for k in keys),
        redistribute=tuple(parse_redistribute(r) for r in redistribute),
    )


class RouterIds(Mapping[bytes, bytes]):
    """Node keys by router-id, held as two columns in router-id order: the router-ids as
    8-byte integers in one array, the node keys in a tuple beside it (16 bytes a member;
    a table of router-ids as bytes was ~80: an 8-byte bytes object and a dict entry). A
    router-id is looked up by bisection."""

    __slots__ = ("_ids", "_keys")

    def __init__(self, router_ids: Iterable[bytes], node_keys: Iterable[bytes]) -> None:
        """The ``node_keys`` by their ``router_ids`` (in the same order); of a router-id
        given twice, the last one's."""
        values, keys = array("Q"), list[bytes]()
        for rid, key in zip(router_ids, node_keys, strict=True):
            if len(rid) == ROUTER_ID_LEN:
                values.append(int.from_bytes(rid, "big"))
                keys.append(key)
        order = sorted(range(len(values)), key=values.__getitem__)  # stable: the last last
        ids, kept = array("Q"), list[bytes]()
        for i in order:
            if ids and ids[-1] == values[i]:
                kept[-1] = keys[i]  # the later one, as a table would keep it
            else:
                ids.append(values[i])
                kept.append(keys[i])
        self._ids, self._keys = ids, tuple(kept)

    def get(self, router_id: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        if type(router_id) is not bytes or len(router_id) != ROUTER_ID_LEN:
            return default
        value = int.from_bytes(router_id, "big")
        ids = self._ids
        i = bisect_left(ids, value)
        return self._keys[i] if i < len(ids) and ids[i] == value else default

    def __getitem__(self, router_id: bytes) -> bytes:
        found = self.get(router_id)
        if found is None:
            raise KeyError(router_id)
        return found

    def __contains__(self, router_id: object) -> bool:
        return isinstance(router_id, bytes) and self.get(router_id) is not None

    def __iter__(self) -> Iterator[bytes]:
        return (value.to_bytes(ROUTER_ID_LEN, "big") for value in self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def keys(self) -> RouterIdSet:
        return RouterIdSet(self)

    def by_node(self) -> dict[bytes, bytes]:
        """Node key -> router-id (made on demand, not kept)."""
        size = ROUTER_ID_LEN
        return {k: v.to_bytes(size, "big") for k, v in zip(self._keys, self._ids, strict=True)}

    def same_ids(self, other: RouterIds) -> bool:
        """Whether ``other`` holds the same router-ids (compared as arrays)."""
        return self._ids == other._ids


class RouterIdSet(KeysView[bytes]):
    """The router-ids of a :class:`RouterIds` (a view, not a copy); two of them compare as
    their arrays."""

    __slots__ = ()
    _mapping: RouterIds

    def __contains__(self, router_id: object) -> bool:
        return router_id in self._mapping

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RouterIdSet):
            return self._mapping.same_ids(other._mapping)
        return super().__eq__(other)


class MemberOrigins:
    """Route origin validation on the mesh: which router-id may announce which prefix.

    ``allowed`` maps a member's node key to the prefixes it may originate (its overlay
    /128 and what its certificate grants); it is held as given (the membership snapshot's
    own table, not a copy). Built again whenever the membership changes; :meth:`accept` is
    the core's acceptance hook. The members' router-ids are kept here only, each with its
    member's node key (:class:`RouterIds`): whoever tells a member by its router-id asks this
    table (:meth:`node_of`, :attr:`nodes`).
    """

    def __init__(
        self,
        allowed: Mapping[bytes, Sequence[IPNetwork]],
        router_ids: Mapping[bytes, bytes] | None = None,
        *,
        members: Iterable[bytes] | None = None,
    ) -> None:
        """``router_ids``: node key -> router-id for the members whose router-ids the
        caller holds already (not derived again); the others' are derived. ``members``: the
        node keys of the members (by default those of ``allowed``)."""
        known = router_ids or {}
        self._allowed = allowed
        keys = list(allowed if members is None else members)
        self._node_of = RouterIds(
            (known.get(node_key) or router_id_of(node_key) for node_key in keys), keys
        )

    @property
    def nodes(self) -> Mapping[bytes, bytes]:
        """Every member's node key by router-id (the table itself)."""
        return self._node_of

    @property
    def router_ids(self) -> AbstractSet[bytes]:
        """Every member's router-id (a view of the table, not a copy)."""
        return self._node_of.keys()

    def node_of(self, router_id: bytes) -> bytes | None:
        """The node key of the member whose router-id this is, or None."""
        return self._node_of.get(router_id)

    def held(self) -> dict[bytes, bytes]:
        """Node key -> router-id, for the next table to reuse (made on demand, not kept)."""
        return self._node_of.by_node()

    def accept(self, router_id: bytes, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        node_key = self._node_of.get(router_id)
        if node_key is None:
            return False
        grants = self._allowed.get(node_key)
        return grants is not None and covered(prefix, grants)


class SiteOrigins:
    """What a gateway takes from its site links (``--babel-interface`` beside the mesh),
    where a router-id proves nothing: no route under a member's router-id (ours included),
    none inside the overlay /48 (members' /128s among it), none inside a prefix granted to
    another member. Our own grants stay open to the site: that is what the gateway
    originates on the mesh for it. Built again whenever the membership changes;
    :meth:`accept` is the core's ``accept_site`` hook.

    A prefix that only *covers* one of these (a default route) is taken: the longer
    prefix keeps its traffic.
    """

    def __init__(
        self,
        *,
        overlay: IPNetwork,
        allowed: Mapping[bytes, Iterable[IPNetwork]],
        own: bytes,
        router_ids: AbstractSet[bytes] | None = None,
    ) -> None:
        """``router_ids``: the members' router-ids if the caller holds them already, held
        as given (:attr:`MemberOrigins.router_ids`: not one more table of them), else
        derived from ``allowed``. Ours is refused too, whether it is among them or not."""
        if router_ids is None:
            router_ids = frozenset(router_id_of(k) for k in allowed)
        self.router_ids = router_ids
        self.own = router_id_of(own)
        others = [p for key, prefixes in allowed.items() if key != own for p in prefixes]
        self.claimed = (overlay, *others)

    def accept(self, router_id: bytes, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        return (
            router_id != self.own
            and router_id not in self.router_ids
            and not covered(prefix, self.claimed)
        )

    def same(self, other: SiteOrigins) -> bool:
        return (
            self.own == other.own
            and self.router_ids == other.router_ids
            and set(self.claimed) == set(other.claimed)
        )


def covered(prefix: IPNetwork, grants: Iterable[IPNetwork]) -> bool:
    """Whether ``prefix`` is one of ``grants`` or lies inside one (for each Update the mesh
    brings: a loop, not a generator)."""
    version = prefix.version
    for g in grants:  # noqa: SIM110 (any() over a generator is slower here)
        if version == g.version and prefix.subnet_of(g):  # type: ignore[arg-type]
            return True
    return False


def may_originate(
    prefix: IPNetwork, grants: Iterable[IPNetwork], is_own: Callable[[IPNetwork], bool]
) -> bool:
    """Whether this node may announce ``prefix`` on the mesh: its own /128 or a grant's."""
    if is_own(prefix):
        return True
    return any(
        prefix.version == g.version and prefix.subnet_of(g)  # type: ignore[arg-type]
        for g in grants
    )
