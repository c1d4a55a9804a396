"""Routes on demand (the core's ``on_demand`` hook): a relay announces a member's route only
to the neighbours that asked for it, and for as long as they keep asking.

Scene (tests.babel.sim, ``unicast-peers`` as on the WireGuard mesh, Hello 1 s, full updates
every 4 s): routers 0 and 1 do not relay (they announce their own prefix alone), router 2
relays. All three are neighbours; the link 0-1 is cut in some tests, as a direct path that
fails.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.babel.config import CoreConfig
from meshd.babel.interest import HOLDS, Interest
from meshd.babel.routes import NeighbourId
from meshd.babel.sources import IPNetwork
from tests.babel.sim import Sim, address, prefix

HELLO = 1.0
UPDATE = 4 * HELLO
RELAY = 2


def config(on_demand: bool) -> Callable[[int], CoreConfig]:
    def make(i: int) -> CoreConfig:
        own = prefix(i)

        def redistribute(interface: str, p: IPNetwork, source: IPNetwork | None) -> bool:
            return i == RELAY or p == own

        def demand(interface: str, p: IPNetwork, source: IPNetwork | None) -> bool:
            return interface == "wg0" and p != own

        return CoreConfig(redistribute=redistribute, on_demand=demand if on_demand else None)

    return make


def triangle(*, on_demand: bool = True) -> Sim:
    sim = Sim(
        3,
        [(0, 1), (0, 2), (1, 2)],
        kind="unicast-peers",
        hello_interval=HELLO,
        config=config(on_demand),
    )
    sim.check = Sim.assert_loop_free
    sim.run(10.0)
    return sim


def offered_by(sim: Sim, at: int, via: int, destination: int) -> bool:
    """Whether ``at`` holds a finite route to ``destination``'s prefix from ``via``."""
    return any(
        view.prefix == prefix(destination)
        and view.neighbour == NeighbourId("wg0", address(via))
        and view.metric < 0xFFFF
        for view in sim.routers[at].routes()
    )


def ask(sim: Sim, at: int, destination: int) -> None:
    sim.routers[at].request_routes("wg0", address(RELAY), [(prefix(destination), None)], sim.now)
    sim._flush(at)


def test_without_the_hook_the_relay_floods_every_route() -> None:
    sim = triangle(on_demand=False)
    assert offered_by(sim, 0, RELAY, 1)
    assert offered_by(sim, 1, RELAY, 0)


def test_a_relay_announces_a_members_route_to_no_one_that_did_not_ask() -> None:
    sim = triangle()
    assert sim.next_hop(0, 1) == 1
    assert not offered_by(sim, 0, RELAY, 1)
    assert not offered_by(sim, 1, RELAY, 0)
    assert offered_by(sim, 0, RELAY, RELAY)  # its own route goes to everyone


def test_asked_it_answers_and_keeps_announcing_while_asked_again() -> None:
    sim = triangle()
    sim.cut(0, 1)
    for _ in range(int(6 * UPDATE / 2)):  # ask every 2 s, as the daemon does every update
        ask(sim, 0, 1)
        ask(sim, 1, 0)
        sim.run(2.0)
    assert sim.next_hop(0, 1) == RELAY
    assert sim.next_hop(1, 0) == RELAY
    assert sim.next_hop(RELAY, 1) == 1
    assert sim.routers[RELAY].counters()["route_interests"] == 2


def test_the_answer_comes_at_once() -> None:
    sim = triangle()
    ask(sim, 0, 1)
    sim.run(0.1)
    assert offered_by(sim, 0, RELAY, 1)


def test_an_interest_not_renewed_runs_out_and_the_route_expires() -> None:
    sim = triangle()
    sim.cut(0, 1)
    ask(sim, 0, 1)
    sim.run(1.0)
    assert offered_by(sim, 0, RELAY, 1)
    sim.run(HOLDS * UPDATE + 4 * UPDATE)  # the interest, then the route's own hold time
    assert not offered_by(sim, 0, RELAY, 1)
    assert sim.routers[RELAY].counters()["route_interests"] == 0


def test_requests_for_what_the_hook_does_not_name_leave_no_state() -> None:
    sim = triangle()
    # The relay's own prefix is not on demand: asking for it notes nothing.
    ask(sim, 0, RELAY)
    sim.run(0.5)
    assert sim.routers[RELAY].counters()["route_interests"] == 0


