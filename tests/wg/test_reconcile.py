"""The reconciler against a simulated device with WireGuard's semantics."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.trust.keys import WgKey
from meshd.wg.model import DeviceState, IPNetwork, PeerConfig, PeerStatus, RemovePeer, UpdatePeer
from meshd.wg.reconcile import apply_operations, plan

KEYS = [WgKey(bytes([n]) * 32) for n in range(1, 6)]
PREFIXES: list[IPNetwork] = [ipaddress.ip_network(f"10.0.{n}.0/24") for n in range(6)] + [
    ipaddress.ip_network(f"fd00:{n}::/64") for n in range(6)
]
ENDPOINTS = [None, "192.0.2.1:51820", "192.0.2.2:51820", "[2001:db8::1]:51820"]


@st.composite
def peer_sets(draw: st.DrawFn) -> dict[WgKey, PeerConfig]:
    """Peers keyed by public key; each prefix has at most one owner, as on a device."""
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS)))
    owners: dict[IPNetwork, bytes] = {}
    for net in PREFIXES:
        owned: bool = bool(keys) and draw(st.booleans())
        if owned:
            owners[net] = draw(st.sampled_from(keys))
    return {
        key: PeerConfig(
            key,
            endpoint=draw(st.sampled_from(ENDPOINTS)),
            allowed_ips=tuple(net for net, owner in owners.items() if owner == key),
            persistent_keepalive=draw(st.sampled_from([None, 10, 25])),
        )
        for key in keys
    }


def device(peers: dict[WgKey, PeerConfig]) -> DeviceState:
    return DeviceState(peers=tuple(PeerStatus(config, 1.0, 5, 6) for config in peers.values()))


@given(peer_sets(), peer_sets(), st.none() | peer_sets(), st.booleans())
def test_plan_converges_and_is_stable(
    desired: dict[WgKey, PeerConfig],
    actual: dict[WgKey, PeerConfig],
    previous: dict[WgKey, PeerConfig] | None,
    boringtun: bool,
) -> None:
    ops = plan(desired, device(actual), previous)
    result = apply_operations(device(actual), ops, update_only=not boringtun).peer_configs()

    assert result.keys() == desired.keys()
    for key, want in desired.items():
        got = result[key]
        assert got.allowed_ips == want.allowed_ips
        assert got.persistent_keepalive == want.persistent_keepalive
        before = actual.get(key)
        if before is None or before.endpoint is None:
            assert got.endpoint == want.endpoint
        else:  # the device's endpoint stands unless we changed ours
            assert got.endpoint in (want.endpoint, before.endpoint)

    assert plan(desired, apply_operations(device(actual), ops), desired) == []


@given(peer_sets(), st.data())
def test_roamed_endpoints_are_left_alone(
    desired: dict[WgKey, PeerConfig], data: st.DataObject
) -> None:
    roamed = {
        key: PeerConfig(
            key,
            data.draw(st.sampled_from(ENDPOINTS[1:])),
            config.allowed_ips,
            config.persistent_keepalive,
        )
        for key, config in desired.items()
    }
    assert plan(desired, device(roamed), previous=desired) == []


def test_an_endpoint_first_desired_leaves_one_the_peer_roamed_to_alone() -> None:
    """A member's peer made before any endpoint of it was known (its announcement not in yet),
    reached since from where it is: WireGuard shows the address its packets came from (a
    NAT's mapping). The endpoint its announcement then gives (an address on its own LAN,
    say) is ours for the first time, not one we changed: written over the roamed one, it
    cut the peer off until its next packet, and told others where it is not."""
    a = KEYS[0]
    net = PREFIXES[0]
    actual = device({a: PeerConfig(a, "203.0.113.5:40001", (net,), 25)})
    previous = {a: PeerConfig(a, None, (net,), 25)}
    desired = {a: PeerConfig(a, "192.168.1.2:51820", (net,), 25)}
    assert plan(desired, actual, previous) == []
    # A peer the device has no endpoint for gets ours, and one we change later is written.
    assert plan(desired, device({a: PeerConfig(a, None, (net,), 25)}), previous) != []
    moved = {a: PeerConfig(a, "192.168.1.9:51820", (net,), 25)}
    assert plan(moved, actual, desired) != []


def test_small_plan() -> None:
    a, b, c = KEYS[:3]
    net_a, net_b = PREFIXES[:2]
    actual = device(
        {
            a: PeerConfig(a, "192.0.2.9:51820", (net_a,), 25),  # roamed to .9
            b: PeerConfig(b, None, (net_b,)),  # revoked
        }
    )
    desired = {
        a: PeerConfig(a, "192.0.2.2:51820", (net_a, net_b), 25),
        c: PeerConfig(c, "[2001:db8::1]:51820", (), 25),
    }
    previous = {a: PeerConfig(a, "192.0.2.1:51820", (net_a,), 25)}
    assert plan(desired, actual, previous) == [
        RemovePeer(b),
        UpdatePeer(
            a,
            update_only=True,
            endpoint="192.0.2.2:51820",  # we moved it: that wins over roaming
            replace_allowed_ips=True,
            allowed_ips=(net_a, net_b),
        ),
        UpdatePeer(
            c,
            endpoint="[2001:db8::1]:51820",
            persistent_keepalive=25,
            replace_allowed_ips=True,
            allowed_ips=(),
        ),
    ]


def test_prefix_with_two_owners_is_refused() -> None:
    a, b = KEYS[:2]
    with pytest.raises(ValueError, match="two peers"):
        plan(
            {a: PeerConfig(a, None, (PREFIXES[0],)), b: PeerConfig(b, None, (PREFIXES[0],))},
            DeviceState(),
        )
