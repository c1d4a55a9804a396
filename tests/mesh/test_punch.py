"""The direct-path policy on a fake clock: candidates in turn, settle, relay, try again."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from meshd.mesh import punch
from meshd.mesh.candidates import Candidate
from meshd.mesh.punch import DirectPath

OVERLAY = ipaddress.IPv6Network("fd6d:6573:6864::/48")
LAN = Candidate("local", ipaddress.ip_address("192.168.1.7"), 51820)
REFLEXIVE = Candidate("reflexive", ipaddress.ip_address("93.184.216.99"), 40000, 2)
PUBLIC = Candidate("local", ipaddress.ip_address("93.184.216.34"), 51820)


def path(*candidates: Candidate, now: float = 0.0, **kwargs: object) -> DirectPath:
    return DirectPath(candidates, now, families=frozenset({4}), overlay=OVERLAY, **kwargs)  # type: ignore[arg-type]


def test_the_first_candidate_that_answers_is_settled() -> None:
    p = path(REFLEXIVE, LAN)
    assert [c.endpoint for c in p.candidates] == ["93.184.216.99:40000", "192.168.1.7:51820"]
    a = p.update(0.0, None, None)
    assert (a.path, a.endpoint, a.kick, a.keepalive, a.relay) == (
        "trying",
        "93.184.216.99:40000",
        True,
        punch.KEEPALIVE,
        False,
    )
    assert a.next_check == punch.ATTEMPT
    assert p.update(1.0, None, "93.184.216.99:40000").kick is False
    a = p.update(1.5, 1.2, "93.184.216.99:40000")
    assert (a.path, a.endpoint, a.relay) == ("direct", "93.184.216.99:40000", False)
    assert a.keepalive == punch.KEEPALIVE  # the peer is behind a NAT: keep the mapping open
    assert p.settled == "93.184.216.99:40000"
    assert a.next_check == 1.2 + punch.STALE_AFTER


def test_a_failed_candidate_moves_on_and_opens_the_relay() -> None:
    p = path(REFLEXIVE, LAN)
    p.update(0.0, None, None)
    assert p.update(5.4, None, None).endpoint == "93.184.216.99:40000"
    a = p.update(5.5, None, None)
    assert (a.path, a.endpoint, a.kick, a.relay) == ("trying", "192.168.1.7:51820", True, True)
    a = p.update(7.0, 6.8, "192.168.1.7:51820")
    assert (a.path, a.endpoint, a.relay) == ("direct", "192.168.1.7:51820", False)


def test_wireguard_knows_best_where_the_peer_is() -> None:
    """The peer answered from a mapping none of its candidates named (it moved)."""
    p = path(REFLEXIVE)
    p.update(0.0, None, None)
    a = p.update(1.0, 0.9, "93.184.216.99:41234")
    assert (a.path, a.endpoint) == ("direct", "93.184.216.99:41234")
    # A nonsense endpoint reported is not taken.
    assert p.update(2.0, 0.9, "224.0.0.1:1").endpoint == "93.184.216.99:41234"


def test_a_handshake_from_before_the_next_candidate_was_put_settles_where_it_answered() -> None:
    """The step that moves on to the next candidate read the device just before a handshake
    through the one before landed; writing the next one then hid where it answered. The
    device shows the endpoint we put, but the handshake is older than our putting it there
    (``came_before``): the path settles on the candidate that was on the device, and puts it
    back. A handshake newer than the put is where the device says."""
    p = path(REFLEXIVE, LAN)
    p.update(0.0, None, None)
    a = p.update(5.5, None, "93.184.216.99:40000")
    assert (a.endpoint, a.kick) == ("192.168.1.7:51820", True)
    a = p.update(6.0, 5.51, "192.168.1.7:51820", came_before=True)
    assert (a.path, a.endpoint, a.kick) == ("direct", "93.184.216.99:40000", True)
    assert p.settled == "93.184.216.99:40000"
    # Once put back, the device shows it, the same old handshake: settled there, no kick.
    a = p.update(6.5, 5.51, "93.184.216.99:40000", came_before=True)
    assert (a.path, a.endpoint, a.kick) == ("direct", "93.184.216.99:40000", False)
    # A newer handshake: WireGuard knows best again.
    a = p.update(130.0, 129.0, "93.184.216.99:41000")
    assert (a.path, a.endpoint) == ("direct", "93.184.216.99:41000")

    # The first candidate of a round: nothing of the round before it to go back to.
    q = path(REFLEXIVE, LAN)
    q.update(0.0, None, None)
    a = q.update(0.5, 0.4, "93.184.216.99:40000", came_before=True)
    assert (a.path, a.endpoint) == ("direct", "93.184.216.99:40000")

    # The handshake answered the candidate the device shows: it settles there, as before.
    r = path(REFLEXIVE, LAN)
    r.update(0.0, None, None)
    r.update(5.5, None, "93.184.216.99:40000")
    a = r.update(6.0, 5.9, "192.168.1.7:51820")
    assert (a.path, a.endpoint, a.kick) == ("direct", "192.168.1.7:51820", False)


def test_all_fail_relay_then_try_again_with_backoff() -> None:
    p = path(REFLEXIVE, LAN)
    p.update(0.0, None, None)
    p.update(5.5, None, None)
    a = p.update(11.0, None, None)
    assert (a.path, a.relay, a.keepalive) == ("relay", True, 0)
    assert a.endpoint == "93.184.216.99:40000"
    assert a.next_check == 11.0 + punch.RETRY_BASE
    assert p.update(40.0, None, None).path == "relay"
    a = p.update(41.0, None, None)
    assert (a.path, a.endpoint) == ("trying", "93.184.216.99:40000")
    p.update(46.5, None, None)
    a = p.update(52.0, None, None)
    assert a.path == "relay"
    assert a.next_check == 52.0 + 2 * punch.RETRY_BASE
    now = 52.0
    for _ in range(10):  # the backoff is capped
        now = p.update(now, None, None).next_check
        now = p.update(now, None, None).next_check
        now = p.update(now, None, None).next_check
        a = p.update(now, None, None)
    assert a.next_check - now <= punch.RETRY_MAX


def test_a_handshake_while_relayed_takes_the_direct_path_back() -> None:
    p = path(REFLEXIVE)
    p.update(0.0, None, None)
    assert p.update(5.5, None, None).path == "relay"
    a = p.update(20.0, 19.0, "93.184.216.99:40000")
    assert (a.path, a.relay) == ("direct", False)


def test_a_stale_direct_path_is_lost_and_its_old_handshake_no_longer_counts() -> None:
    p = path(REFLEXIVE, LAN)
    p.update(0.0, None, None)
    assert p.update(1.0, 1.0, "93.184.216.99:40000").path == "direct"
    assert p.update(1.0 + punch.STALE_AFTER, 1.0, None).path == "direct"
    a = p.update(2.0 + punch.STALE_AFTER, 1.0, None)
    assert (a.path, a.endpoint, a.kick) == ("trying", "93.184.216.99:40000", False)
    later = 3.0 + punch.STALE_AFTER
    assert p.update(later, 1.0, None).path == "trying"
    assert p.update(later + 1, later + 0.5, None).path == "direct"


def test_no_keepalive_between_public_members() -> None:
    p = path(PUBLIC)
    p.public = True
    p.update(0.0, None, None)
    assert p.update(1.0, 0.5, "93.184.216.34:51820").keepalive == 0
    q = path(PUBLIC, behind_nat=True)
    q.public = True
    q.update(0.0, None, None)
    assert q.update(1.0, 0.5, "93.184.216.34:51820").keepalive == punch.KEEPALIVE


def test_a_keepalive_only_where_a_nat_is_kept_open() -> None:
    """Direct between two public members: none. A NAT on our side (seen, or not known to
    be absent: no public address of ours), a peer announcing a reflexive endpoint, or a
    peer at a mapping it does not offer as its own (a symmetric NAT WireGuard roamed to):
    25 s. Trying: always (it makes WireGuard initiate at once); on the relay: none."""

    def rule(
        path: punch.Path,
        endpoint: str | None,
        *cands: Candidate,
        public: bool = True,
        behind_nat: bool = False,
    ) -> int:
        return punch.keepalive_for(
            path, public=public, behind_nat=behind_nat, endpoint=endpoint, candidates=cands
        )

    public = PUBLIC.endpoint
    assert rule("direct", public, PUBLIC) == 0
    assert rule("direct", public, PUBLIC, behind_nat=True) == punch.KEEPALIVE
    assert rule("direct", public, PUBLIC, public=False) == punch.KEEPALIVE
    assert rule("direct", public, PUBLIC, REFLEXIVE) == punch.KEEPALIVE
    assert rule("direct", "198.51.100.5:40211", LAN) == punch.KEEPALIVE  # a mapping
    assert rule("direct", LAN.endpoint, LAN) == punch.KEEPALIVE  # private, not on our LAN
    configured = Candidate("configured", ipaddress.ip_address("10.1.2.3"), 51820)
    assert rule("direct", configured.endpoint, configured) == 0  # the operator's word
    lan = ipaddress.ip_network("192.168.1.0/24")
    assert (
        punch.keepalive_for(
            "direct",
            public=True,
            behind_nat=False,
            endpoint=LAN.endpoint,
            candidates=[LAN],
            networks=[lan],
        )
        == 0
    )  # on our own LAN: no NAT between us
    assert rule("trying", public, PUBLIC) == punch.KEEPALIVE
    assert rule("relay", None, LAN) == 0


def test_no_candidates_means_relay_and_no_endpoint() -> None:
    p = path()
    a = p.update(0.0, None, None)
    assert (a.path, a.endpoint, a.relay, a.kick) == ("relay", None, True, False)
    p.set_candidates([LAN], 1.0)
    assert p.update(1.0, None, None).endpoint == "192.168.1.7:51820"


def test_new_candidates_start_a_round_at_once_unless_direct() -> None:
    p = path(REFLEXIVE)
    p.update(0.0, None, None)
    assert p.update(5.5, None, None).path == "relay"
    p.set_candidates([REFLEXIVE], 6.0)  # the same: nothing
    assert p.update(6.0, None, None).path == "relay"
    moved = Candidate("reflexive", ipaddress.ip_address("93.184.216.99"), 41000, 2)
    p.set_candidates([moved], 7.0)
    a = p.update(7.0, None, None)
    assert (a.path, a.endpoint, a.kick) == ("trying", "93.184.216.99:41000", True)
    p.update(8.0, 7.9, None)
    p.set_candidates([REFLEXIVE], 9.0)
    assert p.update(9.0, 7.9, None).path == "direct"


def test_punch_requests_start_rounds_with_hints_at_a_bounded_rate() -> None:
    p = path(REFLEXIVE)
    p.update(0.0, None, None)
    assert p.update(5.5, None, None).path == "relay"
    assert p.punch(6.0, ["93.184.216.50:1", "127.0.0.1:2", "93.184.216.51:3"]) == "oversized"
    a = p.update(6.0, None, None)
    assert (a.path, a.endpoint) == ("trying", "93.184.216.99:40000")
    a = p.update(11.5, None, None)
    assert a.endpoint == "93.184.216.50:1"  # the hint, after the announced candidate
    assert p.update(17.0, None, None).path == "relay"  # the loopback hint was never tried
    assert p.punch(15.9, []) == "busy"
    assert p.punch(16.0, ["[fe80::1]:1"]) == "link-local"
    assert p.update(16.0, None, None).endpoint == "93.184.216.99:40000"
    p.update(21.5, None, None)
    assert p.update(27.0, None, None).path == "relay"  # hints last one round only


def test_punch_is_ignored_while_a_direct_handshake_is_fresh() -> None:
    p = path(REFLEXIVE)
    p.update(0.0, None, None)
    p.update(1.0, 1.0, "93.184.216.99:40000")
    assert p.punch(10.0, ["93.184.216.50:1"]) == "busy"
    assert p.update(10.0, 1.0, None).path == "direct"
    # Later, with the handshake older, the peer says it is trying: it may have moved.
    assert p.punch(30.0, ["93.184.216.50:1"]) is None
    a = p.update(30.0, 1.0, None)
    assert (a.path, a.endpoint) == ("trying", "93.184.216.99:40000")


# -- properties --------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=50),
    st.builds(lambda n, p: f"93.184.216.{n}:{p}", st.integers(0, 300), st.integers(-1, 70000)),
    st.none(),
    st.integers(),
)
events = st.lists(
    st.one_of(
        st.tuples(
            st.just("update"),
            st.floats(0, 50),
            st.none() | st.floats(-100, 10_000, allow_nan=False),
            st.tuples(texts, st.booleans()),  # the device's endpoint, came_before
        ),
        st.tuples(st.just("punch"), st.floats(0, 50), st.lists(texts, max_size=5), st.none()),
        st.tuples(
            st.just("candidates"),
            st.floats(0, 50),
            st.lists(st.sampled_from([LAN, REFLEXIVE, PUBLIC]), max_size=3),
            st.none(),
        ),
    ),
    max_size=60,
)


@given(events)
def test_no_sequence_of_events_crashes_and_actions_stay_sane(
    script: list[tuple[str, float, object, object]],
) -> None:
    p = path(REFLEXIVE, LAN)
    now = 0.0
    for kind, step, arg, extra in script:
        now += step
        if kind == "update":
            hs = arg if isinstance(arg, float) else None
            assert isinstance(extra, tuple)
            shown, came_before = extra
            endpoint = shown if isinstance(shown, str) else None
            a = p.update(now, hs, endpoint, came_before=came_before)
            assert a.next_check >= now
            assert a.keepalive in (0, punch.KEEPALIVE)
            assert a.relay == (a.path != "direct") or a.path == "trying"
        elif kind == "punch":
            assert isinstance(arg, list)
            p.punch(now, arg)
        else:
            assert isinstance(arg, list)
            p.set_candidates(arg, now)


@given(st.lists(st.lists(st.text(max_size=30), max_size=10), min_size=1, max_size=300))
def test_a_hostile_relay_flooding_punch_requests_gets_one_round_per_interval(
    floods: list[list[str]],
) -> None:
    """Punch requests every 0.1 s, each with up to 13 hints: one round per PUNCH_INTERVAL,
    and no more than MAX_HINTS of a request's hints tried."""
    p = path(REFLEXIVE)
    started = 0
    tried: set[str] = set()
    now = 0.0
    for hints in floods:
        if (
            p.punch(now, [*hints, "93.184.216.50:1", "93.184.216.51:1", "93.184.216.52:1"])
            != "busy"
        ):
            started += 1
        endpoint = p.update(now, None, None).endpoint
        if endpoint is not None:
            tried.add(endpoint)
        now += 0.1
    assert started <= now // punch.PUNCH_INTERVAL + 1
    assert "93.184.216.52:1" not in tried


