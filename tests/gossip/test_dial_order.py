"""Which of a peer's addresses is dialled first, and for how long (meshd.gossip.dial_order),
and dial_all following it, on trio's fake clock."""

from __future__ import annotations

import ipaddress

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from meshd.gossip.dial_order import ON_LINK_TIMEOUT, Attempt, DialPlan, dial_plan, host_of, on_link
from meshd.gossip.dialling import dial_all
from meshd.gossip.streams import TransportError

LAN = [ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("2001:db8:1::/64")]
PEER = "12D3KooWPeer"
PUBLIC = f"/ip4/203.0.113.7/tcp/7100/p2p/{PEER}"
SEEN = f"/ip4/198.51.100.9/tcp/7100/p2p/{PEER}"
HOME = f"/ip4/192.168.1.20/tcp/7100/p2p/{PEER}"
HOME6 = f"/ip6/2001:db8:1::20/tcp/7100/p2p/{PEER}"


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


def _run(network: Network, addrs: list[str]) -> tuple[list[tuple[bool, str | None]], float]:
    async def main() -> tuple[list[tuple[bool, str | None]], float]:
        started = trio.current_time()
        results = await dial_all(network.connect, addrs, LAN)
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
