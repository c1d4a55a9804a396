"""Who speaks Babel with whom on the mesh: relays and gateways only (meshd.daemon.babel_peers)."""

from __future__ import annotations

import gc
import ipaddress
import tracemalloc
from collections.abc import Collection, Mapping
from dataclasses import replace
from types import SimpleNamespace

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.daemon.babel_peers import (
    ACTIVE_RELAYS,
    ByLinkLocal,
    ByOverlay,
    Grants,
    active_relays,
    babel_neighbours,
    can_relay,
    is_gateway,
    mesh_members,
)
from meshd.membership import Member
from meshd.trust.keys import WgKey
from meshd.wg.addresses import link_local_from_wg_key, link_local_prefix
from meshd.wg.model import IPAddress, IPNetwork
from tests.daemon.babel_support import mesh_babel
from tests.mesh.support import member, relay

SITE = ipaddress.IPv6Network("2001:db8:5::/64")


def grants_of(gateways: Collection[bytes], members: list[Member]) -> Grants:
    by_key: dict[bytes, Member] = {m.node_key: m for m in members}

    def grants(key: bytes) -> list[IPNetwork]:
        own: list[IPNetwork] = [ipaddress.IPv6Network((by_key[key].overlay, 128))]
        return [*own, SITE] if key in gateways else own

    return grants


def neighbours_of(own: Member, members: list[Member], gateways: Collection[bytes]) -> set[str]:
    peers = {link_local_from_wg_key(m.wg_key): m for m in members if m is not own}
    found = babel_neighbours(own, peers, grants_of(gateways, members), active_relays(members))
    return {peers[a].name for a in found}


def test_a_member_that_neither_relays_nor_routes_a_site_speaks_only_with_those_that_do() -> None:
    members = [relay(member("r1")), relay(member("r2")), member("g"), member("a"), member("b")]
    gateways = {members[2].node_key}
    assert neighbours_of(members[3], members, gateways) == {"r1", "r2", "g"}
    assert neighbours_of(members[4], members, gateways) == {"r1", "r2", "g"}


def test_a_relay_and_a_gateway_speak_with_every_member() -> None:
    members = [relay(member("r1")), member("g"), member("a"), member("b")]
    gateways = {members[1].node_key}
    assert neighbours_of(members[0], members, gateways) == {"g", "a", "b"}
    assert neighbours_of(members[1], members, gateways) == {"r1", "a", "b"}
    assert is_gateway(members[1], grants_of(gateways, members))
    assert not is_gateway(members[2], grants_of(gateways, members))


def test_a_member_with_no_announcement_yet_does_not_relay() -> None:
    quiet = member("q", endpoints=None)
    assert not can_relay(quiet)
    assert active_relays([quiet]) == frozenset()


def test_only_a_few_of_the_members_that_can_relay_are_the_mesh_s_relays() -> None:
    able = [relay(member(f"p{i}")) for i in range(3 * ACTIVE_RELAYS)]
    chosen = active_relays(able)
    assert len(chosen) == ACTIVE_RELAYS
    assert active_relays(list(reversed(able))) == chosen  # alike whatever the order
    plain = member("plain")
    assert neighbours_of(plain, [*able, plain], set()) == {
        m.name for m in able if m.node_key in chosen
    }
    # One of the others that can relay, but is not among the chosen, is a plain member.
    other = next(m for m in able if m.node_key not in chosen)
    assert neighbours_of(other, [*able, plain], set()) == {
        m.name for m in able if m.node_key in chosen
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=2, max_size=14))
def test_the_rule_holds_alike_at_both_ends_of_every_pair(
    flags: list[tuple[bool, bool, bool]],
) -> None:
    """A Hello is never sent to a member that would not answer it: b is a's neighbour
    exactly when a is b's, whatever relays, routes a site or has announced nothing."""
    members: list[Member] = []
    gateways: set[bytes] = set()
    for i, (relays, gateway, announced) in enumerate(flags):
        m = member(f"m{i}", endpoints=("192.0.2.1:51820",) if announced else None)
        if relays and announced:
            m = relay(m)
        if gateway:
            gateways.add(m.node_key)
        members.append(m)
    views = {m.name: neighbours_of(m, members, gateways) for m in members}
    for a in members:
        for b in members:
            if a is not b:
                assert (b.name in views[a.name]) == (a.name in views[b.name])


