"""Neighbours at rest on a unicast-peers interface (``rest_pace``, ``CoreConfig.at_rest``).

Scene (tests.babel.sim, ``unicast-peers``, Hello 4 s, full updates every 16 s with jitter):
two routers, each with the other as neighbour; router 0 plays the relay that paces router 1
(a member that needs nothing from it) at rest, 8 times slower. What 0 sends is recorded
from its ``datagrams_to_send`` and decoded: Hellos, IHUs, Updates and bytes, with when.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from meshd.babel.codec import decode_packet_untrusted
from meshd.babel.config import CoreConfig
from meshd.babel.core import BabelCore
from meshd.babel.expand import Route, expand, ihu
from meshd.babel.interest import HOLDS, Interest
from meshd.babel.neighbours import IPAddress
from meshd.babel.numbers import HELLO_UNICAST, INFINITY
from meshd.babel.packet import Packet
from meshd.babel.routes import NeighbourDown, NeighbourId, RouteRetracted
from meshd.babel.sources import IPNetwork
from meshd.babel.tlv import Hello, Ihu
from tests.babel.sim import Sim, address, index_of, prefix

HELLO = 4.0
UPDATE = 4 * HELLO
PACE = 8
WARM_UP = 30.0
SLOW_HELLO = round(PACE * HELLO * 100)
SLOW_UPDATE = round(PACE * UPDATE * 100)


@dataclass
class Sent:
    """One datagram a router sent, decoded."""

    time: float
    by: int
    to: int
    size: int
    hellos: list[Hello] = field(default_factory=list)
    ihus: list[Ihu] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)


def record(sim: Sim) -> list[Sent]:
    """Every datagram the routers of ``sim`` send from now on, in order."""
    log: list[Sent] = []
    for i, core in enumerate(sim.routers):
        send = core.datagrams_to_send

        def recorded(
            now: float,
            i: int = i,
            send: Callable[[float], list[tuple[str, IPAddress, bytes]]] = send,
        ) -> list[tuple[str, IPAddress, bytes]]:
            out = send(now)
            for _, destination, payload in out:
                sent = Sent(now, i, index_of(destination), len(payload))
                for message in expand(decode_packet_untrusted(payload), address(i)):
                    if isinstance(message, Hello):
                        sent.hellos.append(message)
                    elif isinstance(message, Ihu):
                        sent.ihus.append(message)
                    elif isinstance(message, Route):
                        sent.routes.append(message)
                log.append(sent)
            return out

        setattr(core, "datagrams_to_send", recorded)  # noqa: B010 (a method, on one instance)
    return log


def pair(
    resting: list[bool],
    *,
    pace: int = PACE,
    seed: int = 0,
    on_demand: bool = False,
) -> tuple[Sim, list[Sent]]:
    """Routers 0 and 1; router ``i`` paces the other at rest while ``resting[i]``."""

    def config(i: int) -> CoreConfig:
        own = prefix(i)

        def at_rest(interface: str, neighbour: IPAddress) -> bool:
            return resting[i]

        def demand(interface: str, p: IPNetwork, source: IPNetwork | None) -> bool:
            return p != own

        return CoreConfig(at_rest=at_rest, on_demand=demand if on_demand else None)

    sim = Sim(
        2,
        [(0, 1)],
        kind="unicast-peers",
        hello_interval=HELLO,
        seed=seed,
        config=config,
        interface_options={"rest_pace": pace},
    )
    return sim, record(sim)


def watch(sim: Sim, after: float = WARM_UP) -> None:
    """From ``after`` on, after every step: the link is up both ways, no Hello was ever
    missed (the reach has no hole), and each router has a route to the other's prefix."""

    def check(s: Sim) -> None:
        if s.now < after:
            return
        for i in (0, 1):
            [view] = s.routers[i].neighbours()
            assert view.cost < INFINITY, f"router {i} lost its neighbour at {s.now:.2f}"
            assert view.reach & (view.reach + 1) == 0, f"router {i} missed a Hello at {s.now:.2f}"
            assert s.metric(i, 1 - i) < INFINITY, f"router {i} lost its route at {s.now:.2f}"

    sim.check = check


def no_drops(sim: Sim) -> None:
    for events in sim.events:
        assert not [e for e in events if isinstance(e, NeighbourDown | RouteRetracted)]


def traffic(log: list[Sent], by: int, start: float, end: float) -> tuple[int, int, int]:
    """Hellos, Updates and bytes ``by`` sent between ``start`` and ``end``."""
    sent = [s for s in log if s.by == by and start <= s.time < end]
    return (
        sum(len(s.hellos) for s in sent),
        sum(len(s.routes) for s in sent),
        sum(s.size for s in sent),
    )


