"""The endpoint service's bookkeeping (meshd/daemon/endpoints.py) and what the daemon lays over
the desired peers (meshd/mesh/paths.py), without I/O."""

from __future__ import annotations

import ipaddress

from meshd.daemon.endpoints import REPORT_INTERVAL, Endpoints
from meshd.mesh.announced import decode_candidates_untrusted, plain_endpoints
from meshd.mesh.desired import DesiredMesh
from meshd.mesh.paths import with_paths
from meshd.mesh.underlay import LocalAddress
from meshd.trust.keys import WgKey
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus

OVERLAY = ipaddress.IPv6Network("fd6d:6573:6864::/48")
MEMBERS = {bytes([n]) * 32 for n in (1, 2, 3)}
LAN = LocalAddress("eth0", ipaddress.IPv4Interface("192.168.1.10/24"))


def service(configured: tuple[str, ...] = ()) -> Endpoints:
    found = Endpoints(
        overlay=OVERLAY, listen_port=51820, configured=configured, is_member=MEMBERS.__contains__
    )
    found.set_local([LAN], ["meshd0", "lo"])
    return found


def test_two_members_agreeing_make_a_reflexive_candidate_one_does_not() -> None:
    e = service()
    assert e.report(bytes([1]) * 32, "203.0.113.5:51820", "", 0.0)
    assert [c.kind for c in e.candidates(0.0)] == ["local"]
    assert e.behind_nat(0.0)  # one observer is enough for our own keepalives
    assert e.nat_kind(0.0) == "unknown"
    assert e.report(bytes([2]) * 32, "203.0.113.5:51820", "203.0.113.5:40000", 1.0)
    assert [(c.kind, c.endpoint) for c in e.candidates(1.0)] == [
        ("reflexive", "203.0.113.5:51820"),
        ("local", "192.168.1.10:51820"),
    ]
    assert e.nat_kind(1.0) == "cone"
    assert decode_candidates_untrusted(e.announced(1.0)) == [
        ("reflexive", "203.0.113.5:51820"),
        ("local", "192.168.1.10:51820"),
    ]


def test_observers_seeing_different_ports_mean_a_symmetric_nat() -> None:
    e = service()
    e.report(bytes([1]) * 32, "203.0.113.5:40001", "", 0.0)
    e.report(bytes([2]) * 32, "203.0.113.5:40002", "", 0.0)
    assert e.nat_kind(0.0) == "symmetric"
    assert [c.kind for c in e.candidates(0.0)] == ["local"]


def test_reports_are_refused_with_a_counted_reason() -> None:
    e = service()
    stranger = bytes([9]) * 32
    assert not e.report(stranger, "203.0.113.5:51820", "", 0.0)
    member = bytes([1]) * 32
    assert not e.report(member, "127.0.0.1:51820", "", 0.0)
    assert not e.report(member, "203.0.113.5:51820", "", REPORT_INTERVAL / 2)
    assert not e.report(bytes([2]) * 32, "[fd6d:6573:6864::1]:51820", "224.0.0.1:1", 0.0)
    assert not e.report(bytes([3]) * 32, "x" * 200, "", 0.0)
    assert e.refused == {
        "report:not-member": 1,
        "report-wireguard:loopback": 1,
        "report:rate": 1,
        "report-wireguard:overlay": 1,
        "report-identify:multicast": 1,
        "report-wireguard:oversized": 1,
    }
    assert len(e.observations) == 0


def test_configured_endpoints_come_first_and_leave_out_local_addresses() -> None:
    e = service(("198.51.100.1:51820", "not an endpoint"))
    assert [(c.kind, c.endpoint) for c in e.candidates(0.0)] == [
        ("configured", "198.51.100.1:51820")
    ]
    assert e.refused == {"configured:malformed": 1}


def test_paths_win_over_announced_endpoints_only_for_their_peers() -> None:
    a, b = bytes([1]) * 32, bytes([2]) * 32
    desired = DesiredMesh(
        peers={
            WgKey(a): PeerConfig(a, "192.0.2.1:51820", (), 25),
            WgKey(b): PeerConfig(b, "192.0.2.2:1", (), 25),
        }
    )
    out = with_paths(
        desired, {a: ("203.0.113.9:4000", None, None), bytes(32): ("192.0.2.9:1", 25, None)}
    )
    assert out.peers[WgKey(a)] == PeerConfig(a, "203.0.113.9:4000", (), None)
    assert out.peers[WgKey(b)] == desired.peers[WgKey(b)]
    assert with_paths(desired, {b: (None, 25, None)}).peers[WgKey(b)].endpoint == "192.0.2.2:1"


def test_a_peer_with_a_session_keeps_its_roamed_endpoint_unless_its_path_lost_it() -> None:
    a, b = bytes([1]) * 32, bytes([2]) * 32
    desired = DesiredMesh(
        peers={
            WgKey(a): PeerConfig(a, "192.168.1.2:51820", (), 25),
            WgKey(b): PeerConfig(b, "192.0.2.2:1"),
        }
    )
    roamed = DeviceState(
        bytes(32),
        True,
        51820,
        None,
        (
            PeerStatus(PeerConfig(a, "203.0.113.2:51820"), 1000.0),
            PeerStatus(PeerConfig(b, "203.0.113.3:1"), 1000.0),
        ),
    )
    trying = {a: ("192.168.1.2:51820", 25, 999.0)}  # began before the handshake
    out = with_paths(desired, trying, roamed, 1010.0)
    assert out.peers[WgKey(a)].endpoint == "203.0.113.2:51820"
    assert out.peers[WgKey(b)].endpoint == "203.0.113.3:1"  # no path entry: a session all the same
    lost = {a: ("192.168.1.2:51820", 25, 1005.0)}  # the session went silent, then this
    assert with_paths(desired, lost, roamed, 1010.0).peers[WgKey(a)].endpoint == "192.168.1.2:51820"
    stale = with_paths(desired, trying, roamed, 1000.0 + 181)  # no session any more
    assert stale.peers[WgKey(a)].endpoint == "192.168.1.2:51820"


def test_peers_show_the_endpoints_without_the_kinds_entry() -> None:
    assert plain_endpoints(["203.0.113.5:51820", "192.168.1.10:51820", "kinds=rl"]) == [
        "203.0.113.5:51820",
        "192.168.1.10:51820",
    ]