def test_a_hint_is_tried_before_private_addresses_elsewhere() -> None:
    """A peer behind a NAT with no reflexive candidate (one observer only): the relaying
    member's hint is its public mapping, tried before its private LAN address."""
    p = path(LAN)
    p.update(0.0, None, None)
    assert p.punch(1.0, ["93.184.216.50:51820"]) is None
    assert p.update(1.0, None, None).endpoint == "93.184.216.50:51820"
    assert p.update(6.5, None, None).endpoint == "192.168.1.7:51820"


def test_a_direct_path_that_falls_silent_starts_a_round_at_once() -> None:
    p = path(REFLEXIVE, LAN)
    p.update(0.0, None, None)
    assert p.update(1.0, 1.0, "93.184.216.99:40000").path == "direct"
    assert p.lost(20.0) is True
    a = p.update(20.0, 1.0, "93.184.216.99:40000")  # the old handshake does not settle it
    assert (a.path, a.endpoint) == ("trying", "93.184.216.99:40000")
    assert p.lost(21.0) is False  # not direct: nothing to lose
    assert p.update(22.0, 21.9, "93.184.216.99:40001").path == "direct"
    assert p.settled == "93.184.216.99:40001"


def test_new_candidates_during_a_punched_round_keep_its_hints() -> None:
    """The notice and the peer's announcement arrive together: the new round started by the
    announcement still tries the hint first, while the peer is sending to us."""
    p = path(LAN)
    p.update(0.0, None, None)
    assert p.punch(1.0, ["93.184.216.50:51820"]) is None
    p.set_candidates([LAN, Candidate("local", ipaddress.ip_address("192.168.1.8"), 51820)], 1.1)
    assert p.update(1.1, None, None).endpoint == "93.184.216.50:51820"
    p.set_candidates([LAN], 30.0)  # long after the punch: its hints are gone
    assert p.update(30.0, None, None).endpoint == "192.168.1.7:51820"
    assert p.update(35.5, None, None).path == "relay"