def hellos_from(log: list[Sent], by: int, after: float) -> list[Sent]:
    return [s for s in log if s.by == by and s.time > after and s.hellos]


def updates_from(log: list[Sent], by: int, after: float) -> list[Sent]:
    return [s for s in log if s.by == by and s.time > after and s.routes]


# --- (a), (b): a pair at rest for 10 minutes ---------------------------------------------------


def test_a_neighbour_at_rest_gets_an_eighth_of_the_hellos_and_updates_and_stays_up() -> None:
    reference, ref_log = pair([False, False])
    reference.run(660.0)
    paced, log = pair([True, False])
    watch(paced)
    paced.run(660.0)
    no_drops(paced)
    ref_hellos, ref_updates, ref_bytes = traffic(ref_log, 0, 60.0, 660.0)
    hellos, updates, size = traffic(log, 0, 60.0, 660.0)
    assert ref_hellos == 150
    assert ref_updates >= 37
    assert hellos / ref_hellos <= 0.2
    assert updates / ref_updates <= 0.2
    assert size / ref_bytes <= 0.2
    # The other way nothing changed: router 1 does not pace router 0.
    back = traffic(log, 1, 60.0, 660.0)
    ref_back = traffic(ref_log, 1, 60.0, 660.0)
    assert back[0] == ref_back[0]
    assert back[1] >= 0.8 * ref_back[1]
    print(
        f"\nat rest / reference, 0 -> 1 over 600 s: Hellos {hellos}/{ref_hellos}, "
        f"Updates {updates}/{ref_updates}, bytes {size}/{ref_bytes} ({size / ref_bytes:.3f})"
    )


def test_every_interval_sent_to_a_neighbour_at_rest_is_the_paced_one() -> None:
    sim, log = pair([True, False])
    sim.run(300.0)
    later = [s for s in log if s.by == 0 and s.time > WARM_UP]
    assert {h.interval for s in later for h in s.hellos} == {SLOW_HELLO}
    assert {i.interval for s in later for i in s.ihus} == {SLOW_HELLO}
    assert {r.interval for s in later for r in s.routes} == {SLOW_UPDATE}
    # Router 1 is not at rest with router 0: its own intervals are the interface's.
    back = [s for s in log if s.by == 1 and s.time > WARM_UP]
    assert {h.interval for s in back for h in s.hellos} == {400}
    assert {r.interval for s in back for r in s.routes} == {1600}


def test_both_ends_at_rest_keep_the_link_and_each_others_route_for_10_minutes() -> None:
    sim, log = pair([True, True])
    watch(sim)
    sim.run(660.0)
    no_drops(sim)
    for i in (0, 1):
        hellos, updates, _ = traffic(log, i, 60.0, 660.0)
        assert hellos <= 20
        assert 3 <= updates <= 6
        view = sim.routers[i].route(prefix(1 - i))
        assert view is not None
        assert view.metric < INFINITY


def test_a_quick_hello_to_a_neighbour_at_rest_says_the_slow_interval() -> None:
    me, peer = address(0), address(1)
    core = BabelCore((1).to_bytes(8, "big"), CoreConfig(at_rest=lambda i, n: True))
    core.add_interface(
        "wg0", kind="unicast-peers", hello_interval=HELLO, link_local=me, rest_pace=PACE
    )
    core.add_neighbour("wg0", peer)

    def intervals(now: float) -> list[int]:
        messages = (
            m
            for _, _, payload in core.datagrams_to_send(now)
            for m in expand(decode_packet_untrusted(payload), me)
        )
        return [m.interval for m in messages if isinstance(m, Hello | Ihu)]

    core.handle_timer(0.0)
    assert intervals(0.0) == [SLOW_HELLO, SLOW_HELLO]
    # It does not hear us yet (infinite IHU): its Hello is answered at once, at its pace.
    core.receive("wg0", peer, Packet((Hello(1, 400, HELLO_UNICAST), ihu(INFINITY, 400, me))), 1.0)
    assert intervals(1.0) == [SLOW_HELLO, SLOW_HELLO]


