"""Which members' overlay /128s we ask the relays for, and which neighbours relay (pure).

On the mesh, relays announce a member's overlay /128 only to the members that ask for it
(the core's ``on_demand`` hook, :mod:`meshd.babel.interest`): a member with a direct path
to another needs no route through a third. :class:`Wants` decides, each round, what this
member asks and of whom:

* **wanted**: every admitted member whose /128 no direct route covers (no finite route
  learnt from the member itself), once it has been a neighbour for ``hold`` seconds (a
  new neighbour's direct route takes a few round trips);
* **relays**: the neighbours that have announced us a route of another originator (only a
  relay does: a member that does not relay announces its own routes alone); every wanted
  /128 is asked of each relay with a two-way link, again every ``period`` (which keeps
  their interest alive) and at once when it becomes wanted;
* **discovery**: which neighbours relay must be known alike at both ends of a pair (each
  end picks the relay of lowest rank among those that offer a route, and both must pick
  the same one), so while anything is wanted, every neighbour with a two-way link that is
  not known to relay is asked for up to ``PROBES`` wanted /128s: at once, then again at
  most every ``rediscover`` seconds (a lost answer, a member that starts relaying). The
  relays among them answer with a route and are known from then on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from meshd.babel.neighbours import IPAddress
from meshd.babel.sources import IPNetwork
from meshd.babel.tlv import INFINITY
from meshd.babel.views import RouteView

PROBES: Final = 4
"""At most this many wanted /128s go in one round of discovery."""


@dataclass(slots=True)
class Wants:
    """What one member asks of its mesh neighbours; see the module documentation."""

    interface: str
    hold: float
    period: float
    rediscover: float
    appeared: dict[IPAddress, float] = field(default_factory=dict)
    relays: set[IPAddress] = field(default_factory=set)
    asked: dict[IPNetwork, float] = field(default_factory=dict)
    probed: dict[IPAddress, float] = field(default_factory=dict)

    def neighbours(self, present: Iterable[IPAddress], now: float) -> None:
        """The mesh neighbours now (admitted members); forget the others."""
        present = set(present)
        self.appeared = {a: self.appeared.get(a, now) for a in present}
        self.relays &= present
        self.probed = {a: t for a, t in self.probed.items() if a in present}

    def plan(
        self,
        now: float,
        members: Mapping[IPNetwork, IPAddress],
        router_ids: Mapping[IPAddress, bytes],
        routes: Iterable[RouteView],
        two_way: Iterable[IPAddress],
    ) -> dict[IPAddress, list[IPNetwork]]:
        """The Route Requests to send now: neighbour -> prefixes. ``members``: each other
        member's overlay /128 and link-local address; ``router_ids``: each neighbour's."""
        direct: set[IPNetwork] = set()
        for view in routes:
            hop = view.neighbour
            if hop is None or hop.interface != self.interface or view.metric >= INFINITY:
                continue
            if view.source is None and members.get(view.prefix) == hop.address:
                direct.add(view.prefix)
            if view.router_id != router_ids.get(hop.address, view.router_id):
                self.relays.add(hop.address)
        wanted = [
            prefix
            for prefix, address in members.items()
            if prefix not in direct and now - self.appeared.get(address, now) >= self.hold
        ]
        self.asked = {p: t for p, t in self.asked.items() if p in wanted}
        up = set(two_way)
        relays = sorted(self.relays & up)
        plan: dict[IPAddress, list[IPNetwork]] = {}
        due = [p for p in wanted if now - self.asked.get(p, float("-inf")) >= self.period]
        for prefix in due:
            self.asked[prefix] = now
            for relay in relays:
                if members[prefix] != relay:
                    plan.setdefault(relay, []).append(prefix)
        if wanted:
            probes = wanted[:PROBES]
            for neighbour in sorted(up - set(relays)):
                if now - self.probed.get(neighbour, float("-inf")) < self.rediscover:
                    continue
                asked = [p for p in probes if members[p] != neighbour]
                if asked:
                    self.probed[neighbour] = now
                    plan.setdefault(neighbour, []).extend(asked)
        return plan
