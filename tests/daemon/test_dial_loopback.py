"""A member's announced addresses that name this host are not dialled: a member's loopback
address (unless this node listens on loopback itself: daemons side by side on one machine),
the unspecified address, multicast or broadcast (meshd.gossip.dial_order.dialable, applied
by the connection pass). A member that announced ``/ip4/127.0.0.1/tcp/6379`` had every
other member connect to its own local port 6379."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from meshd.gossip.dial_order import IPNetwork, dialable, listens_on_loopback
from meshd.gossip.peers import ConnectResult
from meshd.node.statedir import NodeDir, now
from meshd.records import make_announcement
from tests.daemon.fakes import certify, fake_now, run_on_fake_clock, running


def test_the_rule() -> None:
    peer = "/p2p/12D3KooWPeer"
    loopbacks = ("/ip4/127.0.0.1/tcp/6379", "/ip4/127.8.0.1/tcp/1", "/ip6/::1/tcp/6379")
    for addr in (*loopbacks, "/ip6/::ffff:127.0.0.1/tcp/6379"):
        assert not dialable(addr + peer, loopback=False), addr
        assert dialable(addr + peer, loopback=True), addr
    for addr in (
        "/ip4/0.0.0.0/tcp/7100",
        "/ip6/::/tcp/7100",
        "/ip4/224.0.0.1/tcp/7100",
        "/ip6/ff02::1/tcp/7100",
        "/ip4/255.255.255.255/tcp/7100",
        "/ip6/::ffff:0.0.0.0/tcp/7100",
        "/ip6/::ffff:255.255.255.255/tcp/7100",
    ):
        assert not dialable(addr + peer, loopback=True), addr
    for addr in ("/ip4/198.51.100.7/tcp/7100", "/ip6/2001:db8::7/tcp/7100", "/dns4/x/tcp/7100"):
        assert dialable(addr + peer, loopback=False), addr
    assert listens_on_loopback(["/ip4/127.0.0.1/tcp/7100"])
    assert listens_on_loopback(["/ip4/0.0.0.0/tcp/7100", "/ip6/::1/tcp/7100"])
    assert not listens_on_loopback(["/ip4/0.0.0.0/tcp/7100", "/ip6/::/tcp/7100"])


def test_the_connection_pass_leaves_out_a_members_loopback_address(node: NodeDir) -> None:
    asked: list[list[str]] = []

    async def main() -> None:
        start = now()
        async with running(node, start) as (daemon, transport, _backend):

            async def connect_any(
                addrs: Sequence[str], on_link: Sequence[IPNetwork] = ()
            ) -> list[ConnectResult]:
                asked.append(list(addrs))
                return [ConnectResult(a, None, "unreachable") for a in addrs]

            transport.connect_any = connect_any  # type: ignore[method-assign]
            member = certify(node, fake_now(start), "m1")
            peer = daemon.connections.peer_id_of(member.key.public)
            local = f"/ip4/127.0.0.1/tcp/6379/p2p/{peer}"
            public = f"/ip4/198.51.100.7/tcp/7100/p2p/{peer}"
            announcement = make_announcement(
                member.key,
                network_id=node.anchor.network_id,
                seq=1,
                issued_at=fake_now(start),
                addrs=(local, public),
            )
            assert transport.deliver(member.cert.raw, "a", "n")
            assert transport.deliver(announcement.raw, "a", "n")
            await trio.testing.wait_all_tasks_blocked()
            daemon.connections.loopback = False  # this node listens on no loopback address
            await daemon.connections._pass()
            await trio.testing.wait_all_tasks_blocked()
            assert [public] in asked, asked
            assert not any(local in addrs for addrs in asked)

    run_on_fake_clock(main)
