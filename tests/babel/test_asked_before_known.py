"""A relay keeps a request for a member it has not admitted yet, and answers when it can.

A new member is admitted by each member at its own moment. A member that admits it first
asks the relays for its /128 at once; a relay that admits it a few milliseconds later used
to keep no interest for a prefix it did not know as a member's (the daemon's ``on_demand``
hook looked the prefix up among its members), so when the member came up there it sent the
route to nobody, and the asker was routed through whichever relay it heard from, while the
new member took the relay of lowest rank: two relays for one pair, and WireGuard's receive
filter dropped every packet until the next ask (benchmarks/nat.py: 20.8 s once in three
rounds). The rule is now :func:`meshd.daemon.babel_wants.on_demand_route`: any prefix of the
overlay.

Scene (tests.babel.sim, ``unicast-peers`` as on the WireGuard mesh, Hello 4 s as the
daemon's default): router 0 asks, router 1 relays, router 2 is the new member, which has no
direct path to 0. The sim's prefixes all lie in ``2001:db8::/32``, the overlay here.
"""

from __future__ import annotations

from ipaddress import IPv6Network

import pytest

from meshd.babel.config import CoreConfig
from meshd.babel.neighbours import IPAddress
from meshd.babel.routes import NeighbourId
from meshd.babel.sources import IPNetwork
from meshd.daemon.babel_mesh import REDISCOVER, WANT_AFTER
from meshd.daemon.babel_wants import Wants, on_demand_route
from tests.babel.sim import Sim, address, prefix, router_id
from tests.babel.wants_support import members_of

HELLO = 4.0
UPDATE = 4 * HELLO
ASKER, RELAY, NEW = 0, 1, 2
OVERLAY = IPv6Network("2001:db8::/32")


def scene(rule: str) -> tuple[Sim, set[IPNetwork]]:
    """The sim, and the members the relay has admitted (its old rule's view)."""
    admitted_at_relay: set[IPNetwork] = {prefix(ASKER)}

    def make(i: int) -> CoreConfig:
        own = prefix(i)

        def redistribute(interface: str, p: IPNetwork, source: IPNetwork | None) -> bool:
            return i == RELAY or p == own

        def demand(interface: str, p: IPNetwork, source: IPNetwork | None) -> bool:
            if interface != "wg0" or p == own:
                return False
            if i == RELAY and rule == "admitted members":
                return source is None and p in admitted_at_relay
            return on_demand_route(OVERLAY, p, source)

        return CoreConfig(redistribute=redistribute, on_demand=demand)

    sim = Sim(
        3, [(ASKER, RELAY), (RELAY, NEW)], kind="unicast-peers", hello_interval=HELLO, config=make
    )
    return sim, admitted_at_relay


def relayed(sim: Sim) -> bool:
    view = sim.routers[ASKER].route(prefix(NEW))
    return (
        view is not None
        and view.neighbour == NeighbourId("wg0", address(RELAY))
        and view.metric < 0xFFFF
    )


def delay_after_relay_has_route(rule: str) -> float:
    """Seconds from the relay's route to the new member to the asker's route through it."""
    sim, admitted_at_relay = scene(rule)
    sim.cut(RELAY, NEW)
    sim.run(3 * UPDATE)  # asker and relay settle; the new member is not up yet
    assert not relayed(sim)

    # The asker admits the new member (first) and asks at once, as the daemon does.
    members: dict[IPNetwork, IPAddress] = {prefix(RELAY): address(RELAY), prefix(NEW): address(NEW)}
    ids: dict[IPAddress, bytes] = {address(RELAY): router_id(RELAY), address(NEW): router_id(NEW)}
    wants = Wants("wg0", hold=WANT_AFTER, period=UPDATE, rediscover=REDISCOVER * UPDATE)
    wants.neighbours(members.values(), sim.now)
    core = sim.routers[ASKER]

    def round_now() -> None:
        wants.ask(core, sim.now, members_of(members, ids))
        sim._flush(ASKER)

    round_now()
    sim.run(0.1)  # the request reached the relay, which had no route yet
    # Only now does the relay admit the new member, whose link comes up.
    admitted_at_relay.add(prefix(NEW))
    sim.restore(RELAY, NEW)

    seen = len(sim.events[ASKER])
    relay_route: float | None = None
    next_round = sim.now + UPDATE
    until = sim.now + 6 * UPDATE
    while not relayed(sim) and sim.step(until):
        if relay_route is None and sim.next_hop(RELAY, NEW) == NEW:
            relay_route = sim.now
        if len(sim.events[ASKER]) > seen:  # a batch of the core's events: a round at once
            seen = len(sim.events[ASKER])
            round_now()
        if sim.now >= next_round:
            next_round += UPDATE
            round_now()
    assert relayed(sim), "no route to the new member through the relay"
    assert relay_route is not None
    return sim.now - relay_route


def test_the_relay_answers_a_request_made_before_it_admitted_the_member() -> None:
    # One hop and the relay's jitter on a triggered update (at most 20 ms).
    delay = delay_after_relay_has_route("overlay")
    assert delay < 0.1, f"routed {delay:.3f} s after the relay had a route"


def test_the_scene_is_the_race_the_old_rule_lost() -> None:
    # The scene does exercise the race: judged by the members it had admitted, the relay
    # kept no interest, and the asker waited for its next ask (an update interval or more).
    assert delay_after_relay_has_route("admitted members") >= UPDATE / 2


@pytest.mark.parametrize(
    ("p", "source", "expected"),
    [
        ("2001:db8:5::1/128", None, True),  # a member's /128, admitted here or not
        ("2001:db8::/32", None, True),
        ("2001:db9::1/128", None, False),  # outside the overlay: a site route
        ("10.0.0.0/8", None, False),
        ("2001:db8:5::1/128", "2001:db8::/48", False),  # source-specific: not a member's
    ],
)
def test_on_demand_route(p: str, source: str | None, expected: bool) -> None:
    from ipaddress import ip_network

    got = on_demand_route(OVERLAY, ip_network(p), ip_network(source) if source else None)
    assert got is expected
