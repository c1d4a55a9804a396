"""What ends soon, looked for every minute by every daemon (the expiry warner), and once a
day by an auto-renewing one: only the members that end within the window are made views of,
the same ones, in the same order, as a look over every member finds."""

from __future__ import annotations

import gc
import time
import tracemalloc

import pytest

from benchmarks.synthetic_store import build_store
from meshd.daemon.renew_policy import WARN_WINDOW, RenewPolicy, candidates, endings
from meshd.membership import Membership
from meshd.node.statedir import NodeDir

MEMBERS = 1000
YEAR = 365 * 86400


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Membership, int]:
    where = tmp_path_factory.mktemp("endings") / "n"
    build_store(where, MEMBERS)  # every member certified for a year from now
    node = NodeDir.open(where)
    try:
        state = Membership(node.anchor)
        now = int(time.time())
        node.store.load_into(state, now)
    finally:
        node.store.close()
    return state, now


def test_members_ending_by_are_those_of_every_members_view_that_end_by_then(
    loaded: tuple[Membership, int],
) -> None:
    state, now = loaded
    every = state.members(now)
    assert len(every) == MEMBERS
    ends = sorted(state.credentials_end(m.node_key) for m in every)
    for by in (now, ends[0] - 1, ends[0], ends[len(ends) // 2], ends[-1], now + 2 * YEAR):
        expected = [m.node_key for m in every if state.credentials_end(m.node_key) <= by]
        assert [m.node_key for m in state.members(now, ending_by=by)] == expected
    # the warner's window and the renewal policy's: nothing due now, all a year on
    assert endings(state, now, window=WARN_WINDOW) == []
    assert candidates(state, now, now + RenewPolicy().window) == []
    later = now + YEAR - WARN_WINDOW // 2
    assert sorted(e.key for e in endings(state, later, window=WARN_WINDOW)) == sorted(
        e.key for e in endings(state, later) if e.ends_at <= later + WARN_WINDOW
    )
    assert len(candidates(state, later, later + RenewPolicy().window)) == MEMBERS - 1  # the
    # founder, certified for longer


def test_a_look_for_what_ends_soon_makes_no_view_of_a_member_that_does_not(
    loaded: tuple[Membership, int],
) -> None:
    # Every member's view (64 bytes), its ending and its label were made and thrown away
    # each minute: at 10,000 members ~2 MB for a moment, left as holes in the heap.
    state, now = loaded
    gc.collect()
    tracemalloc.start()
    try:
        found = endings(state, now, window=WARN_WINDOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == []
    assert peak / MEMBERS < 8, f"{peak / MEMBERS:.0f} bytes a member for a moment"
