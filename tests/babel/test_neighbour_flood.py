"""A Babel neighbour flood on a site link without ``--babel-key``: 20,000 well-formed Hellos
from random link-local sources. The neighbour table stays within its budget, the neighbour
with a two-way link (a babeld on the LAN) is never displaced and keeps its route, and what
we send stays bounded by the budget, not by the flood."""

from __future__ import annotations

import random
from ipaddress import IPv6Address, IPv6Network

from meshd.babel.codec import encode_packet
from meshd.babel.core import BabelCore
from meshd.babel.packet import Packet
from meshd.babel.routes import RouteRetracted
from meshd.babel.tlv import Hello
from tests.babel.segments import Segments

HELLO = 4.0  # babeld's default, and the daemon's
BUDGET = 64  # the default neighbour budget of a multicast interface
FLOOD = 20_000
SPACING = 0.0005  # 2,000 Hellos a second: the flood lasts 10 s
US = IPv6Address("fe80::1")
ROUTER = IPv6Address("fe80::2")
ROUTER_PREFIX = IPv6Network("2001:db8:2::/48")


def lan(us: BabelCore, *, budget: int | None = None) -> Segments:
    net = Segments()
    options = {} if budget is None else {"max_neighbours": budget}
    net.add("us", us).add_interface(
        "eth1",
        kind="wired",
        hello_interval=HELLO,
        link_local=US,
        **options,  # type: ignore[arg-type]
    )
    net.attach("us", "eth1", "lan", US)
    return net


def speaker(net: Segments, name: str, address: IPv6Address, prefix: IPv6Network) -> BabelCore:
    core = net.add(name, BabelCore(int(address).to_bytes(16, "big")[8:]))
    core.add_interface("eth1", kind="wired", hello_interval=HELLO, link_local=address)
    core.originate(prefix)
    net.attach(name, "eth1", "lan", address)
    return core


def random_link_local(rng: random.Random) -> IPv6Address:
    return IPv6Address(int(IPv6Address("fe80::")) | rng.getrandbits(64))


def test_a_hello_flood_keeps_the_table_within_budget_and_the_router_its_route() -> None:
    us = BabelCore(bytes.fromhex("0000000000000001"))
    net = lan(us)
    speaker(net, "router", ROUTER, ROUTER_PREFIX)
    net.run(20.0)
    view = us.route(ROUTER_PREFIX)
    assert view is not None
    assert view.neighbour is not None
    assert view.neighbour.address == ROUTER
    events_before = len(net.events["us"])
    sent_before = net.sent["us"]
    rng = random.Random(8)
    largest = 0
    for i in range(FLOOD):
        hello = Hello(rng.getrandbits(16), round(HELLO * 100))
        net.inject("lan", random_link_local(rng), encode_packet(Packet((hello,))))
        net.run(SPACING)
        if i % 100 == 99:
            neighbours = us.neighbours()
            largest = max(largest, len(neighbours))
            assert len(neighbours) <= BUDGET, f"{len(neighbours)} neighbours after {i + 1} Hellos"
            route = us.route(ROUTER_PREFIX)
            assert route is not None, f"the router's route dropped after {i + 1} Hellos"
            assert route.neighbour is not None
            assert route.neighbour.address == ROUTER
            assert any(n.neighbour.address == ROUTER and n.cost < 0xFFFF for n in neighbours)
    flood_time = FLOOD * SPACING
    net.run(10.0)
    # The router's route never went, even for an instant.
    assert not any(
        isinstance(e, RouteRetracted) and e.prefix == ROUTER_PREFIX
        for e in net.events["us"][events_before:]
    )
    # What we sent during the flood and after it: Hellos carry at most BUDGET IHUs (16
    # bytes each on the wire), about one every 4 s, plus our updates; without the budget the
    # flood's neighbours each had an IHU in every Hello until they timed out (a minute).
    hellos = (flood_time + 10.0) / HELLO + 2
    assert net.sent["us"] - sent_before <= hellos * (BUDGET * 16 + 200) + 4_000
    counters = us.counters()
    assert counters["neighbours_evicted"] >= FLOOD - BUDGET
    assert counters["neighbours_refused"] == 0
    print(
        f"flood of {FLOOD} Hellos: at most {largest} neighbours, "
        f"{counters['neighbours_evicted']} displaced, "
        f"{net.sent['us'] - sent_before} bytes sent in {flood_time + 10:.0f} s"
    )


def test_neighbours_with_a_two_way_link_are_never_displaced() -> None:
    """A full table of working neighbours: a newcomer is refused (counted), not admitted at
    their expense; when one of them leaves, the newcomer gets its slot."""
    us = BabelCore(bytes.fromhex("0000000000000001"))
    net = lan(us, budget=2)
    routers = [IPv6Address("fe80::2"), IPv6Address("fe80::3")]
    for n, address in enumerate(routers):
        speaker(net, f"r{n}", address, IPv6Network(f"2001:db8:{n + 2}::/48"))
    net.run(20.0)
    assert {n.neighbour.address for n in us.neighbours() if n.cost < 0xFFFF} == set(routers)
    late = speaker(net, "late", IPv6Address("fe80::4"), IPv6Network("2001:db8:4::/48"))
    net.run(20.0)
    assert {n.neighbour.address for n in us.neighbours()} == set(routers)
    assert us.counters()["neighbours_refused"] > 0
    for n in range(2):
        assert us.route(IPv6Network(f"2001:db8:{n + 2}::/48")) is not None
    assert us.route(IPv6Network("2001:db8:4::/48")) is None
    net.remove("r0")
    net.run(60.0)  # r0 times out and its slot frees
    assert late.route(IPv6Network("2001:db8:3::/48")) is not None
    assert us.route(IPv6Network("2001:db8:4::/48")) is not None
    assert us.route(IPv6Network("2001:db8:2::/48")) is None
