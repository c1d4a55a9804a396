"""One read of the device for the round and the step of one moment (meshd.daemon.device_reads),
on a fake clock: never older than its caller takes, never from before a write of ours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.daemon import wireguard_views
from meshd.daemon.device_reads import (
    SHARED_WITHIN,
    SharedReads,
    may_share,
    read_cost,
    threaded_sets,
    writes_counted,
)
from meshd.daemon.wireguard import WireGuardMesh
from meshd.daemon.wireguard_views import COUNTED_WITHIN, read_counts, status_view
from meshd.membership import Member, MemberState
from meshd.metrics.collector import SnapshotCollector
from meshd.metrics.snapshot import Snapshot, Traffic
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_none import NullBackend
from meshd.wg.errors import UapiConnectionError
from meshd.wg.model import DeviceState, Operation
from tests.mesh.shell_support import make_mesh
from tests.mesh.support import member

COST = 0.25  # seconds a read of the fake device takes


class Device:
    """A fake backend: each read takes COST and says which it was (``listen_port``); each
    write takes ``COST`` too. Every read's start and every write's end is noted."""

    ifname = "wgshare0"

    def __init__(self) -> None:
        self.started: list[float] = []  # by read, its start
        self.written: list[float] = []  # each write's end
        self.fail = False

    async def get(self) -> DeviceState:
        self.started.append(trio.current_time())
        await trio.sleep(COST)
        if self.fail:
            raise UapiConnectionError("no reply")
        return DeviceState(listen_port=len(self.started))

    async def set(self, operations: Sequence[Operation]) -> None:
        await trio.sleep(COST)
        self.written.append(trio.current_time())

    async def rekey(self, private_key: bytes) -> None:
        await self.set([])

    def expect(self, peers: Any) -> None:
        pass

    async def replace_routes(self, prefixes: Any) -> None:
        pass

    async def delete_routes(self, prefixes: Any) -> None:
        pass

    async def aclose(self) -> None:
        pass


def shared(device: Device) -> SharedReads:
    return SharedReads(device)


def run(test: Any) -> None:
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_rule() -> None:
    assert may_share(10.0, 4, 10.5, 4, 1.0)
    assert may_share(10.0, 4, 11.0, 4, 1.0)
    assert not may_share(10.0, 4, 11.01, 4, 1.0)  # older than its caller takes
    assert not may_share(10.0, 4, 10.5, 6, 1.0)  # written to since it began
    assert not may_share(10.0, 4, 10.5, 4, 0.0)  # a caller that takes none but its own
    assert may_share(10.0, 4, 10.0, 4, 0.0)  # ...begun at its very moment


def test_the_round_and_the_step_of_one_moment_read_once() -> None:
    async def main() -> None:
        device = Device()
        reads = shared(device)
        got: list[DeviceState] = []

        async def ask(after: float) -> None:
            await trio.sleep(after)
            got.append(await reads.get())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, 0.0)  # the round
            nursery.start_soon(ask, 0.1)  # the step, while the round's read is in flight
            nursery.start_soon(ask, 0.9)  # a view, after it
        assert len(device.started) == 1
        assert got[0] is got[1] is got[2]
        assert (reads.reads, reads.shared) == (1, 2)
        assert reads.cost == pytest.approx(COST)
        await trio.sleep(SHARED_WITHIN)  # too old now
        assert (await reads.get()).listen_port == 2

    run(main)


def test_no_read_from_before_a_write_is_handed_on() -> None:
    async def main() -> None:
        device = Device()
        reads = shared(device)
        first = await reads.get()
        await reads.set([])  # the step's kicks...
        second = await reads.get()
        assert second is not first  # ...and the round they ask for reads anew
        assert len(device.started) == 2
        again = await reads.get()
        assert again is second
        await reads.rekey(bytes(32))
        assert await reads.get() is not again
        assert len(device.started) == 3

    run(main)


def test_a_write_sent_from_a_thread_counts_as_a_write() -> None:
    # The first round's sets after the keys set early (meshd.daemon.wireguard, _set_after):
    # sent from a worker thread around the wrapper, counted by it all the same.
    async def main() -> None:
        device = Device()
        reads = shared(device)
        first = await reads.get()
        with writes_counted(reads):
            await trio.to_thread.run_sync(lambda: None)
        assert await reads.get() is not first
        assert len(device.started) == 2
        assert threaded_sets(reads) is None  # this fake cannot set from a thread
        in_memory = NullBackend(InterfaceConfig("wgthr0", bytes(32)))
        assert threaded_sets(SharedReads(in_memory)) is in_memory
        with writes_counted(in_memory):  # a backend that shares no reads: nothing to count
            pass

    run(main)


def test_a_read_in_flight_during_a_write_is_not_handed_on_after_it() -> None:
    async def main() -> None:
        device = Device()
        reads = shared(device)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reads.get)
            await trio.sleep(0.01)
            await reads.set([])  # ends after the read
            assert len(device.started) == 1
            await reads.get()
            assert len(device.started) == 2

    run(main)


def test_a_read_no_one_holds_any_more_is_not_kept_for_the_next() -> None:
    async def main() -> None:
        device = Device()
        reads = shared(device)
        await reads.get()  # let go at once (a state of 10,000 peers is ~0.6 MB)
        assert not reads.would_share()
        await reads.get()
        assert len(device.started) == 2
        held = await reads.get()
        assert reads.would_share()
        assert await reads.get() is held
        assert len(device.started) == 3

    run(main)


def test_a_failed_read_is_handed_to_no_one_and_its_cost_paces_on() -> None:
    async def main() -> None:
        device = Device()
        reads = shared(device)
        await reads.get()
        await trio.sleep(5.0)
        device.fail = True
        errors: list[Exception] = []

        async def ask() -> None:
            try:
                await reads.get()
            except UapiConnectionError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            nursery.start_soon(ask)
        assert len(errors) == 2
        assert len(device.started) == 3  # each asked the device itself
        device.fail = False
        await reads.get()
        # A read handed on took its caller nothing, the cost is the last read's.
        assert read_cost(reads, 0.0) == pytest.approx(COST)
        assert read_cost(device, 0.01) == 0.01

    run(main)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["get", "get", "get", "set"]), st.floats(0.0, 2.0)),
        max_size=25,
    )
)
def test_a_read_handed_on_is_never_older_than_its_caller_takes(
    calls: list[tuple[str, float]],
) -> None:
    """Calls started at random moments, overlapping: each read returned began at most
    SHARED_WITHIN before its caller asked, and after the end of every write that ended
    before the caller asked."""

    async def main() -> None:
        device = Device()
        reads = shared(device)
        checked: list[tuple[float, float, list[float]]] = []

        async def get() -> None:
            asked, written = trio.current_time(), list(device.written)
            state = await reads.get()
            assert state.listen_port is not None
            checked.append((asked, device.started[state.listen_port - 1], written))

        async def write() -> None:
            await reads.set([])

        async with trio.open_nursery() as nursery:
            for kind, pause in calls:
                await trio.sleep(pause)
                nursery.start_soon(get if kind == "get" else write)
        for asked, began, written in checked:
            assert asked - SHARED_WITHIN <= began
            assert all(began >= end for end in written)

    run(main)


class SlowNull(NullBackend):
    """An in-memory device whose reads take READ_COST of the (fake) clock, counted."""

    reads = 0

    async def get(self) -> DeviceState:
        self.reads += 1
        await trio.sleep(READ_COST)
        return await super().get()


READ_COST = 0.1


def shared_mesh(members: list[Member]) -> tuple[WireGuardMesh, SlowNull]:
    return make_mesh(SlowNull, members, "mshare0", shared=True)


@pytest.mark.parametrize("phase", [0.3, 2.6, 4.9])
def test_a_periodic_round_reads_the_device_with_the_step(phase: float) -> None:
    """The round's periodic reads ride on another caller's (the punching step's, every 5 s
    here, as at rest), whatever the phase between them: one read of the device a step, not
    two; a membership change still runs a round at once."""

    async def main() -> None:
        members = [member("a"), member("b")]
        mesh, device = shared_mesh(members)
        steps = 0

        async def step() -> None:
            nonlocal steps
            await trio.sleep(phase)
            while True:
                await mesh.backend.get()
                steps += 1
                await trio.sleep(5.0)

        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            nursery.start_soon(step)
            await trio.sleep(20.0)  # settled
            device.reads, rounds, steps = 0, mesh.rounds, 0
            await trio.sleep(100.0)
            periodic, rounds = device.reads, mesh.rounds - rounds
            members[1] = replace(members[1], state=MemberState.REVOKED)
            mesh.set_members(members)
            await trio.sleep(2 * READ_COST + 0.01)
            assert {p.public_key for p in device.state.peers} == {members[0].wg_key}
            nursery.cancel_scope.cancel()
        assert periodic <= steps + 1, (periodic, steps)
        assert rounds >= 100.0 / 5.0 - 2  # every ~5 s still

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_periodic_round_alone_reads_the_device_itself() -> None:
    async def main() -> None:
        mesh, device = shared_mesh([member("a"), member("b")])
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            await trio.sleep(10.0)
            device.reads = 0
            await trio.sleep(100.0)
            nursery.cancel_scope.cancel()
        # Waiting for a read of another's as long again at most: every ~10 s at worst.
        assert 100.0 / 10.2 - 1 <= device.reads <= 100.0 / 5.0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_scrape_counts_the_reads_made_and_handed_on() -> None:
    """What the daemon asks of the device shows in a scrape: reads made and handed on."""

    async def main() -> None:
        mesh, device = shared_mesh([member("a"), member("b")])
        seen = []
        for pause in (0.0, 0.2, SHARED_WITHIN + 0.5):  # a read, one handed on, too old
            await trio.sleep(pause)
            await wireguard_views.device(mesh)  # as meshd peers, a scrape, a round read it
            seen.append(read_counts(mesh))
        assert device.reads == 2
        pairs = [(c["device_reads"], c["device_reads_shared"]) for c in seen]
        assert pairs == [(1, 0), (1, 1), (2, 1)]
        # As a daemon's interface (this mesh's backend is "none", which a scrape leaves out).
        status = {"wireguard": {**(await status_view(mesh)), **seen[-1], "backend": "userspace"}}
        snapshot = Snapshot.of(0, status, [], {}, 0, Traffic())
        scraped = {
            sample.name: sample.value
            for family in SnapshotCollector(snapshot).collect()
            for sample in family.samples
            if sample.name.startswith("meshd_wireguard_device_reads")
        }
        assert scraped == {
            "meshd_wireguard_device_reads_total": 2.0,
            "meshd_wireguard_device_reads_shared_total": 1.0,
        }

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_status_counts_from_the_last_read_while_nothing_was_written_since() -> None:
    """``meshd status`` shows the peers and the port the last read found (at 10,000 peers a
    read is ~0.1 s, for two numbers) while it is recent and nothing was written since; else
    it reads the device itself."""

    async def main() -> None:
        mesh, device = shared_mesh([member("a"), member("b")])
        reads = mesh.backend
        assert isinstance(reads, SharedReads)
        assert reads.counted(COUNTED_WITHIN) is None  # no read yet
        first = await status_view(mesh)  # reads
        assert device.reads == 1
        await trio.sleep(COUNTED_WITHIN / 2)
        again = await status_view(mesh)  # the same read's counts: no read
        assert device.reads == 1
        assert (again["peers"], again["listen_port"]) == (first["peers"], first["listen_port"])
        await reads.set([])  # written since: read anew
        assert reads.counted(COUNTED_WITHIN) is None
        await status_view(mesh)
        assert device.reads == 2
        await trio.sleep(COUNTED_WITHIN + 1)  # too old: read anew
        assert reads.counted(COUNTED_WITHIN) is None
        await status_view(mesh)
        assert device.reads == 3

        async def broken() -> DeviceState:
            raise UapiConnectionError("no reply")

        device.get = broken  # type: ignore[method-assign]  # a read that fails counts nothing
        await trio.sleep(COUNTED_WITHIN + 1)
        assert (await status_view(mesh))["peers"] is None
        assert reads.counted(COUNTED_WITHIN) is None

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_device_read_alone_is_not_counted_as_shared() -> None:
    """A backend that does not share its reads (the tests' own, a plain one) counts none:
    no figure rather than a wrong one."""

    async def main() -> None:
        mesh, _device = make_mesh(SlowNull, [member("a")], "mplain0")
        await status_view(mesh)
        assert read_counts(mesh) == {"device_reads": None, "device_reads_shared": None}

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
