"""Sending updates (RFC 8966 3.7): which routes go where and when, and what we say of them.

- Full updates: every route we have to every target of an interface, every update
  interval, and unicast to a neighbour that asks (a wildcard Route Request) or comes up. A
  neighbour at rest gets every ``rest_pace``-th scheduled one only, and every Update sent
  to it says so in its interval (:mod:`meshd.babel.interfaces`).
- Triggered updates: one key to every target when its selected route changes in a way
  that matters (:meth:`Updates.triggered`). Urgent ones (a new route, a retraction, a new
  originator) are sent again after ``resend_delay``.
- A lost route stays in full updates, as a retraction, for two update intervals (of the
  neighbours at rest, on an interface that paces them: so that they hear it too).

Only keys are queued (in the :class:`~meshd.babel.outbox.Outbox`). What is said of a key is
settled when its datagram is built (:meth:`Updates.datagrams`): our own prefix, the
selected route, or nothing (a retraction where one was asked for) when the redistribution
filter or split horizon says so, or when a route learnt on an interface outside
``accept_on`` would go out on one inside it (site routes never reach the mesh unchanged).
The source table learns of every announcement then, so it is never worse than anything
sent.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from ipaddress import IPv4Network

from meshd.babel.config import CoreConfig, InterfaceConfig
from meshd.babel.expand import Route
from meshd.babel.interest import Interest
from meshd.babel.interfaces import Interface
from meshd.babel.neighbours import IPAddress
from meshd.babel.numbers import INFINITY
from meshd.babel.outbox import Outbox, pack
from meshd.babel.routes import NeighbourId, RouteEntry, RouteTable
from meshd.babel.sources import RouteKey, SourceTable

Selection = tuple[NeighbourId, IPAddress, bytes, int, int]
"""What events and triggered updates compare: neighbour, next hop, id, seqno, metric."""


def selection_of(entry: RouteEntry) -> Selection:
    return (entry.neighbour, entry.next_hop, entry.router_id, entry.seqno, entry.metric)


class Updates:
    """The core's outgoing routes.

    It reads the core's interfaces, own prefixes (``local``: key to metric) and route table,
    records what it announces in the source table, and queues into the outbox.
    """

    def __init__(
        self,
        router_id: bytes,
        config: CoreConfig,
        interfaces: Mapping[str, Interface],
        local: Mapping[RouteKey, int],
        table: RouteTable,
        sources: SourceTable,
        outbox: Outbox,
        interest: Interest | None = None,
    ) -> None:
        self._router_id = router_id
        self._interest = interest if interest is not None else Interest()
        self._config = config
        self._interfaces = interfaces
        self._local = local
        self._table = table
        self._sources = sources
        self._outbox = outbox
        self._lost: dict[RouteKey, float] = {}
        self._resends: list[tuple[float, int, RouteKey]] = []
        self._counter = itertools.count()

    # --- when and where ---------------------------------------------------------------------

    def full(self, iface: Interface, destination: IPAddress | None, now: float) -> None:
        """Every route we have (and the retractions still worth repeating) to one target.

        A route announced on demand goes only to a target that asked for it: it is queued
        for those alone, not for every target and then dropped (a relay holds every
        member's /128 and has every member as a neighbour: that was N x N keys looked at
        every update interval, for the few that go).
        """
        name = iface.config.name
        keys = list(self._local) + self._table.selected_keys()
        keys.extend(key for key, until in self._lost.items() if until > now)
        on_demand = self._config.on_demand
        demanded: set[RouteKey] = set()
        if on_demand is not None:
            local = self._local
            demanded = {k for k in keys if k not in local and on_demand(name, *k)}
            if demanded:
                keys = [k for k in keys if k not in demanded]
        deadline = now + self._config.urgent_jitter * self._config.random()
        targets = [destination] if destination is not None else iface.scheduled_targets()
        for target in targets:
            outgoing = self._outbox.to(name, target, deadline)
            for key in keys:
                outgoing.routes.setdefault(key, key in self._lost)
            if demanded:
                for key in self._interest.asked_by(NeighbourId(name, target), now):
                    if key in demanded:
                        outgoing.routes.setdefault(key, key in self._lost)

    def refilter(self, iface: Interface, now: float) -> None:
        """Every route we have to each of ``iface``'s targets again, each as an update where
        the redistribute hook lets it go now and a retraction where it no longer does (the
        hook's rules changed): what went there before and may not now is withdrawn at
        once, not left to the neighbours' hold time."""
        name = iface.config.name
        keys = list(self._local) + self._table.selected_keys()
        deadline = now + self._config.urgent_jitter * self._config.random()
        for target in iface.targets():
            routes = self._outbox.to(name, target, deadline).routes
            for key in keys:
                routes[key] = True

    def announce(self, key: RouteKey, now: float, *, urgent: bool) -> None:
        """A triggered update of one key on every interface; urgent ones are sent twice.

        A route announced on demand goes to the neighbours that asked for it alone, found
        by key (:meth:`Interest.askers`): a relay's member routes change with every join
        and every drift of a member's link cost, and queueing each for every member to
        drop it when the datagram is built was O(N) per change, O(N^2) a second."""
        deadline = now + self._config.urgent_jitter * self._config.random()
        on_demand = self._config.on_demand if key not in self._local else None
        askers: list[NeighbourId] | None = None
        for iface in self._interfaces.values():
            name = iface.config.name
            if on_demand is not None and on_demand(name, *key):
                if askers is None:
                    askers = self._interest.askers(key, now)
                targets = [n.address for n in askers if n.interface == name]
            else:
                targets = iface.targets()
            for target in targets:
                self._outbox.to(name, target, deadline).routes[key] = True
        if urgent:
            resend = now + self._config.resend_delay
            heapq.heappush(self._resends, (resend, next(self._counter), key))

    def announce_to(
        self, iface: Interface, destination: IPAddress, key: RouteKey, now: float, *, poison: bool
    ) -> None:
        """One key to one destination (an answer to a request); ``poison``: or a retraction."""
        deadline = now + self._config.urgent_jitter * self._config.random()
        outgoing = self._outbox.to(iface.config.name, destination, deadline)
        outgoing.routes[key] = outgoing.routes.get(key, False) or poison

    def triggered(self, key: RouteKey, before: Selection, after: Selection, now: float) -> None:
        """Send a triggered update for a change of the selected route, if it matters."""
        if before[2] != after[2]:
            self.announce(key, now, urgent=True)  # new originator: resent, as babeld does
        elif (
            before[0] != after[0]  # split horizon: the old next hop has not heard of it
            or before[3] != after[3]
            or abs(before[4] - after[4]) >= self._config.triggered_threshold
        ):
            self.announce(key, now, urgent=False)

    def mark_lost(self, key: RouteKey, now: float) -> None:
        """A route is gone: repeat its retraction in full updates for two intervals (of a
        neighbour at rest, whose full updates are ``rest_pace`` times apart)."""
        hold = max(
            (i.config.update_interval * i.config.rest_pace for i in self._interfaces.values()),
            default=4.0,
        )
        self._lost[key] = now + 2 * hold

    def clear_lost(self, key: RouteKey) -> None:
        """The route is back: no more retractions for it."""
        self._lost.pop(key, None)

    def resend(self, now: float) -> None:
        """Send the urgent updates again whose resend is due."""
        while self._resends and self._resends[0][0] <= now:
            _, _, key = heapq.heappop(self._resends)
            self.announce(key, now, urgent=False)

    def deadlines(self) -> list[float]:
        return [self._resends[0][0]] if self._resends else []

    def expire(self, now: float) -> None:
        """Forget the lost routes held long enough."""
        self._lost = {k: t for k, t in self._lost.items() if t > now}

    # --- what -------------------------------------------------------------------------------

    def datagrams(self, now: float, seqno: int) -> list[tuple[str, IPAddress, bytes]]:
        """The datagrams due by ``now``; our own routes carry ``seqno``."""
        datagrams: list[tuple[str, IPAddress, bytes]] = []
        for interface, destination, outgoing in self._outbox.take_due(now):
            iface = self._interfaces.get(interface)
            if iface is None:
                continue
            config = iface.config
            interval = iface.update_interval(destination)
            routes = [
                r
                for key, poison in outgoing.routes.items()
                if (r := self._announcement(config, key, poison, destination, interval, seqno, now))
                is not None
            ]
            for payload in pack(
                outgoing.tlvs, routes, mtu=config.mtu, ipv4_via_ipv6=config.ipv4 is None
            ):
                datagrams.append((interface, destination, payload))
        return datagrams

    def _announcement(
        self,
        config: InterfaceConfig,
        key: RouteKey,
        poison: bool,
        destination: IPAddress,
        interval: int,
        own_seqno: int,
        now: float,
    ) -> Route | None:
        """What we announce for a key on an interface right now (None: nothing), with the
        Update interval of that destination (centiseconds)."""
        prefix, source = key
        next_hop: IPAddress | None = config.ipv4 if isinstance(prefix, IPv4Network) else None
        retraction = Route(prefix, own_seqno, INFINITY, interval, None, None, source)
        if not self._config.redistribute(config.name, prefix, source):
            return retraction if poison else None
        if key in self._local:
            router_id, seqno, metric = self._router_id, own_seqno, self._local[key]
        else:
            on_demand = self._config.on_demand
            if (
                on_demand is not None
                and on_demand(config.name, prefix, source)
                and not self._interest.wants(NeighbourId(config.name, destination), key, now)
            ):
                return None  # asked for by others only: not even a retraction goes here
            entry = self._table.selected(key)
            if entry is None or entry.metric >= INFINITY:
                return retraction if poison else None
            checked = self._config.accept_on
            if (
                checked is not None
                and config.name in checked
                and entry.neighbour.interface not in checked
            ):
                # Learnt where router-ids are not checked (a site link): never carried onto
                # the mesh as it is; the gateway may originate it as its own.
                return retraction if poison else None
            same_link = entry.neighbour.interface == config.name
            if config.split_horizon and same_link:
                return retraction if poison else None
            if not config.multicast and same_link and entry.neighbour.address == destination:
                return retraction if poison else None  # split horizon per peer
            router_id, seqno, metric = entry.router_id, entry.seqno, entry.metric
            if entry.own:
                # Its originator's own route: what a carrier claimed before (a seqno ahead of
                # the originator's) no longer bounds what we accept after it (a next hop that
                # is the destination cannot loop). Otherwise the distance only improves.
                self._sources.reset_if_ahead(key, router_id, seqno, metric, now)
        self._sources.announced(key, router_id, seqno, metric, now)
        return Route(prefix, seqno, metric, interval, router_id, next_hop, source)
