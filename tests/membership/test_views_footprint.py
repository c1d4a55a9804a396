"""What a member costs in the views and tables kept for it: a view reads what its credential
says from the credential the tables keep, a snapshot's grants keep no tuple a member, and the
record set keeps its ids packed, not an object and a table entry each."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import ipaddress
import os
import random
import sys
import tracemalloc

from meshd.membership import Member, Membership, MemberState
from meshd.membership.grants import GrantTable
from meshd.membership.recordset import BUCKETS, RecordSet
from meshd.records import record_id
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


def test_a_view_reads_its_credential_from_the_tables_and_keeps_five_slots() -> None:
    _net, keys, state = _members(3)
    for key in keys:
        view = state.member(key, NOW)
        assert view is not None
        credential = state._standing.standing(key)
        assert credential is not None
        # What the credential says is the credential's own objects, read through it.
        assert view._held is credential  # type: ignore[attr-defined]
        assert view.node_key is credential.node_key
        assert view.name == credential.name  # read from its certificate's bytes when asked
        assert view.wg_key is credential.wg_key
        assert (view.admitted_at, view.not_after) == (credential.admitted_at, credential.not_after)
        assert (view.wg_counter, view.wg_since) == (0, 0)
        # Admitted with its enrolled key: nothing more kept than its /128 (a shared pair of
        # state and reason, and the rotation, only for the others).
        assert view._more is state._members[key].own  # type: ignore[attr-defined]
        assert view.overlay_prefix is state._members[key].own
        assert (view.state, view.reason) == (MemberState.ADMITTED, "")
        assert not hasattr(view, "__dict__")
        assert sys.getsizeof(view) <= 64  # 13 slots took 136, 6 slots 80, 5 slots 72


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
    # Two columns in key order (~16 bytes a member): a table's entries took ~37 at 1,000
    # (~29 at 10,000), a tuple of one each 48 more.
    assert size / len(keys) < 20


def test_the_views_of_a_thousand_members_hold_under_100_bytes_each() -> None:
    _net, _keys, state = _members(1000)
    gc.collect()
    tracemalloc.start()
    views = state.members(NOW)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(views) == 1000
    # ~73: 64 a view and the list; ~81 with five slots, ~89 with six, ~146 before
    assert size / len(views) < 77


def _ids(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [hashlib.sha256(rng.randbytes(8)).digest()[:16] for _ in range(count)]


def test_the_record_set_agrees_with_a_table_whatever_is_added_and_removed() -> None:
    records = RecordSet()
    model: dict[bytes, bytes] = {}
    rng = random.Random(7)
    pool = _ids(600, 1)
    for step in range(4000):
        rid = rng.choice(pool)
        if rng.random() < 0.55:
            raw = os.urandom(4)
            records.add(rid, raw)
            model.setdefault(rid, raw)
        else:
            assert records.remove(rid) == (model.pop(rid, None) is not None)
        if step % 500 == 0:
            assert len(records) == len(model)
    assert records.ids() == sorted(model)
    for bucket in range(BUCKETS):
        assert records.ids(bucket) == sorted(rid for rid in model if rid[0] == bucket)
    for rid in pool:
        assert (rid in records) == (rid in model)
        assert records.get(rid) == model.get(rid)
    # The digests are the same as a set built in another order.
    again = RecordSet()
    for rid in reversed(list(model)):
        again.add(rid, model[rid])
    assert again.digest() == records.digest()
    assert again.bucket_digests() == records.bucket_digests()
    assert b"" not in records
    assert b"short" not in records
    assert 7 not in records


def test_an_id_found_across_two_packed_ids_is_not_taken_for_one() -> None:
    records = RecordSet()
    first = bytes([9, 5, 9, *range(20, 33)])
    second = bytes([9, *range(40, 55)])
    records.add(first, b"a")
    records.add(second, b"b")
    # The bytes where the two meet, from the third byte of the first: in the same bucket.
    across = first[2:] + second[:2]
    assert len(across) == 16
    assert across[0] == 9
    assert across not in records
    assert records.get(across) is None
    assert not records.remove(across)
    # Added as an id of its own, it is found where it is, past the place the two meet.
    records.add(across, b"c")
    assert records.get(across) == b"c"
    assert (records.get(first), records.get(second)) == (b"a", b"b")
    assert records.remove(first)
    assert (records.get(across), records.get(second)) == (b"c", b"b")
    assert records.ids(9) == sorted([across, second])


def test_the_record_set_keeps_no_object_a_record() -> None:
    rng = random.Random(3)
    raws = [rng.randbytes(100) for _ in range(2000)]
    gc.collect()
    tracemalloc.start()
    records = RecordSet()
    for raw in raws:
        records.add(record_id(raw), raw)  # each id made here, kept by the set alone
    gc.collect()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(records) == len(raws)
    # Packed ids, a pointer to each record and the buckets themselves (~29 KiB at any size):
    # ~43 bytes a record at 2,000; a dict entry and its id object took ~86.
    assert size / len(records) < 60
