"""The daemon's services wired together on a fake clock, a fake gossip transport and an
in-memory WireGuard device: one founded network, members certified by its root, and the
daemon run in launch.run's order (tests/daemon/test_services.py, test_seeing.py,
test_disksync.py)."""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio
import trio.testing

from meshd.node.statedir import NodeDir, init_network, now
from meshd.records import (
    Certificate,
    Revocation,
    Role,
    make_announcement,
    make_certificate,
    make_revocation,
)
from meshd.trust.keys import NodeKey, SigningKey, WgKey, WireGuardKey

if TYPE_CHECKING:  # the daemon's side is imported by the tests that run it (libp2p: ~2 s)
    from meshd.daemon.announcer import Announcer
    from meshd.daemon.config import DaemonConfig
    from meshd.daemon.service import Daemon
    from meshd.daemon.state import NodeState
    from meshd.daemon.wireguard import WireGuardMesh
    from meshd.wg.backend_none import NullBackend
    from tests.daemon.fake_transport import FakeTransport

TTL = 120  # the announcement TTL of the fake daemon, in seconds of the fake clock


def found(root: Path) -> NodeDir:
    """A new network in ``root``, its founder named "founder" (close it after)."""
    return init_network(root, network_name="t", node_name="founder", root_key_path=None, at=now())


@dataclass(frozen=True)
class NewMember:
    """A member certified by the root: its node key, WireGuard key and certificate."""

    key: SigningKey
    wg: bytes
    cert: Certificate


def fake_now(base: int) -> int:
    """The running fake daemon's clock (:func:`running`): ``base`` plus trio's fake time.

    Records a test makes while the daemon runs are dated by it, not by ``base``: trio's
    MockClock jumps ahead while a worker thread runs, so by the time a record arrives the
    daemon's clock may be minutes past ``base``, and a member dated ``base`` would already
    read as silent for that long."""
    return base + int(trio.current_time())


def certify(node: NodeDir, at: int, name: str = "m1") -> NewMember:
    """A member of ``node``'s network with a fresh node key and WireGuard key, certified by
    its root from a minute before ``at`` for a day."""
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    cert = make_certificate(
        node.issuer().key,
        network_id=node.anchor.network_id,
        subject=key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=at - 60,
        not_after=at + 86400,
        name=name,
        wg_key=wg.public,
    )
    return NewMember(key, wg.public, cert)


def announced(node: NodeDir, transport: FakeTransport, base: int, name: str = "m1") -> NewMember:
    """A member certified by :func:`certify` whose certificate and first announcement (no
    endpoints, issued at ``base``) arrived by gossip."""
    member = certify(node, base, name)
    announcement = make_announcement(
        member.key, network_id=node.anchor.network_id, seq=1, issued_at=base, endpoints=()
    )
    assert transport.deliver(member.cert.raw, "a", "n")
    assert transport.deliver(announcement.raw, "a", "n")
    return member


def revoke(node: NodeDir, member: bytes, at: int) -> Revocation:
    """The root's revocation of ``member``, issued at ``at``."""
    return make_revocation(
        node.issuer().key,
        network_id=node.anchor.network_id,
        target=member,
        target_role=Role.MEMBER,
        issued_at=at,
        expires_at=at + 86400,
        reason="test",
    )


def _mesh(node: NodeDir) -> tuple[WireGuardMesh, NullBackend]:
    from meshd.daemon.wireguard import WireGuardMesh
    from meshd.wg.backend import InterfaceConfig
    from meshd.wg.backend_none import NullBackend
    from meshd.wg.model import clamp_private_key

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
async def running(
    node: NodeDir, base: int
) -> AsyncIterator[tuple[Daemon, FakeTransport, NullBackend]]:
    """launch.run's order, with the fakes: the owner, WireGuard from its feed, the services.
    The clock is ``base`` plus trio's (fake) time."""
    from meshd.daemon.config import DaemonConfig
    from meshd.daemon.service import Daemon
    from meshd.daemon.state import NodeState
    from tests.daemon.fake_transport import FakeTransport

    state = NodeState(node, announce_ttl=TTL, clock=lambda: base + int(trio.current_time()))
    config = DaemonConfig(
        state_dir=node.paths.root, wg_backend="none", announce_interval=60.0, announce_ttl=TTL
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


async def until(condition: Callable[[], bool], what: str) -> None:
    """Until ``condition`` holds, on a clock that never jumps
    (``MockClock(autojump_threshold=math.inf)``): waited for in real time, at most 10 s, as
    worker threads finish (which ``wait_all_tasks_blocked`` counts as blocked)."""
    for _ in range(1000):
        await trio.testing.wait_all_tasks_blocked()
        if condition():
            return
        await trio.to_thread.run_sync(time.sleep, 0.01)
    raise AssertionError(f"not within 10 s: {what}")


async def first_announced(daemon: Daemon) -> None:
    """Until ``daemon`` (of :func:`running`) has made its first announcement, this node
    admitted, on a clock that never jumps. Its look at the host's addresses before it runs
    in a thread: on a busy machine a test read its views before it, this node still
    expired."""
    from meshd.membership import MemberState

    def admitted() -> bool:
        own = daemon.state.member(daemon.state.key)
        return own is not None and own.state is MemberState.ADMITTED

    await until(admitted, "the daemon's first announcement")


def announcer_of(
    node: NodeDir, base: int, config: DaemonConfig
) -> tuple[NodeState, FakeTransport, Announcer]:
    """The fake daemon's owner, transport and announcer alone (no other service), on a
    clock of ``base`` plus trio's (fake) time."""
    from meshd.daemon.announcer import Announcer
    from meshd.daemon.flooding import Flooder
    from meshd.daemon.state import NodeState
    from tests.daemon.fake_transport import FakeTransport

    state = NodeState(node, announce_ttl=TTL, clock=lambda: base + int(trio.current_time()))
    mesh, _ = _mesh(node)
    transport = FakeTransport(state.validate)
    return state, transport, Announcer(transport, state, mesh, config, Flooder(transport, state))


def run_on_fake_clock(test: Callable[[], Awaitable[None]]) -> None:
    """Run ``test`` with trio's MockClock, jumping ahead whenever every task is blocked."""
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))


def peers(backend: NullBackend) -> set[bytes]:
    """The WireGuard keys of the in-memory device's peers."""
    return {p.public_key for p in backend.state.peers}
