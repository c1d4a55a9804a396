"""A member's path (direct, relay, none) from the WireGuard device, and this node's NAT kind
from what members observe of it (meshd/mesh/seeing.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.mesh.seeing import FRESH, Owners, PeerPath, fresh, nat_of, owner_of, path_of
from meshd.wg.model import PeerConfig, PeerStatus

NOW = 1_800_000_000.0
A, B, C = (bytes([n]) * 32 for n in (1, 2, 3))
OVERLAY = {A: "fd00::a", B: "fd00::b", C: "fd00::c"}
ENDPOINT = {A: "198.51.100.1:51820", B: "203.0.113.7:40000", C: "192.0.2.9:51820"}


def peer(key: bytes, handshake: float | None, *extra: str) -> PeerStatus:
    nets = [ipaddress.ip_network(f"{OVERLAY[key]}/128"), *map(ipaddress.ip_network, extra)]
    return PeerStatus(PeerConfig(key, ENDPOINT[key], tuple(nets), 25), handshake)


def device(*peers: PeerStatus) -> dict[bytes, PeerStatus]:
    return {p.public_key: p for p in peers}


def overlay(key: bytes) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(OVERLAY[key])


def test_a_fresh_handshake_on_the_members_own_peer_is_direct_at_wireguards_endpoint() -> None:
    held = device(peer(A, NOW - 10), peer(B, NOW - 170))
    assert path_of(A, overlay(A), held, NOW) == PeerPath("direct", ENDPOINT[A])
    assert path_of(B, overlay(B), held, NOW) == PeerPath("direct", ENDPOINT[B])


@pytest.mark.parametrize("handshake", [None, 0.0, NOW - FRESH, NOW - 3600, NOW + 60])
def test_no_handshake_or_a_stale_one_is_none(handshake: float | None) -> None:
    assert path_of(A, overlay(A), device(peer(A, handshake)), NOW) == PeerPath("none")


def test_an_overlay_routed_to_another_members_peer_is_a_relay_via_it() -> None:
    # Babel moved B's overlay /128 to A's peer (the relay): A's allowed-ips hold it, B's
    # own peer no longer does.
    relay = PeerStatus(PeerConfig(A, ENDPOINT[A], (ipaddress.ip_network("fd00::a/128"),
                                                   ipaddress.ip_network("fd00::b/128"))),
                       NOW - 5)  # fmt: skip
    lonely = PeerStatus(PeerConfig(B, ENDPOINT[B], ()), None)
    assert path_of(B, overlay(B), device(relay, lonely), NOW) == PeerPath("relay", via=A)
    # A relay whose own session is stale carries nothing: none.
    stale = PeerStatus(relay.config, NOW - FRESH - 1)
    assert path_of(B, overlay(B), device(stale, lonely), NOW) == PeerPath("none")


def test_the_longest_allowed_ip_wins_as_in_wireguard() -> None:
    wide = peer(C, NOW, "fd00::/64")
    assert owner_of(overlay(A), [wide]) == C
    assert owner_of(overlay(A), [wide, peer(A, NOW)]) == A
    assert owner_of(ipaddress.IPv4Address("10.0.0.1"), [wide]) is None
    assert path_of(A, overlay(A), device(wide), NOW) == PeerPath("relay", via=C)
    assert path_of(A, overlay(A), {}, NOW) == PeerPath("none")


def test_fresh_allows_a_little_clock_skew() -> None:
    assert fresh(NOW + 1, NOW)
    assert not fresh(NOW + 30, NOW)
    assert fresh(NOW - FRESH + 0.5, NOW)


OWN = [ipaddress.ip_address("192.168.1.2"), ipaddress.ip_address("fd00:1::2")]


def test_no_observation_is_unknown() -> None:
    report = nat_of([], OWN)
    assert (report.kind, report.behind_nat, report.mappings) == ("unknown", None, ())


def test_members_that_see_our_own_address_mean_no_nat() -> None:
    report = nat_of([(A, "192.168.1.2:51820"), (B, "192.168.1.2:51820")], OWN)
    assert (report.kind, report.behind_nat) == ("none", False)
    assert [(s.endpoint, s.observers, s.own) for s in report.mappings] == [
        ("192.168.1.2:51820", 2, True)
    ]


def test_one_mapping_seen_by_two_members_is_a_cone() -> None:
    report = nat_of(
        [(A, "203.0.113.1:51820"), (B, "203.0.113.1:51820"), (C, "192.168.1.2:51820")], OWN
    )
    assert (report.kind, report.behind_nat) == ("cone", True)
    assert "2 members see one mapping, 203.0.113.1:51820" in report.why
    assert [(s.endpoint, s.observers, s.own) for s in report.mappings] == [
        ("203.0.113.1:51820", 2, False),
        ("192.168.1.2:51820", 1, True),
    ]


def test_one_address_with_different_ports_is_symmetric() -> None:
    report = nat_of([(A, "203.0.113.1:40001"), (B, "203.0.113.1:52113")], OWN)
    assert (report.kind, report.behind_nat) == ("symmetric", True)
    assert "2 different ports" in report.why


def test_a_single_outside_observer_cannot_tell_cone_from_symmetric() -> None:
    report = nat_of([(A, "203.0.113.1:51820")], OWN)
    assert (report.kind, report.behind_nat) == ("unknown", True)


def test_an_observers_later_report_replaces_its_earlier_one() -> None:
    # A saw the old mapping, then the new one (the NAT moved): one mapping, not symmetric.
    report = nat_of(
        [(A, "203.0.113.1:21000"), (A, "203.0.113.1:22000"), (B, "203.0.113.1:22000")], OWN
    )
    assert report.kind == "cone"
    assert [s.endpoint for s in report.mappings] == ["203.0.113.1:22000"]


def test_ipv4_mapped_and_unparsable_observations() -> None:
    report = nat_of([(A, "[::ffff:192.168.1.2]:51820"), (B, "nonsense"), (C, "1.2.3.4")], OWN)
    assert (report.kind, report.behind_nat) == ("none", False)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([A, B, C]),
            st.sampled_from(["203.0.113.1", "198.51.100.2", "192.168.1.2"]),
            st.sampled_from([51820, 40000, 40001]),
        ),
        max_size=12,
    )
)
def test_nat_kind_agrees_with_its_mappings(seen: list[tuple[bytes, str, int]]) -> None:
    report = nat_of([(o, f"{a}:{p}") for o, a, p in seen], OWN)
    outside = [s for s in report.mappings if not s.own]
    assert sum(s.observers for s in report.mappings) == len({o for o, _, _ in seen})
    if not seen:
        assert report.kind == "unknown"
    elif not outside:
        assert report.kind == "none"
    else:
        addresses = [s.endpoint.rsplit(":", 1)[0] for s in outside]
        if len(set(addresses)) < len(addresses):
            assert report.kind == "symmetric"
        elif max(s.observers for s in outside) >= 2:
            assert report.kind == "cone"
        else:
            assert report.kind == "unknown"


def linear_owner(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 peers: list[PeerStatus]) -> bytes | None:  # fmt: skip
    """WireGuard's rule written plainly: the first peer holding the longest allowed-ip."""
    best: tuple[int, bytes] | None = None
    for p in peers:
        for network in p.config.allowed_ips:
            if (
                network.version == address.version
                and address in network
                and (best is None or network.prefixlen > best[0])
            ):
                best = (network.prefixlen, p.public_key)
    return best[1] if best is not None else None


