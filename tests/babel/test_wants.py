"""What a member asks of its mesh neighbours (meshd.daemon.babel_wants.Wants, pure)."""

from __future__ import annotations

import gc
import itertools
import tracemalloc
from ipaddress import IPv6Address, IPv6Network

from meshd.babel.neighbours import IPAddress
from meshd.babel.routes import NeighbourId
from meshd.babel.sources import IPNetwork
from meshd.babel.views import RouteView
from meshd.daemon.babel_wants import FIRST_PROBES, PARKED, PROBES, Wants
from tests.babel.wants_support import members_of

R1, R2, B, C = (IPv6Address(f"fe80::{n}") for n in ("11", "22", "b", "c"))
HOST = {a: IPv6Network(f"fd00::{n}/128") for a, n in ((R1, 1), (R2, 2), (B, "b"), (C, "c"))}
MEMBERS: dict[IPNetwork, IPAddress] = {p: a for a, p in HOST.items()}
IDS: dict[IPAddress, bytes] = {a: bytes([i + 1]) * 8 for i, a in enumerate(HOST)}
VIEW = members_of(MEMBERS, IDS)


def route(destination: IPv6Address, via: IPv6Address, metric: int = 96) -> RouteView:
    return RouteView(
        prefix=HOST[destination],
        source=None,
        router_id=IDS[destination],
        seqno=1,
        metric=metric,
        refmetric=0,
        next_hop=via,
        neighbour=NeighbourId("wg0", via),
        selected=True,
        feasible=True,
        expires=None,
    )


def wants(now: float = 0.0) -> Wants:
    w = Wants("wg0", hold=1.0, period=16.0, rediscover=64.0)
    w.neighbours(HOST, now)
    return w


def direct_to_all_but(*missing: IPv6Address) -> list[RouteView]:
    return [route(a, a) for a in HOST if a not in missing]


def test_nothing_is_asked_while_every_member_is_direct() -> None:
    w = wants()
    assert w.plan(5.0, VIEW, direct_to_all_but(), HOST) == {}


def test_a_new_neighbour_is_not_asked_for_before_its_hold() -> None:
    w = wants()
    assert w.plan(0.5, VIEW, direct_to_all_but(B), HOST) == {}


def test_without_known_relays_every_two_way_neighbour_is_probed() -> None:
    w = wants()
    plan = w.plan(5.0, VIEW, direct_to_all_but(B), [R1, R2, C])
    assert plan == {R1: [HOST[B]], R2: [HOST[B]], C: [HOST[B]]}
    # Not again before the rediscovery interval.
    assert w.plan(6.0, VIEW, direct_to_all_but(B), [R1, R2, C]) == {}


def test_relays_are_known_by_their_routes_and_asked_every_period() -> None:
    w = wants()
    routes = [*direct_to_all_but(B), route(B, R1, 192), route(B, R2, 192)]
    first = w.plan(5.0, VIEW, routes, HOST)
    assert w.relays == {R1, R2}
    assert first == {R1: [HOST[B]], R2: [HOST[B]], C: [HOST[B]]}  # C: is it a relay?
    assert w.plan(10.0, VIEW, routes, HOST) == {}  # within the period
    # Every period the relays again (which keeps their interest alive), not C.
    assert w.plan(21.0, VIEW, routes, HOST) == {R1: [HOST[B]], R2: [HOST[B]]}
    # C is asked again after the rediscovery interval (a lost answer, a new relay).
    assert w.plan(70.0, VIEW, routes, HOST)[C] == [HOST[B]]


def test_a_newly_wanted_member_is_asked_of_the_relays_at_once() -> None:
    w = wants()
    routes = [*direct_to_all_but(B), route(B, R1, 192)]
    w.plan(5.0, VIEW, routes, HOST)
    routes = [r for r in routes if r.prefix != HOST[C]]  # C's direct route lost
    plan = w.plan(6.0, VIEW, routes, HOST)
    assert plan[R1] == [HOST[C]]
    assert plan.get(R2) is None  # probed at 5.0: not a relay, not again so soon
    assert plan[B] == [HOST[C]]  # never probed yet (nothing to ask it before)


