"""Who may be a Babel neighbour at all: a speaker on the link (a link-local source), from
Babel's port (RFC 8966 4), as babeld requires."""

from __future__ import annotations

import hashlib
from ipaddress import IPv6Address

from meshd.babel.codec import encode_packet
from meshd.babel.core import BabelCore, CoreConfig
from meshd.babel.packet import Packet
from meshd.babel.tlv import Hello

ROUTER_ID = hashlib.sha256(b"gateway").digest()[:8]


def test_a_speaker_that_is_not_on_the_link_is_no_neighbour() -> None:
    """A packet from an IPv6 address that is not link-local (a host off the link that can
    reach a gateway's site interface) made its sender a neighbour, whose routes (a default
    route through a next hop of its choosing) were installed. babeld drops it."""
    core = BabelCore(ROUTER_ID, CoreConfig(random=lambda: 0.5))
    core.add_interface("eth0", kind="wired", hello_interval=4.0)
    far = IPv6Address("2001:db8:dead::666")
    hello = encode_packet(Packet((Hello(1, 400, 0),)))
    core.receive("eth0", far, hello, 1.0)
    assert core.neighbours() == []
    assert core.counters()["not_link_local_packets"] == 1
    core.receive("eth0", IPv6Address("fe80::2"), hello, 1.0)
    assert len(core.neighbours()) == 1


def test_a_datagram_from_another_port_than_babel_s_is_dropped() -> None:
    import socket

    import trio

    from meshd.babel.ports import UdpPort

    async def main() -> None:
        with (
            trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as ours,
            trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as speaker,
            trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as stranger,
        ):
            await ours.bind(("::1", 0))
            await speaker.bind(("::1", 0))
            await stranger.bind(("::1", 0))
            babel_port = speaker.getsockname()[1]  # the speakers' port, as 6696 is
            port = UdpPort("lo", ours, index=0, local=None, port=babel_port)
            await stranger.sendto(b"from elsewhere", ours.getsockname())
            await speaker.sendto(b"from babel", ours.getsockname())
            with trio.fail_after(5):
                datagram = await port.receive()
            assert datagram.payload == b"from babel"
            assert port.foreign == 1

    trio.run(main)


def test_speakers_that_announce_no_interval_and_fall_silent_do_not_hold_the_link() -> None:
    """Hellos and IHUs with interval 0 armed no timer: 64 forged speakers holding every
    neighbour slot of a site link with a two-way link kept it for good, and every new
    router was refused. Silent for 300 s, a neighbour's link is down (as babeld's)."""
    from meshd.babel.expand import ihu

    us = IPv6Address("fe80::1")
    core = BabelCore(ROUTER_ID, CoreConfig())
    core.add_interface("eth1", kind="wired", hello_interval=4.0, link_local=us)
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    for i in range(64):
        forged = IPv6Address(f"fe80::{0x1000 + i:x}")
        core.receive("eth1", forged, encode_packet(Packet((Hello(1, 0, 0),))), 0.1)
        core.receive("eth1", forged, encode_packet(Packet((Hello(2, 0, 0), ihu(96, 0, us)))), 0.1)
    assert sum(n.cost < 0xFFFF for n in core.neighbours()) == 64
    now = 0.1
    while now < 400.0:
        now = max(now + 0.5, core.timer() or 0.0)
        core.handle_timer(now)
        core.datagrams_to_send(now)
    assert core.neighbours() == []
    babeld = IPv6Address("fe80::beef")
    core.receive("eth1", babeld, encode_packet(Packet((Hello(1, 400, 0),))), now)
    assert [n.neighbour.address for n in core.neighbours()] == [babeld]


def test_a_neighbour_with_a_long_hello_interval_stays_up_between_its_hellos() -> None:
    """The silence limit is for speakers that announce no schedule: one that says it sends a
    Hello every 600 s (Babel allows up to 655.35 s) is not down after 300 s."""
    from meshd.babel.expand import ihu

    us = IPv6Address("fe80::1")
    core = BabelCore(ROUTER_ID, CoreConfig())
    core.add_interface("eth1", kind="wired", hello_interval=4.0, link_local=us)
    slow = IPv6Address("fe80::5")
    now = 0.0
    for seqno in range(1, 4):
        now += 600.0
        tlvs = (Hello(seqno, 60000, 0), ihu(96, 60000, us))
        core.receive("eth1", slow, encode_packet(Packet(tlvs)), now)
        core.handle_timer(now)
    end = now + 500.0
    while now < end:
        now = min(end, max(now + 0.5, core.timer() or 0.0))
        core.handle_timer(now)
        core.datagrams_to_send(now)
    [view] = core.neighbours()
    assert view.cost < 0xFFFF, view
