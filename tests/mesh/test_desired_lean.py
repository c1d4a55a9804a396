"""What the WireGuard side keeps a member, held to its bounds at 1,000 members: choosing the
peers makes no list a member, Babel's routes are kept without a tuple a member, and the
desired peers without a table."""

from __future__ import annotations

import gc
import ipaddress
import tracemalloc
from dataclasses import replace
from typing import Any

import pytest

from meshd.addressing import host_prefix
from meshd.mesh.desired import (
    ExtraPrefixes,
    PeersByKey,
    base_allowed_ips,
    desired_peers,
    peer_members,
)
from meshd.mesh.holddown import routed_directly
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.backend_none import NullBackend
from meshd.wg.model import PeerConfig
from tests.mesh.shell_support import make_mesh, run
from tests.mesh.support import key, member

N = 1000
ME = NodeKey(key("me"))
MY_WG = WgKey(key("me", "wg"))


def test_choosing_the_peers_makes_no_list_a_member() -> None:
    """A WireGuard key one member holds stands for that member, not a list of one: a pass
    over 1,000 members made ~140 bytes a member beyond the table it returns, ~55 now."""
    members = [member(i) for i in range(N)]
    tracemalloc.start()
    try:
        chosen = peer_members(members, own_node_key=ME, own_wg_key=MY_WG)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chosen == {m.wg_key: m for m in members}
    assert (peak - kept) / N < 80


def test_a_key_held_twice_is_still_given_to_the_first_claim() -> None:
    first, second = member(1, wg=7, admitted_at=10), member(2, wg=7, admitted_at=20)
    mesh = desired_peers([second, member(3), first], own_node_key=ME, own_wg_key=MY_WG)
    assert mesh.members == {first.wg_key: first.node_key, member(3).wg_key: member(3).node_key}
    assert [s.member for s in mesh.shadowed] == [second]


def test_babels_direct_routes_are_kept_without_a_tuple_a_member() -> None:
    """Babel routes every member it reaches directly through its own peer: one /128 a peer.
    The mesh keeps it as the /128 itself (85 bytes a member with a tuple of one, ~37 now),
    reads it as the same tuples, and plans the same peers from it."""
    members = [member(i) for i in range(N)]
    mesh, _backend = make_mesh(NullBackend, members, "wglean0")
    extra = {m.wg_key: [host_prefix(m.overlay)] for m in members}
    relay = members[0].wg_key
    extra[relay] = [*extra[relay], host_prefix(members[1].overlay)]  # one via a relay
    del extra[members[1].wg_key]
    tracemalloc.start()
    try:
        mesh.set_extra_prefixes(extra)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept / N < 48
    as_tuples = {k: tuple(v) for k, v in extra.items()}
    assert mesh._extra == as_tuples
    assert dict(mesh._extra.items()) == as_tuples
    assert mesh._extra == ExtraPrefixes(extra)
    assert ExtraPrefixes({relay: []}) == {}

    async def round_() -> None:
        assert await mesh.reconcile()

    run(round_)
    want = desired_peers(
        members, own_node_key=ME, own_wg_key=mesh.own_wg_key, extra_prefixes=as_tuples
    )
    assert mesh._desired.peers == want.peers
    assert host_prefix(members[1].overlay) in mesh._desired.peers[relay].allowed_ips


def test_the_desired_peers_are_kept_in_one_tuple_not_a_table() -> None:
    """A round's desired peers, kept to the next: a peer, its allowed-ips and 8 bytes a
    member to find it by (~137 bytes a member); a table of them cost ~37 more."""
    members = [member(i) for i in range(N)]
    held = [base_allowed_ips(m) for m in members]  # the /128s: the membership's
    tracemalloc.start()
    try:
        mesh = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(mesh.peers) == len(held) == N
    assert kept / N < 145


def test_a_pass_over_the_members_holds_no_list_a_member_while_it_runs() -> None:
    """Work in flight: a pass held a list of allowed-ips and two table entries a member more
    than it needs while it ran (~450 bytes a member at its peak, ~270 now)."""
    members = [member(i) for i in range(N)]
    held = [base_allowed_ips(m) for m in members]
    tracemalloc.start()
    try:
        mesh = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(mesh.peers) == len(held) == N
    assert peak / N < 330