class _Mesh:
    ifname = "wg0"

    def __init__(self) -> None:
        self.extra: dict[bytes, list[IPNetwork]] = {}

    def set_extra_prefixes(self, extra: dict[bytes, list[IPNetwork]]) -> None:
        self.extra = {k: sorted(v) for k, v in extra.items()}

    def follow_babel(self, hello_interval: float) -> None:
        pass


class _Shell:
    """What the service reads of a running shell: the core's routes; what it submits."""

    def __init__(self, routes: list[object]) -> None:
        self.core = SimpleNamespace(routes=lambda: routes, resting=lambda _i, _a: False)
        self.submitted: list[object] = []

    def submit(self, work: object) -> None:
        self.submitted.append(work)


def _via(prefix: IPNetwork, hop: Member) -> object:
    return SimpleNamespace(
        prefix=prefix,
        source=None,
        selected=True,
        neighbour=SimpleNamespace(interface="wg0", address=link_local_from_wg_key(hop.wg_key)),
    )


def test_a_member_without_babel_stays_on_its_own_peer_while_its_direct_path_works() -> None:
    """The relay's route to a member we do not speak Babel with is used only while the
    punching service says the direct path is down; Hellos flow only to the relay."""

    async def scene() -> None:
        me, r, a, b = member("me"), relay(member("r")), member("a"), member("b")
        members = [me, r, a, b]
        host = {m.name: ipaddress.IPv6Network((m.overlay, 128)) for m in members}
        direct: set[bytes] = {a.wg_key}
        mesh = _Mesh()
        service = mesh_babel(me, lambda: members, mesh, lambda: frozenset(direct))  # type: ignore[arg-type]
        assert service.hellos(a.wg_key)  # before the first snapshot: today's rule everywhere
        # Babel selected the relay for both (each was asked for while no direct path was up).
        service._shell = _Shell([_via(host["a"], r), _via(host["b"], r), _via(host["r"], r)])  # type: ignore[assignment]
        service._sync_members()
        assert service.members_view.neighbours == {link_local_from_wg_key(r.wg_key)}
        assert service.hellos(r.wg_key)
        assert not service.hellos(a.wg_key)
        assert not service.hellos(b.wg_key)
        assert mesh.extra == {r.wg_key: sorted([host["b"], host["r"]]), a.wg_key: [host["a"]]}
        direct.clear()  # a's direct path is lost: through the relay
        service.paths_changed()
        assert mesh.extra == {r.wg_key: sorted([host["a"], host["b"], host["r"]])}
        direct.update({a.wg_key, b.wg_key})  # both direct again: back on their own peers
        service.paths_changed()
        assert mesh.extra == {
            r.wg_key: [host["r"]],
            a.wg_key: [host["a"]],
            b.wg_key: [host["b"]],
        }

    trio.run(scene)


def test_members_whose_direct_path_works_are_not_asked_of_the_relays() -> None:
    from meshd.daemon.babel_wants import Wants
    from tests.babel.wants_support import members_of

    relay_ll = ipaddress.IPv6Address("fe80::1")
    a, b = ipaddress.IPv6Network("fd00::a/128"), ipaddress.IPv6Network("fd00::b/128")
    members: Mapping[IPNetwork, IPAddress] = {
        a: ipaddress.IPv6Address("fe80::a"),
        b: ipaddress.IPv6Address("fe80::b"),
    }
    wants = Wants("wg0", hold=0.0, period=16.0, rediscover=64.0)
    wants.neighbours([relay_ll], 0.0)
    wants.relays.add(relay_ll)
    plan = wants.plan(1.0, members_of(members, {}), [], [relay_ll], covered={a})
    assert plan == {relay_ll: [b]}
    plan = wants.plan(20.0, members_of(members, {}), [], [relay_ll])  # a's path lost since
    assert plan == {relay_ll: [a, b]}


