"""Which members' overlay /128s we ask the relays for, and which neighbours relay (pure).

On the mesh, relays announce a member's overlay /128 only to the members that ask for it
(the core's ``on_demand`` hook, :mod:`meshd.babel.interest`): a member with a direct path
to another needs no route through a third. :class:`Wants` decides, each round, what this
member asks and of whom:

* **wanted**: every admitted member whose /128 no direct path covers (no finite route
  learnt from the member itself, or, for a member we do not speak Babel with, no working
  direct WireGuard path: :mod:`meshd.daemon.babel_peers`), once it has been a member for
  ``hold`` seconds (0 on the mesh: a direct path not up yet, or one that never comes up,
  is covered by a relay at once; the direct route, of lower metric, takes over when it
  comes);
* **relays**: the neighbours that have announced us a route of another originator (only a
  relay does: a member that does not relay announces its own routes alone); each wanted
  /128 is asked of each relay with a two-way link at once (a /128 newly wanted, a relay
  newly known or newly two-way), then again every ``period`` (which keeps their interest
  alive);
* **unrouted**: a wanted /128 that no neighbour offers a route for a whole ``period`` after
  it was asked (a member that is offline, or that no relay reaches) is asked again after
  twice as long each time, up to ``period * 2**BACKOFF`` (256 s at the 16 s update
  interval), and then no more of the relays already asked (*parked*): each relay would
  otherwise answer every member for every offline member every 256 s, for the hours an
  offline member stays admitted, O(members x offline members) at each relay. A parked
  /128 is still asked of a relay newly two-way. Its level goes back to 0 when a route for
  it comes, when its member announces anew (:meth:`Wants.renewed`: a member announces at
  start, when back from being cut off from every member, and every refresh), and when a
  member's punch notice says it is trying to reach us (``BabelService.member_back``: back
  after an outage, unchanged);
* **discovery**: which neighbours relay must be known alike at both ends of a pair (each
  end picks the relay of lowest rank among those that offer a route, and both must pick
  the same one), so while anything not parked is wanted, every neighbour with a two-way
  link that is not known to relay is asked too: the first time for every wanted /128 (up to
  ``FIRST_PROBES``; a relay answers each with its route in that one round trip), then at
  most every ``rediscover`` seconds for up to ``PROBES`` of them (a lost answer, a member
  that starts relaying). The relays among them answer with a route and are known from then
  on.

:meth:`Wants.ask` runs a round on the core; the daemon runs one on every batch of the
core's events (a neighbour up, a route learnt or lost), when the members change, and every
``period``: a round asks only what is due, so running it often costs nothing on the wire.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Final, Protocol

from meshd.babel.core import BabelCore
from meshd.babel.neighbours import IPAddress
from meshd.babel.numbers import INFINITY
from meshd.babel.sources import IPNetwork
from meshd.babel.views import RouteView


def on_demand_route(overlay: IPNetwork, prefix: IPNetwork, source: IPNetwork | None) -> bool:
    """Whether a route is announced on the mesh only to those who ask for it (the core's
    ``on_demand`` hook, with its interest kept): any prefix inside the network's overlay
    ``overlay`` (members' /128s; Babel accepts no other there, and no member originates
    inside it), with no source prefix.

    Not only the members admitted here: a member just admitted is asked for by others as
    soon as *they* admit it, and a relay that admits it a little later must still keep the
    request. Judged by the members it knew, it kept none, sent no route when the member
    came up, and the asker (which asks again every update interval) was routed by another
    relay meanwhile, while the new member, which had both routes, took the relay of lowest
    rank: two relays for one pair, every packet dropped by WireGuard's receive filter, for
    up to 20 s in the NAT benchmark. Interests stay bounded per neighbour (its route budget,
    :class:`~meshd.babel.interest.Interest`).
    """
    return source is None and prefix.version == overlay.version and prefix.subnet_of(overlay)  # type: ignore[arg-type]


class Member(Protocol):
    """A member, as :class:`Wants` tells one from another."""

    @property
    def node_key(self) -> bytes: ...


class Origins(Protocol):
    @property
    def nodes(self) -> Mapping[bytes, bytes]:
        """Every member's node key by router-id."""
        ...


