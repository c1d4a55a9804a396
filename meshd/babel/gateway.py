"""Site routes a gateway originates into the mesh, as babeld's ``redistribute`` does. Pure.

A route learnt from a site's Babel router keeps that router's router-id, which is no
member's, so the other members' route origin validation refuses it on the mesh. The gateway
therefore announces it on the mesh as its own: under its router-id, with the learnt metric,
when an ``allow`` rule of ``--babel-redistribute`` takes it (no rules: no site route
crosses) and it lies within the gateway's own grants. :func:`site_origins` says which
routes those are, from a snapshot of the core's table; :func:`plan` turns that into
``originate`` and ``withdraw`` calls.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from meshd.babel.numbers import INFINITY
from meshd.babel.options import RedistributeRule, covered, site_route_allowed
from meshd.babel.routes import IPAddress
from meshd.babel.sources import IPNetwork, RouteKey
from meshd.babel.views import RouteView


@dataclass(frozen=True, slots=True)
class SiteRoute:
    """The best route a site router gives us for a key: where it goes, and its metric."""

    interface: str
    next_hop: IPAddress
    metric: int


def site_origins(
    routes: Iterable[RouteView],
    *,
    mesh: str,
    router_id: bytes,
    rules: Sequence[RedistributeRule],
    grants: Iterable[IPNetwork],
    exclude: Collection[RouteKey] = (),
) -> dict[RouteKey, SiteRoute]:
    """The routes learnt on ordinary interfaces that we originate on the mesh: finite and
    feasible, not our own router-id's, allowed by an explicit rule of ``rules`` and inside
    ``grants``; the best one per key. ``exclude``: keys we originate anyway
    (``--babel-originate``)."""
    allowed = tuple(grants)
    best: dict[RouteKey, SiteRoute] = {}
    for view in routes:
        hop = view.neighbour
        if hop is None or hop.interface == mesh or view.next_hop is None:
            continue
        key = (view.prefix, view.source)
        if view.metric >= INFINITY or not view.feasible or view.router_id == router_id:
            continue
        if key in exclude or not site_route_allowed(rules, view.prefix):
            continue
        if not covered(view.prefix, allowed):
            continue
        found = best.get(key)
        if found is None or view.metric < found.metric:
            best[key] = SiteRoute(hop.interface, view.next_hop, view.metric)
    return best


@dataclass(frozen=True, slots=True)
class Plan:
    """What to tell the core: prefixes to (re)originate with a metric, prefixes to withdraw."""

    originate: dict[RouteKey, int]
    withdraw: list[RouteKey]


def plan(current: Mapping[RouteKey, int], wanted: Mapping[RouteKey, SiteRoute]) -> Plan:
    """From what we originate now (key -> metric) to ``wanted``: new keys and changed metrics
    are originated, keys no longer wanted withdrawn."""
    originate = {
        key: min(route.metric, INFINITY - 1)
        for key, route in wanted.items()
        if current.get(key) != min(route.metric, INFINITY - 1)
    }
    return Plan(originate, [key for key in current if key not in wanted])
