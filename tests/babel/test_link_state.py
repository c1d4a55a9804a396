"""An interface that loses its link drops its neighbours and their routes at once; one that
has it again speaks at once (meshd.babel.core.BabelCore.link_down, link_up)."""

from __future__ import annotations

import pytest

from meshd.babel.codec import decode_packet_untrusted
from meshd.babel.core import MULTICAST_GROUP
from meshd.babel.prefix import AE_WILDCARD
from meshd.babel.tlv import Hello, RouteRequest, Update
from tests.babel.sim import Sim

TRIANGLE = [(0, 1), (1, 2), (0, 2)]


def test_a_link_that_goes_down_is_routed_around_at_once() -> None:
    """Router 2 reaches 0 directly; its link to 0 loses its carrier: with link_down, its
    route goes through 1 at once; without, only once 0's Hellos ran out (seconds)."""
    sim = Sim(3, TRIANGLE)
    sim.run_until(Sim.converged, 20)
    sim.run(5)
    assert sim.next_hop(2, 0) == 0
    sim.cut(0, 2)
    sim.routers[2].link_down("to0", sim.now)
    sim.run(0.05)
    assert sim.next_hop(2, 0) == 1
    assert all(v.neighbour.interface != "to0" for v in sim.routers[2].neighbours())


def test_without_link_down_the_route_waits_for_the_hellos() -> None:
    sim = Sim(3, TRIANGLE)
    sim.run_until(Sim.converged, 20)
    sim.run(5)
    sim.cut(0, 2)
    sim.run(0.5)
    assert sim.next_hop(2, 0) == 0  # still through the dead link


def test_a_link_that_comes_back_speaks_at_once() -> None:
    sim = Sim(2, [(0, 1)])
    sim.run_until(Sim.converged, 20)
    sim.run(0.5)  # between two Hellos (1 s) and long before the next full update (4 s)
    core = sim.routers[0]
    core.link_down("to1", sim.now)
    core.link_up("to1", sim.now)
    due = core.timer()
    assert due is not None
    assert due <= sim.now
    core.handle_timer(sim.now)
    sent = [t for _, d, p in core.datagrams_to_send(sim.now) if d == MULTICAST_GROUP
            for t in decode_packet_untrusted(p).tlvs]  # fmt: skip
    assert any(isinstance(t, Hello) for t in sent)
    assert any(isinstance(t, RouteRequest) and t.ae == AE_WILDCARD for t in sent)
    assert any(isinstance(t, Update) and t.ae != AE_WILDCARD for t in sent)  # our routes


def test_only_a_multicast_interface_follows_its_link() -> None:
    sim = Sim(2, [(0, 1)], kind="unicast-peers")
    with pytest.raises(ValueError, match="unicast-peers"):
        sim.routers[0].link_down("wg0", 0.0)
    with pytest.raises(ValueError, match="unicast-peers"):
        sim.routers[0].link_up("wg0", 0.0)
