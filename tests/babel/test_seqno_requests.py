"""What a neighbour's Seqno Requests can make us do (RFC 8966 3.8.1.2), bounded: a relay
or gateway has every member as a neighbour, and one member's requests for our prefix
raised our seqno once a request, each rise sent urgently, twice, to every neighbour."""

from __future__ import annotations

import hashlib
from ipaddress import IPv6Address, IPv6Network

from meshd.babel.codec import encode_packet
from meshd.babel.core import BabelCore, CoreConfig
from meshd.babel.expand import seqno_request
from meshd.babel.packet import Packet

IF = "wg0"
PREFIX = IPv6Network("fd00:1::1/128")
ROUTER_ID = hashlib.sha256(b"relay").digest()[:8]
ATTACKER = IPv6Address("fe80::aaaa")


def _relay(neighbours: int) -> BabelCore:
    core = BabelCore(ROUTER_ID, CoreConfig(random=lambda: 0.5))
    core.add_interface(
        IF, kind="unicast-peers", hello_interval=4.0, link_local=IPv6Address("fe80::1")
    )
    core.originate(PREFIX)
    for i in range(neighbours):
        core.add_neighbour(IF, IPv6Address(f"fe80::{0x100 + i:x}"))
    core.add_neighbour(IF, ATTACKER)
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    core.handle_timer(100.0)
    core.datagrams_to_send(100.0)
    return core


def _run(core: BabelCore, seconds: float, attack: bool) -> int:
    """Datagrams the core sends in ``seconds``, with a request every 25 ms or none."""
    now, sent, next_request = 100.0, 0, 100.0
    while now < 100.0 + seconds:
        now = round(now + 0.001, 3)
        if attack and now >= next_request:
            request = seqno_request(PREFIX, (core.seqno + 1) & 0xFFFF, 64, ROUTER_ID)
            core.receive(IF, ATTACKER, encode_packet(Packet((request,))), now)
            next_request = now + 0.025
        due = core.timer()
        if due is not None and due <= now:
            core.handle_timer(now)
        sent += len(core.datagrams_to_send(now))
    return sent


def test_a_neighbour_asking_our_seqno_up_again_and_again_gets_one_rise_a_second() -> None:
    quiet = _run(_relay(200), 5.0, attack=False)
    core = _relay(200)
    attacked = _run(core, 5.0, attack=True)
    # Before: 200 requests raised the seqno 200 times, each an urgent update and its resend
    # to all 201 neighbours (~80,000 datagrams); now the rise goes to the one who asked.
    assert core.seqno <= 6
    assert attacked - quiet <= 10, (attacked, quiet)
    assert core.counters()["seqno_requests_refused"] >= 190


def test_a_request_far_ahead_is_dropped() -> None:
    core = _relay(3)
    far = seqno_request(PREFIX, (core.seqno + 32767) & 0xFFFF, 64, ROUTER_ID)
    core.receive(IF, ATTACKER, encode_packet(Packet((far,) * 100)), 100.5)
    assert core.seqno == 0
    assert core.counters()["seqno_requests_refused"] == 100
    near = seqno_request(PREFIX, (core.seqno + 1) & 0xFFFF, 64, ROUTER_ID)
    core.receive(IF, ATTACKER, encode_packet(Packet((near,))), 100.6)
    assert core.seqno == 1
