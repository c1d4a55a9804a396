"""The WireGuard shell's first round (from the store, at start), on the in-memory backend.

Its peers are created without their persistent keepalive (wireguard-go starts a handshake
the moment a peer gets one), and right after it the keepalives are set, each set's
operations made as it goes (not a second plan of every peer); a round of many operations
goes to the device in sets of at most SET_CHUNK, and is counted in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
import trio
import trio.testing

from meshd.daemon import wireguard_sets
from meshd.daemon.wireguard import WireGuardMesh
from meshd.membership import Member
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_none import NullBackend
from meshd.wg.model import Operation
from tests.mesh import shell_support
from tests.mesh.shell_support import run
from tests.mesh.support import member


class RecordingBackend(NullBackend):
    """Remembers the size of every set, and the keepalives of the device after each."""

    def __init__(self, config: InterfaceConfig) -> None:
        super().__init__(config)
        self.sets: list[int] = []
        self.keepalives: list[set[int | None]] = []

    async def set(self, operations: Sequence[Operation]) -> None:
        await super().set(operations)
        self.sets.append(len(operations))
        self.keepalives.append({p.config.persistent_keepalive for p in self.state.peers})


def make_mesh(
    members: list[Member], keepalive: int | None
) -> tuple[WireGuardMesh, RecordingBackend]:
    return shell_support.make_mesh(RecordingBackend, members, "mtest1", keepalive=keepalive)


def test_the_first_round_creates_peers_without_keepalives_and_the_next_sets_them_at_once() -> None:
    async def main() -> None:
        members = [member(i) for i in range(5)]
        mesh, backend = make_mesh(members, keepalive=25)
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            await nursery.start(mesh.run)
            assert backend.keepalives[0] == {None}  # programmed: every peer, no keepalive yet
            await trio.testing.wait_all_tasks_blocked()
            assert len(backend.state.peers) == 5
            assert trio.current_time() == start  # kicked, not waited for
            assert backend.keepalives[-1] == {25}
            assert mesh.rounds == 2
            # Set as the plan would have: the next round finds nothing to do.
            assert await mesh.reconcile()
            assert mesh.last_round_ops == 0
            nursery.cancel_scope.cancel()

    run(main)


def test_without_keepalives_the_first_round_is_the_only_one() -> None:
    async def main() -> None:
        mesh, backend = make_mesh([member(i) for i in range(3)], keepalive=None)
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            await trio.testing.wait_all_tasks_blocked()
            assert backend.keepalives == [{None}]
            assert mesh.rounds == 1
            nursery.cancel_scope.cancel()

    run(main)


def test_a_large_round_goes_in_sets_of_set_chunk_and_is_counted_in_the_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk, logged = 4, 3  # SET_CHUNK and LOGGED_OPS, scaled down
    monkeypatch.setattr(wireguard_sets, "SET_CHUNK", chunk)
    monkeypatch.setattr(wireguard_sets, "LOGGED_OPS", logged)
    count = 2 * chunk + 3

    async def main() -> None:
        mesh, backend = make_mesh([member(i) for i in range(count)], keepalive=25)
        with caplog.at_level(logging.INFO, logger="meshd.daemon.wireguard"):
            async with trio.open_nursery() as nursery:
                await nursery.start(mesh.run)
                await trio.testing.wait_all_tasks_blocked()
                # The first round in three sets, then the keepalives in three more.
                assert backend.sets == [chunk, chunk, 3] * 2
                assert backend.keepalives[2] == {None}
                assert backend.keepalives[-1] == {25}
                nursery.cancel_scope.cancel()

    run(main)
    rounds = [r.getMessage() for r in caplog.records if "UpdatePeer(" in r.getMessage()]
    assert len(rounds) == 1
    for line in rounds:
        assert line.count("UpdatePeer(") == logged
        assert f"and {count - logged} more ({count} operations: {count} peers set" in line
    assert sum(f"keepalives set on {count} peers" in r.getMessage() for r in caplog.records) == 1
