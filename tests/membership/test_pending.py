"""The pending pool: bounded, a share per source, and its indexes always agree."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from meshd.membership.pending import LOCAL, PendingPool
from meshd.records import make_announcement, record_id
from meshd.trust.keys import SigningKey
from tests.factory import T0, Net

KEYS = [bytes([k]) * 32 for k in range(4)]
SOURCES = ["a", "b", "c", LOCAL]

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("park"),
            st.sampled_from(KEYS),
            st.integers(0, 20),
            st.booleans(),
            st.sampled_from(SOURCES),
        ),
        st.tuples(st.just("take"), st.sampled_from(KEYS)),
        st.tuples(st.just("drop_own"), st.sampled_from(KEYS)),
    ),
    max_size=60,
)

Entry = tuple[bytes, bytes, bool, str]  # key, rid, own, source


def _model_park(model: list[Entry], entry: Entry, limit: int, share: int) -> int:
    """Park ``entry`` in the plain model; return how many entries it pushed out."""
    if limit <= 0:
        return 1
    evicted = 0
    mine = [m for m in model if m[3] == entry[3]]
    if len(mine) >= share and entry[3] != LOCAL:
        model.remove(mine[0])
        evicted = 1
    elif len(model) >= limit:
        held = {s: [m for m in model if m[3] == s] for s in {m[3] for m in model}}
        largest = max(len(v) for v in held.values())
        firsts = [v[0] for v in held.values() if len(v) == largest]
        model.remove(min(firsts, key=model.index))
        evicted = 1
    model.append(entry)
    return evicted


@given(st.integers(0, 6), st.integers(1, 6), operations)
def test_the_pool_behaves_like_an_ordered_list_with_shares(
    limit: int, share: int, ops: list[Any]
) -> None:
    """A plain model: a list of (key, rid, own, source) in arrival order; a peer at its share
    pushes out its own oldest, else a full pool pushes out the largest holder's oldest."""
    pool = PendingPool(limit, share=share)
    share = pool.share
    model: list[Entry] = []
    evicted = 0
    for op in ops:
        if op[0] == "park":
            _, key, n, own, source = op
            rid = n.to_bytes(16, "big")
            if not any(k == key and r == rid for k, r, _, _ in model):
                evicted += _model_park(model, (key, rid, own, source), limit, share)
            pool.park(key, rid, b"raw" + rid, own=own, source=source)
        elif op[0] == "take":
            key = op[1]
            expected = sorted((r, b"raw" + r) for k, r, _, _ in model if k == key)
            model = [m for m in model if m[0] != key]
            assert pool.take(key) == expected
        else:
            key = op[1]
            model = [m for m in model if not (m[0] == key and m[2])]
            pool.drop_own(key)
        assert len(pool) == len(model) <= max(limit, 0)
        assert pool.evicted == evicted
        for source in SOURCES:
            held = sum(m[3] == source for m in model)
            assert pool.held_by(source) == held
            assert source == LOCAL or held <= share
    for key in KEYS:
        assert pool.take(key) == sorted((r, b"raw" + r) for k, r, _, _ in model if k == key)
    assert len(pool) == 0


def test_one_source_flooding_parked_records_leaves_honest_ones_in_place() -> None:
    """Attack 6: one connection parks a flood of self-signed announcements, each under a new
    author key (the per-author limit does not see it). The honest records parked by two other
    peers before the flood are all still there afterwards; the flood only churned its own."""
    net = Net()
    state = net.state(max_pending=512)  # share: 64 records per source
    network_id = state.anchor.network_id
    honest = []
    for i in range(2 * 60):
        # Announcements of members whose credentials are on their way (pending, honestly).
        key = SigningKey.generate()
        honest.append(make_announcement(key, network_id=network_id, seq=1, issued_at=T0 + i))
    for i, ann in enumerate(honest):
        outcome = state.ingest(ann, T0 + 1000, source=f"honest-{i % 2}")
        assert outcome.pending
    flood = 4 * state.max_pending
    for i in range(flood):
        forged = make_announcement(
            SigningKey(os.urandom(32)), network_id=network_id, seq=1, issued_at=T0 + i % 900
        )
        state.ingest(forged, T0 + 1000, source="attacker")
    pool = state._pending
    assert pool.held_by("attacker") <= pool.share
    assert pool.held_by("honest-0") == pool.held_by("honest-1") == 60
    for ann in honest:
        assert record_id(ann.raw) in pool._by_key[ann.node_key]


def test_a_parked_record_sent_again_is_not_checked_again(monkeypatch: Any) -> None:
    """A record that waits (an admission whose sponsor is not known yet) was verified again
    each time it came, and gossip's own duplicate check keys on a number the sender picks:
    a stranger could re-send one parked record for its signature checks each time."""
    import meshd.trust.chain as chain

    net = Net()
    founder = net.founder()
    elsewhere = net.state()
    elsewhere.ingest(founder.credential, T0 + 100)
    node = net.join(elsewhere, founder, net.invite(), "joiner")
    state = net.state()
    checks: list[bytes] = []
    real = chain.verify  # type: ignore[attr-defined]

    def counted(public_key: bytes, context: bytes, message: bytes, signature: bytes) -> None:
        checks.append(public_key)
        real(public_key, context, message, signature)

    monkeypatch.setattr(chain, "verify", counted)
    assert state.ingest(node.credential, T0 + 100).pending
    first = len(checks)
    assert first > 0
    for _ in range(100):
        outcome = state.ingest(node.credential, T0 + 100)
        assert outcome.pending
        assert not outcome.new
    assert len(checks) == first
    assert state.pending_count == 1
    # Once its sponsor is known, it is merged as before.
    assert state.ingest(founder.credential, T0 + 100).new
    assert state.pending_count == 0
    assert state.member(node.key.public, T0 + 100) is not None