def test_a_neighbour_pacing_us_at_rest_still_gets_its_hello_timestamps_echoed() -> None:
    """Router 0 Hellos router 1 every 32 s; router 1's IHUs (every 4 s) echo the timestamps
    of that Hello while within 3 of its intervals (not 3 of ours, 12 s), so router 0 keeps
    measuring the round-trip time from every IHU."""
    sim, log = pair([True, False])
    sim.run(300.0)
    ihus = [i for s in log if s.by == 1 and s.time > WARM_UP for i in s.ihus]
    assert len(ihus) > 60
    assert all(i.timestamps is not None for i in ihus)
    [view] = sim.routers[0].neighbours()
    assert view.rtt is not None


def test_a_neighbour_at_rest_that_missed_a_retraction_hears_it_in_a_full_update() -> None:
    """Router 0 withdraws its prefix while the path to router 1 is down (the triggered
    retraction and its resend are lost): its next full update to router 1, up to 8 update
    intervals later, still carries the retraction; router 1 does not hold the route for the
    3.5 slow intervals (448 s) of its last Update."""
    sim, _ = pair([True, False])
    sim.run(300.0)
    assert sim.metric(1, 0) < INFINITY
    sim.link(0, 1).loss = 1.0
    sim.routers[0].withdraw(prefix(0))
    sim.run(2.0)
    sim.link(0, 1).loss = 0.0
    assert sim.metric(1, 0) < INFINITY
    sim.run(PACE * UPDATE + HELLO)
    assert sim.metric(1, 0) == INFINITY


# --- (c): switching ----------------------------------------------------------------------------


def test_busy_again_the_next_round_sends_a_fast_hello_and_the_next_round_an_update() -> None:
    resting = [True, False]
    sim, log = pair(resting)
    watch(sim)
    sim.run(301.0)
    switch = sim.now
    resting[0] = False
    sim.run(HELLO + UPDATE + 1.0)
    hellos = hellos_from(log, 0, switch)
    assert hellos[0].time <= switch + HELLO
    assert hellos[0].hellos[0].interval == 400
    assert hellos[0].ihus[0].interval == 400
    assert all(s.time - p.time == pytest.approx(HELLO) for p, s in itertools.pairwise(hellos))
    updates = updates_from(log, 0, switch)
    assert updates[0].time <= switch + HELLO + UPDATE + 0.05
    assert {r.interval for r in updates[0].routes} == {1600}
    no_drops(sim)


def test_at_rest_again_the_first_slow_hello_says_so_and_nothing_is_missed() -> None:
    resting = [False, False]
    sim, log = pair(resting)
    watch(sim)
    sim.run(61.0)
    last_fast = hellos_from(log, 0, 0.0)[-1]
    switch = sim.now
    resting[0] = True
    sim.run(3 * PACE * HELLO)
    slow = hellos_from(log, 0, switch)
    assert slow[0].time == pytest.approx(last_fast.time + HELLO)  # no gap on the way
    assert slow[0].hellos[0].interval == SLOW_HELLO
    assert slow[0].ihus[0].interval == SLOW_HELLO
    assert [s.time - slow[0].time for s in slow[1:]] == pytest.approx(
        [PACE * HELLO, 2 * PACE * HELLO]
    )
    updates = updates_from(log, 0, switch)
    assert {r.interval for r in updates[0].routes} == {SLOW_UPDATE}
    no_drops(sim)  # and watch() saw the receiver's reach without a hole throughout


# --- (d): a neighbour that asks for a route on demand is busy -----------------------------------


def test_a_neighbour_asking_for_a_route_is_busy_while_its_interest_lasts() -> None:
    sim, log = pair([True, False], on_demand=True)
    watch(sim)
    sim.run(300.5)
    asked = sim.now
    sim.routers[1].request_routes("wg0", address(0), [(prefix(5), None)], sim.now)
    sim._flush(1)
    hold = HOLDS * UPDATE
    sim.run(hold + 3 * PACE * HELLO)
    hellos = hellos_from(log, 0, asked)
    assert hellos[0].time <= asked + HELLO + 0.01
    busy = [s for s in hellos if s.time < asked + hold]
    assert busy
    assert {s.hellos[0].interval for s in busy} == {400}
    assert len(busy) >= int(hold / HELLO) - 1
    after = [s for s in hellos if s.time > asked + hold + HELLO]
    assert after
    assert {s.hellos[0].interval for s in after} == {SLOW_HELLO}
    no_drops(sim)


