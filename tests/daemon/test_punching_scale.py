"""The punching service with 10,000 peers (stub collaborators, a device held in memory): what
a step logs, how often the device is read once every path is settled, and how soon a stop
ends a step."""

from __future__ import annotations

import gc
import itertools
import logging
import sys
import time
import weakref
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from meshd.daemon.punching import CHUNK, IDLE_STEP, Punching
from meshd.mesh.punch import NAMED
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus
from tests.daemon.punching_support import member, service_over, wg_key

N = 10_000


class Backend:
    """A device of ``n`` peers, none with a handshake; sets are recorded."""

    def __init__(self, n: int) -> None:
        self.peers = {
            wg_key(i): PeerStatus(PeerConfig(wg_key(i), None, (), None)) for i in range(1, n + 1)
        }
        self.gets = 0
        self.sets: list[Any] = []

    async def get(self) -> DeviceState:
        self.gets += 1
        return DeviceState(peers=tuple(self.peers.values()))

    async def set(self, ops: Any) -> None:
        self.sets.append(ops)


def service(n: int) -> tuple[Punching, Backend]:
    backend = Backend(n)
    return service_over(backend, [member(i) for i in range(1, n + 1)]), backend


def punching_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "meshd.daemon.punching" and r.levelno == level
    ]


def test_a_step_that_changes_every_path_logs_a_few_lines_and_one_change_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At a start from a 10,000-member store every path starts trying at once: a few are
    named and the rest counted in one line at INFO, each at DEBUG; a single change later is
    named on its own."""
    punching, backend = service(N)
    caplog.set_level(logging.DEBUG, logger="meshd.daemon.punching")

    async def run() -> None:
        await punching.step()
        info = punching_lines(caplog)
        assert len(info) <= NAMED + 1
        assert info[-1].startswith(f"{N - NAMED} more members: {N - NAMED} trying")
        assert "m1: trying at 198.18.0.1:51820" in info
        assert "m9999: trying at 198.18.39.15:51820" in punching_lines(caplog, logging.DEBUG)
        caplog.clear()
        await trio.sleep(1.0)
        status = backend.peers[wg_key(7)]
        backend.peers[wg_key(7)] = PeerStatus(
            PeerConfig(wg_key(7), "203.0.113.7:51820", (), 25), time.time(), 148, 92
        )
        assert status.last_handshake is None
        await punching.step()
        assert punching_lines(caplog) == ["m7: direct at 203.0.113.7:51820"]

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))


def read_for_a_minute(made: tuple[Punching, Backend], cost: float) -> tuple[Punching, list[float]]:
    """Run the service of ``made`` for 60 s of a fake clock, each read of its device taking
    ``cost`` seconds: when each read began."""
    punching, backend = made
    reads: list[float] = []
    counted = backend.get

    async def get() -> DeviceState:
        reads.append(trio.current_time())
        await trio.sleep(cost)
        return await counted()

    backend.get = get  # type: ignore[method-assign]

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(punching.run)
            await trio.sleep(60.0)
            nursery.cancel_scope.cancel()

    punching.host.set_stream_handler = lambda *args: None  # type: ignore[method-assign]
    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    return punching, reads


def test_the_device_is_read_every_second_while_paths_are_tried_and_seldom_once_settled() -> None:
    """Every path tries its one candidate for 5.5 s (a read a second), fails, and waits 30 s
    for its next round: meanwhile the device is read every IDLE_STEP seconds at most, and
    the next round starts on time."""
    punching, reads = read_for_a_minute(service(50), cost=0.0)
    trying = [t for t in reads if t < 7.0]
    assert len(trying) >= 6  # every second while the first round runs
    settled = [t for t in reads if 7.0 <= t < 35.0]
    assert len(settled) <= 28 / IDLE_STEP + 1, settled
    assert all(b - a <= IDLE_STEP + 0.01 for a, b in itertools.pairwise(reads))
    second = [t for t in reads if 35.0 <= t < 42.0]  # the next round, 30 s after the first
    assert len(second) >= 5, second
    assert {p.action.path for p in punching.peers.values() if p.action} == {"relay"}


def test_with_no_direct_path_a_costly_device_is_read_further_apart_but_rounds_start_on_time() -> (
    None
):
    """The same, each read of the device taking 0.25 s (~10,000 peers): once every path is on
    the relay there is no direct path to see fall silent, so the reads are spaced by their
    cost (meshd.daemon.cost_pace: ~12.5 s), and the next round still starts on time."""
    punching, reads = read_for_a_minute(service(50), cost=0.25)
    settled = [t for t in reads if 18.0 <= t < 35.0]  # QUIET after the paths last moved
    assert len(settled) <= 2, settled  # every IDLE_STEP: 4
    second = [t for t in reads if 35.0 <= t < 42.0]  # the next round, 30 s after the first
    assert len(second) >= 5, second
    assert {p.action.path for p in punching.peers.values() if p.action} == {"relay"}


def test_a_stop_during_a_step_over_10000_peers_ends_it_within_a_few_chunks_of_peers() -> None:
    punching, backend = service(N)
    updated: list[bool] = []
    stopping = trio.Event()
    update = punching._update

    def counting(*args: Any) -> Any:
        updated.append(stopping.is_set())
        return update(*args)

    punching._update = counting  # type: ignore[method-assign,assignment]
    counted = backend.get

    async def get() -> DeviceState:
        stopping.set()  # the stop comes while the step runs
        return await counted()

    backend.get = get  # type: ignore[method-assign]

    async def run() -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def stop() -> None:
                    await stopping.wait()
                    scope.cancel()

                nursery.start_soon(stop)
                await punching.step()
        assert scope.cancelled_caught

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert 0 < sum(updated) <= 3 * CHUNK  # the stop is seen at the second checkpoint after it


def test_a_member_that_joins_during_a_step_brings_the_next_one_within_a_second() -> None:
    """Settled, the service reads the device every few seconds; a new membership snapshot
    (a member joined) published while a step is under way, after it took the members (it
    yields while it goes over 10,000 peers, sets the device, announces), is taken at the
    next look, a second later at most, and its candidate tried."""
    punching, backend = service(50)
    reads: list[float] = []
    joined: list[tuple[float, int]] = []  # when, and the reads before it
    counted = backend.get
    reannounce = punching._reannounce

    async def get() -> DeviceState:
        reads.append(trio.current_time())
        return await counted()

    async def late(now: float) -> None:
        if trio.current_time() >= 20.0 and not joined:
            joined.append((trio.current_time(), len(reads)))
            feed: Any = punching.state.feed
            feed.current = SimpleNamespace(members=(*feed.current.members, member(51)))
            backend.peers[wg_key(51)] = PeerStatus(PeerConfig(wg_key(51), None, (), None))
        await reannounce(now)

    backend.get = get  # type: ignore[method-assign]
    punching._reannounce = late  # type: ignore[method-assign]

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(punching.run)
            await trio.sleep(30.0)
            nursery.cancel_scope.cancel()

    punching.host.set_stream_handler = lambda *args: None  # type: ignore[method-assign]
    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    at, n = joined[0]
    before = [t for t in reads[:n] if t >= 10.0]
    assert all(b - a > 1.5 for a, b in itertools.pairwise(before)), before  # settled
    assert reads[n] - at <= 1.0  # the next read
    new = next(p for p in punching.peers.values() if p.name == "m51")
    assert new.put_endpoint == "198.18.0.51:51820"  # its one candidate was tried


def test_between_steps_only_the_peers_with_a_fresh_session_are_kept_of_the_device_read() -> None:
    """The device read of a step is not kept until the next one (a status and its counters a
    member): only the endpoint and last handshake of peers with a fresh session, which the
    reports and the hints of a forwarded punch request name; not even their statuses."""
    punching, backend = service(1000)
    fresh = PeerStatus(PeerConfig(wg_key(7), "203.0.113.7:51820", (), 25), time.time(), 148, 92)
    backend.peers[wg_key(7)] = fresh
    stale = backend.peers[wg_key(8)]
    held = sys.getrefcount(stale)  # the device's (the backend) and this test's
    held_fresh = sys.getrefcount(fresh)

    async def run() -> None:
        await punching.step()

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert punching.messages.sessions == {wg_key(7): ("203.0.113.7:51820", fresh.last_handshake)}
    assert sys.getrefcount(stale) == held  # nothing of the service holds it
    assert sys.getrefcount(fresh) == held_fresh  # nor the fresh one's status
    node_key = member(7).node_key
    assert punching.messages._hints(node_key) == ("203.0.113.7:51820",)
    assert punching.messages._hints(member(8).node_key) == ()


def test_a_step_that_writes_in_several_batches_asks_for_one_round_after_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step that gives up on every peer writes as it goes (OPS_AT_ONCE at a time); the
    WireGuard round it asks for comes once, after its last write and once it let go of its
    device read: a round asked for at each write read the device while the step went on,
    and both reads were held at once (the daemon's busiest moment at 1,000 members)."""
    import meshd.daemon.punching as punching_module
    from meshd.wg.model import RemovePeer

    def hushing(before: Any, path: Any, status: Any, wall: float) -> list[Any]:
        key = status.config.public_key if status is not None else bytes(32)
        return [RemovePeer(key), RemovePeer(key)]  # as a hush: a removal and a creation

    monkeypatch.setattr(punching_module, "hush", hushing)
    punching, backend = service(3000)
    events: list[str] = []
    punching.mesh.kick = lambda: events.append("kick")  # type: ignore[method-assign]
    recorded, read = backend.set, backend.get
    reads: list[weakref.ref[DeviceState]] = []
    read_held: list[bool] = []  # at each write: whether the step's read is still held

    async def getting() -> DeviceState:
        state = await read()
        reads.append(weakref.ref(state))
        return state

    async def setting(ops: Any) -> None:
        gc.collect()
        read_held.append(reads[-1]() is not None)
        events.append("set")
        await recorded(ops)

    backend.get = getting  # type: ignore[method-assign]
    backend.set = setting  # type: ignore[method-assign]

    async def run() -> None:
        await punching.step()

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert events.count("set") >= 3  # written as it went
    assert sum(len(ops) for ops in backend.sets) == 6000
    last_set = len(events) - 1 - events[::-1].index("set")
    assert "kick" not in events[:last_set]  # none while the step writes (was one a write)
    assert "kick" in events[last_set:]  # and one after it (another may lay its paths)
    assert read_held[0]  # held while the pass goes on...
    assert not read_held[-1]  # ...and let go before the last write


def test_a_step_that_fails_after_writing_still_asks_for_the_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a step wrote before it failed (a look after its writes failing, say) is put right by the
    round it asks for, at once, not at the end of the next step that succeeds."""
    import meshd.daemon.punching as punching_module
    from meshd.errors import BackendError
    from meshd.wg.model import RemovePeer

    def hushing(before: Any, path: Any, status: Any, wall: float) -> list[Any]:
        return [RemovePeer(status.config.public_key)] * 2

    monkeypatch.setattr(punching_module, "hush", hushing)
    punching, backend = service(3000)
    events: list[str] = []
    punching.mesh.kick = lambda: events.append("kick")  # type: ignore[method-assign]

    def failing(*args: Any) -> Any:  # after the pass's writes, before its last one
        raise BackendError("the device went away")

    monkeypatch.setattr(punching, "_reconnected", failing)
    monkeypatch.setattr(punching.host, "set_stream_handler", lambda *args: None, raising=False)

    async def run() -> None:
        with trio.move_on_after(0.5):
            await punching.run()

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert backend.sets  # it wrote...
    assert "kick" in events  # ...and asked for the round though the step failed
