"""What the daemon's control answers wait for (meshd/daemon/control.py, Control.ask).

A Change (revoke, publish, rotate-wg...) is answered only once every commit so far is on disk;
a Query (peers, status...) at once, even while an fsync is held back. The handlers are stubs
and the fsync a trio.Event, so each wait is seen apart from the daemon's other services.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import trio
import trio.testing

from meshd.control import commands as c
from meshd.daemon.control import Control
from meshd.errors import MeshdError


class HeldDisk:
    """DiskSync.synced() that returns only once released."""

    def __init__(self) -> None:
        self.released = trio.Event()
        self.waits = 0

    async def synced(self) -> None:
        self.waits += 1
        await self.released.wait()


def control(disk: HeldDisk) -> Control:
    async def flood(raw: bytes) -> None:
        return None

    daemon = SimpleNamespace(state=SimpleNamespace(disk=disk), flooder=SimpleNamespace(flood=flood))
    made = Control(cast(Any, daemon))

    async def peers(request: c.PeersRequest) -> c.PeersAnswer:
        return c.PeersAnswer(())

    async def sync(request: c.SyncRequest) -> c.SyncAnswer:
        return c.SyncAnswer(3)

    made.handlers[c.PeersRequest] = peers
    made.handlers[c.SyncRequest] = sync
    return made


def test_a_query_is_answered_while_the_disk_is_busy_a_change_only_after() -> None:
    disk = HeldDisk()
    ctl = control(disk)

    async def main() -> None:
        with trio.fail_after(1):
            assert await ctl.ask(c.PeersRequest(), c.PeersAnswer) == c.PeersAnswer(())
        assert disk.waits == 0
        answers: list[c.SyncAnswer] = []

        async def change() -> None:
            answers.append(await ctl.ask(c.SyncRequest(), c.SyncAnswer))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(change)
            await trio.testing.wait_all_tasks_blocked()
            assert disk.waits == 1
            assert answers == []  # not before its commits are on disk
            disk.released.set()
        assert answers == [c.SyncAnswer(3)]

    trio.run(main)


def test_views_of_every_member_are_made_one_at_a_time() -> None:
    """At 10,000 members a `peers` view takes ~0.8 s of CPU and ~6 MB: 64 at once missed
    every deadline, held the event loop 3 s behind and kept ~0.5 GB. They are made one at a
    time; the others wait at no cost."""

    async def flood(raw: bytes) -> None:
        return None

    daemon = SimpleNamespace(
        state=SimpleNamespace(disk=HeldDisk()), flooder=SimpleNamespace(flood=flood)
    )
    ctl = Control(cast(Any, daemon))
    running = most = 0

    async def view(request: c.PeersRequest) -> c.PeersAnswer:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await trio.sleep(1)
        running -= 1
        return c.PeersAnswer(())

    ctl._peers = view  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(5):  # one at a time, four waiting (more: busy, the next test)
                nursery.start_soon(ctl.peers, c.PeersRequest())
        assert trio.current_time() >= 5  # one after the other

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert most == 1


def test_requests_past_a_few_waiting_are_answered_busy_at_once() -> None:
    """Past four waiting for their turn, a `peers` is answered at once that the daemon is
    busy: such requests no longer hold the control socket's connections for their 10 s
    (every other command found them full: 105 of 137 `status` calls closed unanswered)."""

    async def flood(raw: bytes) -> None:
        return None

    daemon = SimpleNamespace(
        state=SimpleNamespace(disk=HeldDisk()), flooder=SimpleNamespace(flood=flood)
    )
    ctl = Control(cast(Any, daemon))

    async def view(request: c.PeersRequest) -> c.PeersAnswer:
        await trio.sleep(1)
        return c.PeersAnswer(())

    ctl._peers = view  # type: ignore[method-assign]
    busy: list[float] = []

    async def ask() -> None:
        try:
            await ctl.peers(c.PeersRequest())
        except MeshdError as exc:
            busy.append(trio.current_time() if "busy" in str(exc) else -1.0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(ask)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(busy) == 15  # one answered at a time, four waiting
    assert set(busy) == {0}  # at once, and said so
