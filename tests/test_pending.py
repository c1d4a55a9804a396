"""The pending pool: bounded, oldest out first, and its indexes always agree."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from meshd.membership.pending import PendingPool

KEYS = [bytes([k]) * 32 for k in range(4)]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("park"), st.sampled_from(KEYS), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("take"), st.sampled_from(KEYS)),
        st.tuples(st.just("drop_own"), st.sampled_from(KEYS)),
    ),
    max_size=60,
)


@given(st.integers(0, 6), operations)
def test_the_pool_behaves_like_an_ordered_list(limit: int, ops: list[Any]) -> None:
    """A plain model: a list of (key, rid, own) in arrival order, the oldest pushed out."""
    pool = PendingPool(limit)
    model: list[tuple[bytes, bytes, bool]] = []
    evicted = 0
    for op in ops:
        if op[0] == "park":
            _, key, n, own = op
            rid = n.to_bytes(16, "big")
            if any(k == key and r == rid for k, r, _ in model):
                pool.park(key, rid, b"raw" + rid, own=own)
                continue
            if limit <= 0:
                evicted += 1
            else:
                while len(model) >= limit:
                    model.pop(0)
                    evicted += 1
                model.append((key, rid, own))
            pool.park(key, rid, b"raw" + rid, own=own)
        elif op[0] == "take":
            key = op[1]
            expected = sorted((r, b"raw" + r) for k, r, _ in model if k == key)
            model = [m for m in model if m[0] != key]
            assert pool.take(key) == expected
        else:
            key = op[1]
            model = [m for m in model if not (m[0] == key and m[2])]
            pool.drop_own(key)
        assert len(pool) == len(model) <= max(limit, 0)
        assert pool.evicted == evicted
    for key in KEYS:
        assert pool.take(key) == sorted((r, b"raw" + r) for k, r, _ in model if k == key)
    assert len(pool) == 0