class Members(Protocol):
    """What :class:`Wants` reads of the members (:class:`~meshd.daemon.babel_peers.MeshMembers`):
    each other member by overlay /128 and by link-local address (the same objects), and
    the members' router-ids. A neighbour relays when it sends a route whose router-id is
    not its own; a route is direct when the member of its prefix is its neighbour."""

    @property
    def member_of_overlay(self) -> Mapping[IPNetwork, Member]: ...

    @property
    def peers(self) -> Mapping[IPv6Address, Member]: ...

    @property
    def origins(self) -> Origins: ...


PROBES: Final = 4
"""At most this many wanted /128s go in a round of discovery after a neighbour's first."""
BACKOFF: Final = 4
"""An unrouted /128 is asked again after ``period * 2**level`` for levels 0 to ``BACKOFF``,
then parked (:data:`PARKED`)."""
PARKED: Final = BACKOFF + 1
"""The level of an unrouted /128 asked ``BACKOFF + 1`` times in vain: not asked again of the
relays already asked until something says its member is back."""
FIRST_PROBES: Final = 32
"""At most this many go in a neighbour's first: a relay among them answers these in one
round trip, and is asked for the others at once once its answer shows it relays."""


@dataclass(slots=True)
class Wants:
    """What one member asks of its mesh neighbours; see the module documentation."""

    interface: str
    hold: float
    period: float
    rediscover: float
    appeared: dict[IPAddress, float] = field(default_factory=dict)
    relays: set[IPAddress] = field(default_factory=set)
    asked: dict[tuple[IPAddress, IPNetwork], float] = field(default_factory=dict)
    probed: dict[IPAddress, float] = field(default_factory=dict)
    unrouted: dict[IPNetwork, int] = field(default_factory=dict)
    """The wanted /128s no neighbour had a route for when asked again: their backoff level."""
    active: bool = False
    """At the last round, some wanted /128 was not backed off: a route through a relay is
    in use or being sought (the relays are not at rest then, :mod:`meshd.daemon.babel_pace`)."""

    def neighbours(self, present: Iterable[IPAddress], now: float) -> None:
        """The mesh neighbours now (admitted members); forget the others."""
        present = set(present)
        self.appeared = {a: self.appeared.get(a, now) for a in present}
        self.relays &= present
        self.probed = {a: t for a, t in self.probed.items() if a in present}
        self.asked = {k: t for k, t in self.asked.items() if k[0] in present}

    def renewed(self, prefixes: Iterable[IPNetwork]) -> bool:
        """These members announced anew (back from being offline, perhaps): ask for them at
        the next round, as for a /128 newly wanted. True if any of them was backed off."""
        back = {p for p in prefixes if self.unrouted.pop(p, None) is not None}
        if back:
            self.asked = {k: t for k, t in self.asked.items() if k[1] not in back}
        return bool(back)

    def ask(
        self,
        core: BabelCore,
        now: float,
        members: Members,
        covered: Collection[IPNetwork] = (),
    ) -> None:
        """One round on the core: the Route Requests due now go out (see :meth:`plan`)."""
        two_way = [
            n.neighbour.address
            for n in core.neighbours()
            if n.neighbour.interface == self.interface and n.cost < INFINITY
        ]
        plan = self.plan(now, members, core.routes(), two_way, covered)
        for address, prefixes in plan.items():
            core.request_routes(self.interface, address, [(p, None) for p in prefixes], now)

    def plan(
        self,
        now: float,
        members: Members,
        routes: Iterable[RouteView],
        two_way: Iterable[IPAddress],
        covered: Collection[IPNetwork] = (),
    ) -> dict[IPAddress, list[IPNetwork]]:
        """The Route Requests to send now: neighbour -> prefixes. ``members``: the other
        members by overlay /128 and by link-local address, and every member's router-id
        (:class:`Members`); ``covered``: the /128s of members we do not speak Babel with
        whose direct path works (no Babel route is direct for them)."""
        of_prefix, at = members.member_of_overlay, members.peers
        node_of = members.origins.nodes
        # Direct: ``covered`` (not copied: every member, in a mesh of working direct paths)
        # and the /128s a direct Babel route says so of.
        direct: set[IPNetwork] = set()
        routed: set[IPNetwork] = set()
        for view in routes:
            hop = view.neighbour
            if hop is None or hop.interface != self.interface or view.metric >= INFINITY:
                continue
            routed.add(view.prefix)
            member = at.get(hop.address)  # type: ignore[arg-type]
            if member is None:
                continue  # no member's: neither direct nor a relay
            if view.source is None and of_prefix.get(view.prefix) is member:
                direct.add(view.prefix)
            if node_of.get(view.router_id) != member.node_key:  # another's route: it relays
                self.relays.add(hop.address)
        # A member is wanted once it has been a neighbour ``hold`` seconds; one that is not
        # a neighbour counts as one that appeared now. Only those that differ from that
        # are looked up (by the member: no link-local address kept a member for this).
        new_ok = self.hold <= 0
        odd = {
            id(m)
            for address, since in self.appeared.items()
            if (now - since >= self.hold) is not new_ok and (m := at.get(address)) is not None  # type: ignore[arg-type]
        }
        wanted = [
            prefix
            for prefix, member in of_prefix.items()
            if prefix not in direct and prefix not in covered and (id(member) in odd) is not new_ok
        ]

        def kept(prefix: IPNetwork) -> bool:
            """Whether ``prefix`` is in ``wanted`` (asked of it: no set of them made)."""
            member = of_prefix.get(prefix)
            return (
                member is not None
                and prefix not in direct
                and prefix not in covered
                and (id(member) in odd) is not new_ok
            )

        up = set(two_way)
        relays = [(relay, at.get(relay)) for relay in sorted(self.relays & up)]  # type: ignore[arg-type]
        self.asked = {k: t for k, t in self.asked.items() if k[0] in up and kept(k[1])}
        unrouted = self.unrouted = {
            p: level for p, level in self.unrouted.items() if p not in routed and kept(p)
        }
        self.active = any(prefix not in unrouted for prefix in wanted)
        plan: dict[IPAddress, list[IPNetwork]] = {}
        for prefix in wanted:
            level = unrouted.get(prefix, 0)
            interval = math.inf if level >= PARKED else self.period * (1 << level)
            again = False
            member = of_prefix[prefix]
            for relay, relay_member in relays:
                if member is relay_member:
                    continue
                last = self.asked.get((relay, prefix))
                if last is None or now - last >= interval:
                    again = again or last is not None
                    self.asked[(relay, prefix)] = now
                    plan.setdefault(relay, []).append(prefix)
            if again and prefix not in routed:  # asked a whole interval ago: no answer came
                unrouted[prefix] = min(level + 1, PARKED)
        # Parked /128s are no reason to look for relays (a gateway would be probed for them
        # by every member every ``rediscover``, for as long as their members are offline).
        seeking = [p for p in wanted if unrouted.get(p, 0) < PARKED]
        if seeking:
            for neighbour in sorted(up - {relay for relay, _ in relays}):
                last = self.probed.get(neighbour)
                if last is not None and now - last < self.rediscover:
                    continue
                probes = seeking[: FIRST_PROBES if last is None else PROBES]
                own = at.get(neighbour)  # type: ignore[arg-type]
                asked = [p for p in probes if of_prefix[p] is not own]
                if asked:
                    self.probed[neighbour] = now
                    self.asked.update(((neighbour, p), now) for p in asked)
                    plan.setdefault(neighbour, []).extend(asked)
        return plan
