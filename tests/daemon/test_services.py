"""The daemon's services wired together on a fake clock and a fake gossip transport.

No libp2p host runs: tests/daemon/fakes.py stands in for it (tests/daemon/fake_transport.py),
a NullBackend for WireGuard, trio's MockClock for time. A record that arrives by gossip
reaches WireGuard's desired state through the membership owner's feed; a revocation takes the
peer out at once; a member that falls silent expires when its announcement's TTL has passed,
not before.
"""

from __future__ import annotations

import trio
import trio.testing

from meshd.daemon.service import Daemon
from meshd.gossip.peers import peer_id_of
from meshd.membership import Member, MemberState
from meshd.node.statedir import NodeDir, now
from meshd.records import Announcement
from meshd.records.decode import decode_record_untrusted
from tests.daemon.fakes import (
    TTL,
    announced,
    certify,
    fake_now,
    peers,
    revoke,
    run_on_fake_clock,
    running,
)


def test_a_gossiped_record_reaches_wireguard_and_its_revocation_removes_it(node: NodeDir) -> None:
    base = now()

    async def main() -> None:
        async with running(node, base) as (_, transport, backend):
            member = certify(node, fake_now(base))
            assert member.wg not in peers(backend)
            start = trio.current_time()
            assert transport.deliver(member.cert.raw, "author", "neighbour")
            await trio.testing.wait_all_tasks_blocked()
            assert member.wg in peers(backend)
            assert trio.current_time() == start  # at once, not at the periodic round
            revocation = revoke(node, member.key.public, base + 1)
            assert transport.deliver(revocation.raw, "author", "neighbour")
            await trio.testing.wait_all_tasks_blocked()
            assert member.wg not in peers(backend)
            assert trio.current_time() == start
            assert not transport.deliver(
                revocation.raw, "author", "neighbour"
            )  # known: not forwarded
            # What went out through the transport is our own announcement (re-announced if
            # the fake clock jumped while a thread ran, as it may under load), never what
            # others gossiped: forwarding that is the transport's own job.
            await transport.first_published()
            sent = [decode_record_untrusted(raw) for raw in transport.published]
            assert sent
            assert all(isinstance(r, Announcement) for r in sent), sent
            assert {r.node_key for r in sent if isinstance(r, Announcement)} == {
                node.node_key.public
            }

    run_on_fake_clock(main)


def _state_of(daemon: Daemon, key: bytes) -> MemberState:
    found: dict[bytes, Member] = {m.node_key: m for m in daemon.state.feed.current.members}
    return found[key].state


def test_a_silent_member_expires_after_its_ttl_and_not_before(node: NodeDir) -> None:
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, transport, backend):
            member = announced(node, transport, fake_now(base))
            # another member is connected, so we are not cut off (a connection to the silent
            # member itself would keep it alive: tests/daemon/test_liveness.py)
            transport.connect(
                peer_id_of(announced(node, transport, fake_now(base), "m2").key.public)
            )

            def state() -> MemberState:
                return _state_of(daemon, member.key.public)

            await trio.sleep(TTL - 5)
            assert state() is MemberState.ADMITTED
            await trio.sleep(10)
            assert state() is MemberState.EXPIRED
            assert member.wg not in peers(backend)

    run_on_fake_clock(main)


def test_a_node_with_no_member_connected_expires_no_one_by_silence(node: NodeDir) -> None:
    """The silence is ours when no member is connected (our link is down, a NAT lost our
    mapping): members stay, in WireGuard too, and their silence counts again from the moment
    a member is connected."""
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, transport, backend):
            member = announced(node, transport, fake_now(base))
            await trio.sleep(3 * TTL)  # nobody connected all along
            assert _state_of(daemon, member.key.public) is MemberState.ADMITTED
            assert member.wg in peers(backend)
            transport.connect(
                peer_id_of(announced(node, transport, fake_now(base), "m2").key.public)
            )
            await trio.sleep(TTL - 10)
            assert _state_of(daemon, member.key.public) is MemberState.ADMITTED
            await trio.sleep(20)
            assert _state_of(daemon, member.key.public) is MemberState.EXPIRED
            assert member.wg not in peers(backend)

    run_on_fake_clock(main)


def test_a_member_unchanged_between_snapshots_is_the_same_object(node: NodeDir) -> None:
    """Services hold the snapshot of their last turn: an unchanged member must not be a
    second copy in the next one, and a changed member must be its new view."""
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, transport, _):
            carol = certify(node, fake_now(base))
            dave = certify(node, fake_now(base))
            for member in (carol, dave):
                assert transport.deliver(member.cert.raw, "author", "neighbour")
            await trio.testing.wait_all_tasks_blocked()
            before: dict[bytes, Member] = {m.node_key: m for m in daemon.state.feed.current.members}
            revocation = revoke(node, carol.key.public, base + 1)
            assert transport.deliver(revocation.raw, "author", "neighbour")
            await trio.testing.wait_all_tasks_blocked()
            after: dict[bytes, Member] = {m.node_key: m for m in daemon.state.feed.current.members}
            assert after[dave.key.public] is before[dave.key.public]
            assert after[carol.key.public] is not before[carol.key.public]
            assert after[carol.key.public].state is MemberState.REVOKED

    run_on_fake_clock(main)