_V6 = st.integers(0, 2**128 - 1)
_V4 = st.integers(0, 2**32 - 1)


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if draw(st.booleans()):
        length = draw(st.sampled_from([0, 8, 48, 64, 127, 128]))
        return ipaddress.IPv6Network((draw(_V6) >> (128 - length) << (128 - length) if length
                                      else 0, length))  # fmt: skip
    length = draw(st.sampled_from([0, 8, 24, 31, 32]))
    return ipaddress.IPv4Network((draw(_V4) >> (32 - length) << (32 - length) if length else 0,
                                  length))  # fmt: skip


@given(
    st.lists(st.lists(networks(), max_size=4), min_size=1, max_size=6),
    st.lists(st.integers(0, 5), max_size=6),
    st.lists(_V6, max_size=3),
)
def test_the_owner_table_agrees_with_wireguards_rule(
    nets: list[list[ipaddress.IPv4Network | ipaddress.IPv6Network]],
    picks: list[int],
    others: list[int],
) -> None:
    peers = [
        PeerStatus(PeerConfig(bytes([n + 1]) * 32, None, tuple(held)), None)
        for n, held in enumerate(nets)
    ]
    owners = Owners(peers)
    # Addresses inside what the peers hold (the first and last of each network, and one a
    # pick names), and elsewhere.
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.IPv6Address(v) for v in others
    ]
    for held in nets:
        for net in held:
            addresses += [net.network_address, net.broadcast_address]
    for pick in picks:
        if nets[pick % len(nets)]:
            net = nets[pick % len(nets)][0]
            addresses.append(net.network_address + (pick % net.num_addresses))
    for address in addresses:
        assert owners.owner(address) == linear_owner(address, peers), address
        assert owner_of(address, peers) == linear_owner(address, peers)


