"""Records refused as dated ahead of this node's clock are said in the log, at most every
10 minutes (meshd/daemon/clock_notice.py, the gossip validator and the sync's merge)."""

from __future__ import annotations

import logging

import pytest

from meshd.daemon.clock_notice import INTERVAL, AheadOfMembers, ClockNotices
from meshd.daemon.state import NodeState
from meshd.node.statedir import NodeDir, now
from meshd.records import make_announcement
from tests.daemon.fakes import certify


def test_one_notice_then_the_refusals_counted_until_the_next() -> None:
    notices = ClockNotices()
    first = notices.refused("m1 (12D3)", "the announcement is dated 600 s ahead", 100.0)
    assert first is not None
    assert first.startswith("refused a record from m1 (12D3): the announcement is dated 600 s")
    assert "check both clocks" in first
    assert notices.refused("m2", "x", 101.0) is None
    assert notices.refused("a sync with m3", "y", 100.0 + INTERVAL - 1, count=3) is None
    later = notices.refused("m2", "the announcement is dated 900 s ahead", 100.0 + INTERVAL)
    assert later is not None
    assert later.startswith("refused a record from m2: the announcement is dated 900 s")
    assert later.endswith("; 4 more refused so since the last notice")
    again = notices.refused("a sync with m3", "dated ahead", 100.0 + 2 * INTERVAL, count=2)
    assert again is not None
    assert again.startswith("refused 2 records from a sync with m3: dated ahead")
    assert "more refused" not in again


def test_a_members_announcement_dated_ahead_is_refused_and_said_once_naming_it(
    node: NodeDir, caplog: pytest.LogCaptureFixture
) -> None:
    base = now()
    member = certify(node, base, "fast")
    state = NodeState(node, announce_ttl=600)
    state.peer_key = lambda peer: member.key.public if peer == "fastpeer" else None
    assert state.validate(member.cert.raw, "root", "root")
    nid = node.anchor.network_id
    caplog.set_level(logging.WARNING, logger="meshd.daemon.state")
    for seq, ahead in ((1, 900), (2, 1200)):  # its clock 15 min ahead, then 20
        announcement = make_announcement(
            member.key, network_id=nid, seq=seq, issued_at=now() + ahead, endpoints=()
        )
        assert not state.validate(announcement.raw, "fastpeer", "fastpeer")
    assert state.reject_reasons["not-yet-valid"] == 2
    said = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(said) == 1, said  # the second within 10 minutes: counted, not said
    assert said[0].startswith("refused a record from fast (fastpeer): the announcement is dated")
    assert "more than the 300 s allowed" in said[0]
    ahead_said = int(said[0].split("is dated ")[1].split(" s ahead")[0])
    assert 895 <= ahead_said <= 900  # how far: what the operator needs to know
    # An announcement dated within the allowed skew is taken, and says nothing.
    caplog.clear()
    fine = make_announcement(member.key, network_id=nid, seq=3, issued_at=now() + 200)
    assert state.validate(fine.raw, "fastpeer", "fastpeer")
    assert not caplog.records


def test_records_of_a_sync_dated_ahead_are_said_with_their_count(
    node: NodeDir, caplog: pytest.LogCaptureFixture
) -> None:
    base = now()
    members = [certify(node, base, f"m{i}") for i in range(3)]
    state = NodeState(node, announce_ttl=600)
    nid = node.anchor.network_id
    records = [m.cert for m in members] + [
        make_announcement(m.key, network_id=nid, seq=1, issued_at=now() + 3600, endpoints=())
        for m in members
    ]
    caplog.set_level(logging.WARNING, logger="meshd.daemon.state")
    state.merge_batch(records, source="somepeer")
    said = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith("refused 3 records from a sync with somepeer: dated more than 300 s")


