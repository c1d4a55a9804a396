"""Periodic passes over every member space themselves by their cost (meshd.daemon.cost_pace):
the WireGuard round's read of the device and the expiry's tick, on a fake clock."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from meshd.daemon.cost_pace import LONGEST, SHARE, spaced
from meshd.daemon.expiry import Expiry
from meshd.membership import MemberState
from meshd.wg.backend_none import NullBackend
from meshd.wg.model import DeviceState
from meshd.wg.reconcile import plan
from tests.mesh import shell_support
from tests.mesh.support import member

INTERVAL = 5.0


def test_cheap_passes_keep_their_interval_costly_ones_take_at_most_their_share() -> None:
    assert spaced(5.0, 0.0) == 5.0
    assert spaced(5.0, 0.03) == 5.0  # a read of ~1,000 peers
    assert spaced(5.0, 0.25) == pytest.approx(12.5)  # ~10,000 peers: 2 % of the time
    assert spaced(1.0, 0.05) == pytest.approx(2.5)  # judging 10,000 members
    assert spaced(5.0, 10.0) == LONGEST  # never longer than that
    assert spaced(60.0, 10.0) == 60.0  # an interval longer than LONGEST is kept
    assert spaced(5.0, float("nan")) == 5.0


@given(
    interval=st.floats(0.1, 100.0),
    cost=st.floats(0.0, 1000.0),
)
def test_spaced_is_between_the_interval_and_the_longest(interval: float, cost: float) -> None:
    wait = spaced(interval, cost)
    assert wait >= interval
    assert wait <= max(interval, LONGEST)
    if wait < LONGEST and wait > interval:
        assert cost / wait == pytest.approx(SHARE)


class SlowReads(NullBackend):
    """A device whose every read takes ``cost`` seconds of the (fake) clock."""

    cost = 0.0
    reads = 0

    async def get(self) -> DeviceState:
        self.reads += 1
        await trio.sleep(self.cost)
        return await super().get()


@pytest.mark.parametrize(("cost", "most"), [(0.01, 21), (0.25, 9), (0.5, 5)])
def test_the_wireguard_round_reads_a_costly_device_less_often(cost: float, most: int) -> None:
    async def main() -> None:
        members = [member("a"), member("b")]
        mesh, backend = shell_support.make_mesh(SlowReads, members, "mpace0", interval=INTERVAL)
        backend.cost = cost
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            backend.reads = 0
            await trio.sleep(100)
            periodic = backend.reads
            # A change is still applied at once, whatever the reads cost.
            members[1] = replace(members[1], state=MemberState.REVOKED)
            mesh.set_members(members)
            await trio.sleep(cost + 0.01)
            assert {p.public_key for p in backend.state.peers} == {members[0].wg_key}
            nursery.cancel_scope.cancel()
        assert periodic <= most, periodic
        assert periodic >= most - 2, periodic

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


class CostlyTicks:
    """A membership owner whose tick takes ``cost`` seconds of the fake clock."""

    def __init__(self, clock: trio.testing.MockClock, cost: float) -> None:
        self.clock, self.cost, self.ticks = clock, cost, 0

    def tick(self) -> Any:
        self.ticks += 1
        self.clock.jump(self.cost)
        return ()


@pytest.mark.parametrize(("cost", "low", "high"), [(0.0, 99, 101), (0.05, 38, 41), (0.2, 9, 10)])
def test_the_expiry_ticks_less_often_when_a_tick_costs_more(
    cost: float, low: int, high: int
) -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    owner = CostlyTicks(clock, cost)

    async def main() -> None:
        expiry = Expiry(owner, 1.0)  # type: ignore[arg-type]
        with trio.move_on_after(100):
            await expiry.run()

    trio.run(main, clock=clock)
    assert low <= owner.ticks <= high, owner.ticks


def test_the_wireguard_round_is_paced_by_its_read_and_its_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cheap read with a costly plan (at 10,000 members the desired peers and the plan are
    ~0.07 s): the round's whole pass takes at most its share, not its read alone."""
    import meshd.daemon.wireguard as shell

    clock = trio.testing.MockClock(autojump_threshold=0)

    def costly_plan(*args: Any, **options: Any) -> Any:
        clock.jump(0.19)  # the plan's CPU, on the fake clock
        return plan(*args, **options)

    monkeypatch.setattr(shell, "plan", costly_plan)

    async def main() -> None:
        mesh, backend = shell_support.make_mesh(
            SlowReads, [member("a"), member("b")], "mpace1", interval=INTERVAL
        )
        backend.cost = 0.01
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            backend.reads = 0
            await trio.sleep(100)
            nursery.cancel_scope.cancel()
        # (0.01 + 0.19) / SHARE: a round every 10 s, not every 5.
        assert 100 / 10 - 2 <= backend.reads <= 100 / 10 + 1, backend.reads

    trio.run(main, clock=clock)


def test_a_deadline_a_round_leaves_in_the_past_does_not_run_rounds_back_to_back() -> None:
    # A hold or a first handshake that a round could not settle leaves its deadline due: the
    # loop waited max(0, due - now) = 0 and ran the next round at once, every time.
    async def main() -> None:
        members = [member("a"), member("b")]
        mesh, backend = shell_support.make_mesh(SlowReads, members, "mpace1", interval=INTERVAL)
        backend.cost = 0.01
        mesh._first.deadline = lambda: 0.0  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            backend.reads = 0
            await trio.sleep(100)
            nursery.cancel_scope.cancel()
        assert 90 <= backend.reads <= 101, backend.reads  # a round a second (DUE_AGAIN)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
