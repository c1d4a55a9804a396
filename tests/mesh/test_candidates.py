"""Endpoint candidates: checking untrusted endpoints, observations by K members, ranking."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.mesh import candidates as cand
from meshd.mesh.candidates import Candidate, Observations
from meshd.mesh.underlay import LocalAddress

OVERLAY = ipaddress.IPv6Network("fd6d:6573:6864::/48")
PUBLIC = "93.184.216.34:51820"
OTHER = "93.184.216.99:40000"
A, B, C, H = (bytes([n]) * 32 for n in (1, 2, 3, 9))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("127.0.0.1:51820", "loopback"),
        ("[::1]:51820", "loopback"),
        ("224.0.0.1:51820", "multicast"),
        ("[ff02::1]:51820", "multicast"),
        ("0.0.0.0:51820", "unspecified"),
        ("[::]:51820", "unspecified"),
        ("169.254.1.1:51820", "link-local"),
        ("[fe80::1]:51820", "link-local"),
        ("[fe80::1%eth0]:51820", "scoped"),
        ("[::ffff:93.184.216.34]:51820", "mapped"),
        ("255.255.255.255:51820", "reserved"),
        ("240.0.0.1:51820", "reserved"),
        ("[fd6d:6573:6864::1]:51820", "overlay"),
        ("[fd6d:6573:6864:ffff::1]:51820", "overlay"),
        ("1" * 48, "oversized"),
        ("93.184.216.34", "malformed"),
        ("93.184.216.34:0", "malformed"),
        ("93.184.216.34:65536", "malformed"),
        ("example.com:51820", "malformed"),
        ("[2001:db8::1:51820", "malformed"),
        (b"93.184.216.34:51820", "malformed"),
        (None, "malformed"),
    ],
)
def test_untrusted_endpoints_are_refused_with_a_reason(text: object, reason: str) -> None:
    assert cand.check_endpoint(text, OVERLAY) == reason


def test_good_endpoints_pass_and_loopback_only_when_allowed() -> None:
    assert cand.check_endpoint(PUBLIC, OVERLAY) == (ipaddress.ip_address("93.184.216.34"), 51820)
    assert cand.check_endpoint("[2606:2800:220:1::1]:7", OVERLAY) == (
        ipaddress.ip_address("2606:2800:220:1::1"),
        7,
    )
    assert cand.check_endpoint("192.168.1.2:51820", OVERLAY) == (
        ipaddress.ip_address("192.168.1.2"),
        51820,
    )
    assert cand.check_endpoint("127.0.0.1:9", OVERLAY, allow_loopback=True) == (
        ipaddress.ip_address("127.0.0.1"),
        9,
    )


def test_one_observer_is_not_enough_two_agreeing_are() -> None:
    seen = Observations(OVERLAY, 51820)
    assert seen.observe(A, "wireguard", PUBLIC, 10.0) is None
    assert seen.reflexive(10.0) == []
    assert seen.observe(B, "wireguard", OTHER, 11.0) is None
    assert seen.reflexive(11.0) == []  # two observers, two different claims
    assert seen.observe(B, "wireguard", PUBLIC, 12.0) is None  # B's new report replaces its old
    assert len(seen) == 2
    (got,) = seen.reflexive(12.0)
    assert (got.kind, got.endpoint, got.observers) == ("reflexive", PUBLIC, 2)


def test_an_observer_repeating_itself_counts_once() -> None:
    seen = Observations(OVERLAY, 51820)
    for t in range(100):
        seen.observe(H, "wireguard", OTHER, float(t))
        seen.observe(H, "identify", OTHER, float(t))
    assert len(seen) == 2
    assert seen.reflexive(100.0) == []


def test_identify_gives_the_address_with_our_listen_port() -> None:
    seen = Observations(OVERLAY, 51820)
    seen.observe(A, "identify", "93.184.216.34:43210", 0.0)  # a TCP port: not ours to use
    seen.observe(B, "wireguard", PUBLIC, 0.0)
    (got,) = seen.reflexive(1.0)
    assert got.endpoint == PUBLIC
    assert got.observers == 2


def test_identify_does_not_count_where_wireguard_shows_the_nat_changes_ports() -> None:
    """A symmetric NAT: each observer's WireGuard sees its own port; identify's guess of our
    listen port at that address would reach K = 2 and be announced, wrongly."""
    seen = Observations(OVERLAY, 51820)
    for observer, port in ((A, 40001), (B, 40002)):
        seen.observe(observer, "wireguard", f"93.184.216.34:{port}", 0.0)
        seen.observe(observer, "identify", "93.184.216.34:45678", 0.0)
    assert seen.reflexive(1.0) == []
    seen.observe(A, "wireguard", PUBLIC, 2.0)  # a NAT that keeps ports: no contradiction
    seen.observe(B, "wireguard", PUBLIC, 2.0)
    (got,) = seen.reflexive(3.0)
    assert (got.endpoint, got.observers) == (PUBLIC, 2)


def test_observations_expire_and_leave_with_their_observer() -> None:
    seen = Observations(OVERLAY, 51820, window=60.0)
    seen.observe(A, "wireguard", PUBLIC, 0.0)
    seen.observe(B, "wireguard", PUBLIC, 30.0)
    assert len(seen.reflexive(59.0)) == 1
    assert seen.reflexive(60.0) == []  # A's is 60 s old
    seen.observe(A, "wireguard", PUBLIC, 61.0)
    assert len(seen.reflexive(61.0)) == 1
    seen.forget(B)
    assert seen.reflexive(61.0) == []
    seen.expire(200.0)
    assert len(seen) == 0


def test_a_refused_report_withdraws_the_observers_earlier_one() -> None:
    seen = Observations(OVERLAY, 51820)
    seen.observe(A, "wireguard", PUBLIC, 0.0)
    seen.observe(B, "wireguard", PUBLIC, 0.0)
    assert seen.observe(B, "wireguard", "127.0.0.1:51820", 1.0) == "loopback"
    assert seen.reflexive(1.0) == []


def test_bad_observers_and_sources_are_refused() -> None:
    seen = Observations(OVERLAY, 51820)
    assert seen.observe(b"short", "wireguard", PUBLIC, 0.0) == "observer"
    assert seen.observe(A, "stun", PUBLIC, 0.0) == "source"
    assert len(seen) == 0
    with pytest.raises(ValueError, match="at least one observer"):
        Observations(OVERLAY, 51820, min_observers=0)


def test_observations_are_bounded_the_stalest_going_first() -> None:
    seen = Observations(OVERLAY, 51820, limit=10)
    for n in range(25):
        seen.observe(n.to_bytes(32, "big"), "wireguard", PUBLIC, float(n))
    assert len(seen) == 10
    (got,) = seen.reflexive(25.0)
    assert got.observers == 10


def test_reflexive_ranking_is_deterministic_most_observers_first() -> None:
    reports = [(n.to_bytes(32, "big"), f"93.184.216.{n % 3 + 1}:{1000 + n % 3}") for n in range(9)]
    reports += [(b"\xee" * 32, "93.184.216.1:1000")]
    results = []
    for seed in range(5):
        random.Random(seed).shuffle(reports)
        seen = Observations(OVERLAY, 51820)
        for observer, text in reports:
            seen.observe(observer, "wireguard", text, 1.0)
        results.append([(c.endpoint, c.observers) for c in seen.reflexive(2.0)])
    assert all(r == results[0] for r in results)
    assert results[0] == [
        ("93.184.216.1:1000", 4),
        ("93.184.216.2:1001", 3),
        ("93.184.216.3:1002", 3),
    ]


ADDRS = [
    LocalAddress("lo", ipaddress.ip_interface("127.0.0.1/8")),
    LocalAddress("eth0", ipaddress.ip_interface("192.168.1.2/24")),
    LocalAddress("eth0", ipaddress.ip_interface("fe80::1/64")),
    LocalAddress("eth1", ipaddress.ip_interface("93.184.216.34/24")),
    LocalAddress("eth1", ipaddress.ip_interface("2606:2800:220:1::1/64")),
    LocalAddress("meshd0", ipaddress.ip_interface("fd6d:6573:6864::5/128")),
    LocalAddress("tun9", ipaddress.ip_interface("fd6d:6573:6864::6/128")),
]


def test_local_candidates_global_first_no_loopback_link_local_or_overlay() -> None:
    got = cand.local_candidates(ADDRS, 51820, OVERLAY, exclude=["meshd0"])
    assert [c.endpoint for c in got] == [
        "93.184.216.34:51820",
        "[2606:2800:220:1::1]:51820",
        "192.168.1.2:51820",
    ]
    assert {c.kind for c in got} == {"local"}


def test_own_candidates_configured_then_reflexive_then_local_each_once() -> None:
    configured, refused = cand.configured_candidates(
        ["93.184.216.34:51820", "93.184.216.34:51820", "nonsense", "[::1]:7"], OVERLAY
    )
    assert [c.endpoint for c in configured] == ["93.184.216.34:51820", "[::1]:7"]
    assert cand.counts(refused) == {"malformed": 1}
    reflexive = [Candidate("reflexive", ipaddress.ip_address("93.184.216.99"), 40000, 3)]
    local = cand.local_candidates(ADDRS, 51820, OVERLAY, exclude=["meshd0"])
    own = cand.own_candidates(configured=configured, reflexive=reflexive, local=local)
    assert [(c.kind, c.endpoint) for c in own] == [
        ("configured", "93.184.216.34:51820"),
        ("configured", "[::1]:7"),
        ("reflexive", "93.184.216.99:40000"),
        ("local", "[2606:2800:220:1::1]:51820"),
        ("local", "192.168.1.2:51820"),
    ]
    many = [Candidate("local", ipaddress.ip_address(f"93.184.216.{n}"), 1) for n in range(1, 20)]
    assert len(cand.own_candidates(configured=[], reflexive=[], local=many)) == cand.MAX_CANDIDATES
    assert cand.behind_nat(own)
    assert not cand.behind_nat(local)


def test_parse_announced_refuses_hints_unknown_kinds_and_loopback_unless_configured() -> None:
    got, refused = cand.parse_announced(
        [
            ("reflexive", PUBLIC),
            ("hint", OTHER),
            ("stun", OTHER),
            ("local", "127.0.0.1:1"),
            ("configured", "127.0.0.1:2"),
            ("local", PUBLIC),  # the same endpoint again: once
            ("local", "[fd6d:6573:6864::9]:51820"),
            (1, 2),
        ],
        OVERLAY,
    )
    assert [(c.kind, c.endpoint) for c in got] == [
        ("reflexive", PUBLIC),
        ("configured", "127.0.0.1:2"),
    ]
    assert cand.counts(refused) == {"malformed": 3, "loopback": 1, "overlay": 1}


def test_parse_announced_is_bounded() -> None:
    items = [("local", f"93.184.{n // 250}.{n % 250 + 1}:1") for n in range(1000)]
    got, refused = cand.parse_announced(items, OVERLAY)
    assert len(got) == cand.MAX_CANDIDATES
    assert len(refused) <= cand.MAX_CANDIDATES * 4


def test_rank_for_us_same_lan_first_then_public_then_reflexive_then_elsewhere() -> None:
    peer = [
        Candidate("local", ipaddress.ip_address("10.1.1.5"), 51820),
        Candidate("reflexive", ipaddress.ip_address("93.184.216.99"), 40000, 2),
        Candidate("reflexive", ipaddress.ip_address("93.184.216.98"), 40000, 5),
        Candidate("local", ipaddress.ip_address("192.168.1.7"), 51820),
        Candidate("hint", ipaddress.ip_address("93.184.216.97"), 1),
        Candidate("configured", ipaddress.ip_address("2606:2800:220:1::1"), 51820),
        Candidate("local", ipaddress.ip_address("93.184.216.34"), 51820),
    ]
    ranked = cand.rank_for_us(
        reversed(peer), families=frozenset({4}), networks=[ipaddress.ip_network("192.168.1.0/24")]
    )
    assert [c.endpoint for c in ranked] == [
        "192.168.1.7:51820",
        "93.184.216.34:51820",
        "[2606:2800:220:1::1]:51820",  # a family we lack goes after within its tier
        "93.184.216.98:40000",
        "93.184.216.99:40000",
        "93.184.216.97:1",
        "10.1.1.5:51820",
    ]


# -- properties --------------------------------------------------------------------------

keys = st.binary(min_size=0, max_size=40)
texts = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda a, p: f"{a}:{p}", st.ip_addresses(v=4), st.integers(min_value=-1, max_value=70000)
    ),
    st.builds(
        lambda a, p: f"[{a}]:{p}", st.ip_addresses(v=6), st.integers(min_value=0, max_value=65535)
    ),
    st.binary(max_size=10),
    st.none(),
)
times = st.floats(allow_nan=True, allow_infinity=True)


@given(
    st.lists(
        st.tuples(keys, st.sampled_from(["wireguard", "identify", "x"]), texts, times),
        max_size=60,
    ),
    times,
)
def test_no_observation_crashes_and_what_comes_out_is_checked_and_bounded(
    reports: list[tuple[bytes, str, object, float]], now: float
) -> None:
    seen = Observations(OVERLAY, 51820, limit=20)
    for observer, source, text, at in reports:
        seen.observe(observer, source, text, at)
        assert len(seen) <= 20
    got = seen.reflexive(now)
    assert len(got) <= cand.MAX_REFLEXIVE
    for c in got:
        assert cand.check_address(c.address, OVERLAY) is None
        assert c.observers >= cand.MIN_OBSERVERS
    seen.expire(now)


good_public = st.builds(
    lambda a, p: f"{a}:{p}",
    st.ip_addresses(v=4).filter(lambda a: a.is_global),
    st.integers(min_value=1, max_value=65535),
)


#: What hostile members report: anything, any public address, or one of a few victims
#: (so that they agree with each other and repeat themselves).
hostile_texts = texts | good_public | st.sampled_from(["93.184.216.66:1", "93.184.216.67:51820"])
#: When, relative to now (within the window, or just past it), or any time at all.
hostile_times = st.floats(-250, 10).map(lambda d: (True, d)) | times.map(lambda t: (False, t))


@given(
    st.integers(min_value=2, max_value=4),
    st.integers(min_value=0, max_value=4),
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(cand.SOURCES), hostile_texts, hostile_times),
        max_size=80,
    ),
    st.floats(min_value=0, max_value=1000),
)
def test_fewer_than_k_hostile_observers_never_choose_what_we_announce(
    k: int,
    honest: int,
    hostile_reports: list[tuple[int, str, object, tuple[bool, float]]],
    now: float,
) -> None:
    """Up to k-1 colluding members report anything, any number of times, at any time;
    honest members report the truth. Only the truth can come out."""
    truth = "93.184.216.34:51820"
    seen = Observations(OVERLAY, 51820, min_observers=k)
    hostile_keys = [bytes([0xF0 + n]) * 32 for n in range(k - 1)]
    for n in range(honest):
        seen.observe(bytes([n + 1]) * 32, "wireguard", truth, now)
    for who, source, text, (relative, at) in hostile_reports:
        when = now + at if relative else at
        seen.observe(hostile_keys[who % len(hostile_keys)], source, text, when)
    assert {c.endpoint for c in seen.reflexive(now)} <= {truth}


@given(st.lists(st.tuples(st.text(max_size=12) | st.none(), texts), max_size=60))
def test_parse_announced_never_crashes(items: list[tuple[object, object]]) -> None:
    got, refused = cand.parse_announced(items, OVERLAY)
    assert len(got) <= cand.MAX_CANDIDATES
    assert all(c.kind != "hint" for c in got)
    assert len(got) + len(refused) <= len(items)


candidate_strategy = st.builds(
    Candidate,
    st.sampled_from(cand.KINDS),
    st.ip_addresses(),
    st.integers(min_value=1, max_value=65535),
    st.integers(min_value=0, max_value=9),
)


@given(
    st.lists(candidate_strategy, max_size=12).map(lambda found: found + found[::-1]),
    st.randoms(use_true_random=False),
)
def test_rank_for_us_does_not_depend_on_the_order_it_is_given(
    found: list[Candidate], shuffler: random.Random
) -> None:
    networks = [ipaddress.ip_network("192.168.1.0/24"), ipaddress.ip_network("2001:db8::/64")]
    first = cand.rank_for_us(found, families=frozenset({4}), networks=networks)
    shuffled = list(found)
    shuffler.shuffle(shuffled)
    again = cand.rank_for_us(shuffled, families=frozenset({4}), networks=networks)
    assert [(c.kind, c.endpoint, c.observers) for c in first] == [
        (c.kind, c.endpoint, c.observers) for c in again
    ]


def _edges() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Addresses at and beside the edges of every special network the standard library
    knows, v4 and v6 (and v4-mapped)."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        constants: Any = getattr(cls, "_constants")  # noqa: B009
        nets = [*constants._private_networks, getattr(constants, "_public_network", None)]
        for net in nets:
            if net is None:
                continue
            first, last = int(net.network_address), int(net.broadcast_address)
            top = 2**32 - 1 if cls is ipaddress.IPv4Address else 2**128 - 1
            for n in (first - 1, first, last, last + 1):
                if 0 <= n <= top:
                    found.append(cls(n))
    found += [ipaddress.IPv6Address(f"::ffff:{a}") for a in found if a.version == 4]
    return found


@given(st.ip_addresses())
def test_is_global_is_the_standard_library_s(address: ipaddress.IPv4Address) -> None:
    assert cand.is_global(address) == address.is_global


def test_is_global_at_every_special_network_s_edges_and_without_a_cache() -> None:
    for address in _edges():
        assert cand.is_global(address) == address.is_global, address
    private = ipaddress.IPv4Address.is_private.fget  # type: ignore[attr-defined]
    glob = ipaddress.IPv4Address.is_global.fget  # type: ignore[attr-defined]
    private.cache_clear()
    glob.cache_clear()
    for n in range(300):  # each candidate's address parsed anew, as a step does
        assert cand.is_public(ipaddress.IPv4Address(f"198.18.{n >> 8}.{n & 255}")) is False
        assert cand.is_public(ipaddress.IPv4Address(f"93.184.{n >> 8}.{n & 255}")) is True
    # The standard library's caches kept the last 128 addresses each (~46 KB) when asked
    assert private.cache_info().currsize == glob.cache_info().currsize == 0
