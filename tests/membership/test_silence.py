"""When a member was last heard from: its own dates, bounded by when they reached us.

A node that restarts or joins takes a dead member's last announcement from its store or from
anti-entropy; the member's silence counts from that announcement's date, not from its arrival
(docs/threat-model.md §3.23), so the member expires there when it expires everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from meshd.errors import VerifyError
from meshd.membership import Event, Expired, Member, Membership, MemberState
from meshd.membership.silence import Heard, Silence, heard_at
from meshd.records import Record
from tests.factory import T0, Net, Node

TTL = 6 * 3600
SKEW = 300
HOUR = 3600


def _state(net: Net) -> Membership:
    return net.state(announce_ttl=TTL, clock_skew=SKEW)


def _member(state: Membership, node: bytes, now: int) -> Member:
    member = state.member(node, now)
    assert member is not None
    return member


def _of(events: Sequence[Event], node: bytes) -> list[Event]:
    return [e for e in events if e.member.node_key == node]


def _joined(name: str) -> tuple[Net, Membership, Node]:
    """A state holding a founder and member ``name``, joined at T0 + 10."""
    net = Net()
    founder = net.founder()
    state = _state(net)
    state.ingest(founder.credential, T0)
    node = net.join(state, founder, net.invite(), name, at=T0 + 10)
    state.ingest(node.credential, T0 + 10)
    return net, state, node


def _died() -> tuple[Net, list[Record], bytes, int]:
    """A network whose member "gone" last announced at its returned time, then went away."""
    net = Net()
    founder = net.founder()
    live = _state(net)
    live.ingest(founder.credential, T0)
    gone = net.join(live, founder, net.invite(), "gone", at=T0 + 10)
    last = T0 + HOUR
    return (
        net,
        [founder.credential, gone.credential, gone.announce(net, last)],
        gone.key.public,
        last,
    )


def test_a_node_that_restarts_expires_a_dead_member_a_ttl_after_its_last_announcement() -> None:
    net, records, gone, last = _died()
    # The node restarts five hours later: its store holds the dead member's announcement.
    restart = last + 5 * HOUR
    state = _state(net)
    state.load(records, restart)
    assert _member(state, gone, restart).state is MemberState.ADMITTED
    assert _member(state, gone, restart).last_seen == last + SKEW
    deadline = last + SKEW + TTL
    assert not _of(state.tick(deadline), gone)
    [event] = _of(state.tick(deadline + 1), gone)  # not a TTL after the restart, 5 h later
    assert isinstance(event, Expired)


def test_a_joiner_that_syncs_a_dead_members_records_counts_from_their_dates() -> None:
    net, records, gone, last = _died()
    joined = last + 5 * HOUR + 1800
    state = _state(net)
    for record in records:  # one at a time, as anti-entropy hands them over
        state.ingest(record, joined)
    assert _member(state, gone, joined).state is MemberState.ADMITTED
    assert _member(state, gone, last + SKEW + TTL + 1).state is MemberState.EXPIRED


def test_a_member_whose_clock_is_behind_loses_nothing_within_the_skew() -> None:
    net, state, node = _joined("slow")
    arrival = T0 + 2 * HOUR
    state.ingest(node.announce(net, arrival - SKEW), arrival)  # its clock 300 s behind ours
    assert _member(state, node.key.public, arrival).last_seen == arrival
    state.ingest(node.announce(net, arrival + 60 + SKEW), arrival + 60)  # ahead: not later
    assert _member(state, node.key.public, arrival + 60).last_seen == arrival + 60


def test_a_replayed_old_announcement_does_not_move_the_silence() -> None:
    net, state, node = _joined("m")
    old = node.announce(net, T0 + 20)
    state.ingest(node.announce(net, T0 + 5 * HOUR), T0 + 5 * HOUR)
    # The older one arrives later (a slow path): refused as stale; when heard stays.
    with pytest.raises(VerifyError, match="newer announcement"):
        state.ingest(old, T0 + 5 * HOUR + 10)
    assert _member(state, node.key.public, T0 + 5 * HOUR + 10).last_seen == T0 + 5 * HOUR


def test_what_this_node_sees_itself_counts_on_its_own_clock() -> None:
    net, records, gone, last = _died()
    now = last + 5 * HOUR
    state = _state(net)
    state.load(records, now)
    state.heard(gone, now - 10, now)  # a WireGuard handshake ten seconds ago
    assert _member(state, gone, now).last_seen == now - 10
    assert _member(state, gone, now - 10 + TTL).state is MemberState.ADMITTED


def test_heard_at_is_the_date_with_the_skew_never_after_arrival() -> None:
    assert heard_at(1000, 5000, 300) == 1300
    assert heard_at(4900, 5000, 300) == 5000
    assert heard_at(6000, 5000, 300) == 5000
    silence = Silence({}, Heard)  # the last-heard times, in entries of their own
    silence.announced(b"n", 1000, 5000, 300)
    silence.credential(b"n", 900, 5000, 300)  # an earlier date never moves it back
    assert silence.last(b"n") == 1300
