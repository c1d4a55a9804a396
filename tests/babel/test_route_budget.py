"""A neighbour's route budget and the rate of full dumps it can ask for (rule (d) of the
threat model: every resource a peer can make us spend is bounded per peer).

- One established neighbour announcing 50,000 prefixes holds at most its budget of routes
  (10,000 by default); past it, new prefixes are dropped and counted, its older routes and
  everyone else's stay, and another neighbour's new routes still get in.
- One neighbour sending 1,000 wildcard Route Requests in a second gets one full dump, not
  one every few milliseconds; another neighbour asking at the same time gets its own.

The core is driven on a fake clock (``now`` passed in), as the shell drives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv6Address, IPv6Network

import pytest

from meshd.babel.codec import decode_packet_untrusted
from meshd.babel.core import BabelCore
from meshd.babel.expand import Route, build_updates, expand_routes, ihu, route_request
from meshd.babel.neighbours import IPAddress
from meshd.babel.packet import Packet, Tlv
from meshd.babel.tlv import Hello

ME = IPv6Address("fe80::1")
ATTACKER = IPv6Address("fe80::66")
ROUTER = IPv6Address("fe80::2")
ATTACKER_ID = bytes.fromhex("00000000000000aa")
ROUTER_ID = bytes.fromhex("00000000000000bb")
ROUTER_PREFIX = IPv6Network("2001:db8:2::/48")
LATE_PREFIX = IPv6Network("2001:db8:3::/48")
INTERVAL = 1600  # centiseconds: the routes stay 56 s without a refresh
FLOOD = 50_000
BUDGET = 10_000  # the default route budget of a neighbour
PER_PACKET = 100


def flood_prefix(i: int) -> IPv6Network:
    return IPv6Network((int(IPv6Address("2001:db9::")) + (i << 64), 64))


class Link:
    """``us`` on one wired interface; neighbours speak to it by address, on a fake clock."""

    def __init__(self, max_routes: int | None = None) -> None:
        self.core = BabelCore(bytes.fromhex("0000000000000001"))
        if max_routes is None:  # the default budget
            self.core.add_interface("eth0", kind="wired", hello_interval=4.0, link_local=ME)
        else:
            self.core.add_interface(
                "eth0", kind="wired", hello_interval=4.0, link_local=ME, max_routes=max_routes
            )
        self.now = 0.0
        self.hello_seqno: dict[IPAddress, int] = {}
        self.sent: list[tuple[str, IPAddress, bytes]] = []

    def say(self, source: IPAddress, *tlvs: Tlv, routes: Sequence[Route] = ()) -> None:
        """A packet from ``source``: a Hello and an IHU (a two-way link), then ``tlvs`` and
        ``routes``; then the core's timers and output up to now."""
        seqno = self.hello_seqno.get(source, 0) + 1
        self.hello_seqno[source] = seqno
        body = (Hello(seqno, 400), ihu(96, 1200, ME), *tlvs, *build_updates(routes))
        self.core.receive("eth0", source, Packet(body), self.now)
        self.flush()

    def flush(self) -> None:
        timer = self.core.timer()
        if timer is not None and timer <= self.now:
            self.core.handle_timer(self.now)
        self.sent += self.core.datagrams_to_send(self.now)
        while self.core.next_event() is not None:
            pass

    def run(self, seconds: float, step: float = 0.05) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            self.flush()

    def held_from(self, address: IPAddress) -> list[IPv6Network]:
        return [
            view.prefix  # type: ignore[misc]
            for view in self.core.routes()
            if view.neighbour is not None and view.neighbour.address == address
        ]


def test_one_neighbour_announcing_50000_prefixes_holds_only_its_budget() -> None:
    link = Link()
    for _ in range(3):  # both neighbours up, the router's route selected
        link.say(ROUTER, routes=[Route(ROUTER_PREFIX, 1, 0, INTERVAL, ROUTER_ID, None)])
        link.say(ATTACKER)
        link.run(1.0)
    assert link.core.route(ROUTER_PREFIX) is not None
    for start in range(0, FLOOD, PER_PACKET):
        routes = [
            Route(flood_prefix(i), 1, 0, INTERVAL, ATTACKER_ID, None)
            for i in range(start, start + PER_PACKET)
        ]
        link.now += 0.0002  # 50,000 prefixes in 0.1 s
        link.say(ATTACKER, routes=routes)
    held = link.held_from(ATTACKER)
    assert len(held) <= BUDGET, f"{len(held)} routes held from one neighbour"
    # The oldest are kept: nothing was evicted to make room for the newer ones.
    assert set(held) == {flood_prefix(i) for i in range(BUDGET)}
    counters = link.core.counters()
    # Refused for the route budget, or not even taken in for the Updates' own budget
    # (tests/babel/test_update_budget.py).
    assert counters["routes_over_budget"] + counters["updates_over_budget"] == FLOOD - BUDGET
    # The other neighbour keeps its route, and a new prefix of its own still gets in.
    link.say(
        ROUTER,
        routes=[
            Route(ROUTER_PREFIX, 1, 0, INTERVAL, ROUTER_ID, None),
            Route(LATE_PREFIX, 1, 0, INTERVAL, ROUTER_ID, None),
        ],
    )
    for prefix in (ROUTER_PREFIX, LATE_PREFIX):
        view = link.core.route(prefix)
        assert view is not None, f"{prefix} missing"
        assert view.neighbour is not None
        assert view.neighbour.address == ROUTER