class _Counted(dict[bytes, PeerStatus]):
    """A device's peers that count how often all of them are gone over."""

    reads = 0

    def values(self):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().values()


def test_a_view_of_every_members_path_goes_over_the_devices_peers_once() -> None:
    # ``meshd peers`` and ``netcheck`` at 1,000 members: one table of the device's
    # allowed-ips, not a pass over every peer's for each member (quadratic: ~90 s of the
    # event loop at 10,000 members).
    from types import SimpleNamespace

    from meshd.daemon.seeing_views import add_paths

    members, device = [], _Counted()
    for n in range(1, 1001):
        key = n.to_bytes(32, "big")
        address = ipaddress.IPv6Address(f"fd00::{n:x}")
        device[key] = PeerStatus(
            PeerConfig(key, ENDPOINT[A], (ipaddress.ip_network(f"{address}/128"),)), NOW - 5
        )
        members.append(SimpleNamespace(node_key=key, wg_key=key, overlay=address, name=f"m{n}"))
    own = SimpleNamespace(node_key=b"own", wg_key=b"own", overlay=None, name="own")
    state = SimpleNamespace(key=b"own", members=lambda: [own, *members])
    rows: list[dict[str, object]] = [{} for _ in range(1001)]
    add_paths(state, rows, device, NOW)  # type: ignore[arg-type]
    assert device.reads == 1
    assert [r["path"] for r in rows[1:]] == ["direct"] * 1000
    assert rows[0] == {}


def test_a_peer_created_anew_shows_the_handshake_its_path_saw() -> None:
    """``meshd peers``: a member whose peer the device shows without a handshake (created
    anew when its round failed, its session long ended) shows the last one its path saw;
    one the device shows keeps the device's; one that is no peer, or never shook hands,
    shows none."""
    from types import SimpleNamespace
    from typing import Any

    from meshd.daemon.seeing_views import add_kept_handshakes

    members: list[Any] = [SimpleNamespace(node_key=bytes([i]) * 32) for i in range(4)]
    rows: list[dict[str, Any]] = [
        {"wg_peer": True, "last_handshake": None},  # created anew: the path's
        {"wg_peer": True, "last_handshake": 1700.0},  # the device's
        {"wg_peer": False, "last_handshake": None},  # no peer on the device
        {"wg_peer": True, "last_handshake": None},  # never shook hands
    ]
    kept = {bytes([0]) * 32: 1000.0, bytes([1]) * 32: 1500.0, bytes([2]) * 32: 900.0}
    add_kept_handshakes(rows, members, kept.get)
    assert [r["last_handshake"] for r in rows] == [1000.0, 1700.0, None, None]
