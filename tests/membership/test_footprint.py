"""What the membership core keeps per member: the judgements hold, and so does the saving
(one table of slotted entries, shared objects rather than equal copies)."""

from __future__ import annotations

import sys

from meshd.membership import Membership, MemberState
from meshd.membership.tables import MemberEntry
from tests.factory import T0, Net, Node

NOW = T0 + 100


def _admitted(members: int = 3) -> tuple[Net, list[Node], Membership]:
    net = Net()
    nodes = [net.founder(f"m{i}") for i in range(members)]
    state = net.state(announce_ttl=3600)
    state.ingest_batch([n.credential.raw for n in nodes], NOW)
    state.ingest_batch(
        [n.announce(net, NOW, endpoints=[f"192.0.2.{i}:51820"]).raw for i, n in enumerate(nodes)],
        NOW,
    )
    return net, nodes, state


def test_a_member_is_one_slotted_entry_in_one_table() -> None:
    _net, nodes, state = _admitted()
    for table in ("_announcements", "_identity", "_status", "_last_seen"):
        assert not hasattr(state, table)
        assert not hasattr(state._silence, table)
    assert len(state._members) == len(nodes)
    for node in nodes:
        key = node.key.public
        entry = state._members[key]
        assert type(entry) is MemberEntry
        assert not hasattr(entry, "__dict__")
        view = state.member(key, NOW)
        assert view is not None
        assert view.state is MemberState.ADMITTED
        assert entry.state is MemberState.ADMITTED
        assert entry.announcement is view.announcement
        assert view.announcement is not None
        assert entry.last_seen == view.last_seen == NOW
        # The /128 is derived once: grants() hands out the entry's tuple, and the view's
        # overlay address is the one that /128 holds, not an equal copy.
        grants = state.grants(key)
        assert grants is state.grants(key) is entry.own
        assert view.overlay is grants[0].network_address
        assert view.node_id is entry.node_id
    assert sys.getsizeof(state._members[nodes[0].key.public]) <= 72  # GC header included


def test_entries_keep_silence_and_a_revoked_member_loses_its_announcement() -> None:
    net, nodes, state = _admitted()
    gone = nodes[0].key.public
    # Silent past the TTL: expired; heard from again (a handshake): admitted.
    later = NOW + 3601 + 300
    member = state.member(gone, later)
    assert member is not None
    assert member.state is MemberState.EXPIRED
    state.heard(gone, later, later)
    member = state.member(gone, later)
    assert member is not None
    assert member.state is MemberState.ADMITTED
    assert state._members[gone].last_seen == later
    state.ingest(net.revoke(gone), NOW)
    assert state._members[gone].announcement is None
    assert state._members[gone].state is MemberState.REVOKED
    member = state.member(gone, NOW)
    assert member is not None
    assert member.state is MemberState.REVOKED
    assert member.announcement is None
