"""Babel cores in the simulator: convergence, rerouting, starvation, and no loop ever."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from meshd.babel.routes import NeighbourDown, NeighbourUp, RouteInstalled, RouteRetracted
from meshd.babel.sources import SourceTable
from tests.babel.sim import RoutingLoop, Sim, address, prefix

CHAIN = [(0, 1), (1, 2), (2, 3)]
RING4 = [(0, 1), (1, 2), (2, 3), (3, 0)]
RING6 = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)]


def checked(sim: Sim) -> Sim:
    sim.check = Sim.assert_loop_free
    return sim


@pytest.mark.parametrize("kind", ["wired", "unicast-peers"])
def test_chain_converges_to_shortest_paths(kind: str) -> None:
    sim = checked(Sim(4, CHAIN, kind=kind))  # type: ignore[arg-type]
    took = sim.run_until(Sim.converged, 20)
    assert took < 4  # two Hellos to bring a link up, then a round of updates
    assert sim.next_hop(0, 3) == 1
    assert sim.metric(0, 3) == 3 * 96


@pytest.mark.parametrize(("n", "links"), [(4, RING4), (6, RING6)])
def test_ring_converges_and_reroutes_around_a_cut(n: int, links: list[tuple[int, int]]) -> None:
    sim = checked(Sim(n, links))
    sim.run_until(Sim.converged, 20)
    sim.run(5)
    sim.cut(0, 1)
    reroute = sim.run_until(Sim.converged, 30)
    # Hello 1 s, 2-out-of-3: the link is down 2.5 s after the last Hello heard.
    assert reroute < 4.0, f"reroute took {reroute:.2f} s"
    assert sim.next_hop(0, 1) == n - 1
    sim.run(5)
    sim.restore(0, 1)
    back = sim.run_until(Sim.converged, 30)
    assert back < 4.0, f"restore took {back:.2f} s"
    assert sim.next_hop(0, 1) == 1


def test_starvation_is_recovered_by_a_seqno_request() -> None:
    # Ring 0-1-2-3-0, router 3 originates. 0 and 2 go direct, 1 goes through one of
    # them (say 0); cut the other one (2) from 3. 2's only other route (through 1, metric
    # 192) is not feasible, since 2 announced 96: 2 must ask 3 for a new seqno.
    sim = checked(Sim(4, RING4))
    sim.run_until(Sim.converged, 20)
    sim.run(3)
    far = 2 if sim.next_hop(1, 3) == 0 else 0
    assert sim.routers[3].seqno == 0
    sim.cut(far, 3)
    took = sim.run_until(lambda s: s.next_hop(far, 3) == 1, 30)
    assert sim.routers[3].seqno == 1  # the request reached the originator, once
    assert sim.metric(far, 3) == 3 * 96
    # Far quicker than waiting for the unfeasible route to expire (3.5 update intervals).
    assert took < 4.0


def test_starvation_without_requests_waits() -> None:
    """The same cut with Seqno Requests lost on the way: the route comes back only
    after retries, and never through a loop."""
    sim = checked(Sim(4, RING4, seed=3))
    sim.run_until(Sim.converged, 20)
    sim.run(3)
    far = 2 if sim.next_hop(1, 3) == 0 else 0
    sim.link(1, 2 - far).loss = 0.5
    sim.cut(far, 3)
    sim.run_until(lambda s: s.next_hop(far, 3) == 1, 60)


def test_neighbour_events_carry_cost() -> None:
    sim = Sim(2, [(0, 1)])
    sim.run_until(Sim.converged, 10)
    ups = [e for e in sim.events[0] if isinstance(e, NeighbourUp)]
    assert [e.cost for e in ups] == [96]
    sim.cut(0, 1)
    sim.run(5)
    assert any(isinstance(e, NeighbourDown) for e in sim.events[0])


def test_lossy_duplicating_reordering_network_still_converges() -> None:
    sim = checked(Sim(5, [*RING6[:4], (4, 0)], loss=0.1, duplicate=0.1, jitter=0.05, seed=11))
    sim.run_until(Sim.converged, 60)


def test_rtt_cost_on_the_mesh() -> None:
    """Over unicast-peers, timestamps measure the RTT and slow links cost more."""
    sim = Sim(3, [(0, 1), (1, 2), (0, 2)], kind="unicast-peers", delay=0.001)
    sim.link(0, 2).delay = 0.05  # a far path: 100 ms round trip
    sim.run(20)
    costs = {v.neighbour.address: v for v in sim.routers[0].neighbours()}
    slow = [v for v in costs.values() if v.rtt is not None and v.rtt > 0.05]
    assert len(slow) == 1
    assert slow[0].rtt == pytest.approx(0.1, abs=0.005)
    assert 96 + 70 < slow[0].cost < 96 + 96
    fast = [v for v in costs.values() if v is not slow[0]]
    assert fast[0].cost == 96
    # One slow hop (about 175) against two fast ones (192): closer than the hysteresis,
    # so whichever came first stays.
    assert sim.metric(0, 2) in (slow[0].cost, 192)


def test_a_lost_route_is_reported_and_replaced() -> None:
    sim = Sim(3, [(0, 1), (1, 2), (0, 2)])
    sim.run_until(Sim.converged, 10)
    assert sim.next_hop(0, 2) == 2
    seen = len(sim.events[0])
    sim.cut(0, 2)
    sim.run_until(Sim.converged, 10)
    # The detour through 1 (refmetric 96) is not feasible for 0, which announced 96: the
    # route is retracted, then installed again with 2's next seqno.
    after = [e for e in sim.events[0][seen:] if getattr(e, "prefix", None) == prefix(2)]
    assert [type(e) for e in after] == [RouteRetracted, RouteInstalled]
    last = after[-1]
    assert isinstance(last, RouteInstalled)
    assert (last.metric, last.neighbour.address) == (192, address(1))


# --- no routing loop at any instant -------------------------------------------------------


@st.composite
def topologies(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    n = draw(st.integers(4, 6))
    links = {(draw(st.integers(0, i - 1)), i) for i in range(1, n)}  # a spanning tree
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=5))
    links |= {(min(a, b), max(a, b)) for a, b in extra if a != b}
    return n, sorted(links)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
)
@given(
    topology=topologies(),
    seed=st.integers(0, 2**16),
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    faults=st.lists(
        st.tuples(st.integers(0, 100), st.booleans(), st.floats(0.1, 6.0)),
        min_size=1,
        max_size=6,
    ),
    kind=st.sampled_from(["wired", "unicast-peers"]),
)
def test_no_routing_loop_at_any_instant(
    topology: tuple[int, list[tuple[int, int]]],
    seed: int,
    loss: float,
    faults: list[tuple[int, bool, float]],
    kind: str,
) -> None:
    n, links = topology
    sim = Sim(
        n,
        links,
        kind=kind,  # type: ignore[arg-type]
        seed=seed,
        loss=loss,
        duplicate=loss / 2,
        jitter=0.02 if loss else 0.0,
    )
    sim.check = Sim.assert_loop_free
    sim.run(8)
    for which, cut, wait in faults:
        a, b = links[which % len(links)]
        if cut:
            sim.cut(a, b)
        else:
            sim.restore(a, b)
        sim.run(wait)
    for a, b in links:
        sim.restore(a, b)
        sim.link(a, b).loss = 0.0
        sim.link(a, b).duplicate = 0.0
    sim.run_until(Sim.connected, 60)


def test_the_loop_detector_detects_loops() -> None:
    sim = Sim(3, [(0, 1), (1, 2)])
    sim.run_until(Sim.converged, 10)
    sim.next_hop = lambda i, d: {0: 1, 1: 0}.get(i)  # type: ignore[method-assign,assignment]
    with pytest.raises(RoutingLoop):
        sim.assert_loop_free()


def test_without_the_feasibility_condition_the_same_faults_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The detector is not vacuous: accept every update as feasible and loops appear."""
    monkeypatch.setattr(SourceTable, "feasible", lambda self, *args: True)
    loops = 0
    for seed in range(10, 22):
        sim = checked(
            Sim(
                5,
                [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (1, 3)],
                seed=seed,
                loss=0.1,
                jitter=0.02,
            )
        )
        try:
            sim.run(8)
            sim.cut(0, 4)
            sim.run(3)
            sim.cut(1, 2)
            sim.run(5)
        except RoutingLoop:
            loops += 1
    assert loops >= 2
