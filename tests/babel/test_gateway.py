"""A gateway originates on the mesh the site routes it may: filter, grants, withdrawal."""

from __future__ import annotations

import ipaddress

from meshd.babel.core import RouteView
from meshd.babel.gateway import SiteRoute, plan, site_origins
from meshd.babel.numbers import INFINITY
from meshd.babel.options import babel_config
from meshd.babel.routes import NeighbourId
from meshd.babel.sources import RouteKey

net = ipaddress.ip_network
OURS = bytes(8)
SITE_ROUTER = bytes.fromhex("0102030405060708")
HOP = ipaddress.ip_address("fe80::2")
GRANTS = [net("10.55.0.0/24"), net("fd55::/64")]


def view(
    prefix: str,
    *,
    interface: str | None = "eth1",
    metric: int = 192,
    router_id: bytes = SITE_ROUTER,
    feasible: bool = True,
    source: str | None = None,
) -> RouteView:
    neighbour = NeighbourId(interface, HOP) if interface is not None else None
    return RouteView(
        net(prefix),
        net(source) if source is not None else None,
        router_id,
        7,
        metric,
        metric - 96,
        HOP if neighbour is not None else None,
        neighbour,
        True,
        feasible,
        None,
    )


ALL = ("0.0.0.0/0 allow", "::/0 allow")


def origins(routes: list[RouteView], rules: tuple[str, ...] = ALL) -> dict[str, int]:
    found = site_origins(
        routes,
        mesh="wg0",
        router_id=OURS,
        rules=babel_config(redistribute=rules).redistribute,
        grants=GRANTS,
        exclude={(net("fd55::/64"), net("fd99::/48"))},
    )
    return {str(prefix): route.metric for (prefix, _), route in found.items()}


def test_site_routes_inside_our_grants_are_originated_with_their_metric() -> None:
    routes = [
        view("10.55.0.0/24", metric=192),
        view("10.55.0.0/24", metric=300),  # a worse way to the same prefix
        view("fd55::/64", metric=96),
        view("10.55.0.128/25", metric=250),  # inside a grant
        view("10.66.0.0/24"),  # outside the grants
        view("10.0.0.0/8"),  # covers a grant, not inside one
    ]
    assert origins(routes) == {"10.55.0.0/24": 192, "fd55::/64": 96, "10.55.0.128/25": 250}


def test_only_routes_learnt_on_site_links_that_can_be_used() -> None:
    routes = [
        view("10.55.0.0/24", interface="wg0"),  # from the mesh
        view("10.55.1.0/24", interface=None),  # our own
        view("10.55.0.0/25", metric=INFINITY),  # retracted
        view("10.55.0.128/25", feasible=False),
        view("fd55::/64", router_id=OURS),  # our own announcement coming back
        view("fd55::/64", source="fd99::/48"),  # --babel-originate has it already
    ]
    assert origins(routes) == {}


def test_the_filter_decides_what_crosses() -> None:
    routes = [view("10.55.0.0/24"), view("10.55.0.0/25"), view("fd55::/64")]
    assert origins(routes, ("10.55.0.0/24 le 24 allow",)) == {"10.55.0.0/24": 192}
    assert origins(routes, ("10.55.0.0/24 le 24 deny", "0.0.0.0/0 le 32 allow")) == {
        "10.55.0.0/25": 192
    }


def test_without_rules_no_site_route_crosses() -> None:
    routes = [view("10.55.0.0/24"), view("fd55::/64")]
    assert origins(routes, ()) == {}
    assert origins(routes, ("10.55.0.0/24 deny",)) == {}
    assert origins(routes, ("fd55::/64 allow",)) == {"fd55::/64": 192}


def test_plan_originates_new_and_changed_routes_and_withdraws_gone_ones() -> None:
    a: RouteKey = (net("10.55.0.0/24"), None)
    b: RouteKey = (net("fd55::/64"), None)
    c: RouteKey = (net("10.55.0.0/25"), None)
    wanted = {a: SiteRoute("eth1", HOP, 192), b: SiteRoute("eth1", HOP, 96)}
    first = plan({}, wanted)
    assert first.originate == {a: 192, b: 96}
    assert first.withdraw == []
    assert plan({a: 192, b: 96}, wanted).originate == {}  # nothing changed: nothing sent
    moved = plan({a: 192, b: 96, c: 100}, {a: SiteRoute("eth1", HOP, 288)})
    assert moved.originate == {a: 288}
    assert sorted(str(key[0]) for key in moved.withdraw) == ["10.55.0.0/25", "fd55::/64"]
    for key in moved.withdraw:
        assert key in (b, c)
    # A site route turning into one we may not announce (out of grants): withdrawn.
    routes = [view("10.66.0.0/24")]
    d: RouteKey = (net("10.66.0.0/24"), None)
    assert origins(routes) == {}
    assert plan({d: 192}, {}).withdraw == [d]
    # An infinite learnt metric is never originated as such.
    assert plan({}, {a: SiteRoute("eth1", HOP, INFINITY)}).originate == {a: INFINITY - 1}
