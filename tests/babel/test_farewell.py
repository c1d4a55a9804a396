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


@pytest.mark.parametrize("kind", ["wired", "unicast-peers"])
def test_a_router_that_restarts_after_a_crash_takes_back_what_it_no_longer_announces(
    kind: str,
) -> None:
    """Router 2 announced an extra prefix, crashed (no farewell) and came back without it:
    its first packet on a link (to the multicast group; on the mesh, to each neighbour it
    greets) carries a wildcard retraction before its full update (as babeld at its start),
    so its neighbour drops the extra prefix then, not at its hold time."""
    extra = IPv6Network("2001:db8:99::/48")
    sim = Sim(3, CHAIN, kind=kind)  # type: ignore[arg-type]
    sim.routers[2].originate(extra)
    sim.run_until(Sim.converged, 20)
    sim.run(5)
    assert sim.routers[1].route(extra) is not None
    sim.stop(2, farewell=False)
    sim.run(0.2)
    core = BabelCore(router_id(2), CoreConfig())
    if kind == "wired":
        core.add_interface("to1", kind="wired", hello_interval=1.0, link_local=address(2))
    else:
        core.add_interface("wg0", kind="unicast-peers", hello_interval=1.0, link_local=address(2))
        core.add_neighbour("wg0", address(1))
    core.originate(prefix(2))
    sim.routers[2] = core
    sim.stopped.discard(2)
    sim._timers[2] = core.timer()
    sim.run(5)  # the link up again (two Hellos), and its own prefix back everywhere
    assert _has_route(sim, 0, 2)
    view = sim.routers[1].route(extra)  # before: selected again until its hold time
    assert view is None or view.metric == INFINITY


def _greeting(core: BabelCore, peer: IPv6Address, at: float) -> list[object]:
    """What a neighbour added at ``at`` is sent first (its greeting, at the next timer)."""
    core.add_neighbour("wg0", peer)
    core.handle_timer(at)
    return [t for i, d, p in core.datagrams_to_send(at) if d == peer for t in _decoded(p)]


def _is_wildcard_retraction(tlv: object) -> bool:
    return isinstance(tlv, Update) and (tlv.ae, tlv.plen, tlv.metric) == (AE_WILDCARD, 0, INFINITY)


def test_on_the_mesh_only_greetings_soon_after_the_start_carry_a_retraction() -> None:
    """A mesh neighbour greeted while it may still hold routes of an earlier run of ours
    (within the hold time of our longest interval after our first Hello: 3.5 x 16 s x a
    rest pace of 4) is sent a wildcard retraction before our table; one that comes later
    cannot hold any and gets our table alone (no moment without our routes)."""
    core = BabelCore(bytes(7) + b"\x01", CoreConfig())
    core.add_interface(
        "wg0", kind="unicast-peers", hello_interval=4.0, link_local=address(0), rest_pace=4
    )
    core.originate(prefix(0))
    early = _greeting(core, IPv6Address("fe80::a"), 0.0)  # at the start
    assert _is_wildcard_retraction(early[0])
    assert any(isinstance(t, Update) and t.metric < INFINITY for t in early)  # then the table
    soon = _greeting(core, IPv6Address("fe80::b"), 3.5 * 16 * 4 - 1)
    assert _is_wildcard_retraction(soon[0])
    later = _greeting(core, IPv6Address("fe80::c"), 3.5 * 16 * 4 + 1)
    assert later
    assert not any(_is_wildcard_retraction(t) for t in later)
    assert any(isinstance(t, Update) and t.metric < INFINITY for t in later)
