"""The core finds its earliest neighbour deadline in a heap (``Interface.note``), not by a
look at every neighbour after every datagram: it must name the same instant a look at
every neighbour would, whatever the losses, resting and links that come and go."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.babel.config import CoreConfig
from tests.babel.sim import Sim, address


def _naive(sim: Sim, i: int) -> list[float]:
    iface = sim.routers[i]._interfaces["wg0"]
    times = [iface.next_hello, iface.next_update]
    times += [d for n in iface.neighbours.values() if (d := n.deadline()) is not None]
    return times


def _resting(i: int) -> CoreConfig:
    return CoreConfig(at_rest=lambda _interface, address: (int(address) + i) % 3 == 0)


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    loss=st.sampled_from([0.0, 0.1, 0.4]),
    pace=st.sampled_from([1, 8]),
    cut=st.integers(0, 4),
)
def test_the_heap_names_the_earliest_deadline_of_all(
    seed: int, loss: float, pace: int, cut: int
) -> None:
    links = [(0, j) for j in range(1, 6)] + [(1, 2), (3, 4)]
    sim = Sim(
        6,
        links,
        kind="unicast-peers",
        hello_interval=1.0,
        seed=seed,
        loss=loss,
        config=_resting,
        interface_options={"rest_pace": pace},
    )
    checked = 0

    def check(s: Sim) -> None:
        nonlocal checked
        for i in range(s.n):
            iface = s.routers[i]._interfaces["wg0"]
            assert min(iface.deadlines()) == min(_naive(s, i))
        checked += 1

    sim.check = check
    sim.run(12.0)
    # A link goes silent both ways: its deadlines must fire and take the link down.
    link = sim.links[frozenset((0, cut + 1))]
    link.loss = 1.0
    sim.run(40.0)
    view = next(n for n in sim.routers[0].neighbours() if n.neighbour.address == address(cut + 1))
    assert view.cost == 0xFFFF
    assert checked > 100
