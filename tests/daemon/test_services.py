"""The daemon's services wired together on a fake clock and a fake gossip transport.

No libp2p host runs: tests/daemon/fake_transport.py stands in for it, a NullBackend for
WireGuard, trio's MockClock for time. A record that arrives by gossip reaches WireGuard's
desired state through the membership owner's feed; a revocation takes the peer out at once;
a member that falls silent expires when its announcement's TTL has passed, not before.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
import trio.testing

from meshd.daemon.config import DaemonConfig
from meshd.daemon.service import Daemon
from meshd.daemon.state import NodeState
from meshd.daemon.wireguard import WireGuardMesh
from meshd.gossip.peers import peer_id_of
from meshd.membership import Member, MemberState
from meshd.node.statedir import NodeDir, init_network, now
from meshd.records import Role, make_announcement, make_certificate, make_revocation
from meshd.trust.keys import NodeKey, SigningKey, WgKey, WireGuardKey
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_none import NullBackend
from meshd.wg.model import clamp_private_key
from tests.daemon.fake_transport import FakeTransport

TTL = 120


def _mesh(node: NodeDir) -> tuple[WireGuardMesh, NullBackend]:
    backend = NullBackend(InterfaceConfig("mfake0", clamp_private_key(os.urandom(32))))
    mesh = WireGuardMesh(
        backend,
        kind="none",
        own_node_key=NodeKey(node.node_key.public),
        own_wg_key=WgKey(backend.config.public_key),
        overlay=ipaddress.IPv6Address("fd00::1"),
        overlay_prefix=ipaddress.IPv6Network("fd00::/48"),
        listen_port=51820,
        poke=False,
    )
    return mesh, backend


@asynccontextmanager
async def _running(
    tmp_path: Path, node: NodeDir, base: int
) -> AsyncIterator[tuple[Daemon, FakeTransport, NullBackend]]:
    """launch.run's order, with the fakes: the owner, WireGuard from its feed, the services."""
    state = NodeState(node, announce_ttl=TTL, clock=lambda: base + int(trio.current_time()))
    config = DaemonConfig(
        state_dir=tmp_path, wg_backend="none", announce_interval=60.0, announce_ttl=TTL
    )
    mesh, backend = _mesh(node)
    transport = FakeTransport(state.validate)
    members = state.feed.subscribe()
    mesh.set_members(members.latest.members)
    async with trio.open_nursery() as nursery:
        await nursery.start(state.feed.run)
        nursery.start_soon(mesh.follow, members)
        await nursery.start(mesh.run)
        daemon = Daemon(config, state, transport, mesh)
        await nursery.start(daemon.run)
        try:
            yield daemon, transport, backend
        finally:
            nursery.cancel_scope.cancel()


def _run(test: object) -> None:
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]


def _member(node: NodeDir, root: SigningKey, at: int) -> tuple[SigningKey, bytes, bytes]:
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    cert = make_certificate(
        root,
        network_id=node.anchor.network_id,
        subject=key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=at - 60,
        not_after=at + 86400,
        name="m1",
        wg_key=wg.public,
    )
    return key, wg.public, cert.raw


def _peers(backend: NullBackend) -> set[bytes]:
    return {p.public_key for p in backend.state.peers}


def test_a_gossiped_record_reaches_wireguard_and_its_revocation_removes_it(
    tmp_path: Path,
) -> None:
    node = init_network(
        tmp_path / "n", network_name="t", node_name="founder", root_key_path=None, at=now()
    )
    root = node.issuer().key
    base = now()

    async def main() -> None:
        async with _running(tmp_path / "n", node, base) as (_, transport, backend):
            key, wg, cert = _member(node, root, base)
            assert wg not in _peers(backend)
            start = trio.current_time()
            assert transport.deliver(cert, "author", "neighbour")
            await trio.testing.wait_all_tasks_blocked()
            assert wg in _peers(backend)
            assert trio.current_time() == start  # at once, not at the periodic round
            revocation = make_revocation(
                root,
                network_id=node.anchor.network_id,
                target=key.public,
                target_role=Role.MEMBER,
                issued_at=base + 1,
                expires_at=base + 86400,
                reason="test",
            )
            assert transport.deliver(revocation.raw, "author", "neighbour")
            await trio.testing.wait_all_tasks_blocked()
            assert wg not in _peers(backend)
            assert trio.current_time() == start
            assert not transport.deliver(
                revocation.raw, "author", "neighbour"
            )  # known: not forwarded
            # our own announcement went out through the transport, once
            assert len(transport.published) == 1

    try:
        _run(main)
    finally:
        node.close()


def test_a_silent_member_expires_after_its_ttl_and_not_before(tmp_path: Path) -> None:
    node = init_network(
        tmp_path / "n", network_name="t", node_name="founder", root_key_path=None, at=now()
    )
    root = node.issuer().key
    base = now()

    async def main() -> None:
        async with _running(tmp_path / "n", node, base) as (daemon, transport, backend):
            key, wg, cert = _member(node, root, base)
            announcement = make_announcement(
                key, network_id=node.anchor.network_id, seq=1, issued_at=base, endpoints=()
            )
            assert transport.deliver(cert, "a", "n")
            assert transport.deliver(announcement.raw, "a", "n")
            transport.connect(peer_id_of(key.public))  # a member is connected: not cut off

            def state() -> MemberState:
                return _state_of(daemon, key.public)

            await trio.sleep(TTL - 5)
            assert state() is MemberState.ADMITTED
            await trio.sleep(10)
            assert state() is MemberState.EXPIRED
            assert wg not in _peers(backend)

    try:
        _run(main)
    finally:
        node.close()


def _state_of(daemon: Daemon, key: bytes) -> MemberState:
    found: dict[bytes, Member] = {m.node_key: m for m in daemon.state.feed.current.members}
    return found[key].state


def test_a_node_with_no_member_connected_expires_no_one_by_silence(tmp_path: Path) -> None:
    """The silence is ours when no member is connected (our link is down, a NAT lost our
    mapping): members stay, in WireGuard too, and their silence counts again from the moment
    a member is connected."""
    node = init_network(
        tmp_path / "n", network_name="t", node_name="founder", root_key_path=None, at=now()
    )
    root = node.issuer().key
    base = now()

    async def main() -> None:
        async with _running(tmp_path / "n", node, base) as (daemon, transport, backend):
            key, wg, cert = _member(node, root, base)
            announcement = make_announcement(
                key, network_id=node.anchor.network_id, seq=1, issued_at=base, endpoints=()
            )
            assert transport.deliver(cert, "a", "n")
            assert transport.deliver(announcement.raw, "a", "n")
            await trio.sleep(3 * TTL)  # nobody connected all along
            assert _state_of(daemon, key.public) is MemberState.ADMITTED
            assert wg in _peers(backend)
            transport.connect(peer_id_of(key.public))
            await trio.sleep(TTL - 10)
            assert _state_of(daemon, key.public) is MemberState.ADMITTED
            await trio.sleep(20)
            assert _state_of(daemon, key.public) is MemberState.EXPIRED
            assert wg not in _peers(backend)

    try:
        _run(main)
    finally:
        node.close()
