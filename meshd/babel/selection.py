"""The route table's upkeep and route selection (RFC 8966 3.5, 3.6).

:class:`RouteSelection` takes what the neighbours say of routes (Updates, retractions,
expired hold times, link costs that change) and keeps the table and the selection right:
an Update for a martian prefix (:mod:`meshd.babel.martians`) is dropped and counted; one
refused by route origin validation, or from a neighbour that may not bring that router-id's
routes (the ``carries`` hook), counts as a retraction (and is counted); one for a new
prefix from a neighbour that holds its route budget (``max_routes`` of its interface) is
dropped and counted; an unfeasible update
of the selected route from the same originator is ignored (3.5.4) and a newer seqno asked
for. A route heard from its originator itself (``Carrier.OWN``) is always feasible. After
every change the key's route is chosen again (:func:`meshd.babel.routes.choose`, feasible
routes only, with hysteresis, the originator's own first; our own prefixes always win), and
what the change
sets off follows: the events, triggered and urgent updates, and Seqno Requests when the
key starves or an unfeasible route would be better.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from meshd.babel.config import Carrier, CoreConfig, InterfaceConfig
from meshd.babel.expand import Route
from meshd.babel.martians import martian
from meshd.babel.neighbours import IPAddress, Neighbour
from meshd.babel.requests import SeqnoRequests
from meshd.babel.routes import (
    Event,
    NeighbourId,
    RouteChanged,
    RouteEntry,
    RouteInstalled,
    RouteRetracted,
    RouteTable,
    choose,
)
from meshd.babel.sources import RouteKey, SourceTable
from meshd.babel.updates import Selection, Updates, selection_of


class RouteSelection:
    """The selected route of every key, kept right as routes come and go.

    It reads our own prefixes (``local``) and the source table, changes the route table,
    appends to the core's event queue, and hands on to the updates and requests.
    """

    def __init__(
        self,
        router_id: bytes,
        config: CoreConfig,
        local: Mapping[RouteKey, int],
        table: RouteTable,
        sources: SourceTable,
        events: deque[Event],
        updates: Updates,
        requests: SeqnoRequests,
    ) -> None:
        self._router_id = router_id
        self._config = config
        self._local = local
        self._table = table
        self._sources = sources
        self._events = events
        self._updates = updates
        self._requests = requests
        self.martians = 0
        """Updates dropped on receipt because their prefix or source prefix is martian."""
        self.refused = 0
        """Updates refused by route origin validation (``accept`` or ``accept_site``) or
        from a neighbour that may not bring them (``carries``)."""
        self.over_budget = 0
        """Updates for a new prefix from a neighbour already holding its route budget."""

    # --- what neighbours say ----------------------------------------------------------------

    def update(
        self, interface: InterfaceConfig, neighbour: Neighbour, route: Route, now: float
    ) -> None:
        """An Update from a neighbour (RFC 8966 3.5.3, 3.5.4)."""
        nid = NeighbourId(interface.name, neighbour.address)
        key = (route.prefix, route.source)
        if route.router_id == self._router_id:
            return  # our own routes coming back
        if martian(route.prefix) or martian(route.source):
            self.martians += 1  # never in the table, so never selected nor announced
            return
        if route.retraction or route.router_id is None or route.next_hop is None:
            self.retract(key, nid, now)
            return
        carrier = self.carrier(interface.name, route.router_id, nid.address)
        if not carrier or not self.accepts(interface.name, route.router_id, key):
            self.refused += 1
            self.retract(key, nid, now)
            return
        own = carrier is Carrier.OWN
        interval = route.interval / 100 or interface.update_interval
        expires = now + 3.5 * interval
        feasible = own or self._sources.feasible(key, route.router_id, route.seqno, route.metric)
        entry = self._table.entry(key, nid)
        if entry is None and self._table.count_via(nid) >= interface.max_routes:
            # The neighbour's route budget is spent: a new prefix from it is dropped. Its
            # older routes and other neighbours' are kept (nothing is evicted).
            self.over_budget += 1
            return
        before = self.current(key)
        selected = self._table.selected(key)
        same_origin = entry is not None and entry.router_id == route.router_id
        if not feasible and same_origin and selected is entry:
            # RFC 8966 3.5.4: an unfeasible update of the selected route from the same
            # originator is ignored (it would break the feasibility of what we use); ask
            # for a newer seqno so that the worse metric can be taken.
            self._requests.unfeasible(key, route, nid, neighbour.cost, now, force=True)
            return
        fresh = RouteEntry(
            prefix=route.prefix,
            source=route.source,
            neighbour=nid,
            router_id=route.router_id,
            seqno=route.seqno,
            refmetric=route.metric,
            next_hop=route.next_hop,
            interval=interval,
            expires=expires,
            cost=neighbour.cost,
            own=own,
        )
        if entry is not None and self._table.selected(key) is entry:
            # Update in place so that the selection keeps pointing at it.
            for name in (
                "router_id",
                "seqno",
                "refmetric",
                "next_hop",
                "interval",
                "expires",
                "own",
            ):
                setattr(entry, name, getattr(fresh, name))
            entry.cost = neighbour.cost
            self._table.put(entry)
        else:
            self._table.put(fresh)
        if not feasible:
            self._requests.unfeasible(key, route, nid, neighbour.cost, now, force=False)
        self.reselect(key, before, now)

    def retract(self, key: RouteKey, nid: NeighbourId, now: float) -> None:
        """A neighbour's route is gone: retracted, refused, expired, or the neighbour left."""
        before = self.current(key)
        if self._table.remove(key, nid) is not None:
            self.reselect(key, before, now)

    def carrier(self, interface: str, router_id: bytes, address: IPAddress) -> Carrier:
        """What a neighbour is to a router-id's routes (the ``carries`` hook; without one,
        every neighbour carries)."""
        carries = self._config.carries
        return Carrier.CARRIED if carries is None else carries(router_id, interface, address)

    def accepts(self, interface: str, router_id: bytes, key: RouteKey) -> bool:
        """Route origin validation: ``accept`` on the interfaces of ``accept_on``,
        ``accept_site`` on the others."""
        checked = self._config.accept_on
        if checked is not None and interface not in checked:
            return self._config.accept_site(router_id, key[0], key[1])
        return self._config.accept(router_id, key[0], key[1])

    def retract_all(self, nid: NeighbourId, now: float) -> None:
        """Every route of a neighbour is gone (a wildcard retraction, or it left)."""
        for key in self._table.keys_via(nid):
            self.retract(key, nid, now)

    def set_cost(self, nid: NeighbourId, cost: int, now: float) -> None:
        """The cost of the link to a neighbour changed: its routes' metrics with it."""
        for key in self._table.keys_via(nid):
            entry = self._table.entry(key, nid)
            if entry is None:
                continue
            before = self.current(key)
            entry.cost = cost
            self.reselect(key, before, now)

    def expire(self, now: float) -> None:
        """Routes whose hold time ran out (3.5 times their update interval) go."""
        for entry in self._table.pop_expired(now):
            self.retract(entry.key, entry.neighbour, now)

    def revalidate(self, now: float) -> None:
        """Ask the hooks again about every route (a member was revoked, or stopped relaying)."""
        for entry in list(self._table.all_entries()):
            where = entry.neighbour
            carrier = self.carrier(where.interface, entry.router_id, where.address)
            if carrier and self.accepts(where.interface, entry.router_id, entry.key):
                own = carrier is Carrier.OWN
                if entry.own != own:
                    before = self.current(entry.key)
                    entry.own = own
                    self.reselect(entry.key, before, now)
                continue
            before = self.current(entry.key)
            self._table.remove(entry.key, where)
            self.reselect(entry.key, before, now)

    # --- selection --------------------------------------------------------------------------

    def _relay_rank(self, entry: RouteEntry) -> bytes | None:
        hook = self._config.relay_rank
        if hook is None:
            return None
        prefix, source = entry.key
        return hook(prefix, source, entry.neighbour.interface, entry.neighbour.address)

    def feasible(self, entry: RouteEntry) -> bool:
        return entry.own or self._sources.feasible(
            entry.key, entry.router_id, entry.seqno, entry.refmetric
        )

    def current(self, key: RouteKey) -> Selection | None:
        """What the selected route of a key is now, to compare after a change."""
        entry = self._table.selected(key)
        return selection_of(entry) if entry is not None else None

    def reselect(self, key: RouteKey, before: Selection | None, now: float) -> None:
        """Choose the route of a key again; report it and send what the change calls for."""
        current = self._table.selected(key)
        if key in self._local:
            chosen = None
        else:
            chosen = choose(
                self._table.entries(key),
                current,
                self.feasible,
                self._config.hysteresis,
                self._relay_rank,
            )
        self._table.set_selected(key, chosen)
        prefix, source = key
        if chosen is not None:
            after = selection_of(chosen)
            neighbour, next_hop, router_id, _, metric = after
            self._updates.clear_lost(key)
            if before is None:
                self._events.append(
                    RouteInstalled(prefix, source, next_hop, neighbour, metric, router_id)
                )
                self._updates.announce(key, now, urgent=True)
            elif before != after:
                if before[:2] != after[:2] or before[2] != router_id or before[4] != metric:
                    self._events.append(
                        RouteChanged(prefix, source, next_hop, neighbour, metric, router_id)
                    )
                self._updates.triggered(key, before, after, now)
            self._requests.answered(key, chosen)
        else:
            if before is not None:
                self._events.append(RouteRetracted(prefix, source))
                if key not in self._local:
                    self._updates.mark_lost(key, now)
                    self._updates.announce(key, now, urgent=True)
            if key not in self._local:
                self._requests.starving(key, now)
