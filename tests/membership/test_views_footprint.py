"""What a member costs in the views and tables kept for it: a view reads what its credential
says from the credential the tables keep, and a snapshot's grants keep no tuple a member."""

from __future__ import annotations

import dataclasses
import gc
import ipaddress
import sys
import tracemalloc

from meshd.membership import Member, Membership, MemberState
from meshd.membership.views import GrantTable
from meshd.trust.keys import NodeKey, WgKey
from tests.factory import T0, Net

NOW = T0 + 100


def _members(count: int) -> tuple[Net, list[bytes], Membership]:
    net = Net()
    nodes = [net.founder(f"m{i}") for i in range(count)]
    state = net.state(announce_ttl=3600)
    state.ingest_batch([n.credential.raw for n in nodes], NOW)
    state.ingest_batch(
        [
            n.announce(net, NOW, endpoints=[f"192.0.2.{i % 250}:51820"]).raw
            for i, n in enumerate(nodes)
        ],
        NOW,
    )
    return net, [n.key.public for n in nodes], state


def test_a_view_reads_its_credential_from_the_tables_and_keeps_six_slots() -> None:
    _net, keys, state = _members(3)
    for key in keys:
        view = state.member(key, NOW)
        assert view is not None
        credential = state._standing.standing(key)
        assert credential is not None
        # What the credential says is the credential's own objects, read through it.
        assert view._held is credential  # type: ignore[attr-defined]
        assert view.node_key is credential.node_key
        assert view.name is credential.name
        assert view.wg_key is credential.wg_key
        assert (view.admitted_at, view.not_after) == (credential.admitted_at, credential.not_after)
        assert (view.wg_counter, view.wg_since) == (0, 0)
        assert view._rotated is None  # type: ignore[attr-defined]
        # One (state, reason) pair shared by every admitted view.
        other = state.member(keys[0], NOW)
        assert other is not None
        assert view._status is other._status  # type: ignore[attr-defined]
        assert (view.state, view.reason) == (MemberState.ADMITTED, "")
        assert not hasattr(view, "__dict__")
        assert sys.getsizeof(view) <= 80  # 13 slots took 136


def test_a_view_made_by_hand_says_what_it_was_given_and_compares_by_field() -> None:
    overlay = ipaddress.IPv6Address("fd00::1")
    made = Member(
        NodeKey(b"k" * 32),
        None,
        "a",
        WgKey(b"w" * 32),
        overlay,
        MemberState.EXPIRED,
        "silent",
        10,
        20,
        None,
        5,
        wg_counter=2,
        wg_since=7,
    )
    assert (made.name, made.wg_key, made.state, made.reason) == (
        "a",
        b"w" * 32,
        MemberState.EXPIRED,
        "silent",
    )
    assert (made.admitted_at, made.not_after, made.last_seen) == (10, 20, 5)
    assert (made.wg_counter, made.wg_since) == (2, 7)
    again = dataclasses.replace(made)
    assert again == made
    assert hash(again) == hash(made)
    assert again.node_id == made.node_id
    for change in (
        {"name": "b"},
        {"not_after": 21},
        {"wg_counter": 3},
        {"reason": "left"},
        {"last_seen": None},
        {"state": MemberState.REVOKED},
    ):
        assert dataclasses.replace(made, **change) != made
    assert dataclasses.replace(made, node_id="other") == made  # not compared


def test_a_snapshots_grants_keep_the_interned_prefix_not_a_tuple_a_member() -> None:
    _net, keys, state = _members(1000)
    grants = GrantTable((NodeKey(key), state.grants(key)) for key in keys)
    assert len(grants) == len(keys)
    for key in keys[:20]:
        (own,) = grants[NodeKey(key)]
        assert own is state._members[key].own
        assert grants.get(NodeKey(key)) == (own,)
    assert grants.get(NodeKey(b"x" * 32), ()) == ()
    assert NodeKey(b"x" * 32) not in grants
    assert grants == GrantTable((NodeKey(key), state.grants(key)) for key in keys)
    assert grants == {NodeKey(key): state.grants(key) for key in keys}
    gc.collect()
    tracemalloc.start()
    kept = GrantTable((NodeKey(key), state.grants(key)) for key in keys)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(kept) == len(keys)
    # The table's entries alone (~37 bytes a member at 1,000): a tuple of one each took 48 more.
    assert size / len(keys) < 60


def test_the_views_of_a_thousand_members_hold_under_100_bytes_each() -> None:
    _net, _keys, state = _members(1000)
    gc.collect()
    tracemalloc.start()
    views = state.members(NOW)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(views) == 1000
    assert size / len(views) < 100  # ~89: 80 a view and the list; ~146 before