def test_a_backed_off_member_is_asked_for_again_once_it_announces_anew() -> None:
    """An offline member is asked of the relays ever more seldom; when its announcement
    changes (a member announces at start) the next round asks for it at once."""
    import dataclasses

    me, r, b = member("me"), relay(member("r")), member("b")
    members = [me, r, b]
    service = mesh_babel(me, lambda: members, _Mesh())
    service._sync_members()
    assert service._on_mesh is not None
    wants = service._on_mesh.wants
    prefix = ipaddress.IPv6Network((b.overlay, 128))
    wants.unrouted[prefix] = 3
    service._sync_members()  # the same member objects: nothing to renew
    assert wants.unrouted == {prefix: 3}
    assert b.announcement is not None
    fresh = dataclasses.replace(b.announcement, seq=b.announcement.seq + 1)
    members[2] = dataclasses.replace(b, announcement=fresh)
    service._sync_members()
    assert wants.unrouted == {}


def test_a_backed_off_member_is_asked_for_again_when_a_member_says_it_tries_to_reach_us() -> None:
    """Back from an outage with its announcement unchanged, a member is not renewed by the
    snapshots: a punch notice for it (the punching service's ``on_member_heard``) is the
    sign that it is online again. Only its own /128 is renewed; one not backed off, or a
    key no member has, changes nothing."""
    me, r, b, c = member("me"), relay(member("r")), member("b"), member("c")
    service = mesh_babel(me, lambda: [me, r, b, c], _Mesh())
    service._sync_members()
    assert service._on_mesh is not None
    wants = service._on_mesh.wants
    of_b = ipaddress.IPv6Network((b.overlay, 128))
    of_c = ipaddress.IPv6Network((c.overlay, 128))
    wants.unrouted[of_b] = wants.unrouted[of_c] = 3
    service.member_back(WgKey(bytes(32)))  # no member's key
    service.member_back(r.wg_key)  # not backed off
    assert wants.unrouted == {of_b: 3, of_c: 3}
    service.member_back(b.wg_key)
    assert wants.unrouted == {of_c: 3}


def test_members_by_link_local_are_a_mapping_that_keeps_no_address_a_member() -> None:
    """Babel's table of the other members by link-local address answers as a dict keyed by
    the addresses would, and holds each member under the int its interned link-local /128
    keeps: no address object a member (56 bytes; the /128s keep none either), and no table
    entry (a dict's ~37 bytes a member at 1,000): two tuples in the ints' order, 16 bytes a
    member. In the daemon the WireGuard peers' allowed-ips hold those /128s; here ``held``
    does."""
    members = [member(i) for i in range(1_000)]
    held = [link_local_prefix(m.wg_key) for m in members]
    plain = {link_local_from_wg_key(m.wg_key): m for m in members}
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = ByLinkLocal(members)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert (after - before) / len(members) < 20
    ints = {p._value: p._value for p in held}  # type: ignore[attr-defined]
    assert list(table._keys) == sorted(ints)
    assert all(k is ints[k] for k in table._keys)  # the /128s' own ints, not copies
    assert len(table) == len(plain)
    assert set(table) == set(plain)
    assert dict(table.items()) == plain
    assert sorted(map(id, table.values())) == sorted(map(id, plain.values()))
    assert table == plain
    for address, found in plain.items():
        assert table[address] is found
        assert table.get(address) is found
        assert address in table
    stranger = ipaddress.IPv6Address("fe80::1")
    assert table.get(stranger) is None
    assert stranger not in table
    assert table.get("fe80::1") is None
    assert "fe80::1" not in table
    assert table.get(ipaddress.IPv4Address("10.0.0.1"), "none") == "none"
    with pytest.raises(KeyError):
        table[stranger]


