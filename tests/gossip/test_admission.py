"""The budget of established connections of non-members, per source (pure, fake clock)."""

from __future__ import annotations

import pytest

from meshd.gossip.admission import StrangerBudget


def nobody(peer: str) -> bool:
    return False


def test_a_source_holds_at_most_per_source_and_the_newest_is_closed() -> None:
    budget: StrangerBudget[int] = StrangerBudget(per_source=3, total=10)
    for conn in range(3):
        assert budget.admit(conn, f"p{conn}", "10.0.0.2", nobody).close is None
    verdict = budget.admit(3, "p3", "10.0.0.2", nobody)
    assert (verdict.close, verdict.why) == (3, "source")
    assert budget.held_by("10.0.0.2") == 3
    assert budget.shed == 1
    # Another source is not affected.
    assert budget.admit(4, "p4", "10.0.0.3", nobody).close is None
    # A closed connection gives its slot back.
    budget.release(0)
    assert budget.admit(5, "p5", "10.0.0.2", nobody).close is None
    assert len(budget) == 4


def test_a_full_total_makes_room_from_the_heaviest_source_not_the_newcomer() -> None:
    budget: StrangerBudget[int] = StrangerBudget(per_source=4, total=6)
    for conn in range(4):
        assert budget.admit(conn, f"a{conn}", "10.0.0.2", nobody).close is None
    for conn in range(4, 6):
        assert budget.admit(conn, f"b{conn}", "10.0.0.3", nobody).close is None
    # Full: a third source gets in, the heaviest source's oldest connection goes.
    verdict = budget.admit(6, "c6", "10.0.0.4", nobody)
    assert (verdict.close, verdict.why) == (0, "room")
    assert budget.held_by("10.0.0.2") == 3
    assert budget.evicted == 1
    # A source as heavy as the heaviest (counting the new connection) is refused instead.
    budget.admit(7, "c7", "10.0.0.4", nobody)  # takes from 10.0.0.2 again: 2, 2, 2
    assert budget.held_by("10.0.0.2") == 2
    verdict = budget.admit(8, "b8", "10.0.0.3", nobody)
    assert (verdict.close, verdict.why) == (8, "total")
    assert len(budget) == 6


def test_members_are_never_counted_nor_closed() -> None:
    members: set[str] = set()
    budget: StrangerBudget[int] = StrangerBudget(per_source=2, total=4)
    budget.admit(0, "joiner", "10.0.0.2", members.__contains__)
    budget.admit(1, "other", "10.0.0.2", members.__contains__)
    # The joiner became a member since it was counted: its slot is free before anyone
    # is shed for it.
    members.add("joiner")
    assert budget.admit(2, "third", "10.0.0.2", members.__contains__).close is None
    assert budget.held_by("10.0.0.2") == 2
    # And the total: a member's connection is never the one made room with.
    budget.admit(3, "x", "10.0.0.3", members.__contains__)
    budget.admit(4, "y", "10.0.0.3", members.__contains__)
    members.update({"other", "third"})
    verdict = budget.admit(5, "z", "10.0.0.4", members.__contains__)
    assert verdict.close is None
    assert budget.held_by("10.0.0.2") == 0
    budget.release_peer("x")
    assert budget.held_by("10.0.0.3") == 1


def test_a_source_gets_so_many_graces_per_window() -> None:
    budget: StrangerBudget[int] = StrangerBudget(graces_per_source=3, grace_window=30.0)
    now = 1000.0
    source = "10.0.0.2"
    granted = [budget.grant_grace(source, f"p{i}", now + i) for i in range(4)]
    assert granted == [True, True, True, False]
    assert budget.graces_refused == 1
    assert budget.grant_grace(source, "p1", now + 5)  # a reconnect takes no more of the share
    assert budget.grant_grace("10.0.0.3", "p9", now + 4)  # another source has its own
    assert not budget.grant_grace(source, "p4", now + 29.9)
    assert budget.grant_grace(source, "p4", now + 30.0)  # p0's left the window
    assert not budget.grant_grace(source, "p5", now + 30.5)
    assert budget.grant_grace(source, "p5", now + 31.0)


def test_the_grace_table_is_bounded() -> None:
    budget: StrangerBudget[int] = StrangerBudget(graces_per_source=1, max_grace_sources=16)
    for i in range(1000):
        assert budget.grant_grace(f"10.0.{i // 256}.{i % 256}", "p", float(i) / 1000)
        assert len(budget._graces) <= 16


def test_the_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="need"):
        StrangerBudget(per_source=0)
    with pytest.raises(ValueError, match="need"):
        StrangerBudget(per_source=9, total=8)
    with pytest.raises(ValueError, match="need"):
        StrangerBudget(graces_per_source=0)
