"""The WireGuard shell's loop on the in-memory backend, on a fake clock.

A revocation empties the peer at once (no clock time passes), roamed endpoints are left
alone, and a ``set`` that fails half way is read again and converged within the retry delay.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import replace

import pytest
import trio
import trio.testing

from meshd.daemon import wireguard_views
from meshd.daemon.wireguard import RETRY_AFTER_ERROR, WireGuardMesh
from meshd.errors import BackendError
from meshd.membership import Member, MemberState
from meshd.mesh.holddown import DIRECT_ATTEMPT, hold_down_period
from meshd.wg.backend_none import NullBackend
from meshd.wg.model import Operation, UpdatePeer
from meshd.wg.reconcile import apply_operations
from tests.mesh import shell_support
from tests.mesh.shell_support import run
from tests.mesh.support import member

INTERVAL = 5.0


class FlakyBackend(NullBackend):
    """Applies only the first operation of the next ``fail`` sets, then raises."""

    fail = 0

    async def set(self, operations: Sequence[Operation]) -> None:
        if self.fail:
            self.fail -= 1
            self.state = apply_operations(self.state, operations[:1])
            raise BackendError("device refused the rest")
        await super().set(operations)


def make_mesh(members: list[Member]) -> tuple[WireGuardMesh, FlakyBackend]:
    return shell_support.make_mesh(FlakyBackend, members, "mtest0", interval=INTERVAL)


def test_events_reconcile_at_once_and_revocation_removes_the_peer() -> None:
    async def main() -> None:
        members = [member("a"), member("b")]
        mesh, backend = make_mesh(members)
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            assert {p.public_key for p in backend.state.peers} == {m.wg_key for m in members}
            start = trio.current_time()
            members[1] = replace(members[1], state=MemberState.REVOKED)
            mesh.set_members(members)
            await trio.testing.wait_all_tasks_blocked()
            assert {p.public_key for p in backend.state.peers} == {members[0].wg_key}
            assert trio.current_time() == start  # not the periodic round: at once
            nursery.cancel_scope.cancel()

    run(main)


def test_roamed_endpoints_are_left_alone_until_the_announcement_changes() -> None:
    async def main() -> None:
        members = [member("a", endpoints=("192.0.2.1:51820",))]
        mesh, backend = make_mesh(members)
        wg = members[0].wg_key
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            # The peer roams: WireGuard now sends to where its packets came from.
            backend.state = apply_operations(
                backend.state, [UpdatePeer(wg, endpoint="198.51.100.9:4000")]
            )
            mesh.kick()
            await trio.sleep(INTERVAL * 2)
            assert backend.state.peer_configs()[wg].endpoint == "198.51.100.9:4000"
            members[0] = member("a", endpoints=("192.0.2.7:51820",))
            mesh.set_members(members)
            await trio.testing.wait_all_tasks_blocked()
            assert backend.state.peer_configs()[wg].endpoint == "192.0.2.7:51820"
            nursery.cancel_scope.cancel()

    run(main)


def test_a_set_that_fails_half_way_is_read_again_and_converges() -> None:
    async def main() -> None:
        members = [member(n) for n in "abcd"]
        mesh, backend = make_mesh(members)
        backend.fail = 1
        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            assert len(backend.state.peers) == 1  # one peer made it before the error
            assert mesh.errors == 1
            await trio.sleep(RETRY_AFTER_ERROR + 0.01)
            assert {p.public_key for p in backend.state.peers} == {m.wg_key for m in members}
            for peer in backend.state.peers:
                assert ipaddress.ip_network(f"{members[0].overlay}/128") in [
                    n for p in backend.state.peers for n in p.config.allowed_ips
                ]
                assert peer.config.persistent_keepalive == 25
            nursery.cancel_scope.cancel()

    run(main)


def test_status_view_names_the_interface() -> None:
    async def main() -> None:
        mesh, _ = make_mesh([member("a")])
        await mesh.reconcile()
        view = await wireguard_views.status_view(mesh)
        assert view["interface"] == "mtest0"
        assert view["peers"] == 1
        assert view["desired_peers"] == 1
        assert view["rounds"] == 1

    run(main)


def shake_hands(backend: FlakyBackend) -> None:
    """Every peer of the device has a handshake now, as where direct paths work."""
    peers = tuple(dataclasses.replace(p, last_handshake=1.0) for p in backend.state.peers)
    backend.state = dataclasses.replace(backend.state, peers=peers)


def test_a_new_neighbour_with_no_handshake_goes_to_the_relay_once_its_attempt_failed() -> None:
    async def main() -> None:
        new, relay = member("new"), member("relay")
        mesh, backend = make_mesh([new, relay])
        overlay = ipaddress.ip_network(f"{new.overlay}/128")

        def holder() -> bytes:
            peers = backend.state.peer_configs()
            return next(k for k, p in peers.items() if overlay in p.allowed_ips)

        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            mesh.follow_babel(hello_interval=4.0)  # held 16 s, unless no handshake comes
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            mesh.set_extra_prefixes({relay.wg_key: [overlay]})  # Babel: new via relay
            await trio.testing.wait_all_tasks_blocked()
            assert holder() == new.wg_key
            await trio.sleep(DIRECT_ATTEMPT + 0.1)  # a round when the attempt ends
            assert holder() == relay.wg_key
            assert trio.current_time() - start < DIRECT_ATTEMPT + 0.2  # not 16 s
            nursery.cancel_scope.cancel()

    run(main)


def test_a_new_direct_neighbour_is_held_and_the_relay_takes_over_when_the_hold_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="meshd.daemon.wireguard")

    async def main() -> None:
        new, relay = member("new"), member("relay")
        mesh, backend = make_mesh([new, relay])
        overlay = ipaddress.ip_network(f"{new.overlay}/128")

        def holder() -> bytes:
            peers = backend.state.peer_configs()
            return next(k for k, p in peers.items() if overlay in p.allowed_ips)

        async with trio.open_nursery() as nursery:
            await nursery.start(mesh.run)
            shake_hands(backend)  # the direct path works: held until Babel or the period
            mesh.follow_babel(hello_interval=4.0)  # held 16 s; periodic rounds every 5 s
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            mesh.set_extra_prefixes({relay.wg_key: [overlay]})  # Babel: new via relay
            await trio.testing.wait_all_tasks_blocked()
            assert holder() == new.wg_key
            assert (await wireguard_views.status_view(mesh))["held"] == 2
            assert "new stays on its own peer, a new direct neighbour (Babel: via relay)" in (
                caplog.text
            )
            await trio.sleep(hold_down_period(4.0) - 0.1)
            assert holder() == new.wg_key
            await trio.sleep(0.2)  # a round at the end of the hold-down, not the periodic one
            assert holder() == relay.wg_key
            assert trio.current_time() - start < hold_down_period(4.0) + 0.2
            assert "new: no direct route from Babel within the hold-down; via relay" in (
                caplog.text
            )
            nursery.cancel_scope.cancel()

    run(main)
