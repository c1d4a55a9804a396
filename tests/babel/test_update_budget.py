"""A neighbour's Updates within a budget, and the ones a datagram replaces not taken in.

The attack: a datagram may carry ~5,000 Updates, each ~30 microseconds of CPU to take in
(a route table upkeep and a selection), and nothing bounded how many a neighbour sent: a
datagram of 5,000 cost ~0.12 s, and one neighbour could keep a relay's event loop busy.
Now, of the Updates for one route in a datagram only the last is taken in (the same end,
checked against the messages one datagram each), and a neighbour's Updates are taken up to
two route budgets at once, refilled at two a update interval (``UPDATE_TABLES``); the rest
are dropped and counted. A full table, and a dump asked for on top, still go in whole.
"""

from __future__ import annotations

import random
from ipaddress import IPv6Address, IPv6Network

from meshd.babel.core import BabelCore, CoreConfig
from meshd.babel.core_receive import UPDATE_TABLES
from meshd.babel.expand import Route, build_updates, wildcard_retraction
from meshd.babel.numbers import INFINITY
from meshd.babel.packet import Tlv
from tests.babel.test_core import FAR_ID, ME, MY_ID, Peer

FLOODER = IPv6Address("fe80::66")
HONEST = IPv6Address("fe80::77")
BUDGET = 500  # max_routes of the interface
HELLO = 1.0
UPDATE_INTERVAL = 4 * HELLO


def _core() -> BabelCore:
    core = BabelCore(MY_ID, CoreConfig())
    core.add_interface("eth0", kind="wired", hello_interval=HELLO, link_local=ME, max_routes=BUDGET)
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    return core


def _prefix(n: int) -> IPv6Network:
    return IPv6Network(((0x2001_0DB8 << 96) + (n << 64), 64))


def _routes(count: int, seqno: int = 1, metric: int = 96) -> list[Route]:
    return [Route(_prefix(n), seqno, metric, 400, FAR_ID, None, None) for n in range(count)]


def _count_taken(core: BabelCore) -> list[int]:
    """How many Updates reach the route selection (wraps the core's selection)."""
    taken = [0]
    selection = core._selection
    update = selection.update

    def counted(*args: object, **kwargs: object) -> None:
        taken[0] += 1
        update(*args, **kwargs)  # type: ignore[arg-type]

    selection.update = counted  # type: ignore[method-assign]
    return taken


def test_a_flooding_neighbour_is_held_to_its_budget_and_others_are_heard() -> None:
    core = _core()
    flooder, honest = Peer(core, FLOODER), Peer(core, HONEST)
    now = max(flooder.up(0.0), honest.up(0.0))
    taken = _count_taken(core)
    sent, seconds = 0, 20
    for tick in range(seconds * 10):  # 10 datagrams a second, 400 distinct Updates each
        at = now + tick / 10
        flooder.send(at, *build_updates(_routes(400, seqno=1 + tick % 2)), hello=tick % 10 == 0)
        sent += 400
        if tick % 40 == 0:  # the honest neighbour's own route, every 4 s
            honest.announce(at, Route(_prefix(9999), 1, 0, 400, bytes(7) + b"\x02", None, None))
    capacity = UPDATE_TABLES * BUDGET
    most = capacity + seconds * capacity / UPDATE_INTERVAL + 10  # + the honest ones
    assert taken[0] <= most, (taken[0], most)  # before: all 80,000
    counters = core.counters()
    assert counters["updates_over_budget"] >= sent - most
    view = core.route(_prefix(9999))
    assert view is not None
    assert view.neighbour is not None
    assert view.neighbour.address == HONEST


def test_a_full_table_and_a_dump_on_top_go_in_whole() -> None:
    core = _core()
    peer = Peer(core, FLOODER)
    now = peer.up(0.0)
    taken = _count_taken(core)
    for round_ in range(UPDATE_TABLES):  # its table, and a dump asked for right after
        for chunk in range(0, BUDGET, 100):
            routes = _routes(BUDGET, seqno=1 + round_)[chunk : chunk + 100]
            peer.send(now + round_ * 0.1, *build_updates(routes), hello=False)
    assert taken[0] == UPDATE_TABLES * BUDGET
    assert core.counters()["updates_over_budget"] == 0
    assert len([v for v in core.routes() if v.neighbour is not None]) == BUDGET


def test_updates_a_later_one_replaces_are_not_taken_in_and_the_end_is_the_same() -> None:
    """Random datagrams of Updates, retractions and wildcard retractions for a few routes:
    taken in as one datagram, the table ends as it does with one datagram a message."""
    rng = random.Random(7)
    superseded = 0
    for case in range(150):
        messages: list[list[Tlv]] = []
        for _ in range(rng.randrange(1, 12)):
            if rng.random() < 0.1:
                messages.append([wildcard_retraction(400)])
                continue
            metric = INFINITY if rng.random() < 0.2 else rng.randrange(0, 400)
            route = Route(_prefix(rng.randrange(3)), rng.randrange(1, 4), metric, 400, FAR_ID,
                          None, None)  # fmt: skip
            messages.append(build_updates([route]))
        whole, apart = _core(), _core()
        a, b = Peer(whole, FLOODER), Peer(apart, FLOODER)
        now = max(a.up(0.0), b.up(0.0))
        a.send(now, *[tlv for tlvs in messages for tlv in tlvs], hello=False)
        for tlvs in messages:
            b.send(now, *tlvs, hello=False)
        seen = [
            sorted((str(v.prefix), v.seqno, v.metric, v.selected) for v in core.routes())
            for core in (whole, apart)
        ]
        assert seen[0] == seen[1], (case, messages)
        superseded += whole.counters()["updates_superseded"]
    assert superseded > 100  # the rule was at work, not only the order
