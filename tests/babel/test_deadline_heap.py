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


def test_a_neighbour_repeating_one_update_leaves_a_bounded_expiry_heap() -> None:
    """Each Update pushed an expiry, the entry's old ones leaving only as they surfaced: one
    datagram of 5,002 Updates for one prefix, each with a 655 s interval, left 5,002 behind
    its one route for up to 38 minutes (200,000 after 40 datagrams, ~22 MiB a second)."""
    from ipaddress import IPv6Address, IPv6Network

    from meshd.babel.routes import HEAP_FLOOR, HEAP_SLACK, NeighbourId, RouteEntry, RouteTable

    table = RouteTable()
    nid = NeighbourId("eth0", IPv6Address("fe80::66"))
    for n in range(100_000):
        table.put(
            RouteEntry(
                prefix=IPv6Network("2001:db8::/32"), source=None, neighbour=nid,
                router_id=b"\x01" * 8, seqno=n % 65536, refmetric=0,
                next_hop=IPv6Address("fe80::66"), interval=655.35, expires=2293.0 + n,
                cost=96,
            )
        )  # fmt: skip
    assert len(table) == 1
    assert len(table._expiry) <= HEAP_SLACK * HEAP_FLOOR + 1
    assert table.next_expiry() == 2293.0 + 99_999


def test_a_neighbour_whose_deadline_moves_every_datagram_leaves_a_bounded_heap() -> None:
    from ipaddress import IPv6Address

    from meshd.babel.core import BabelCore
    from meshd.babel.neighbours import Neighbour
    from meshd.babel.routes import HEAP_FLOOR, HEAP_SLACK

    core = BabelCore(b"\x02" * 8)
    core.add_interface("eth0", kind="wired", hello_interval=4.0)
    iface = core._interfaces["eth0"]
    address = IPv6Address("fe80::66")
    neighbour = Neighbour("eth0", address)
    iface.neighbours[address] = neighbour
    for n in range(50_000):
        neighbour.ihu_deadline = 1000.0 + n  # each datagram's IHU moves it
        iface.note(neighbour)
    assert len(iface._due) <= HEAP_SLACK * HEAP_FLOOR + 1
    assert iface.take_due(1000.0 + 49_999) == [neighbour]