def test_a_few_path_changes_are_each_named_and_many_are_counted_in_one_line() -> None:
    few = [("direct", "h1: direct at 10.0.0.1:51820"), ("trying", "h5: trying at 10.0.0.5:1")]
    assert punch.summary(few) == ([line for _, line in few], [])
    four = [("trying", f"h{i}: trying at 10.0.0.{i}:1") for i in range(punch.NAMED + 1)]
    assert punch.summary(four) == ([line for _, line in four], [])
    many = [("direct" if i % 40 else "trying", f"m{i}: path {i}") for i in range(punch.NAMED + 412)]
    info, debug = punch.summary(many)
    assert info == [
        "m0: path 0",
        "m1: path 1",
        "m2: path 2",
        "412 more members: 402 direct, 10 trying (each at DEBUG; every path in `meshd peers`)",
    ]
    assert debug == [line for _, line in many[punch.NAMED :]]


def test_a_new_underlay_ranks_the_candidates_again_and_a_round_starts_over() -> None:
    """Our side moved to the peer's LAN (a laptop joined another network): its local
    candidate on that network is tried first from now on, as a path made now tries it,
    not last as a private address elsewhere."""
    p = path(REFLEXIVE, LAN)
    p.update(0.0, None, None)
    assert p.update(5.5, None, None).endpoint == "192.168.1.7:51820"  # the first failed
    p.update(11.0, None, None)  # both failed: relayed, the next round later
    lan = ipaddress.ip_network("192.168.1.0/24")
    p.set_underlay(frozenset({4}), [lan], 12.0)
    made_now = path(REFLEXIVE, LAN, now=12.0, networks=[lan])
    assert p.candidates == made_now.candidates
    assert p.candidates[0] == LAN
    a = p.update(12.0, None, None)
    assert (a.path, a.endpoint, a.kick) == ("trying", "192.168.1.7:51820", True)
    # The same underlay again changes nothing: the round goes on.
    p.set_underlay(frozenset({4}), (lan,), 13.0)
    assert p.update(13.0, None, None).kick is False


