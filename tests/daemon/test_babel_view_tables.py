"""What Babel keeps a member, and what it shares with the membership snapshots.

The members as Babel sees them (:class:`meshd.daemon.babel_peers.MeshMembers`) are three
tables keyed per member (by link-local, by overlay /128, by router-id); the grants are the
snapshot's own table, and a snapshot whose grants did not change holds the last one's.
"""

from __future__ import annotations

import gc
import ipaddress
import tracemalloc
from collections.abc import Iterator, Sequence

import pytest
import trio
import trio.testing

from meshd.addressing import host_prefix
from meshd.babel import options
from meshd.babel.options import MemberOrigins, SiteOrigins, router_id_of
from meshd.babel.routes import NeighbourId
from meshd.babel.sources import IPNetwork
from meshd.babel.views import RouteView
from meshd.daemon.babel_peers import MeshMembers, mesh_members
from meshd.daemon.babel_wants import Wants
from meshd.daemon.feed import MembershipFeed, Snapshot
from meshd.membership import Member
from meshd.trust.keys import NodeKey
from meshd.wg.addresses import link_local_from_wg_key
from tests.daemon.babel_support import mesh_babel
from tests.mesh.support import member, relay

SITE = ipaddress.IPv6Network("2001:db8:7::/48")


def own_grants(members: list[Member]) -> dict[NodeKey, tuple[IPNetwork, ...]]:
    return {m.node_key: (host_prefix(m.overlay),) for m in members}


def test_a_snapshot_whose_grants_did_not_change_holds_the_last_one_s_table() -> None:
    members = [member(i) for i in range(4)]
    grants = own_grants(members)
    moved = [member(0, endpoints=("198.51.100.7:4000",)), *members[1:]]
    gateway = {**grants, members[1].node_key: (*grants[members[1].node_key], SITE)}
    built: Iterator[Snapshot] = iter(
        [
            Snapshot(0, 0, tuple(members), dict(grants)),
            Snapshot(1, 0, tuple(moved), dict(grants)),  # an announcement: same grants
            Snapshot(2, 0, tuple(moved), dict(gateway)),  # a certificate with a site
        ]
    )
    feed = MembershipFeed(lambda version, revocations: next(built))
    first = feed.current
    second = feed.publish()
    assert second.grants is first.grants
    assert second.members[0] is moved[0]
    assert second.members[1] is members[1]
    third = feed.publish()
    assert third.grants is not second.grants
    assert third.grants == gateway


def test_babel_follows_the_newest_snapshot_at_once_and_keeps_its_grants_table() -> None:
    """The service is built with the snapshot of the moment; one published before it
    follows the feed is taken when it starts following, not at the next change. Its view's
    grants are that snapshot's table itself."""
    me, r, late = member("me"), relay(member("r")), member("late")
    snapshots = iter(
        [
            Snapshot(0, 0, (me, r), own_grants([me, r])),
            Snapshot(1, 0, (me, r, late), own_grants([me, r, late])),
        ]
    )
    feed = MembershipFeed(lambda version, revocations: next(snapshots))
    first = feed.current

    class Mesh:
        ifname = "wg0"

        def set_extra_prefixes(self, extra: object) -> None:
            pass

        def follow_babel(self, hello_interval: float) -> None:
            pass

    service = mesh_babel(me, lambda: first.members, Mesh())
    service._sync_members()
    assert late not in service.members_view.peers.values()
    newest = feed.publish()

    async def scene() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.follow, feed.subscribe())
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()

    trio.run(scene)
    view = service.members_view
    assert late in view.peers.values()
    assert view.allowed is newest.grants
    assert service._origins is view.origins


