"""A router that stops says goodbye (as babeld on exit): a wildcard retraction and a short
Hello on every interface, so that its neighbours drop its routes at once and it within a
couple of seconds, not after their hold times."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest

from meshd.babel.codec import decode_packet_untrusted
from meshd.babel.core import MULTICAST_GROUP, BabelCore, CoreConfig
from meshd.babel.numbers import HELLO_UNICAST, INFINITY
from meshd.babel.prefix import AE_WILDCARD
from meshd.babel.tlv import Hello, Update
from tests.babel.sim import Sim, address, prefix, router_id

CHAIN = [(0, 1), (1, 2)]


def _has_route(sim: Sim, at: int, to: int) -> bool:
    return sim.next_hop(at, to) is not None


def _knows(sim: Sim, at: int, neighbour: int) -> bool:
    return any(
        v.neighbour.address == address(neighbour) and v.cost < INFINITY
        for v in sim.routers[at].neighbours()
    )


@pytest.mark.parametrize("kind", ["wired", "unicast-peers"])
def test_a_router_that_stops_is_forgotten_at_once(kind: str) -> None:
    """Its routes leave every router within the link's delay (0.1 s here, two hops), and
    its neighbour drops it within 2 s; silently stopped, both stay for the hold time."""
    sim = Sim(3, CHAIN, kind=kind)  # type: ignore[arg-type]
    sim.run_until(Sim.converged, 20)
    sim.run(10)
    sim.stop(2)
    sim.run(0.1)
    assert not _has_route(sim, 1, 2)
    assert not _has_route(sim, 0, 2)
    assert _has_route(sim, 0, 1)  # the others untouched
    assert _has_route(sim, 1, 0)
    sim.run(1.9)
    assert not _knows(sim, 1, 2)
    assert _knows(sim, 1, 0)


@pytest.mark.parametrize("kind", ["wired", "unicast-peers"])
def test_without_a_farewell_its_routes_stay_for_the_hold_time(kind: str) -> None:
    """What the farewell saves: a router gone silently (a crash) keeps its routes at its
    neighbours until their Hellos run out (Hello 1 s: a few seconds)."""
    sim = Sim(3, CHAIN, kind=kind)  # type: ignore[arg-type]
    sim.run_until(Sim.converged, 20)
    sim.run(10)
    sim.stop(2, farewell=False)
    sim.run(1.0)
    assert _has_route(sim, 1, 2)
    assert _has_route(sim, 0, 2)


def _decoded(payload: bytes) -> list[object]:
    return list(decode_packet_untrusted(payload).tlvs)


def test_the_farewell_is_a_retraction_and_a_short_hello_on_each_interface() -> None:
    core = BabelCore(bytes(7) + b"\x01", CoreConfig())
    core.add_interface("lan", kind="wired", hello_interval=4.0, link_local=address(0))
    core.add_interface("wg0", kind="unicast-peers", hello_interval=4.0, link_local=address(0))
    peers = [IPv6Address("fe80::a"), IPv6Address("fe80::b")]
    for peer in peers:
        core.add_neighbour("wg0", peer)
    sent = core.farewell(0.0)
    assert sorted((i, str(d)) for i, d, _ in sent) == [
        ("lan", str(MULTICAST_GROUP)),
        ("wg0", "fe80::a"),
        ("wg0", "fe80::b"),
    ]
    for interface, _, payload in sent:
        tlvs = _decoded(payload)
        (gone,) = [t for t in tlvs if isinstance(t, Update)]
        assert (gone.ae, gone.plen, gone.metric) == (AE_WILDCARD, 0, INFINITY)
        assert gone.interval == 1600  # the interface's update interval, 16 s
        (hello,) = [t for t in tlvs if isinstance(t, Hello)]
        assert hello.interval == 10  # 0.1 s
        assert bool(hello.flags & HELLO_UNICAST) == (interface == "wg0")
    assert len(sent) == 3  # nothing else went with it


def test_a_router_that_restarts_after_a_crash_takes_back_what_it_no_longer_announces() -> None:
    """Router 2 announced an extra prefix, crashed (no farewell) and came back without it:
    its first packet carries a wildcard retraction before its full update (as babeld at
    its start), so its neighbour drops the extra prefix then, not at its hold time."""
    extra = IPv6Network("2001:db8:99::/48")
    sim = Sim(3, CHAIN)
    sim.routers[2].originate(extra)
    sim.run_until(Sim.converged, 20)
    sim.run(5)
    assert sim.routers[1].route(extra) is not None
    sim.stop(2, farewell=False)
    sim.run(0.2)
    core = BabelCore(router_id(2), CoreConfig())
    core.add_interface("to1", kind="wired", hello_interval=1.0, link_local=address(2))
    core.originate(prefix(2))
    sim.routers[2] = core
    sim.stopped.discard(2)
    sim._timers[2] = core.timer()
    sim.run(5)  # the link up again (two Hellos), and its own prefix back everywhere
    assert _has_route(sim, 0, 2)
    view = sim.routers[1].route(extra)  # before: selected again until 20.8 s
    assert view is None or view.metric == INFINITY