def test_interests_are_bounded_per_neighbour() -> None:
    interest = Interest()
    nid = NeighbourId("wg0", address(0))
    keys = [(prefix(i), None) for i in range(10)]
    for key in keys:
        interest.note(nid, key, 10.0, now=0.0, limit=4)
    assert len(interest) == 4
    assert interest.refused == 6
    assert not interest.wants(nid, keys[9], 1.0)
    # Once they ran out, room for new ones.
    interest.note(nid, keys[9], 30.0, now=20.0, limit=4)
    assert interest.wants(nid, keys[9], 21.0)
    interest.forget(nid)
    assert len(interest) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["note", "forget", "expire"]),
            st.integers(0, 3),  # neighbour
            st.integers(0, 5),  # key
            st.integers(1, 30),  # hold
        ),
        max_size=60,
    )
)
def test_the_askers_of_a_key_are_the_neighbours_that_want_it(
    ops: list[tuple[str, int, int, int]],
) -> None:
    """The index by key (triggered updates) says what the index by neighbour says, through
    notes, evictions at the limit, departures and expiry."""
    interest = Interest()
    nids = [NeighbourId("wg0", address(i)) for i in range(4)]
    keys = [(prefix(i), None) for i in range(6)]
    now = 0.0
    for op, n, k, hold in ops:
        now += 1.0
        if op == "note":
            interest.note(nids[n], keys[k], now + hold, now=now, limit=3)
        elif op == "forget":
            interest.forget(nids[n])
        else:
            interest.expire(now)
        for key in keys:
            wanting = [nid for nid in nids if interest.wants(nid, key, now)]
            assert sorted(interest.askers(key, now), key=str) == sorted(wanting, key=str)


def star_with_one_asker(members: int) -> tuple[Sim, list[int]]:
    """A relay (router 0) with ``members`` around it, each with its own prefix only,
    members' routes on demand; member 1 has asked the relay for member 2's route and has it.
    Also returned: a counter of the relay's calls to its on-demand hook."""
    calls = [0]

    def make(i: int) -> CoreConfig:
        own = prefix(i)

        def demand(interface: str, p: IPNetwork, source: IPNetwork | None) -> bool:
            if i == 0:
                calls[0] += 1
            return p != own

        return CoreConfig(on_demand=demand)

    sim = Sim(
        members + 1,
        [(0, m) for m in range(1, members + 1)],
        kind="unicast-peers",
        hello_interval=HELLO,
        config=make,
    )
    sim.run(10.0)
    sim.routers[1].request_routes("wg0", address(0), [(prefix(2), None)], sim.now)
    sim._flush(1)
    sim.run(0.5)
    assert offered_by(sim, 1, 0, 2)
    return sim, calls


def test_a_full_update_looks_at_each_on_demand_route_once_not_once_per_neighbour() -> None:
    """A relay holds every member's route and has every member as a neighbour: its full
    updates must not weigh every route for every neighbour (N x N every update interval)
    to send the few asked for. A star of 40 members around a relay; one asks for another."""
    sim, calls = star_with_one_asker(40)
    calls[0] = 0
    sim.run(4 * UPDATE)  # four full updates
    # Each full update weighs the relay's ~40 routes once (and its answers and triggered
    # updates a few more): not 40 routes x 40 neighbours = 1,600 a round.
    assert calls[0] < 4 * 400
    assert offered_by(sim, 1, 0, 2)  # the asker still has its route


def test_a_triggered_update_of_an_on_demand_route_goes_to_its_askers_alone() -> None:
    """A relay's member routes change with every join, leave and drift of a member's link
    cost: each change must not be queued for every member (to be weighed and dropped for
    each when the datagrams are built), only for those that asked. A star of 60 members
    around a relay; member 1 asks for member 2's route; the relay loses member 2."""
    sim, calls = star_with_one_asker(60)
    relay = sim.routers[0]
    relay.datagrams_to_send(sim.now + 1.0)  # nothing else waiting
    calls[0] = 0
    relay.remove_neighbour("wg0", address(2), sim.now)  # its route is retracted at once
    sent = relay.datagrams_to_send(sim.now + 0.5)
    # The change weighed for the asker (and the hook asked once): not for 59 neighbours.
    assert calls[0] <= 3
    assert {destination for _, destination, _ in sent} == {address(1)}
