"""A link's RTT is not what its Hellos waited for a handshake (fake clock, no I/O).

While a WireGuard peer's handshake cannot complete, what is sent to it is staged and goes
out once one does: a Hello sent while the link was down arrives seconds late, the
neighbour's IHU echoes its timestamp, and that wait is no round trip. Taken for one, it
put the full RTT penalty on a direct path that had just come back (96 + 96, as much as two
hops through a relay), and hysteresis kept the relayed route until the smoothed RTT decayed:
a minute at rest. Only Hellos sent since the link last came up measure it.

Scene (tests.babel.sim): three routers over unicast peers, Hello 4 s, 1 ms links; the link
0 - 2 is held (its datagrams staged) for 30 s, then released at a different point of the
Hello cycle in each case.
"""

from __future__ import annotations

import pytest

from meshd.babel.views import NeighbourView
from tests.babel.sim import Sim, address

HELLO = 4.0


def _neighbour(sim: Sim, at: int, of: int) -> NeighbourView:
    return next(v for v in sim.routers[at].neighbours() if v.neighbour.address == address(of))


@pytest.mark.parametrize("offset", [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
def test_hellos_staged_during_a_handshake_do_not_count_as_round_trips(offset: float) -> None:
    sim = Sim(3, [(0, 1), (1, 2), (0, 2)], kind="unicast-peers", hello_interval=HELLO, seed=5)
    sim.run_until(Sim.converged, 30.0)
    sim.run(20.0)
    assert sim.next_hop(0, 2) == 2
    sim.hold(0, 2)
    sim.run(30.0 + offset)
    assert sim.next_hop(0, 2) == 1
    assert sim.next_hop(2, 0) == 1
    sim.release(0, 2)
    took = sim.run_until(lambda s: s.next_hop(0, 2) == 2 and s.next_hop(2, 0) == 0, 60.0)
    worst = 0.0
    for _ in range(40):
        sim.run(0.5)
        for at, of in ((0, 2), (2, 0)):
            rtt = _neighbour(sim, at, of).rtt
            worst = max(worst, rtt or 0.0)
    assert worst < 0.01, f"a staged Hello taken for a round trip: {worst * 1000:.0f} ms"
    # Back on the direct path within a Hello interval and its round trips.
    assert took < HELLO + 1.0
    assert sim.next_hop(0, 2) == 2
    assert sim.next_hop(2, 0) == 0
