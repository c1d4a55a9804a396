"""Unicast links come up in round trips: out-of-schedule Hellos (fake clock, no I/O)."""

from __future__ import annotations

from ipaddress import IPv6Address

from meshd.babel.codec import decode_packet_untrusted
from meshd.babel.core import BabelCore
from meshd.babel.core_receive import QUICK_HELLOS
from meshd.babel.expand import expand, ihu
from meshd.babel.numbers import HELLO_UNICAST, INFINITY
from meshd.babel.packet import Packet
from meshd.babel.tlv import Hello
from tests.babel.sim import Sim

ME = IPv6Address("fe80::1")
PEER = IPv6Address("fe80::2")


def routed(sim: Sim) -> bool:
    return sim.next_hop(0, 2) is not None and sim.next_hop(2, 0) is not None


def test_a_relayed_route_is_learnt_within_a_second_at_a_4_s_hello() -> None:
    """0 - 1 - 2 over unicast peers (a relay between two members): with scheduled Hellos
    only, each link needed two of them and an IHU, 8 s at a 4 s Hello."""
    for seed in range(5):
        sim = Sim(3, [(0, 1), (1, 2)], kind="unicast-peers", hello_interval=4.0, seed=seed)
        assert sim.run_until(routed, 60.0) < 1.0


def test_a_member_that_comes_late_is_routed_within_a_second_of_its_first_hello() -> None:
    """Node 2's daemon starts 3 s after the others know of it: what they sent it before is
    lost; its own first Hellos bring the link up."""
    sim = Sim(3, [(0, 1), (1, 2)], kind="unicast-peers", hello_interval=4.0, seed=3)
    sim.cut(1, 2)
    sim.run(3.0)
    assert sim.next_hop(0, 2) is None
    sim.restore(1, 2)
    took = sim.run_until(routed, 60.0)
    assert took < 5.0  # node 1's next scheduled Hello (within 4 s) starts it, then round trips
    sim.run(20.0)
    assert routed(sim)


def _core() -> BabelCore:
    core = BabelCore(bytes.fromhex("0000000000000001"))
    core.add_interface("wg0", kind="unicast-peers", hello_interval=4.0, link_local=ME)
    core.add_neighbour("wg0", PEER)
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    return core


def _hellos_sent(core: BabelCore, now: float) -> int:
    count = 0
    for _, destination, payload in core.datagrams_to_send(now):
        assert destination == PEER
        messages = expand(decode_packet_untrusted(payload), ME)
        count += sum(1 for m in messages if isinstance(m, Hello))
    return count


def test_a_neighbour_cannot_make_us_send_more_than_a_few_hellos_per_interval() -> None:
    """A neighbour that floods Hellos and never says it hears us (IHU infinite) gets at most
    QUICK_HELLOS answers between two scheduled Hellos; the rest are counted."""
    core = _core()
    answered = 0
    for i in range(100):
        now = 0.01 * (i + 1)
        hello = Hello(i + 1, 400, HELLO_UNICAST)
        core.receive("wg0", PEER, Packet((hello, ihu(INFINITY, 1200, ME))), now)
        answered += _hellos_sent(core, now)
    assert answered == QUICK_HELLOS
    assert core.counters()["quick_hellos_refused"] == 100 - QUICK_HELLOS
    core.handle_timer(4.0)  # the scheduled Hello: the budget is back
    assert _hellos_sent(core, 4.0) == 1
    core.receive("wg0", PEER, Packet((Hello(101, 400, HELLO_UNICAST),)), 4.1)
    assert _hellos_sent(core, 4.1) == 1


def test_a_link_that_is_up_gets_only_scheduled_hellos() -> None:
    """Once both ends hear each other, the neighbour's Hellos are not answered out of
    schedule: the exchange stops."""
    core = _core()
    seqno = 0
    for now in (0.1, 0.2, 0.3):
        seqno += 1
        core.receive(
            "wg0", PEER, Packet((Hello(seqno, 400, HELLO_UNICAST), ihu(96, 1200, ME))), now
        )
        _hellos_sent(core, now)
    assert core.neighbours()[0].cost == 96
    for now in (4.1, 8.1, 12.1):
        core.handle_timer(now - 0.1)
        _hellos_sent(core, now - 0.1)
        seqno += 1
        core.receive(
            "wg0", PEER, Packet((Hello(seqno, 400, HELLO_UNICAST), ihu(96, 1200, ME))), now
        )
        assert _hellos_sent(core, now) == 0
    assert core.counters()["quick_hellos_refused"] == 0