def test_both_ends_of_a_pair_learn_every_relay_whatever_they_knew_before() -> None:
    # At B, only R1 was known to relay; R2 answered nothing then (a lost answer).
    w = wants()
    w.plan(5.0, VIEW, [*direct_to_all_but(C), route(C, R1, 192)], HOST)
    assert w.relays == {R1}
    # Later B is wanted too: R2, not known, is asked for it once the interval allows.
    routes = [*direct_to_all_but(B, C), route(C, R1, 192)]
    assert R2 not in w.plan(6.0, VIEW, routes, HOST)
    plan = w.plan(70.0, VIEW, routes, HOST)
    assert HOST[B] in plan[R2]


def test_a_gone_neighbour_is_forgotten_as_a_relay() -> None:
    w = wants()
    w.plan(5.0, VIEW, [*direct_to_all_but(B), route(B, R1, 192)], HOST)
    w.neighbours([R2, B, C], 6.0)
    assert w.relays == set()


def test_discovery_probes_are_few() -> None:
    many: dict[IPNetwork, IPAddress] = {
        IPv6Network(f"fd00::1:{n:x}/128"): IPv6Address(f"fe80::1:{n:x}") for n in range(20)
    }
    members: dict[IPNetwork, IPAddress] = {**MEMBERS, **many}
    ids: dict[IPAddress, bytes] = {
        **IDS,
        **{a: n.to_bytes(8, "big") for n, a in enumerate(many.values(), 100)},
    }
    w = Wants("wg0", hold=1.0, period=16.0, rediscover=64.0)
    w.neighbours(members.values(), 0.0)
    # The first time, a neighbour is asked for every wanted /128 (a relay answers them all
    # in that round trip); after that, discovery asks for a few.
    plan = w.plan(5.0, members_of(members, ids), direct_to_all_but(B), [R1])
    assert len(plan[R1]) == 21
    plan = w.plan(70.0, members_of(members, ids), direct_to_all_but(B), [R1])
    assert len(plan[R1]) == PROBES


def test_a_first_probe_is_bounded_and_a_relay_found_by_it_is_asked_for_the_rest() -> None:
    many: dict[IPNetwork, IPAddress] = {
        IPv6Network(f"fd00::2:{n:x}/128"): IPv6Address(f"fe80::2:{n:x}") for n in range(40)
    }
    members: dict[IPNetwork, IPAddress] = {HOST[R1]: R1, **many}
    ids: dict[IPAddress, bytes] = {
        R1: IDS[R1],
        **{a: n.to_bytes(8, "big") for n, a in enumerate(many.values(), 100)},
    }
    w = Wants("wg0", hold=0.0, period=16.0, rediscover=64.0)
    w.neighbours(members.values(), 0.0)
    direct = [route(R1, R1)]
    first = w.plan(0.0, members_of(members, ids), direct, [R1])[R1]
    assert first == list(many)[:FIRST_PROBES]
    # Its answer shows R1 relays: the others are asked of it in the next round.
    answer = RouteView(
        prefix=first[0],
        source=None,
        router_id=ids[many[first[0]]],
        seqno=1,
        metric=192,
        refmetric=96,
        next_hop=R1,
        neighbour=NeighbourId("wg0", R1),
        selected=True,
        feasible=True,
        expires=None,
    )
    rest = w.plan(0.01, members_of(members, ids), [*direct, answer], [R1])[R1]
    assert rest == list(many)[FIRST_PROBES:]


def test_a_relay_known_late_is_asked_for_every_wanted_member_at_once() -> None:
    # R1 was probed for B, C before it relayed; now that its route shows it relays, the
    # wanted /128s it was not asked for go to it in the same round, not a period later.
    w = wants()
    assert w.plan(5.0, VIEW, direct_to_all_but(B), [R1]) == {R1: [HOST[B]]}
    routes = [*direct_to_all_but(B, C), route(B, R1, 192)]
    assert w.plan(5.1, VIEW, routes, [R1]) == {R1: [HOST[C]]}
    assert w.plan(5.2, VIEW, routes, [R1]) == {}


