"""The core's relay_rank hook: two ends of a relayed pair select the same relay (fake clock).

Scene: member B's prefix is announced to a core by two relays, R1 and R2 (and, in the last
test, by B itself). Which announcement comes first and the metrics (RTT penalties) differ
per end; with hysteresis alone each end keeps what it heard first, and WireGuard's receive
filter then drops everything the other end sends through the other relay.
"""

from __future__ import annotations

from ipaddress import IPv6Address

from meshd.babel.config import Carrier, RelayRank
from meshd.babel.core import BabelCore, CoreConfig
from meshd.babel.sources import IPNetwork
from tests.babel.test_core import NET, Peer, route

R1 = IPv6Address("fe80::11")
R2 = IPv6Address("fe80::22")
B = IPv6Address("fe80::bb")
RANKS = {R1: b"\x02", R2: b"\x01"}  # the pair's hash ranks R2 first


def ranked(
    prefix: IPNetwork, source: IPNetwork | None, interface: str, neighbour: object
) -> bytes | None:
    assert interface == "eth0"
    return RANKS.get(neighbour) if prefix == NET and source is None else None  # type: ignore[call-overload]


def core_hearing(first: IPv6Address, second: IPv6Address, hook: RelayRank | None) -> BabelCore:
    core = BabelCore(bytes.fromhex("0000000000000001"), CoreConfig(relay_rank=hook))
    core.add_interface("eth0", kind="wired", hello_interval=1.0, link_local=IPv6Address("fe80::1"))
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    a, b = Peer(core, first), Peer(core, second)
    now = max(a.up(0.0), b.up(0.0))
    a.announce(now, route(96))  # heard first
    b.announce(now + 0.1, route(96 - 40))  # better, but by less than the hysteresis
    return core


def selected_via(core: BabelCore) -> IPv6Address | None:
    view = core.route(NET)
    return view.next_hop if view is not None else None  # type: ignore[return-value]


def test_without_the_hook_each_end_keeps_what_it_heard_first() -> None:
    assert selected_via(core_hearing(R1, R2, None)) == R1
    assert selected_via(core_hearing(R2, R1, None)) == R2  # the other end: no common relay


def test_with_the_hook_both_ends_select_the_lowest_ranked_relay() -> None:
    assert selected_via(core_hearing(R1, R2, ranked)) == R2
    assert selected_via(core_hearing(R2, R1, ranked)) == R2


def test_a_direct_route_is_still_chosen_by_metric() -> None:
    core = core_hearing(R1, R2, ranked)
    direct = Peer(core, B)
    now = direct.up(5.0)
    direct.announce(now, route(0))  # B itself: unranked and best
    assert selected_via(core) == B


def test_a_relay_whose_route_is_gone_is_replaced_by_the_next() -> None:
    core = core_hearing(R1, R2, ranked)
    Peer(core, R2).announce(2.5, route(0xFFFF), hello=False)  # R2 retracts
    assert selected_via(core) == R1


def own_of_b(router_id: bytes, interface: str, neighbour: object) -> Carrier:
    """B is the originator of ``FAR_ID``'s routes; R1 and R2 carry them."""
    return Carrier.OWN if neighbour == B else Carrier.CARRIED


def test_the_originators_own_route_wins_over_every_carried_claim() -> None:
    """A carrier claims B's route with a seqno far ahead and a metric of 0; B's own route,
    worse by metric and older by seqno, is still the one chosen while its link is up, and
    the carried ones again once it is gone."""
    core = BabelCore(
        bytes.fromhex("0000000000000001"), CoreConfig(relay_rank=ranked, carries=own_of_b)
    )
    core.add_interface("eth0", kind="wired", hello_interval=1.0, link_local=IPv6Address("fe80::1"))
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    direct, relay = Peer(core, B), Peer(core, R2)
    now = max(direct.up(0.0), relay.up(0.0))
    direct.announce(now, route(400, seqno=5))
    relay.announce(now + 0.1, route(0, seqno=30000))
    assert selected_via(core) == B
    view = core.route(NET)
    assert view is not None
    assert view.seqno == 5
    assert view.feasible
    direct.announce(now + 0.5, route(0xFFFF, seqno=5), hello=False)  # B retracts
    assert selected_via(core) == R2