def test_a_neighbour_asking_while_it_paces_us_at_rest_stays_at_rest() -> None:
    """A member asked for a route (a joiner's /128, say), then its direct path came up and
    it rests again: the relay must not stay busy with it for the whole interest hold."""
    sim, log = pair([True, True], on_demand=True)
    watch(sim)
    sim.run(300.5)
    asked = sim.now
    sim.routers[1].request_routes("wg0", address(0), [(prefix(5), None)], sim.now)
    sim._flush(1)
    sim.run(HOLDS * UPDATE)
    hellos = hellos_from(log, 0, asked)
    assert hellos
    assert {s.hellos[0].interval for s in hellos} == {SLOW_HELLO}
    no_drops(sim)


def test_interest_asking_is_any_live_interest_of_the_neighbour() -> None:
    interest = Interest()
    nid, other = NeighbourId("wg0", address(1)), NeighbourId("wg0", address(2))
    assert not interest.asking(nid, 0.0)
    interest.note(nid, (prefix(5), None), 10.0, now=0.0, limit=4)
    interest.note(nid, (prefix(6), None), 20.0, now=5.0, limit=4)
    interest.note(nid, (prefix(5), None), 12.0, now=6.0, limit=4)
    assert interest.asking(nid, 15.0)
    assert not interest.asking(other, 15.0)
    assert not interest.asking(nid, 20.0)
    interest.expire(21.0)
    assert not interest.asking(nid, 1.0)
    assert len(interest) == 0
    interest.note(nid, (prefix(5), None), 40.0, now=30.0, limit=4)
    interest.forget(nid)
    assert not interest.asking(nid, 31.0)


# --- (e): settings -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["wired", "tunnel"])
def test_a_multicast_interface_cannot_pace(kind: str) -> None:
    core = BabelCore((1).to_bytes(8, "big"))
    with pytest.raises(ValueError, match="cannot pace"):
        core.add_interface("eth0", kind=kind, rest_pace=2)  # type: ignore[arg-type]
    assert core.add_interface("eth1", kind=kind, rest_pace=1).rest_pace == 1  # type: ignore[arg-type]


def test_the_rest_pace_is_at_least_1_and_fits_the_wire() -> None:
    core = BabelCore((1).to_bytes(8, "big"))
    with pytest.raises(ValueError, match="at least 1"):
        core.add_interface("wg0", kind="unicast-peers", rest_pace=0)
    # 41 x 16 s = 656 s: more than the 655.35 s an interval field carries.
    with pytest.raises(ValueError, match=r"655\.35"):
        core.add_interface("wg0", kind="unicast-peers", hello_interval=4.0, rest_pace=41)
    # The Hello interval counts too, when it is the longer one.
    with pytest.raises(ValueError, match=r"655\.35"):
        core.add_interface(
            "wg0", kind="unicast-peers", hello_interval=100.0, update_interval=50.0, rest_pace=7
        )
    assert core.add_interface("wg0", kind="unicast-peers", rest_pace=40).rest_pace == 40
    assert core.interfaces()[0].rest_pace == 40


# --- (f): any sequence of verdicts -------------------------------------------------------------


def spacing_holds(sends: list[Sent], interval_of: Callable[[Sent], int], slack: float) -> None:
    """Each datagram's interval (centiseconds) covers the wait for the next one."""
    for before, after in itertools.pairwise(sends):
        assert after.time - before.time <= interval_of(before) / 100 + slack, (
            f"{after.time - before.time:.3f} s after one saying {interval_of(before) / 100} s"
        )


verdicts = st.lists(
    st.tuples(st.floats(0.5, 90.0), st.booleans(), st.booleans()), min_size=1, max_size=20
)


@seed(20261203)
@settings(max_examples=25, deadline=None)
@given(verdicts, st.integers(0, 1000))
def test_flipping_verdicts_never_take_the_link_down_nor_outrun_an_interval(
    flips: list[tuple[float, bool, bool]], sim_seed: int
) -> None:
    resting = [False, False]
    sim, log = pair(resting, seed=sim_seed)
    watch(sim)
    sim.run(WARM_UP)
    for duration, first, second in flips:
        resting[0], resting[1] = first, second
        sim.run(duration)
    sim.run(2 * PACE * UPDATE)  # the last verdict's updates and Hellos
    no_drops(sim)
    for i in (0, 1):
        start = [s for s in log if s.by == i and s.time >= WARM_UP]
        hellos = [s for s in start if s.hellos]
        spacing_holds(hellos, lambda s: s.hellos[0].interval, 1e-6)
        spacing_holds(hellos, lambda s: s.ihus[0].interval, 1e-6)
        updates = [s for s in start if s.routes]
        # An update waits up to urgent_jitter (20 ms) in the outbox after its round.
        spacing_holds(updates, lambda s: s.routes[0].interval, 0.02)
