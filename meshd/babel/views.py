"""Snapshots of the Babel core, as ``meshd routes`` shows them: routes and neighbours."""

from __future__ import annotations

from dataclasses import dataclass

from meshd.babel.config import InterfaceConfig
from meshd.babel.neighbours import IPAddress, Neighbour
from meshd.babel.routes import NeighbourId, RouteEntry
from meshd.babel.sources import IPNetwork, RouteKey


@dataclass(frozen=True, slots=True)
class RouteView:
    """One route as ``meshd routes`` shows it; ``neighbour`` is None for our own prefixes."""

    prefix: IPNetwork
    source: IPNetwork | None
    router_id: bytes
    seqno: int
    metric: int
    refmetric: int
    next_hop: IPAddress | None
    neighbour: NeighbourId | None
    selected: bool
    feasible: bool
    expires: float | None


@dataclass(frozen=True, slots=True)
class NeighbourView:
    """One neighbour as ``meshd routes`` shows it (``reach`` as babeld prints it)."""

    neighbour: NeighbourId
    reach: int
    rxcost: int
    txcost: int
    cost: int
    rtt: float | None


def own_route_view(key: RouteKey, metric: int, router_id: bytes, seqno: int) -> RouteView:
    """A prefix we originate: always selected and feasible, never expiring."""
    prefix, source = key
    return RouteView(prefix, source, router_id, seqno, metric, metric, None, None, True, True, None)


def route_view(entry: RouteEntry, *, selected: bool, feasible: bool) -> RouteView:
    """A route learnt from a neighbour."""
    return RouteView(
        entry.prefix,
        entry.source,
        entry.router_id,
        entry.seqno,
        entry.metric,
        entry.refmetric,
        entry.next_hop,
        entry.neighbour,
        selected,
        feasible,
        entry.expires,
    )


def neighbour_view(config: InterfaceConfig, neighbour: Neighbour) -> NeighbourView:
    return NeighbourView(
        NeighbourId(config.name, neighbour.address),
        reach=neighbour.reach(),
        rxcost=neighbour.rxcost(config.link),
        txcost=neighbour.txcost,
        cost=neighbour.cost,
        rtt=neighbour.rtt,
    )
