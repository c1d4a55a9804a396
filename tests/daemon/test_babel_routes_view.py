"""``meshd routes`` names each route's origin from one table of the members by router-id
(meshd/daemon/babel_views.py), made once for the view."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace
from typing import Any

import pytest

from meshd.babel.options import router_id_of
from meshd.babel.views import RouteView
from meshd.daemon import babel_views


def service(members: list[Any], routes: list[RouteView]) -> Any:
    core = SimpleNamespace(
        neighbours=list,
        routes=lambda: routes,
        interfaces=list,
        router_id=b"\x00" * 8,
        seqno=1,
        counters=dict,
    )
    shell = SimpleNamespace(
        core=core, installed=lambda prefix, source: True, counters=SimpleNamespace(as_dict=dict)
    )
    return SimpleNamespace(_shell=shell, _members=lambda: members, node_key=b"\x00" * 32)


def route(n: int, router_id: bytes) -> RouteView:
    prefix = ipaddress.ip_network(f"fd00::{n:x}/128")
    return RouteView(prefix, None, router_id, 1, 96, 0, None, None, True, True, None)


def test_a_view_of_many_routes_derives_each_members_router_id_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    members = [SimpleNamespace(node_key=n.to_bytes(32, "big"), name=f"m{n}") for n in range(400)]
    routes = [route(n, router_id_of(m.node_key)) for n, m in enumerate(members)]
    routes.append(route(999, b"\xff" * 8))  # an origin that is no member
    calls = 0

    def counted(node_key: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return router_id_of(node_key)

    monkeypatch.setattr(babel_views, "router_id_of", counted)
    view = babel_views.routes_view(service(members, routes))
    assert [row["origin"] for row in view["routes"]] == [f"m{n}" for n in range(400)] + [None]
    assert calls <= len(members)  # a pass over the members for each route: ~80,000


def test_two_members_with_one_router_id_show_the_first() -> None:
    a = SimpleNamespace(node_key=b"\x01" * 32, name="first")
    b = SimpleNamespace(node_key=b"\x01" * 32, name="second")
    view = babel_views.routes_view(service([a, b], [route(1, router_id_of(a.node_key))]))
    assert view["routes"][0]["origin"] == "first"
    assert babel_views.routes_view(service([a], []))["routes"] == []