def test_lags_of_members_that_agree_beyond_the_skew_say_this_clock_is_ahead() -> None:
    ahead = AheadOfMembers(skew=300)
    keys = [bytes([i]) * 32 for i in range(8)]
    assert ahead.heard(keys[0], 901.0, 10.0) is None
    assert ahead.heard(keys[1], 899.5, 11.0) is None  # two members: not yet
    line = ahead.heard(keys[2], 903.0, 12.0)
    assert line is not None
    assert line.startswith("announcements of 3 members arrived dated about 901 s behind")
    assert "more than the 300 s members allow" in line
    assert "this node's clock is probably ahead" in line
    assert ahead.heard(keys[3], 900.0, 13.0) is None  # said: not again within 10 minutes
    assert ahead.heard(keys[3], 900.0, 13.0 + INTERVAL) is not None


def test_lags_that_do_not_agree_or_are_a_minority_say_nothing() -> None:
    # Re-flooded old announcements: each a lag of its own.
    scattered = AheadOfMembers(skew=300)
    for i, lag in enumerate((400.0, 2_000.0, 9_000.0, 40_000.0, 700.0)):
        assert scattered.heard(bytes([i]) * 32, lag, float(i)) is None
    # Three members whose clocks run 15 minutes behind, among five whose clocks are right:
    # it is theirs that is wrong, not ours.
    minority = AheadOfMembers(skew=300)
    lags = (1.0, 0.5, 900.0, 2.0, 901.0, 0.2, 902.0, 1.5)
    for i, lag in enumerate(lags):
        assert minority.heard(bytes([i]) * 32, lag, float(i)) is None
    # Within the skew: nothing, however many agree.
    within = AheadOfMembers(skew=300)
    for i in range(6):
        assert within.heard(bytes([i]) * 32, 250.0, float(i)) is None


def test_a_member_heard_again_counts_once_and_only_the_latest_members_are_kept() -> None:
    ahead = AheadOfMembers(skew=300)
    one = bytes([1]) * 32
    for t in range(5):
        assert ahead.heard(one, 900.0, float(t)) is None  # one member, five times
    # Sixteen members with right clocks, heard after two that lag: those two are forgotten.
    drift = AheadOfMembers(skew=300)
    drift.heard(bytes([100]) * 32, 900.0, 0.0)
    drift.heard(bytes([101]) * 32, 900.0, 0.0)
    for i in range(16):
        assert drift.heard(bytes([i]) * 32, 1.0, 1.0) is None
    assert drift.heard(bytes([102]) * 32, 900.0, 2.0) is None


def _ahead_lines(node: NodeDir, caplog: pytest.LogCaptureFixture, ahead: int) -> list[str]:
    """Four members' fresh announcements gossiped to a node whose clock runs ``ahead`` of
    theirs: what it logs of its own clock."""
    base = now()
    members = [certify(node, base, f"m{i}") for i in range(4)]
    state = NodeState(node, announce_ttl=600, clock=lambda: now() + ahead)
    for member in members:
        assert state.validate(member.cert.raw, "root", "root")
    nid = node.anchor.network_id
    caplog.set_level(logging.WARNING, logger="meshd.daemon.state")
    for i, member in enumerate(members):
        fresh = make_announcement(member.key, network_id=nid, seq=1, issued_at=now(), endpoints=())
        assert state.validate(fresh.raw, f"peer{i}", f"peer{i}")
    return [r.getMessage() for r in caplog.records if "probably ahead" in r.getMessage()]


def test_a_node_whose_clock_runs_ahead_says_so_from_the_members_fresh_announcements(
    node: NodeDir, caplog: pytest.LogCaptureFixture
) -> None:
    said = _ahead_lines(node, caplog, 900)  # this node's clock 15 minutes ahead
    assert len(said) == 1, said
    assert "announcements of 3 members arrived dated about" in said[0]
    lag = int(said[0].split("dated about ")[1].split(" s behind")[0])
    assert 895 <= lag <= 905


def test_a_node_whose_clock_is_right_says_nothing_of_fresh_announcements(
    node: NodeDir, caplog: pytest.LogCaptureFixture
) -> None:
    assert not _ahead_lines(node, caplog, 0)