def test_the_view_keeps_three_tables_a_member_and_reuses_the_router_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    members = [member(i) for i in range(6)]
    grants = own_grants(members)
    me = members[0]
    allowed: dict[bytes, Sequence[IPNetwork]] = dict(grants.items())
    view = mesh_members(members, lambda m: grants[m.node_key], me.node_key, allowed=allowed)
    assert {"address_of", "router_ids"}.isdisjoint(MeshMembers.__slots__)
    assert view.allowed is allowed
    assert set(view.origins.router_ids) == {router_id_of(m.node_key) for m in members}
    assert all(view.origins.node_of(router_id_of(m.node_key)) is m.node_key for m in members)
    derived: list[bytes] = []

    def counted(node_key: bytes) -> bytes:
        derived.append(node_key)
        return router_id_of(node_key)

    monkeypatch.setattr(options, "router_id_of", counted)
    again = mesh_members(members, lambda m: grants[m.node_key], me.node_key, view.origins)
    assert again.allowed == grants
    assert again.allowed is not grants
    assert derived == []  # reused, not derived again
    before = {view.origins.node_of(rid): rid for rid in view.origins.router_ids}
    after = {again.origins.node_of(rid): rid for rid in again.origins.router_ids}
    assert after == before
    monkeypatch.undo()
    site = SiteOrigins(
        overlay=ipaddress.IPv6Network("fd00:1:2::/48"),
        allowed=view.allowed,
        own=me.node_key,
        router_ids=view.origins.router_ids,
    )

    assert not isinstance(site.router_ids, frozenset)
    for m in members:  # no member's router-id (ours included) is taken from a site
        assert not site.accept(router_id_of(m.node_key), SITE, None)
    assert site.accept(b"\x01" * 8, SITE, None)


def _route(prefix: IPNetwork, origin: bytes, via: Member | ipaddress.IPv6Address) -> RouteView:
    address = via if isinstance(via, ipaddress.IPv6Address) else link_local_from_wg_key(via.wg_key)
    return RouteView(
        prefix=prefix,
        source=None,
        router_id=router_id_of(origin),
        seqno=1,
        metric=96,
        refmetric=0,
        next_hop=address,
        neighbour=NeighbourId("wg0", ipaddress.IPv6Address(str(address))),  # as parsed
        selected=True,
        feasible=True,
        expires=None,
    )


def test_a_neighbour_relays_when_it_sends_another_member_s_route_and_only_then() -> None:
    """Told from the router-id table and the members by link-local: a gateway's own site
    route, a member's own /128 and a stranger's route make no relay; another member's
    /128 through a neighbour does, and that /128 is not direct."""
    me, g, a, r = member("me"), member("g"), member("a"), member("r")
    members = [me, g, a, r]
    grants = own_grants(members)
    grants[g.node_key] = (*grants[g.node_key], SITE)
    allowed: dict[bytes, Sequence[IPNetwork]] = dict(grants.items())
    view = mesh_members(members, lambda m: grants[m.node_key], me.node_key, allowed=allowed)
    stranger = ipaddress.IPv6Address("fe80::dead")
    of_r = host_prefix(r.overlay)
    routes = [
        _route(SITE, g.node_key, g),
        _route(host_prefix(g.overlay), g.node_key, g),
        _route(host_prefix(a.overlay), a.node_key, a),
        _route(ipaddress.IPv6Network("2001:db8:9::/48"), b"x" * 32, stranger),
    ]
    of = {m.name: link_local_from_wg_key(m.wg_key) for m in members}
    up = [of["g"], of["a"], of["r"]]
    wants = Wants("wg0", hold=0.0, period=16.0, rediscover=64.0)
    # r's /128 has no direct route: every neighbour but r is probed for it; no relay.
    assert wants.plan(1.0, view, routes, up) == {of["g"]: [of_r], of["a"]: [of_r]}
    assert wants.relays == set()
    relayed = _route(of_r, r.node_key, a)  # r's /128 from a: a relays
    wants = Wants("wg0", hold=0.0, period=16.0, rediscover=64.0)
    plan = wants.plan(1.0, view, [*routes, relayed], up)
    assert wants.relays == {of["a"]}
    assert plan[of["a"]] == [of_r]  # not direct: asked of the relay
    assert of["r"] not in plan  # never asked of its own member


def test_the_router_ids_are_two_columns_of_16_bytes_a_member() -> None:
    # ~78 bytes a member in a trace of 1,000 at cdf0d50: each router-id an 8-byte bytes
    # object (41) and a dict entry (37)
    keys = [i.to_bytes(4, "big") * 8 for i in range(1_000)]
    held = MemberOrigins({}, members=keys).held()
    gc.collect()
    tracemalloc.start()
    try:
        origins = MemberOrigins({}, held, members=keys)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept / len(keys) < 24
    assert len(origins.router_ids) == len(keys)
    assert all(origins.node_of(router_id_of(k)) is k for k in keys)
    assert origins.node_of(b"\x00" * 8) is None
    assert origins.node_of(b"short") is None
    assert origins.router_ids == MemberOrigins({}, members=reversed(keys)).router_ids
    assert origins.router_ids == set(held.values())
