"""A tick judges every member only once a member judged admitted may have stopped being so by
time alone (its credential's end, its silence limit); before that moment only members heard
from while not admitted (meshd.membership.settle, ``due_nodes``). The events are those of
judging every member at every tick, whatever comes between ticks: announcements, sightings,
renewals, revocations, our own link cut off and back."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.membership import Membership, MemberState
from meshd.membership.views import Event
from meshd.records import make_renewal
from tests.factory import DAY, T0, Net, Node

NOW = T0 + 100
TTL = 600
MEMBERS = 4


def _member(net: Net, name: str, not_after: int) -> Node:
    return net.founder(name, not_after=not_after)


def _seen(events: tuple[Event, ...]) -> list[tuple[Any, ...]]:
    return [
        (
            type(e).__name__,
            e.member.node_key,
            e.member.state,
            e.member.reason,
            e.member.not_after,
            e.member.last_seen,
        )
        for e in events
    ]


STEP = st.one_of(
    st.tuples(st.just("wait"), st.integers(1, 900)),
    st.tuples(st.just("announce"), st.integers(0, MEMBERS - 1)),
    st.tuples(st.just("heard"), st.integers(0, MEMBERS - 1), st.integers(0, 300)),
    st.tuples(st.just("renew"), st.integers(0, MEMBERS - 1), st.integers(1, 6000)),
    st.tuples(st.just("revoke"), st.integers(0, MEMBERS - 1)),
    st.tuples(st.just("cut_off")),
    st.tuples(st.just("reconnected")),
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(200, 8000), min_size=MEMBERS, max_size=MEMBERS),
    st.lists(STEP, max_size=40),
)
def test_a_tick_emits_what_judging_every_member_would(ends: list[int], steps: list[Any]) -> None:
    net = Net()
    nodes = [_member(net, f"m{i}", NOW + end) for i, end in enumerate(ends)]
    every: Membership = net.state(announce_ttl=TTL)  # judges every member at each tick
    due: Membership = net.state(announce_ttl=TTL)
    states = (every, due)
    now = NOW
    for state in states:
        for node in nodes:
            state.ingest(node.credential, now)
    ticks = 0
    for step in [*steps, ("wait", 9000)]:
        kind = step[0]
        if kind == "wait":
            # A tick every second or so of the wait, as the daemon's expiry service does,
            # at most 30 of them (the last one at its end).
            wait = step[1]
            moments = sorted({now + wait * k // 30 for k in range(1, 31)})
            for moment in moments:
                now = moment
                assert _seen(due.tick(now)) == _seen(every.tick(now, every=True)), now
                ticks += 1
            continue
        if kind == "announce":
            records = [nodes[step[1]].announce(net, now)]
        elif kind == "renew":
            subject = nodes[step[1]].key.public
            records = [
                make_renewal(
                    net.root,
                    network_id=net.anchor.network_id,
                    subject=subject,
                    issued_at=now,
                    not_after=now + step[2],
                )
            ]
        elif kind == "revoke":
            records = [net.revoke(nodes[step[1]].key.public, at=now)]
        for state in states:  # the same records and calls to both
            if kind == "heard":
                state.heard(nodes[step[1]].key.public, now - step[2], now)
            elif kind == "cut_off":
                state.cut_off(now)
            elif kind == "reconnected":
                state.reconnected(now)
            else:
                state.merge_batch(records, now)
    assert ticks >= 30
    assert [m.state for m in due.members(now)] == [m.state for m in every.members(now)]


def _counted(state: Membership, now: int) -> Counter[MemberState]:
    return Counter(m.state for m in state.members(now))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(200, 8000), min_size=MEMBERS, max_size=MEMBERS),
    st.lists(STEP, max_size=40),
    st.lists(st.integers(0, 1200), min_size=1, max_size=5),
)
def test_state_counts_are_what_the_members_views_say_at_any_moment(
    ends: list[int], steps: list[Any], looks: list[int]
) -> None:
    """``state_counts`` (``meshd status``) reads the states the ticks recorded: at any
    moment, a tick just run or not, the same counts as every member's view at that moment,
    whatever came between (ends, silences, sightings, renewals, revocations, a clock set
    back, our own link cut off and back)."""
    net = Net()
    nodes = [_member(net, f"m{i}", NOW + end) for i, end in enumerate(ends)]
    state: Membership = net.state(announce_ttl=TTL)
    now = NOW
    for node in nodes:
        state.ingest(node.credential, now)
    for i, step in enumerate([*steps, ("wait", 9000)]):
        look = now + looks[i % len(looks)] - 300  # before, at or after now, no tick between
        assert state.state_counts(look) == _counted(state, look), look
        kind = step[0]
        if kind == "wait":
            now += step[1]
            state.tick(now)
        elif kind == "announce":
            state.merge_batch([nodes[step[1]].announce(net, now)], now)
        elif kind == "heard":
            state.heard(nodes[step[1]].key.public, now - step[2], now)
        elif kind == "renew":
            renewal = make_renewal(
                net.root,
                network_id=net.anchor.network_id,
                subject=nodes[step[1]].key.public,
                issued_at=now,
                not_after=now + step[2],
            )
            state.merge_batch([renewal], now)
        elif kind == "revoke":
            state.merge_batch([net.revoke(nodes[step[1]].key.public, at=now)], now)
        elif kind == "cut_off":
            state.cut_off(now)
        else:
            state.reconnected(now)
        assert state.state_counts(now) == _counted(state, now), (now, step)


def test_at_rest_a_tick_judges_no_one_until_an_end_or_a_silence_limit_comes() -> None:
    """The point of it: between the moments anything can change, a tick is no pass over
    every member (each judged once at most by the ticks of an hour, here), and it still
    expires a member on the second its silence limit passes."""
    net = Net()
    nodes = [_member(net, f"m{i}", NOW + 30 * DAY) for i in range(20)]
    state = net.state(announce_ttl=3600)
    for node in nodes:
        state.ingest(node.credential, NOW)
    judged = 0
    judge = state._standing.judge

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal judged
        judged += 1
        return judge(*args, **kwargs)

    state._standing.judge = counting  # type: ignore[method-assign]
    state.tick(NOW)  # a first tick judges everyone, whatever was noted before
    later = NOW + 1800
    state.merge_batch([nodes[0].announce(net, later)], later)  # heard again: later limit
    judged = 0
    for moment in range(NOW + 1, NOW + 3600 + 101):  # the others' limit: NOW + 3600
        events = state.tick(moment)
        if moment <= NOW + 3600:
            assert events == ()
        elif moment == NOW + 3601:
            assert len(events) == len(nodes) - 1  # all but the one heard at `later`
    # One pass over everyone at the limit, nothing else: not 3,700 passes.
    assert judged == len(nodes)
    [expired] = state.tick(later + 3601)
    assert expired.member.node_key == nodes[0].key.public


def test_a_member_heard_from_after_its_silence_limit_is_back_at_the_next_tick() -> None:
    """With every member silent past its limit no moment is due, yet a member we hear from
    again (a WireGuard handshake, a connection: ``heard``) is admitted at the next tick."""
    net = Net()
    nodes = [_member(net, f"m{i}", NOW + 30 * DAY) for i in range(3)]
    state = net.state(announce_ttl=TTL)
    for node in nodes:
        state.ingest(node.credential, NOW)
    assert len(state.tick(NOW + TTL + 1)) == len(nodes)  # all silent
    assert state.tick(NOW + TTL + 2) == ()
    back = NOW + 5 * TTL
    state.heard(nodes[1].key.public, back, back)
    [event] = state.tick(back + 1)
    assert (type(event).__name__, event.member.node_key) == ("Admitted", nodes[1].key.public)
    [event] = state.tick(back + TTL + 1)  # and silent again on time
    assert (type(event).__name__, event.member.reason) == ("Expired", "silent")


def test_a_clock_set_back_judges_every_member_again() -> None:
    """The wall clock stepped back (a correction): members expired by silence at the later
    time may be within their limit at the earlier one, and a tick says so at once, as
    judging everyone does."""
    net = Net()
    nodes = [_member(net, f"m{i}", NOW + 30 * DAY) for i in range(3)]
    every, due = net.state(announce_ttl=TTL), net.state(announce_ttl=TTL)
    for state in (every, due):
        for node in nodes:
            state.ingest(node.credential, NOW)
    for moment in (NOW + 10, NOW + 2 * TTL, NOW + 20):  # the last: set back
        assert _seen(due.tick(moment)) == _seen(every.tick(moment, every=True))
    assert [m.state for m in due.members(NOW + 20)] == [m.state for m in every.members(NOW + 20)]
    assert len(every.tick(NOW + 21, every=True)) == 0


def test_a_new_silence_limit_is_judged_at_the_next_tick_both_ways() -> None:
    """``set_announce_ttl`` (a SIGHUP): shortened, the members silent for longer than the new
    limit expire at the next tick, though no moment was due under the old one; lengthened,
    the members it covers again are admitted at the next tick."""
    net = Net()
    nodes = [_member(net, f"m{i}", NOW + 30 * DAY) for i in range(3)]
    state = net.state(announce_ttl=3600)
    for node in nodes:
        state.ingest(node.credential, NOW)
    state.tick(NOW)
    later = NOW + 1000
    state.merge_batch([nodes[0].announce(net, later)], later)  # heard 600 s before the SIGHUP
    assert state.tick(NOW + 1600) == ()  # nobody due under 3,600 s
    state.set_announce_ttl(1200)
    expired = state.tick(NOW + 1601)
    assert sorted(e.member.node_key for e in expired) == sorted(n.key.public for n in nodes[1:])
    assert {type(e).__name__ for e in expired} == {"Expired"}
    state.set_announce_ttl(1200)  # the same: nothing to judge again
    assert state.tick(NOW + 1602) == ()
    state.set_announce_ttl(7200)
    back = state.tick(NOW + 1603)
    assert sorted(e.member.node_key for e in back) == sorted(n.key.public for n in nodes[1:])
    assert {type(e).__name__ for e in back} == {"Admitted"}


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(-300, 8000), min_size=MEMBERS, max_size=MEMBERS),
    st.lists(st.one_of(st.none(), st.integers(0, 1500)), min_size=MEMBERS, max_size=MEMBERS),
    st.lists(st.booleans(), min_size=MEMBERS, max_size=MEMBERS),
    st.lists(st.integers(0, 1500), min_size=1, max_size=8),
)
def test_a_first_load_counts_as_a_tick_and_the_ticks_after_it_emit_what_judging_all_would(
    ends: list[int], announced: list[int | None], revoked: list[bool], waits: list[int]
) -> None:
    # A start loads its store (judging every member at its moment) and ticks at once: that
    # tick, and every one after, judges only what is due, with the events and states of
    # judging every member each time (meshd.membership.loading).
    net = Net()
    nodes = [_member(net, f"m{i}", NOW + end) for i, end in enumerate(ends)]
    loaded_at = NOW + 1000
    records: list[Any] = [node.credential for node in nodes]
    records += [
        node.announce(net, loaded_at - ago)
        for node, ago in zip(nodes, announced, strict=True)
        if ago is not None
    ]
    records += [
        net.revoke(node.key.public, at=NOW + 5)
        for node, gone in zip(nodes, revoked, strict=True)
        if gone
    ]
    every: Membership = net.state(announce_ttl=TTL)
    due: Membership = net.state(announce_ttl=TTL)
    for state in (every, due):
        state.load(records, loaded_at)
    assert due.judged_window()[0] == loaded_at
    keys = due.admitted_wg_keys(loaded_at)
    assert keys is not None
    views = every.members(loaded_at)
    assert sorted(keys) == sorted(m.wg_key for m in views if m.state is MemberState.ADMITTED)
    now = loaded_at
    for wait in [0, *waits]:
        now += wait
        assert _seen(due.tick(now)) == _seen(every.tick(now, every=True)), now
        assert [m.state for m in due.members(now)] == [m.state for m in every.members(now)]
