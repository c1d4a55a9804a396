"""A member gets its relayed routes within a round trip of the relay becoming its neighbour.

Scene (tests.babel.sim, ``unicast-peers`` as on the WireGuard mesh, Hello 4 s as the daemon's
default, links of 1 ms): router 1 relays; routers 2 to 6 do not and are all its neighbours,
and 3 is also a neighbour of router 0. Router 0 is a member that starts late, behind a NAT
that no direct path to 2, 4, 5 or 6 crosses (those links do not exist). It runs
:class:`~meshd.daemon.babel_wants.Wants` as the daemon does (:mod:`meshd.daemon.babel`): a
round on every batch of its core's events and every update interval.
"""

from __future__ import annotations

from meshd.babel.config import CoreConfig
from meshd.babel.neighbours import IPAddress
from meshd.babel.routes import NeighbourId, NeighbourUp
from meshd.babel.sources import IPNetwork
from meshd.daemon.babel_mesh import REDISCOVER, WANT_AFTER
from meshd.daemon.babel_wants import PROBES, Wants
from tests.babel.sim import Sim, address, prefix, router_id
from tests.babel.wants_support import members_of

HELLO = 4.0
UPDATE = 4 * HELLO
RELAY = 1
N = 7
LINKS = [(0, RELAY), (0, 3)] + [(RELAY, i) for i in range(2, N)]


def make(i: int) -> CoreConfig:
    own = prefix(i)

    def redistribute(interface: str, p: IPNetwork, source: IPNetwork | None) -> bool:
        return i == RELAY or p == own

    def demand(interface: str, p: IPNetwork, source: IPNetwork | None) -> bool:
        return interface == "wg0" and p != own

    return CoreConfig(redistribute=redistribute, on_demand=demand)


def relayed(sim: Sim, destination: int) -> bool:
    view = sim.routers[0].route(prefix(destination))
    return (
        view is not None
        and view.neighbour == NeighbourId("wg0", address(RELAY))
        and view.metric < 0xFFFF
    )


def test_a_joining_member_is_routed_through_the_relay_within_a_round_trip() -> None:
    sim = Sim(N, LINKS, kind="unicast-peers", hello_interval=HELLO, config=make)
    for link in (0, RELAY), (0, 3):
        sim.cut(*link)
    sim.run(3 * UPDATE)  # the others settle; router 0 is not up yet
    assert sim.next_hop(RELAY, 6) == 6

    # Router 0 starts: its members are known at once, its links come up.
    members: dict[IPNetwork, IPAddress] = {prefix(i): address(i) for i in range(1, N)}
    ids: dict[IPAddress, bytes] = {address(i): router_id(i) for i in range(1, N)}
    wants = Wants("wg0", hold=WANT_AFTER, period=UPDATE, rediscover=REDISCOVER * UPDATE)
    wants.neighbours(members.values(), sim.now)
    core = sim.routers[0]
    for link in (0, RELAY), (0, 3):
        sim.restore(*link)

    def round_now() -> None:
        wants.ask(core, sim.now, members_of(members, ids))
        sim._flush(0)

    round_now()
    seen = len(sim.events[0])
    relay_up: float | None = None
    next_round = sim.now + UPDATE
    until = sim.now + 2 * UPDATE
    while not (relay_up is not None and relayed(sim, 6)) and sim.step(until):
        if len(sim.events[0]) > seen:  # a batch of the core's events: a round at once
            for event in sim.events[0][seen:]:
                if isinstance(event, NeighbourUp) and event.neighbour.address == address(RELAY):
                    relay_up = sim.now
            seen = len(sim.events[0])
            round_now()
        if sim.now >= next_round:
            next_round += UPDATE
            round_now()

    assert relay_up is not None, "the relay never came up as a neighbour"
    assert relayed(sim, 6), "no route to 6 through the relay"
    # 6 is past the first PROBES wanted /128s: a relay learnt from the answer to a few
    # probes would be asked for it only a round trip (or an update interval) later.
    assert sorted(members).index(prefix(6)) >= PROBES
    # One round trip (2 ms) and the relay's jitter on its answer (at most 20 ms).
    assert sim.now - relay_up < 0.05, f"routed {sim.now - relay_up:.3f} s after the relay came up"
    for destination in 2, 4, 5:
        assert relayed(sim, destination)
