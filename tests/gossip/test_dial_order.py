"""Which of a peer's addresses is dialled first, and for how long (meshd.gossip.dial_order),
and dial_all following it, on trio's fake clock; the TCP probe of far addresses, on
loopback."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from meshd.gossip.dial_order import (
    MOST_PROBED,
    ON_LINK_TIMEOUT,
    PROBE_WINDOW,
    Attempt,
    DialPlan,
    dial_plan,
    host_of,
    on_link,
    probe_targets,
    tcp_target,
)
from meshd.gossip.dialling import dial_all, tcp_probe
from meshd.gossip.streams import TransportError

LAN = [ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("2001:db8:1::/64")]
PEER = "12D3KooWPeer"
PUBLIC = f"/ip4/203.0.113.7/tcp/7100/p2p/{PEER}"
SEEN = f"/ip4/198.51.100.9/tcp/7100/p2p/{PEER}"
HOME = f"/ip4/192.168.1.20/tcp/7100/p2p/{PEER}"
HOME6 = f"/ip6/2001:db8:1::20/tcp/7100/p2p/{PEER}"
PUBLIC6 = f"/ip6/2001:db8:9::7/tcp/7100/p2p/{PEER}"
NAMED = f"/dns4/peer.example/tcp/7100/p2p/{PEER}"


def test_the_host_of_an_ip_multiaddr_and_nothing_else() -> None:
    assert str(host_of(HOME)) == "192.168.1.20"
    assert str(host_of(HOME6)) == "2001:db8:1::20"
    for other in (
        f"/dns4/home.example/tcp/7100/p2p/{PEER}",
        "/ip4/2001:db8::1/tcp/1",  # the wrong family for its protocol
        "/ip6/192.168.1.20/tcp/1",
        "/ip4/999.1.1.1/tcp/1",
        "ip4/192.168.1.20/tcp/1",
        "/ip4",
        "",
    ):
        assert host_of(other) is None, other


def test_on_link_is_an_address_inside_one_of_our_networks() -> None:
    assert on_link(HOME, LAN)
    assert on_link(HOME6, LAN)
    assert not on_link(PUBLIC, LAN)
    assert not on_link(HOME, [])
    assert not on_link(f"/dns4/192.168.1.20/tcp/1/p2p/{PEER}", LAN)


def test_an_on_link_address_comes_first_briefly_and_again_in_full_after_the_others() -> None:
    plan = dial_plan([PUBLIC, SEEN, HOME], LAN)
    assert plan == DialPlan(
        (Attempt(2, ON_LINK_TIMEOUT), Attempt(0), Attempt(1)),
        (Attempt(2),),
    )


def test_the_listed_order_is_kept_when_no_address_or_every_address_is_on_link() -> None:
    assert dial_plan([PUBLIC, SEEN], LAN) == DialPlan((Attempt(0), Attempt(1)))
    assert dial_plan([HOME, HOME6], LAN) == DialPlan((Attempt(0), Attempt(1)))
    assert dial_plan([PUBLIC, HOME], []) == DialPlan((Attempt(0), Attempt(1)))
    assert dial_plan([], LAN) == DialPlan(())


@given(
    st.lists(st.sampled_from([PUBLIC, SEEN, HOME, HOME6, "/dns/x/tcp/1", "junk", ""]), max_size=8)
)
def test_every_address_is_dialled_once_in_full_or_briefly_then_again_in_full(
    addrs: list[str],
) -> None:
    plan = dial_plan(addrs, LAN)
    assert sorted(a.index for a in plan.first) == list(range(len(addrs)))
    brief = [a.index for a in plan.first if a.within is not None]
    assert [a.index for a in plan.again] == brief
    assert all(a.within is None for a in plan.again)
    assert all(on_link(addrs[i], LAN) for i in brief)
    near = [a.index for a in plan.first if on_link(addrs[a.index], LAN)]
    assert [a.index for a in plan.first][: len(near)] == near  # the near ones lead
    assert near == sorted(near)  # each kind in its listed order
    far = [a.index for a in plan.first][len(near) :]
    assert far == sorted(far)


ADDRESSES = [PUBLIC, SEEN, PUBLIC6, HOME, HOME6, NAMED, "/dns/x/tcp/1", "junk", ""]


@given(st.lists(st.sampled_from(ADDRESSES), max_size=8), st.sets(st.integers(0, 7)))
def test_with_a_probe_every_address_is_still_dialled_those_that_answered_first(
    addrs: list[str], accepted: set[int]
) -> None:
    probed = set(probe_targets(addrs, LAN))
    answered = accepted & probed
    plan = dial_plan(addrs, LAN, probed=probed, answered=answered)
    order = [a.index for a in plan.first]
    assert sorted(order) == list(range(len(addrs)))  # each once, whatever the probe said
    assert all(a.within is None for a in plan.again)
    brief = [a.index for a in plan.first if a.within is not None]
    assert [a.index for a in plan.again] == brief  # cut short: again in full at the end
    near = [i for i in order if on_link(addrs[i], LAN)]
    after_near = order[len(near) :]
    if answered:
        # The far addresses that accepted lead them, in their listed order; those silent
        # come last, briefly.
        assert after_near[: len(answered)] == sorted(answered)
        silent = sorted(probed - answered)
        assert after_near[len(after_near) - len(silent) :] == silent
        assert all(i in brief for i in silent)
    else:
        assert plan == dial_plan(addrs, LAN)  # the probe said nothing: as without one


def test_only_two_or_more_far_ip_addresses_with_a_tcp_port_are_probed() -> None:
    assert tcp_target(PUBLIC) == ("203.0.113.7", 7100)
    assert tcp_target(PUBLIC6) == ("2001:db8:9::7", 7100)
    for other in (NAMED, "/ip4/203.0.113.7/udp/7100", "/ip4/203.0.113.7/tcp/0", "/ip4/1.2.3.4"):
        assert tcp_target(other) is None, other
    assert probe_targets([PUBLIC, SEEN, HOME], LAN) == {
        0: ("203.0.113.7", 7100),
        1: ("198.51.100.9", 7100),
    }
    assert probe_targets([PUBLIC, HOME, NAMED], LAN) == {}  # one far IP address: no probe
    # A member's announcement decides what is asked: at most MOST_PROBED of its addresses.
    many = [f"/ip4/203.0.113.{i}/tcp/22/p2p/{PEER}" for i in range(20)]
    assert list(probe_targets([HOME, *many], LAN)) == list(range(1, 1 + MOST_PROBED))
    assert probe_targets([HOME, HOME6], LAN) == {}


def test_a_silent_far_address_listed_first_does_not_hold_up_one_that_works() -> None:
    # A stale public address first (nothing answers there), then where the peer is now.
    network = Network({PUBLIC: (NEVER, None), PUBLIC6: (0.3, PEER)})
    probe = Probe({0: None, 1: 0.05})
    results, took = _run(network, [PUBLIC, PUBLIC6], probe)
    assert probe.asked == [{0: ("203.0.113.7", 7100), 1: ("2001:db8:9::7", 7100)}]
    assert network.dials == [(PUBLIC6, None)]
    assert results == [(True, PEER), (True, PEER)]
    assert took == 0.05 + 0.3  # without the probe: 5 s for the silent one first


def test_a_far_address_silent_in_the_probe_is_still_tried_briefly_then_in_full() -> None:
    # The one that accepted fails its dial (another node at that address): the silent one
    # is tried briefly, then in full, and turns out only slow.
    network = Network({PUBLIC: (2.5, PEER), SEEN: (0.1, None)})
    probe = Probe({0: None, 1: 0.02})
    results, took = _run(network, [PUBLIC, SEEN], probe)
    assert network.dials == [(SEEN, None), (PUBLIC, ON_LINK_TIMEOUT), (PUBLIC, None)]
    assert results == [(True, PEER), (False, None)]
    assert took == 0.02 + 0.1 + ON_LINK_TIMEOUT + 2.5


def test_an_address_on_our_lan_is_dialled_before_the_others_are_asked_anything() -> None:
    network = Network({PUBLIC: (NEVER, None), SEEN: (NEVER, None), HOME: (0.3, PEER)})
    probe = Probe({0: 0.01, 1: None})
    results, took = _run(network, [PUBLIC, SEEN, HOME], probe)
    assert probe.asked == []  # reached on the LAN: the far ones cost nothing
    assert network.dials == [(HOME, ON_LINK_TIMEOUT)]
    assert took == 0.3
    # Nobody there: then the far ones are asked, and the one that accepts is dialled.
    network = Network({PUBLIC: (NEVER, None), SEEN: (0.2, PEER), HOME: (NEVER, None)})
    probe = Probe({0: None, 1: 0.01})
    results, took = _run(network, [PUBLIC, SEEN, HOME], probe)
    assert len(probe.asked) == 1
    assert network.dials == [(HOME, ON_LINK_TIMEOUT), (SEEN, None)]
    assert results == [(True, PEER), (True, PEER), (False, None)]
    assert took == ON_LINK_TIMEOUT + 0.01 + 0.2


def test_when_no_far_address_answers_the_probe_they_are_dialled_as_listed() -> None:
    network = Network({PUBLIC: (0.5, PEER), SEEN: (0.1, PEER)})
    probe = Probe({0: None, 1: None})
    results, took = _run(network, [PUBLIC, SEEN], probe)
    assert network.dials == [(PUBLIC, None)]
    assert results == [(True, PEER), (True, PEER)]
    assert took == PROBE_WINDOW + 0.5


class Network:
    """A fake ``connect``: each address answers (as its peer) or fails after a delay, on
    the fake clock; every dial recorded with the time it was given."""

    def __init__(self, answers: dict[str, tuple[float, str | None]]) -> None:
        self.answers = answers
        self.dials: list[tuple[str, float | None]] = []

    async def connect(self, addr: str, within: float | None) -> str:
        self.dials.append((addr, within))
        delay, peer = self.answers[addr]
        limit = 5.0 if within is None else within
        with trio.move_on_after(limit):
            await trio.sleep(delay)
            if peer is None:
                raise TransportError(f"dialling {addr} failed: refused")
            return peer
        raise TransportError(f"dialling {addr} took longer than {limit} s")


class Probe:
    """A fake probe: each place accepts after its delay (None: silent), on the fake clock,
    returning as :func:`tcp_probe` does (at the first to accept, or the window's end)."""

    def __init__(self, accepts: dict[int, float | None]) -> None:
        self.accepts = accepts
        self.asked: list[dict[int, tuple[str, int]]] = []

    async def __call__(
        self, targets: Mapping[int, tuple[str, int]], window: float
    ) -> frozenset[int]:
        self.asked.append(dict(targets))
        delays = [d for place, d in self.accepts.items() if place in targets and d is not None]
        first = min(delays, default=None)
        await trio.sleep(window if first is None or first > window else first)
        return frozenset(p for p, d in self.accepts.items() if d is not None and d == first)


def _run(
    network: Network, addrs: list[str], probe: Probe | None = None
) -> tuple[list[tuple[bool, str | None]], float]:
    async def main() -> tuple[list[tuple[bool, str | None]], float]:
        started = trio.current_time()
        results = await dial_all(network.connect, addrs, LAN, probe)
        return [(r.ok, r.peer_id) for r in results], trio.current_time() - started

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


NEVER = 3600.0  # an address that never answers (its dial ends at its time)


def test_from_the_members_lan_its_public_address_is_not_dialled() -> None:
    # The inviter's public address first in the invite, behind a NAT that does not hairpin.
    network = Network({PUBLIC: (NEVER, None), SEEN: (NEVER, None), HOME: (0.3, PEER)})
    results, took = _run(network, [PUBLIC, SEEN, HOME])
    assert network.dials == [(HOME, ON_LINK_TIMEOUT)]
    assert results == [(True, PEER)] * 3
    assert took == 0.3  # was 10.3 s: both timeouts first


def test_an_on_link_address_of_another_site_holds_the_others_up_briefly() -> None:
    # 192.168.1.20 at another site than the member's: here, nobody answers there.
    network = Network({PUBLIC: (0.2, PEER), HOME: (NEVER, None)})
    results, took = _run(network, [PUBLIC, HOME])
    assert network.dials == [(HOME, ON_LINK_TIMEOUT), (PUBLIC, None)]
    assert results == [(True, PEER), (False, None)]
    assert took == ON_LINK_TIMEOUT + 0.2


def test_a_slow_member_on_our_lan_is_dialled_again_in_full_when_the_others_fail() -> None:
    network = Network({PUBLIC: (0.1, None), HOME: (2.5, PEER)})
    results, took = _run(network, [PUBLIC, HOME])
    assert network.dials == [(HOME, ON_LINK_TIMEOUT), (PUBLIC, None), (HOME, None)]
    assert results == [(False, None), (True, PEER)]
    assert took == ON_LINK_TIMEOUT + 0.1 + 2.5


def test_when_nothing_answers_each_address_fails_saying_why() -> None:
    network = Network({PUBLIC: (NEVER, None), HOME: (0.1, None)})
    results, took = _run(network, [PUBLIC, HOME])
    assert network.dials == [(HOME, ON_LINK_TIMEOUT), (PUBLIC, None), (HOME, None)]
    assert results == [(False, None), (False, None)]
    assert took == 0.1 + 5.0 + 0.1


def test_different_peers_are_dialled_at_once_each_in_its_own_order() -> None:
    other = "12D3KooWOther"
    other_home = f"/ip4/192.168.1.30/tcp/7100/p2p/{other}"
    other_public = f"/ip4/203.0.113.8/tcp/7100/p2p/{other}"
    network = Network(
        {
            PUBLIC: (NEVER, None),
            HOME: (0.3, PEER),
            other_public: (0.4, other),
            other_home: (NEVER, None),
        }
    )
    results, took = _run(network, [PUBLIC, other_public, HOME, other_home])
    assert results == [(True, PEER), (True, other), (True, PEER), (False, None)]
    assert took == ON_LINK_TIMEOUT + 0.4


def test_the_tcp_probe_says_which_loopback_ports_accept_and_does_not_wait_for_refusals() -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(4)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: a connection is refused
    try:
        open_port = listening.getsockname()[1]
        closed_port = closed.getsockname()[1]

        async def main() -> tuple[frozenset[int], frozenset[int], float]:
            both = await tcp_probe({0: ("127.0.0.1", closed_port), 1: ("127.0.0.1", open_port)}, 5)
            started = trio.current_time()
            refused = await tcp_probe({0: ("127.0.0.1", closed_port)}, 5)
            return both, refused, trio.current_time() - started

        both, refused, took = trio.run(main)
        assert both == {1}
        assert refused == frozenset()
        assert took < 1.0  # refused: no wait for the window
        assert trio.run(tcp_probe, {}, 5) == frozenset()  # nothing to ask: at once
    finally:
        listening.close()
        closed.close()