def test_a_relay_that_comes_up_is_asked_at_once() -> None:
    w = wants()
    routes = [*direct_to_all_but(B), route(B, R1, 192)]
    w.plan(5.0, VIEW, routes, [R2])
    w.relays.add(R1)  # known from before its link went down
    assert w.plan(6.0, VIEW, routes, [R1, R2]) == {R1: [HOST[B]]}


def asks_for(w: Wants, prefix: IPNetwork, routes: list[RouteView], until: float) -> list[float]:
    """When ``prefix`` is asked of a relay, running a round every second until ``until``."""
    times = []
    now = 5.0
    while now <= until:
        if prefix in w.plan(now, VIEW, routes, HOST).get(R1, []):
            times.append(now)
        now += 1.0
    return times


def test_a_member_no_relay_routes_is_asked_for_ever_more_seldom() -> None:
    # B is offline: no direct route, and the relays answer without one. Every member
    # asking every relay for it every period, for the hours it stays admitted, would cost
    # each relay a request and an answer per member per period for nothing.
    w = wants()
    w.relays.update((R1, R2))
    routes = direct_to_all_but(B)
    times = asks_for(w, HOST[B], routes, 3 * 3600.0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Then parked: asked of these relays no more (every period: 675 in these three hours;
    # every 256 s, 42) until something says B is back.
    assert gaps == [16.0, 32.0, 64.0, 128.0, 256.0]
    assert w.unrouted[HOST[B]] == PARKED
    assert not w.active


def test_a_parked_member_is_asked_of_a_relay_that_comes_up() -> None:
    w = wants()
    w.relays.update((R1, R2))
    routes = direct_to_all_but(B)
    asks_for(w, HOST[B], routes, 1200.0)
    assert w.unrouted[HOST[B]] == PARKED
    assert w.plan(1201.0, VIEW, routes, [R2]) == {}  # R1's link is down
    assert w.plan(1202.0, VIEW, routes, HOST) == {R1: [HOST[B]]}  # up again: asked
    assert w.plan(5000.0, VIEW, routes, HOST) == {}


def test_a_route_that_comes_brings_the_period_back() -> None:
    w = wants()
    w.relays.update((R1, R2))
    asks_for(w, HOST[B], direct_to_all_but(B), 600.0)
    assert w.unrouted[HOST[B]] == PARKED
    routes = [*direct_to_all_but(B), route(B, R1, 192)]
    w.plan(601.0, VIEW, routes, HOST)
    assert HOST[B] not in w.unrouted
    later = [t for t in asks_for(w, HOST[B], routes, 700.0) if t > 601.0]
    assert later
    assert all(b - a == 16.0 for a, b in itertools.pairwise(later))


def test_a_member_that_announces_anew_is_asked_for_at_once() -> None:
    w = wants()
    w.relays.update((R1, R2))
    routes = direct_to_all_but(B)
    last = asks_for(w, HOST[B], routes, 600.0)[-1]
    assert w.plan(last + 1.0, VIEW, routes, HOST) == {}
    w.renewed([HOST[B]])
    assert w.plan(last + 2.0, VIEW, routes, HOST) == {R1: [HOST[B]], R2: [HOST[B]]}
    assert HOST[B] not in w.unrouted
    w.renewed([HOST[C]])  # not backed off: nothing changes
    assert w.plan(last + 3.0, VIEW, routes, HOST) == {}


def test_a_round_at_2000_members_makes_no_set_of_the_wanted() -> None:
    """A round's peak: its list of the wanted /128s (8 bytes each) and little more, not a
    set of them beside it nor a copy of ``covered`` (~52 bytes a member each, at 10,000)."""
    n = 2_000
    hosts = {
        IPv6Address(0xFE80 << 112 | i + 1): IPv6Network((0xFD00 << 112 | i + 1, 128))
        for i in range(n)
    }
    view = members_of({p: a for a, p in hosts.items()}, {a: a.packed for a in hosts})
    covered = set(list(hosts.values())[: n // 2])
    w = Wants("wg0", hold=0.0, period=16.0, rediscover=64.0)
    gc.collect()
    tracemalloc.start()
    try:
        plan = w.plan(5.0, view, [], [], covered)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plan == {}
    assert w.active
    assert peak / n < 24, peak / n
