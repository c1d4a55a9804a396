"""The hold-down of new direct neighbours, with Babel's routes made into allowed-ips.

This node is the member ME; ``new`` is a member whose peer has just appeared, ``relay`` one
that heard ``new`` first, so Babel here routes ``new``'s overlay /128 through ``relay``.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Collection

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.membership import Member
from meshd.mesh.desired import desired_peers
from meshd.mesh.holddown import MIN_HOLD, HoldDown, hold_down_period, routed_directly
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.model import IPNetwork
from meshd.wg.reconcile import check_disjoint
from tests.mesh.support import key, member

ME = NodeKey(key("me"))
MY_WG = WgKey(key("me", "wg"))
PERIOD = 5.0

new, relay = member("new"), member("relay")
PEERS: dict[WgKey, Member] = {new.wg_key: new, relay.wg_key: relay}
NEW_OVERLAY = ipaddress.ip_network(f"{new.overlay}/128")
RELAY_OVERLAY = ipaddress.ip_network(f"{relay.overlay}/128")
VIA_RELAY: dict[WgKey, list[IPNetwork]] = {
    relay.wg_key: [RELAY_OVERLAY, NEW_OVERLAY]
}  # Babel: new through relay
DIRECT: dict[WgKey, list[IPNetwork]] = {
    new.wg_key: [NEW_OVERLAY],
    relay.wg_key: [RELAY_OVERLAY],
}  # Babel: new directly


def holder(extra: dict[WgKey, list[IPNetwork]], held: Collection[WgKey]) -> str:
    """Whose peer holds ``new``'s overlay /128 when Babel's routes are ``extra``."""
    result = desired_peers(
        [new, relay], own_node_key=ME, own_wg_key=MY_WG, extra_prefixes=extra, held=held
    )
    check_disjoint(result.peers)
    owners = [k for k, p in result.peers.items() if NEW_OVERLAY in p.allowed_ips]
    assert len(owners) == 1
    return PEERS[owners[0]].name


def step(hold: HoldDown, now: float, extra: dict[WgKey, list[IPNetwork]]) -> str:
    """One reconcile round at ``now``: the hold-down, then the allowed-ips."""
    held = hold.update(now, PEERS.keys(), routed_directly(PEERS, extra))
    return holder(extra, held)


def test_a_new_direct_neighbour_keeps_its_overlay_until_the_hold_down_ends() -> None:
    hold = HoldDown(PERIOD)
    assert step(hold, 100.0, VIA_RELAY) == "new"
    assert hold.deadline() == 100.0 + PERIOD
    assert step(hold, 100.0 + PERIOD - 0.01, VIA_RELAY) == "new"
    # The direct link never came up (UDP blocked, say): the relay takes over.
    assert step(hold, 100.0 + PERIOD, VIA_RELAY) == "relay"
    assert hold.deadline() is None


def test_once_babel_routes_it_directly_a_lost_direct_route_moves_to_the_relay_at_once() -> None:
    hold = HoldDown(PERIOD)
    assert step(hold, 0.0, VIA_RELAY) == "new"
    assert step(hold, 1.0, DIRECT) == "new"  # heard: Babel's own choice from now on
    assert hold.deadline() is None
    assert step(hold, 2.0, VIA_RELAY) == "relay"  # then lost, well within the hold-down


def test_without_babel_routes_nothing_moves() -> None:
    hold = HoldDown(PERIOD)
    assert step(hold, 0.0, {}) == "new"
    assert step(hold, 10.0, {}) == "new"


def test_a_peer_that_goes_and_comes_back_is_new_again() -> None:
    hold = HoldDown(PERIOD)
    hold.update(0.0, {new.wg_key}, ())
    assert hold.update(10.0, {new.wg_key}, ()) == frozenset()
    hold.update(11.0, set(), ())  # removed (expired, say)
    assert hold.update(12.0, {new.wg_key}, ()) == {new.wg_key}


def test_both_ends_hold_each_other() -> None:
    """A joiner's Babel routes a member through a relay, and the member's Babel the joiner:
    each end keeps the other on its own peer, so each sends straight to the other and
    accepts what the other sends straight (its source is in the sending peer's allowed-ips)."""
    joiner, old = member("joiner"), member("old")

    def owner_at(me: Member, hold: HoldDown, now: float, target: Member) -> str:
        others: dict[WgKey, Member] = {m.wg_key: m for m in (joiner, old, relay) if m is not me}
        extra: dict[WgKey, list[IPNetwork]] = {
            relay.wg_key: [ipaddress.ip_network(f"{target.overlay}/128")]
        }
        held = hold.update(now, others.keys(), routed_directly(others, extra))
        result = desired_peers(
            list(others.values()),
            own_node_key=me.node_key,
            own_wg_key=me.wg_key,
            extra_prefixes=extra,
            held=held,
        )
        overlay = ipaddress.ip_network(f"{target.overlay}/128")
        return next(others[k].name for k, p in result.peers.items() if overlay in p.allowed_ips)

    at_old, at_joiner = HoldDown(PERIOD), HoldDown(PERIOD)
    at_old.update(0.0, {relay.wg_key}, {relay.wg_key})  # the mesh before the join
    # The old member hears of the joiner a moment before the joiner's Babel starts.
    assert owner_at(old, at_old, 10.0, joiner) == "joiner"
    assert owner_at(joiner, at_joiner, 11.5, old) == "old"
    assert owner_at(old, at_old, 10.0 + PERIOD, joiner) == "relay"
    assert owner_at(joiner, at_joiner, 11.5 + PERIOD, old) == "relay"


def test_the_period_is_a_few_hellos_with_a_floor() -> None:
    assert hold_down_period(4.0) == 16.0
    assert hold_down_period(0.5) == MIN_HOLD
    with pytest.raises(ValueError, match="negative"):
        HoldDown(-1.0)


@given(
    st.lists(
        st.tuples(
            st.floats(0, 2),  # time passing
            st.sets(st.sampled_from(["new", "relay"])),  # peers present
            st.sets(st.sampled_from(["new", "relay"])),  # routed directly
        ),
        max_size=20,
    )
)
def test_a_peer_is_never_held_longer_than_the_period_past_its_last_start(
    rounds: list[tuple[float, set[str], set[str]]],
) -> None:
    keys = {"new": new.wg_key, "relay": relay.wg_key}
    hold = HoldDown(PERIOD)
    now = 0.0
    appeared: dict[WgKey, float] = {}
    confirmed: set[bytes] = set()
    for elapsed, present, direct in rounds:
        now += elapsed
        peers = {keys[name] for name in present}
        for gone in appeared.keys() - peers:
            del appeared[gone]
            confirmed.discard(gone)
        for k in peers:
            appeared.setdefault(k, now)
        confirmed |= {keys[name] for name in direct if name in present}
        held = hold.update(now, peers, {keys[name] for name in direct})
        for k in peers:
            assert (k in held) == (k not in confirmed and now < appeared[k] + PERIOD)


@given(st.data())
def test_a_held_overlay_is_on_its_own_peer_whatever_babel_says(data: st.DataObject) -> None:
    members = [member(i) for i in range(5)]
    keys = [m.wg_key for m in members]
    overlays = [ipaddress.ip_network(f"{m.overlay}/128") for m in members]
    extra: dict[WgKey, list[IPNetwork]] = {}
    for overlay in overlays:
        via = data.draw(st.none() | st.sampled_from(keys))
        if via is not None:
            extra.setdefault(via, []).append(overlay)
    held = data.draw(st.sets(st.sampled_from(keys)))
    result = desired_peers(
        members, own_node_key=ME, own_wg_key=MY_WG, extra_prefixes=extra, held=held
    )
    check_disjoint(result.peers)
    for m, overlay in zip(members, overlays, strict=True):
        owner = next(k for k, p in result.peers.items() if overlay in p.allowed_ips)
        routed = [k for k, nets in extra.items() if overlay in nets]
        assert owner == (m.wg_key if m.wg_key in held or not routed else routed[0])


class _TableHoldDown:
    """The hold-down as it was kept before: a table of every peer's appearance and a set of
    the peers Babel routed directly (the rule, for comparison)."""

    def __init__(self, period: float, attempt: float) -> None:
        self.period, self.attempt = period, min(attempt, period)
        self.appeared: dict[WgKey, float] = {}
        self.confirmed: set[WgKey] = set()

    def update(
        self,
        now: float,
        peers: Collection[WgKey],
        direct: Collection[WgKey],
        answered: Collection[WgKey] | None,
        released: Collection[WgKey],
    ) -> frozenset[WgKey]:
        for gone in self.appeared.keys() - set(peers):
            del self.appeared[gone]
            self.confirmed.discard(gone)
        held: set[WgKey] = set()
        for k in peers:
            appeared = self.appeared.setdefault(k, now)
            if k in direct:
                self.confirmed.add(k)
            elif k in self.confirmed or now >= appeared + self.period:
                continue  # over
            elif k in released and (answered is None or k not in answered):
                continue  # hopeless
            elif answered is not None and k not in answered and now >= appeared + self.attempt:
                continue  # the attempt failed
            else:
                held.add(k)
        return frozenset(held)


ROUND = st.tuples(
    st.floats(0.0, 4.0),  # seconds since the last round
    st.sets(st.integers(0, 5)),  # peers
    st.sets(st.integers(0, 5)),  # routed directly
    st.none() | st.sets(st.integers(0, 5)),  # answered
    st.sets(st.integers(0, 5)),  # released
)


@given(st.lists(ROUND, max_size=12))
def test_keeping_only_the_holds_in_force_decides_as_the_table_of_every_peer_did(
    rounds: list[tuple[float, set[int], set[int], set[int] | None, set[int]]],
) -> None:
    keys = [WgKey(bytes([i]) * 32) for i in range(6)]
    hold, table = HoldDown(5.0, 2.0), _TableHoldDown(5.0, 2.0)
    now = 0.0
    for step, peers, direct, answered, released in rounds:
        now += step
        args = (
            [keys[i] for i in sorted(peers)],
            {keys[i] for i in direct},
            None if answered is None else {keys[i] for i in answered},
            {keys[i] for i in released},
        )
        assert hold.update(now, *args) == table.update(now, *args)


def test_a_peer_whose_hold_is_over_is_only_present() -> None:
    # ~37 bytes a peer in a trace of 1,000 at cdf0d50 (a table of appearances), and a set's
    # entry more once Babel routed it directly
    keys = [WgKey(i.to_bytes(4, "big") * 8) for i in range(1_000)]
    hold = HoldDown(5.0)
    hold.update(0.0, keys, set(keys[:500]))
    hold.update(10.0, keys, set())  # the others' hold ended
    assert hold._appeared == {}
    assert sys.getsizeof(hold._appeared) < 100  # its table kept its size: 36,952 bytes
    assert len(hold._present) == len(keys)
    assert hold.update(11.0, [*keys, WgKey(b"\xff" * 32)], set()) == {WgKey(b"\xff" * 32)}
