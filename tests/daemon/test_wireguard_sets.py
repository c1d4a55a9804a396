"""How the WireGuard shell cuts a round into UAPI ``set``s (meshd.daemon.wireguard).

A set holds at most SET_CHUNK operations, of which at most KEEPALIVE_CHUNK give a peer a
persistent keepalive: wireguard-go sends that keepalive inside the ``set``, and a peer
without a session first makes a handshake initiation, so 1,000 of them in one set outlasted
the UAPI deadline at 10,000 members. A set that fails leaves the sets before it applied, and
the next round sets only what is still missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from meshd.daemon import wireguard, wireguard_sets
from meshd.daemon.wireguard_sets import KEEPALIVE_CHUNK, SET_CHUNK, set_chunks
from meshd.membership import Member
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_none import NullBackend
from meshd.wg.errors import UapiConnectionError
from meshd.wg.model import Operation, PeerOperation, RemovePeer, UpdatePeer
from tests.mesh import shell_support
from tests.mesh.shell_support import run
from tests.mesh.support import member


def peer_key(i: int) -> bytes:
    return i.to_bytes(4, "big") + bytes(28)


def keepalive(i: int) -> UpdatePeer:
    return UpdatePeer(peer_key(i), update_only=True, persistent_keepalive=25)


def create(i: int) -> UpdatePeer:
    return UpdatePeer(peer_key(i), endpoint=f"192.0.2.1:{1000 + i}")


def test_the_real_bounds_keep_a_set_of_keepalives_small() -> None:
    assert KEEPALIVE_CHUNK <= 200 < SET_CHUNK


def test_peers_without_keepalives_go_in_sets_of_set_chunk() -> None:
    ops: list[PeerOperation] = [create(i) for i in range(2 * SET_CHUNK + 5)]
    assert [len(c) for c in set_chunks(ops)] == [SET_CHUNK, SET_CHUNK, 5]


def test_keepalives_go_in_sets_of_keepalive_chunk_in_order() -> None:
    ops: list[PeerOperation] = [keepalive(i) for i in range(3 * KEEPALIVE_CHUNK + 7)]
    chunks = set_chunks(ops)
    assert [len(c) for c in chunks] == [KEEPALIVE_CHUNK] * 3 + [7]
    assert [op for c in chunks for op in c] == ops


def test_a_set_mixes_up_to_keepalive_chunk_keepalives_with_other_operations() -> None:
    # Keepalive off (0), removals and plain updates cost nothing extra.
    plain: list[PeerOperation] = [
        UpdatePeer(peer_key(10_000), persistent_keepalive=0),
        RemovePeer(peer_key(10_001)),
        create(10_002),
    ]
    ops = plain + [keepalive(i) for i in range(KEEPALIVE_CHUNK + 1)] + plain
    chunks = set_chunks(ops)
    assert [len(c) for c in chunks] == [len(plain) + KEEPALIVE_CHUNK, 1 + len(plain)]
    for chunk in chunks:
        assert sum(bool(getattr(op, "persistent_keepalive", 0)) for op in chunk) <= KEEPALIVE_CHUNK
    assert set_chunks([]) == []


class FlakyBackend(NullBackend):
    """Records every set (its keepalive count); the set numbered ``fail_at`` fails, unapplied,
    the way a UAPI ``set`` that got no reply in time does."""

    def __init__(self, config: InterfaceConfig) -> None:
        super().__init__(config)
        self.sets: list[tuple[int, int]] = []  # (operations, keepalives)
        self.fail_at: int | None = None

    async def set(self, operations: Sequence[Operation]) -> None:
        keepalives = sum(
            isinstance(op, UpdatePeer) and bool(op.persistent_keepalive) for op in operations
        )
        self.sets.append((len(operations), keepalives))
        if self.fail_at is not None and len(self.sets) == self.fail_at:
            raise UapiConnectionError("WireGuard UAPI set got no reply within 5 s")
        await super().set(operations)


def keepalives_set(backend: FlakyBackend) -> int:
    return sum(p.config.persistent_keepalive == 25 for p in backend.state.peers)


def test_the_keepalive_round_goes_in_small_sets_and_a_failed_set_loses_only_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wireguard_sets, "SET_CHUNK", 10)
    monkeypatch.setattr(wireguard_sets, "KEEPALIVE_CHUNK", 3)
    members: list[Member] = [member(i) for i in range(11)]

    async def main() -> None:
        mesh, backend = shell_support.make_mesh(FlakyBackend, members, "mtest9", keepalive=25)
        backend.fail_at = 4  # the keepalive round's second set
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            await trio.testing.wait_all_tasks_blocked()
            # The first round: every peer, no keepalive, in sets of SET_CHUNK.
            assert backend.sets[:2] == [(10, 0), (1, 0)]
            # The keepalive round at once, in sets of 3: the second failed; the first stayed.
            assert backend.sets[2:4] == [(3, 3), (3, 3)]
            assert mesh.errors == 1
            # The round after (RETRY_AFTER_ERROR later) sets only the 8 still missing.
            await trio.sleep(wireguard.RETRY_AFTER_ERROR)
            await trio.testing.wait_all_tasks_blocked()
            assert backend.sets[4:] == [(3, 3), (3, 3), (2, 2)]
            assert keepalives_set(backend) == 11
            assert mesh.rounds == 2
            nursery.cancel_scope.cancel()

    run(main)
