"""Records refused as dated ahead of this node's clock are said in the log, at most every
10 minutes (meshd/daemon/clock_notice.py, the gossip validator and the sync's merge)."""

from __future__ import annotations

import logging

import pytest

from meshd.daemon.clock_notice import INTERVAL, ClockNotices
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