def test_peers_by_key_is_a_mapping_in_key_order() -> None:
    peers = [PeerConfig(key(i, "wg"), None, (), None) for i in range(50)]
    table = {p.public_key: p for p in sorted(peers, key=lambda p: p.public_key)}
    by_key = PeersByKey(reversed(peers))
    assert by_key == table
    assert table == by_key
    assert by_key == PeersByKey(peers)
    assert by_key != PeersByKey(peers[1:])
    assert list(by_key) == list(table)
    assert list(by_key.items()) == list(table.items())
    assert list(by_key.values()) == list(table.values())
    assert by_key.keys() - table.keys() == set()
    for p in peers:
        assert by_key[WgKey(p.public_key)] is p
        assert by_key.get(WgKey(p.public_key)) is p
        assert p.public_key in by_key
    absent = WgKey(key("absent", "wg"))
    assert absent not in by_key
    assert by_key.get(absent) is None
    assert "text" not in by_key  # type: ignore[comparison-overlap]
    with pytest.raises(KeyError):
        by_key[absent]
    with pytest.raises(ValueError, match="twice"):
        PeersByKey([*peers, replace(peers[3], endpoint="192.0.2.1:51820")])
    assert PeersByKey() == {}
    assert len(PeersByKey.ordered(tuple(table.values()))) == 50


def test_which_members_babel_routes_directly_is_found_without_a_network_a_member(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    members = [member(i) for i in range(N)]
    peers = {m.wg_key: m for m in members}
    extra = {m.wg_key: (host_prefix(m.overlay),) for m in members[::2]}
    extra[members[1].wg_key] = (host_prefix(members[3].overlay),)  # via a relay: not direct
    made = []
    standard = ipaddress.IPv6Network.__init__

    def counted(self: ipaddress.IPv6Network, *args: Any, **kwargs: Any) -> None:
        made.append(args)
        standard(self, *args, **kwargs)

    monkeypatch.setattr(ipaddress.IPv6Network, "__init__", counted)
    assert routed_directly(peers, extra) == {m.wg_key for m in members[::2]}
    assert routed_directly(peers, ExtraPrefixes(extra)) == {m.wg_key for m in members[::2]}
    assert made == []


def test_a_round_parses_no_endpoint_a_member_announced_alone_and_was_given_last_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each member's one announced endpoint, the very string chosen last round, is not
    parsed again (~9 us a member a round); the peers are the same as a round without the
    last one's, and an endpoint announced anew is chosen afresh."""
    from meshd.mesh import desired as module

    members = [member(i) for i in range(200)]
    first = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG)
    chosen = 0
    real = module.choose_endpoint

    def counted(announced: Any, underlay: Any) -> str | None:
        nonlocal chosen
        chosen += 1
        return real(announced, underlay)

    monkeypatch.setattr(module, "choose_endpoint", counted)
    again = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG, previous=first.peers)
    assert chosen == 0
    assert again.peers == first.peers
    assert all(a is b for a, b in zip(again.peers.values(), first.peers.values(), strict=True))
    moved = [*members[:-1], member(199, endpoints=("192.0.2.99:51820",))]
    third = desired_peers(moved, own_node_key=ME, own_wg_key=MY_WG, previous=again.peers)
    assert chosen == 1
    assert third.peers[moved[-1].wg_key].endpoint == "192.0.2.99:51820"


def test_the_members_programmed_are_kept_without_a_table_entry_a_member() -> None:
    """The members programmed as peers (what the punching service keeps from snapshot to
    snapshot) are one tuple in WireGuard key order, looked up by bisection: 8 bytes a
    member, where their dict cost ~37 at 1,000; they answer as the dict did."""
    members = [member(i) for i in range(N)]
    plain = {m.wg_key: m for m in members}
    gc.collect()
    tracemalloc.start()
    try:
        chosen = peer_members(members, own_node_key=ME, own_wg_key=MY_WG)
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept / N < 12
    assert chosen == plain
    assert list(chosen) == sorted(plain)
    assert all(chosen[k] is m and chosen.get(k) is m and k in chosen for k, m in plain.items())
    assert [m.wg_key for m in chosen.values()] == sorted(plain)
    assert dict(chosen.items()) == plain
    assert chosen.get(WgKey(bytes(32))) is None
    assert bytes(32) not in chosen


def test_the_mesh_keeps_the_peers_of_a_round_not_the_members_they_stand_for() -> None:
    """Between rounds the WireGuard mesh keeps the desired peers and what was left out, not
    the tuple of the members programmed (8 bytes a member, which nothing reads again)."""
    members = [member(i) for i in range(N)]
    mesh, _backend = make_mesh(NullBackend, members, "wglean1")

    async def round_() -> None:
        assert await mesh.reconcile()

    run(round_)
    want = desired_peers(members, own_node_key=ME, own_wg_key=mesh.own_wg_key)
    assert mesh._desired.peers == want.peers
    assert mesh._desired.shadowed == want.shadowed
    assert len(want.programmed) == N
    assert mesh._desired.programmed == ()