def test_members_by_overlay_are_a_mapping_with_no_table_entry_a_member() -> None:
    """The other members by overlay /128 answer as the dict of them did, kept as two tuples
    in the order of the /128s' ints (16 bytes a member, the dict's entries ~37 at 1,000);
    a /128 made anew (not the interned one) finds its member too."""
    members = [member(i) for i in range(1_000)]
    plain = {m.overlay_prefix: m for m in members}
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = ByOverlay(members)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert (after - before) / len(members) < 20
    assert len(table) == len(plain)
    assert all(a is b for a, b in zip(sorted(table), sorted(plain), strict=True))
    assert dict(table.items()) == plain
    assert table == plain
    for prefix, found in plain.items():
        assert table[prefix] is found
        assert table.get(ipaddress.IPv6Network(str(prefix))) is found
        assert prefix in table
    stranger = ipaddress.IPv6Network("fd00::1/128")
    assert table.get(stranger) is None
    assert stranger not in table
    assert table.get(ipaddress.IPv6Network("fd00::/64")) is None
    assert table.get(ipaddress.IPv4Network("10.0.0.1/32"), "none") == "none"
    with pytest.raises(KeyError):
        table[stranger]
    # Two members of one /128: the last one stands, as in the dict.
    twin = members[0]
    assert ByOverlay([twin, members[1], twin])[twin.overlay_prefix] is twin


def test_members_by_overlay_made_of_those_by_link_local_keep_their_places_alone() -> None:
    """Babel's members by overlay /128, made of its members by link-local, keep beside the
    /128s' ints each member's place in that table (2 bytes a member), not a tuple of the
    members of their own (8): ~10 bytes a member at 1,000, 16 before. They answer as the
    dict of them did."""
    members = [member(i) for i in range(1_000)]
    plain = {m.overlay_prefix: m for m in members}
    peers = ByLinkLocal(members)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        table = ByOverlay(members, within=peers)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert (after - before) / len(members) < 12
    assert len(table) == len(plain)
    assert table == plain
    assert dict(table.items()) == plain
    assert list(table.values()) == [table[p] for p in table]
    assert all(a is b for a, b in zip(sorted(table), sorted(plain), strict=True))
    for prefix, found in plain.items():
        assert table[prefix] is found
        assert table.get(ipaddress.IPv6Network(str(prefix))) is found
    assert table.get(ipaddress.IPv6Network("fd00::1/128")) is None
    # Members the table by link-local does not hold: a tuple of their own, as before.
    stranger = member(5_000)
    mixed = ByOverlay([*members[:3], stranger], within=peers)
    assert mixed[stranger.overlay_prefix] is stranger
    assert dict(mixed.items()) == {m.overlay_prefix: m for m in [*members[:3], stranger]}
    view = mesh_members(members, lambda m: [m.overlay_prefix], bytes(32))
    assert view.member_of_overlay == plain


def test_of_two_members_with_one_overlay_the_later_one_stands_as_in_a_dict() -> None:
    """Babel's members by overlay /128 are made in the members' order: of two admitted
    members holding one /128 (a hand-over under way), the later one stands, whichever way
    round they come, as in the dict by /128 they were before."""
    a = member(1)
    twin = replace(member(2), overlay=a.overlay)
    others = [member(i) for i in range(3, 8)]
    for first, last in ((a, twin), (twin, a)):
        view = mesh_members([first, *others, last], lambda m: [m.overlay_prefix], bytes(32))
        assert view.member_of_overlay[a.overlay_prefix] is last
        assert len(view.member_of_overlay) == len(others) + 1
        assert len(view.peers) == len(others) + 2
