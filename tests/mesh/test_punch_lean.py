"""What a direct path holds per peer (a service holds 10,000): no ``__dict__``, what is
known of our side in one object shared by the paths given it, no punch of its own until one
comes; and that those shared parts decide as the path's own did."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.mesh import punch, punch_parts
from meshd.mesh.candidates import Candidate, Kind
from meshd.mesh.punch import DirectPath, Side
from tests.mesh.test_punch import events, path

LAN = Candidate("local", ipaddress.ip_address("192.168.1.7"), 51820)
PUBLIC = Candidate("local", ipaddress.ip_address("93.184.216.34"), 51820)


def test_a_path_has_no_dict_and_few_slots() -> None:
    p = DirectPath([LAN], 0.0)
    assert not hasattr(p, "__dict__")
    # was 23: our side shared, small values packed; then 18: where it stands in its rounds
    # one object that says its state (none while direct, one shared while in relay), what
    # it seldom sets one shared default, its settings and our side one, its flags one int
    # then 10; its path and its last action's keepalive and relay codes in one small int (9)
    # then in the int of its flags, one object for the paths that hold its value (8); when
    # to look at it again read from where it stands in its rounds (7)
    assert len(DirectPath.__slots__) <= 7
    side = Side()
    a, b = DirectPath([LAN], 0.0, side=side), DirectPath([PUBLIC], 0.0, side=side)
    assert a._rare is b._rare is punch_parts.Rare.DEFAULT
    assert a._common is b._common  # its settings and our side: one object
    a.watched = True
    assert (a.watched, b.watched, a._bits, b._bits) == (True, False, 256, 0)
    assert (a.hopeless, a._hopeless, a._bits) == (True, 1, 288)  # worked out: bits too
    c = DirectPath([LAN], 0.0, side=side)
    c.watched = True
    assert c.hopeless
    assert c._bits is a._bits  # past 256: one object all the same
    a.watched = False
    assert (a.watched, a.hopeless, a._bits) == (False, True, 32)


def test_paths_given_one_side_share_it_and_see_what_is_set_on_it() -> None:
    side = Side()
    a, b = DirectPath([LAN], 0.0, side=side), DirectPath([LAN], 0.0, side=side)
    assert a._side is b._side is side
    side.symmetric, side.public, side.behind_nat = True, True, True
    assert (a.symmetric, a.public, a.behind_nat) == (True, True, True)
    assert (b.symmetric, b.public, b.behind_nat) == (True, True, True)


def test_a_path_without_a_side_has_its_own_and_its_setters_change_only_it() -> None:
    a, b = DirectPath([LAN], 0.0, behind_nat=True), DirectPath([LAN], 0.0)
    assert a._side is not b._side
    assert (a.behind_nat, b.behind_nat) == (True, False)
    b.public = True
    assert (a.public, b.public) == (False, True)


def test_a_path_holds_the_shared_no_punch_until_a_punch_comes() -> None:
    p = DirectPath([LAN], 0.0)
    p.update(0.0, None, None)
    p.lost(1.0)
    assert p._punched is punch_parts.NO_PUNCH  # no tuple of its own a path
    assert p.punch(1.0, ["198.51.100.7:4000"]) is None
    assert p._punched[0] == 1.0
    assert [c.endpoint for c in p._punched[1]] == ["198.51.100.7:4000"]


def test_the_last_action_keeps_its_keepalive_and_relay() -> None:
    p = DirectPath([LAN, PUBLIC], 0.0)
    a = p.update(0.0, None, None)
    assert p.last_action() == punch.Action(
        a.path, a.endpoint, False, a.keepalive, a.relay, a.next_check
    )
    a = p.update(6.0, None, None)  # the first failed: relayed while the next is tried
    assert (a.keepalive, a.relay) == (punch.KEEPALIVE, True)
    assert p.last_action() == punch.Action(
        "trying", a.endpoint, False, punch.KEEPALIVE, True, a.next_check
    )
    p.public = True  # a public machine of ours, the peer at its own public address
    a = p.update(7.0, 6.5, PUBLIC.endpoint)
    assert (a.path, a.keepalive, a.relay) == ("direct", 0, False)
    assert p.last_action() == punch.Action("direct", a.endpoint, False, 0, False, a.next_check)


def test_hopeless_is_worked_out_again_when_our_side_changes() -> None:
    side = Side()
    p = DirectPath([LAN], 0.0, side=side)
    assert p.hopeless  # a private address elsewhere, nothing public on our side
    side.public = True
    assert not p.hopeless
    side.public = False
    assert p.hopeless


def held(p: DirectPath) -> object:
    return p._ranked


def round_of(p: DirectPath) -> punch_parts.Ranked:
    tried = p._round()
    assert tried is not None
    return tried


def test_one_candidate_is_held_without_a_tuple_and_decides_as_a_tuple_of_one_did() -> None:
    p = DirectPath([LAN], 0.0)
    # One announced local address: its text alone (the announcement's own string).
    assert p._ranked is LAN.endpoint
    assert round_of(p) is LAN.endpoint  # the round is the announced candidate: no copy
    assert p.candidates == [LAN]
    assert p.update(0.0, None, None).endpoint == LAN.endpoint
    a = p.update(6.0, None, None)  # it failed: on the relay, showing it
    assert (a.path, a.endpoint) == ("relay", LAN.endpoint)
    p.set_candidates([Candidate("local", ipaddress.ip_address("192.168.1.7"), 51820)], 7.0)
    assert p.state == "relay"  # equal candidates: nothing new to try
    p.set_candidates([LAN, PUBLIC], 8.0)
    assert held(p) == (PUBLIC.endpoint, LAN.endpoint, "kinds=ll")  # texts and kinds
    assert p.candidates == [PUBLIC, LAN]
    assert p.update(8.0, None, None).endpoint == PUBLIC.endpoint
    p.set_candidates([PUBLIC], 9.0)
    assert held(p) is PUBLIC.endpoint
    assert p.update(9.0, None, None).endpoint == PUBLIC.endpoint
    seen = Candidate("reflexive", PUBLIC.address, 4000, 2)
    p.set_candidates([seen], 10.0)
    assert held(p) is seen  # another kind: the candidate itself
    assert p.candidates == [seen]
    assert p.update(10.0, None, None).endpoint == seen.endpoint


def test_a_single_candidate_with_hints_or_a_kept_endpoint_makes_a_round_of_them() -> None:
    p = DirectPath([LAN], 0.0, kept="198.51.100.9:4000")
    tried = [c.endpoint for c in punch_parts.listed(round_of(p))]
    assert tried == ["198.51.100.9:4000", LAN.endpoint]
    assert p.update(0.0, None, None).endpoint == "198.51.100.9:4000"
    assert p.update(6.0, None, None).endpoint == LAN.endpoint
    p.update(12.0, None, None)
    assert p.punch(12.0, ["198.51.100.7:4000"]) is None
    assert p.update(12.0, None, None).endpoint == "198.51.100.7:4000"


def test_an_announced_candidate_holds_its_text_and_no_parsed_address_or_port() -> None:
    """An announced candidate is the announcement's own string: its address and port are
    read from it when asked for (10,000 parsed addresses and ports cost ~90 bytes a peer)."""
    from meshd.mesh.candidates import parse_announced

    text = "198.18.0.2:" + str(int("51820"))  # a string of its own, as a decoded one is
    (a,), _ = parse_announced([("local", text)], None)
    assert a.endpoint is text
    assert set(Candidate.__slots__) == {"kind", "endpoint", "observers"}
    assert (a.address, a.port) == (ipaddress.ip_address("198.18.0.2"), 51820)
    v6 = Candidate("reflexive", ipaddress.ip_address("2001:db8::7"), 4000, 2)
    assert (v6.endpoint, v6.address, v6.port) == ("[2001:db8::7]:4000", v6.address, 4000)
    assert v6 == Candidate("reflexive", ipaddress.ip_address("2001:db8:0::7"), 4000, 2)
    assert v6 != Candidate("reflexive", ipaddress.ip_address("2001:db8::7"), 4001, 2)


def test_paths_that_start_and_fail_at_one_time_share_their_times() -> None:
    paths = [DirectPath([Candidate("local", LAN.address, 1000 + i)], 0.0) for i in range(3)]
    first = [p.update(0.5, None, None) for p in paths]
    assert {a.next_check for a in first} == {0.0 + punch.ATTEMPT}
    # read from the round they share: no float of a path's own
    assert paths[0].next_check == paths[1].next_check == paths[2].next_check == punch.ATTEMPT
    assert "next_check" not in DirectPath.__slots__
    failed = [p.update(6.0, None, None) for p in paths]
    assert {(a.path, a.next_check) for a in failed} == {("relay", 6.0 + punch.RETRY_BASE)}
    waiting = paths[0]._rounds  # failed rounds and the next round's time: one object
    assert isinstance(waiting, punch_parts.Waiting)
    assert waiting is paths[1]._rounds is paths[2]._rounds
    assert paths[0].next_check is waiting.next_at
    other = DirectPath([LAN], 1.0)
    assert other.update(1.0, None, None).next_check == 1.0 + punch.ATTEMPT  # values unchanged


def test_paths_that_try_their_announced_candidates_alike_share_one_round() -> None:
    # A round was an object a path (64 bytes in a trace: every path of a start trying)
    two = [LAN, Candidate("local", ipaddress.ip_address("192.168.1.9"), 51820)]
    paths = [DirectPath(two if i else [LAN], 0.0) for i in range(3)]
    assert all(isinstance(p._rounds, punch_parts.Trying) for p in paths)
    assert paths[0]._rounds is paths[1]._rounds is paths[2]._rounds
    [p.update(6.0, None, None) for p in paths]  # the first candidate failed: the next one
    assert paths[1]._rounds is paths[2]._rounds
    assert isinstance(paths[1]._rounds, punch_parts.Trying)
    assert paths[1].update(6.0, None, None).endpoint == "192.168.1.9:51820"
    assert paths[0].state == "relay"
    hinted = DirectPath([LAN], 0.0)
    assert hinted.punch(1.0, ["203.0.113.5:4000"]) is None  # a round of its own
    assert hinted._rounds is not paths[1]._rounds
    assert [c.endpoint for c in punch_parts.listed(round_of(hinted))] == [
        "203.0.113.5:4000",
        LAN.endpoint,
    ]


_KINDS: tuple[Kind, ...] = ("configured", "reflexive", "local", "hint")


@given(
    st.lists(
        st.tuples(st.sampled_from(_KINDS), st.integers(1, 40), st.integers(0, 2)),
        max_size=6,
        unique_by=lambda t: t[1],
    )
)
@settings(max_examples=300)
def test_candidates_as_a_path_holds_them_read_back_as_they_were(
    made: list[tuple[Kind, int, int]],
) -> None:
    """Held as a text, texts and kinds, one candidate or a tuple, they list and give each
    endpoint as the tuple they were made from did."""
    ranked = tuple(
        Candidate(kind, ipaddress.ip_address(f"198.51.100.{n}"), 4000 + n, observers)
        for kind, n, observers in made
    )
    held = punch_parts.held(ranked)
    assert punch_parts.listed(held) == ranked
    assert list(punch_parts.each(held)) == list(ranked)
    for index in range(len(ranked) + 2):
        expected = ranked[index].endpoint if index < len(ranked) else None
        assert punch_parts.endpoint_at(held, index) == expected
    announced = all(c.kind != "hint" and not c.observers for c in ranked)
    if announced and ranked:  # texts and kinds, or one local address's text
        assert isinstance(held, str | tuple)
        assert not any(isinstance(c, Candidate) for c in held)


@given(events, st.lists(st.booleans(), max_size=60))
def test_when_to_look_again_read_from_the_path_is_what_its_last_action_said(
    script: list[tuple[str, float, object, object]], watched: list[bool]
) -> None:
    """``next_check`` is not kept: read from the round, the relay's next round or the
    handshake going stale, it is what the last update returned, watched or not."""
    p = path(LAN, PUBLIC)
    assert p.next_check == float("-inf")
    now = 0.0
    for n, (kind, step, arg, extra) in enumerate(script):
        now += step
        if kind == "update":
            p.watched = watched[n] if n < len(watched) else False
            hs = arg if isinstance(arg, float) else None
            a = p.update(now, hs, extra if isinstance(extra, str) or extra is None else None)
            assert p.next_check == a.next_check
            assert p.last_action() == punch.Action(
                a.path, a.endpoint, False, a.keepalive, a.relay, a.next_check
            )
        elif kind == "punch":
            assert isinstance(arg, list)
            p.punch(now, arg)
        else:
            assert isinstance(arg, list)
            p.set_candidates(arg, now)