def test_a_new_underlay_leaves_a_direct_path_as_it_is() -> None:
    p = path(REFLEXIVE, LAN)
    p.update(0.0, None, None)
    a = p.update(1.5, 1.2, "93.184.216.99:40000")
    assert a.path == "direct"
    p.set_underlay(frozenset({4, 6}), [ipaddress.ip_network("192.168.1.0/24")], 2.0)
    a = p.update(2.0, 1.2, "93.184.216.99:40000")
    assert (a.path, a.endpoint, a.kick) == ("direct", "93.184.216.99:40000", False)
    assert p.candidates[0] == LAN  # ranked for the next time it is lost


def test_a_new_underlay_that_brings_no_lan_address_first_keeps_the_rounds_spacing() -> None:
    """A link that flaps restarts no round of a member not on the LANs it brings: its
    candidates are ranked anew, its next round comes when it was due."""
    p = path(REFLEXIVE, LAN)
    p.update(0.0, None, None)
    p.update(5.5, None, None)
    relayed = p.update(11.0, None, None)  # both failed: on the relay until its next round
    assert relayed.path == "relay"
    for n, nets in enumerate([[ipaddress.ip_network("10.9.0.0/16")], [], [], []]):
        p.set_underlay(frozenset({4, 6}) if n % 2 else frozenset({4}), nets, 12.0 + n)
        a = p.update(12.0 + n, None, None)
        assert (a.path, a.kick) == ("relay", False)
    assert a.next_check == relayed.next_check
