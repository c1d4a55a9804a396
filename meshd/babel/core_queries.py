"""The Babel core's read side: snapshots, counters and events for the shell and ``meshd routes``.

:class:`Queries` is the part of :class:`meshd.babel.core.BabelCore` that changes nothing but
the event queue: interfaces, neighbours, routes (as :mod:`meshd.babel.views` snapshots),
whether a neighbour is paced at rest, what the core refused or shed, and the events to apply
(kernel routes, WireGuard allowed-ips).
"""

from __future__ import annotations

from meshd.babel.config import InterfaceConfig
from meshd.babel.core_state import CoreState
from meshd.babel.neighbours import IPAddress
from meshd.babel.routes import Event, RouteEntry
from meshd.babel.sources import IPNetwork
from meshd.babel.views import NeighbourView, RouteView, neighbour_view, own_route_view, route_view


class Queries(CoreState):
    """What the core shows; see the module documentation."""

    def interfaces(self) -> list[InterfaceConfig]:
        return [iface.config for iface in self._interfaces.values()]

    def neighbours(self) -> list[NeighbourView]:
        """Every neighbour with its reachability, costs and RTT."""
        return [
            neighbour_view(iface.config, neighbour)
            for iface in self._interfaces.values()
            for neighbour in iface.neighbours.values()
        ]

    def resting(self, interface: str, address: IPAddress) -> bool:
        """Whether Hellos between us and a neighbour go at a rest pace, ours to it or its to
        us (it announces a longer Hello interval than ours): False for an unknown one."""
        iface = self._interfaces.get(interface)
        if iface is None or (neighbour := iface.neighbours.get(address)) is None:
            return False
        return neighbour.pace > 1 or neighbour.unicast.interval > iface.config.hello_interval

    def routes(self) -> list[RouteView]:
        """Every route we know: our own prefixes, then every neighbour's announcements."""
        views = [
            own_route_view(key, metric, self.router_id, self.seqno)
            for key, metric in self._local.items()
        ]
        views.extend(self._view(entry) for entry in self._table.all_entries())
        return views

    def route(self, prefix: IPNetwork, source_prefix: IPNetwork | None = None) -> RouteView | None:
        """The route in use for a key: ours, the selected one, or None."""
        key = (prefix, source_prefix)
        if key in self._local:
            return own_route_view(key, self._local[key], self.router_id, self.seqno)
        entry = self._table.selected(key)
        return self._view(entry) if entry is not None else None

    def _view(self, entry: RouteEntry) -> RouteView:
        selected = self._table.selected(entry.key) is entry
        return route_view(entry, selected=selected, feasible=self._selection.feasible(entry))

    def counters(self) -> dict[str, int]:
        """What the core refused or shed, and the neighbours we pace at rest, for
        ``meshd routes``."""
        return {
            "martians": self._selection.martians,
            "refused_routes": self._selection.refused,
            "routes_over_budget": self._selection.over_budget,
            "route_dumps_refused": self.dumps_refused,
            "quick_hellos_refused": self.quick_hellos_refused,
            "seqno_requests_refused": self.seqno_requests_refused,
            "updates_over_budget": self.updates_over_budget,
            "updates_superseded": self.updates_superseded,
            "neighbours_evicted": self.neighbours_evicted,
            "neighbours_refused": self.neighbours_refused,
            "unknown_peer_packets": self.dropped,
            "not_link_local_packets": self.not_link_local,
            "route_interests": len(self._interest),
            "route_interests_refused": self._interest.refused,
            "neighbours_at_rest": sum(
                n.pace > 1 for i in self._interfaces.values() for n in i.neighbours.values()
            ),
        }

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None