def test_the_budget_refuses_new_prefixes_only() -> None:
    """At its budget a neighbour can still refresh, change and retract what it holds; a
    retraction frees a slot; the budget is per neighbour, not per interface."""
    link = Link(max_routes=3)
    prefixes = [flood_prefix(i) for i in range(5)]

    def announce(*indexes: int, metric: int = 0, seqno: int = 1) -> None:
        routes = [Route(prefixes[i], seqno, metric, INTERVAL, ATTACKER_ID, None) for i in indexes]
        link.say(ATTACKER, routes=routes)

    for _ in range(3):
        link.say(ATTACKER)
        link.run(1.0)
    announce(0, 1, 2, 3)
    assert sorted(link.held_from(ATTACKER)) == prefixes[:3]
    assert link.core.counters()["routes_over_budget"] == 1
    announce(0, 1, 2, seqno=2, metric=100)  # updates of held routes pass
    view = link.core.route(prefixes[1])
    assert view is not None
    assert view.seqno == 2
    link.say(ATTACKER, routes=[Route(prefixes[1], 2, 0xFFFF, INTERVAL, ATTACKER_ID, None)])
    assert sorted(link.held_from(ATTACKER)) == [prefixes[0], prefixes[2]]
    announce(4)  # the retraction freed a slot
    assert sorted(link.held_from(ATTACKER)) == [prefixes[0], prefixes[2], prefixes[4]]
    link.say(ROUTER, routes=[Route(ROUTER_PREFIX, 1, 0, INTERVAL, ROUTER_ID, None)])
    assert link.held_from(ROUTER) == [ROUTER_PREFIX]  # another neighbour: its own budget


def test_the_route_budget_must_be_positive() -> None:
    from meshd.babel.config import DEFAULT_MAX_ROUTES

    assert DEFAULT_MAX_ROUTES == BUDGET
    core = BabelCore(bytes.fromhex("0000000000000001"))
    with pytest.raises(ValueError, match="route budget"):
        core.add_interface("eth0", kind="wired", max_routes=0)


# --- wildcard Route Requests --------------------------------------------------------------

OWN = 500
REQUESTS = 1_000


def routes_sent_to(sent: list[tuple[str, IPAddress, bytes]], destination: IPAddress) -> int:
    return sum(
        len(list(expand_routes(decode_packet_untrusted(payload), ME)))
        for _, to, payload in sent
        if to == destination
    )


def test_a_wildcard_request_flood_gets_one_full_dump_per_interval() -> None:
    link = Link()
    for i in range(OWN):
        link.core.originate(flood_prefix(i))
    for _ in range(3):
        link.say(ROUTER)
        link.say(ATTACKER)
        link.run(1.0)
    link.run(5.0)
    link.sent.clear()
    start = link.now
    for i in range(REQUESTS):  # 1,000 in one second
        link.now = start + i * 0.001
        link.say(ATTACKER, route_request(None))
        if i == 500:
            link.say(ROUTER, route_request(None))  # another neighbour asks meanwhile
    link.run(0.5)
    to_attacker = routes_sent_to(link.sent, ATTACKER)
    # One dump of our OWN routes (plus the one learnt from the router): not one every few
    # milliseconds, as the requests came.
    assert to_attacker <= 2 * (OWN + 1), f"{to_attacker} routes sent to one neighbour"
    assert to_attacker >= OWN  # the first request was answered
    assert routes_sent_to(link.sent, ROUTER) >= OWN  # keyed by neighbour: its own dump
    assert link.core.counters()["route_dumps_refused"] >= REQUESTS - 2
    # After the interval the neighbour is answered again.
    link.run(1.0)
    link.sent.clear()
    link.say(ATTACKER, route_request(None))
    link.run(0.5)
    assert routes_sent_to(link.sent, ATTACKER) >= OWN
