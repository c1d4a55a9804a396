"""The desired-state core: membership -> WireGuard peers. Examples, then properties."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from meshd.membership import Member, MemberState
from meshd.mesh.desired import (
    DEFAULT_KEEPALIVE,
    DesiredMesh,
    Underlay,
    base_allowed_ips,
    choose_endpoint,
    desired_peers,
)
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.addresses import link_local_from_wg_key
from meshd.wg.model import DeviceState, PeerConfig, canonical_endpoint
from meshd.wg.reconcile import apply_operations, check_disjoint, plan
from tests.mesh.support import key, member

ME = NodeKey(key("me"))
MY_WG = WgKey(key("me", "wg"))
V4_ONLY = Underlay(families=frozenset({4}))
LAN = Underlay(networks=(ipaddress.ip_network("10.0.0.0/24"),))


def desired(members: list[Member]) -> Mapping[WgKey, PeerConfig]:
    return desired_peers(members, own_node_key=ME, own_wg_key=MY_WG).peers


# --- examples ------------------------------------------------------------------------------


def test_admitted_members_become_peers_with_their_two_addresses() -> None:
    a = member("a", endpoints=("192.0.2.1:51820",))
    result = desired_peers([a], own_node_key=ME, own_wg_key=MY_WG)
    peer = result.peers[a.wg_key]
    assert peer.endpoint == "192.0.2.1:51820"
    assert peer.persistent_keepalive == DEFAULT_KEEPALIVE
    assert set(peer.allowed_ips) == {
        ipaddress.ip_network(f"{link_local_from_wg_key(a.wg_key)}/128"),
        ipaddress.ip_network(f"{a.overlay}/128"),
    }
    assert result.members == {a.wg_key: a.node_key}


def test_the_programmed_members_are_the_members_themselves_not_a_table() -> None:
    """A round keeps its members as they are (one pointer each, in WireGuard key order),
    where it kept a dict of WireGuard key -> node key (~37 bytes a member, every round)."""
    members = [member(n) for n in range(1, 20)]
    result = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG)
    assert "members" not in DesiredMesh.__slots__
    by_key = sorted(members, key=lambda m: m.wg_key)
    assert len(result.programmed) == len(by_key)
    assert all(a is b for a, b in zip(result.programmed, by_key, strict=True))
    assert list(result.programmed) == by_key
    assert result.members == {m.wg_key: m.node_key for m in members}
    assert list(result.members) == list(result.peers)


def test_self_revoked_and_expired_members_are_not_peers() -> None:
    me = member("me")
    revoked = member("r", state=MemberState.REVOKED)
    expired = member("e", state=MemberState.EXPIRED)
    ok = member("ok")
    assert set(desired([me, revoked, expired, ok])) == {ok.wg_key}


def test_a_member_without_announcement_has_no_endpoint() -> None:
    silent = member("s", endpoints=None)
    assert desired([silent])[silent.wg_key].endpoint is None


def test_shared_wireguard_key_goes_to_the_earliest_admitted() -> None:
    first = member("first", wg="shared", admitted_at=100)
    second = member("second", wg="shared", admitted_at=200)
    result = desired_peers([second, first], own_node_key=ME, own_wg_key=MY_WG)
    assert result.members == {first.wg_key: first.node_key}
    assert [(s.member.name, s.holder) for s in result.shadowed] == [("second", first.node_key)]
    assert result.peers[first.wg_key].allowed_ips == tuple(sorted(base_allowed_ips(first)))


def test_a_member_with_our_own_wireguard_key_is_never_programmed() -> None:
    thief = member("thief", wg="me")
    result = desired_peers([thief], own_node_key=ME, own_wg_key=MY_WG)
    assert not result.peers
    assert [(s.member.name, s.holder) for s in result.shadowed] == [("thief", ME)]


def test_extra_prefixes_are_added_and_never_given_twice() -> None:
    a, b = member("a"), member("b")
    net = ipaddress.ip_network("10.9.0.0/16")
    b_link_local = ipaddress.ip_network(f"{link_local_from_wg_key(b.wg_key)}/128")
    result = desired_peers(
        [a, b],
        own_node_key=ME,
        own_wg_key=MY_WG,
        extra_prefixes={a.wg_key: [net, b_link_local], b.wg_key: [net]},
    )
    first, second = sorted([a.wg_key, b.wg_key])
    assert net in result.peers[first].allowed_ips
    assert net not in result.peers[second].allowed_ips
    assert b_link_local not in result.peers[a.wg_key].allowed_ips
    assert b_link_local in result.peers[b.wg_key].allowed_ips
    assert set(result.refused_prefixes) == {(second, net), (a.wg_key, b_link_local)}
    check_disjoint(result.peers)


def test_an_overlay_address_moves_to_the_relay_and_back() -> None:
    a, b = member("a"), member("b")
    b_overlay = ipaddress.ip_network(f"{b.overlay}/128")
    relayed = desired_peers(
        [a, b], own_node_key=ME, own_wg_key=MY_WG, extra_prefixes={a.wg_key: [b_overlay]}
    )
    assert b_overlay in relayed.peers[a.wg_key].allowed_ips
    assert relayed.peers[b.wg_key].allowed_ips == (
        ipaddress.ip_network(f"{link_local_from_wg_key(b.wg_key)}/128"),
    )
    assert not relayed.refused_prefixes
    check_disjoint(relayed.peers)
    # Babel's direct route: the same as no extra prefix at all.
    direct = desired_peers(
        [a, b], own_node_key=ME, own_wg_key=MY_WG, extra_prefixes={b.wg_key: [b_overlay]}
    )
    assert direct.peers == desired_peers([a, b], own_node_key=ME, own_wg_key=MY_WG).peers
    assert set(direct.peers[b.wg_key].allowed_ips) == set(base_allowed_ips(b))


def test_endpoint_choice_rules() -> None:
    v6 = "[2001:db8::1]:51820"
    v4 = "198.51.100.7:51820"
    lan = "10.0.0.5:51820"
    assert choose_endpoint([v6, v4], Underlay()) == v4  # IPv4 first when both are reachable
    assert choose_endpoint([v6], V4_ONLY) == v6  # unreachable is still better than nothing
    assert choose_endpoint([v4, v6], Underlay(families=frozenset({6}))) == v6
    assert choose_endpoint([v4, lan], LAN) == lan  # on a network we are attached to
    assert choose_endpoint(["127.0.0.1:1", v4], Underlay()) == v4
    for unusable in ("[fe80::1]:1", "0.0.0.0:1", "224.0.0.1:1", "host:1", "1.2.3.4", "[::1"):
        assert choose_endpoint([unusable], Underlay()) is None
    assert choose_endpoint(["[2001:DB8::0001]:51820"], Underlay()) == v6


# --- properties ----------------------------------------------------------------------------

ENDPOINTS = st.sampled_from(
    [
        "192.0.2.1:51820",
        "192.0.2.2:1",
        "10.0.0.9:51820",
        "[2001:db8::1]:51820",
        "[2001:DB8::1]:51820",
        "[fe80::1]:51820",
        "0.0.0.0:51820",
        "127.0.0.1:51820",
        "not-an-endpoint",
        "[::1]:9",
    ]
)


@st.composite
def memberships(draw: st.DrawFn) -> list[Member]:
    count = draw(st.integers(0, 12))
    out = []
    for index in range(count):
        out.append(
            member(
                index,
                wg=draw(st.sampled_from([None, "shared", "other", "me"])) or index,
                state=draw(st.sampled_from(list(MemberState))),
                admitted_at=draw(st.integers(0, 5)),
                endpoints=draw(st.none() | st.lists(ENDPOINTS, max_size=4).map(tuple)),
            )
        )
    if draw(st.booleans()):
        out.append(member("me"))
    return out


UNDERLAYS = st.builds(
    Underlay,
    families=st.sets(st.sampled_from([4, 6])).map(frozenset),
    networks=st.sampled_from([(), (ipaddress.ip_network("10.0.0.0/8"),)]),
)


@given(memberships(), UNDERLAYS)
def test_peers_are_exactly_the_standing_keys(members: list[Member], underlay: Underlay) -> None:
    result = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG, underlay=underlay)
    standing = [m for m in members if m.state is MemberState.ADMITTED and m.node_key != ME]
    assert set(result.peers) == {m.wg_key for m in standing} - {MY_WG}
    for wg_key, node_key in result.members.items():
        holders = [m for m in standing if m.wg_key == wg_key]
        winner = min(holders, key=lambda m: (m.admitted_at, m.node_key))
        assert node_key == winner.node_key
        peer = result.peers[wg_key]
        assert set(base_allowed_ips(winner)) <= set(peer.allowed_ips)
        announced = winner.announcement.endpoints if winner.announcement else ()
        assert peer.endpoint is None or peer.endpoint in {
            canonical_endpoint(e) for e in announced if e != "not-an-endpoint"
        }
    programmed = set(result.members.values())
    assert {s.member.node_key for s in result.shadowed} == {
        m.node_key for m in standing
    } - programmed
    check_disjoint(result.peers)


@given(memberships(), UNDERLAYS, st.randoms(use_true_random=False))
def test_order_of_members_and_endpoints_does_not_matter(
    members: list[Member], underlay: Underlay, rnd: random.Random
) -> None:
    shuffled = []
    for m in rnd.sample(members, len(members)):
        if m.announcement is not None:
            eps = list(m.announcement.endpoints)
            rnd.shuffle(eps)
            m = replace(m, announcement=replace(m.announcement, endpoints=tuple(eps)))
        shuffled.append(m)
    one = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG, underlay=underlay)
    two = desired_peers(shuffled, own_node_key=ME, own_wg_key=MY_WG, underlay=underlay)
    assert one.peers == two.peers
    assert one.members == two.members
    assert [(s.member.node_key, s.holder) for s in one.shadowed] == [
        (s.member.node_key, s.holder) for s in two.shadowed
    ]


@given(memberships(), memberships())
def test_planning_from_any_device_converges(before: list[Member], after: list[Member]) -> None:
    old = desired_peers(before, own_node_key=ME, own_wg_key=MY_WG).peers
    new = desired_peers(after, own_node_key=ME, own_wg_key=MY_WG).peers
    device = apply_operations(DeviceState(), plan(old, DeviceState()))
    device = apply_operations(device, plan(new, device, old))
    have = device.peer_configs()
    assert set(have) == set(new)
    for wg_key, want in new.items():
        # An endpoint cannot be cleared: a peer whose member stopped announcing one keeps it.
        kept = want if want.endpoint is not None else replace(want, endpoint=have[wg_key].endpoint)
        assert have[wg_key] == kept
    assert plan(new, device, new) == []
