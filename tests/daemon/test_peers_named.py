"""``meshd peers MEMBER`` in the daemon: the member found among the latest snapshot's views,
then viewed now; one admitted since the snapshot still found (meshd.daemon.control._named)."""

from __future__ import annotations

import pytest

from meshd.daemon.control import _named
from meshd.daemon.state import NodeState
from meshd.errors import UsageError
from meshd.membership import MemberState
from meshd.node.statedir import NodeDir, now
from tests.daemon.fakes import certify, revoke


def test_a_member_is_found_in_the_snapshot_and_shown_as_it_is_now(node: NodeDir) -> None:
    at = now()
    state = NodeState(node, announce_ttl=None)
    first = certify(node, at, "first")
    state.add_local(first.cert)
    state.feed.publish()  # the snapshot holds "first", admitted
    # Revoked since, and no snapshot published yet: shown as it is now, not as the snapshot had it.
    state.add_local(revoke(node, first.key.public, at))
    assert [m.state for m in state.feed.current.members if m.name == "first"] == [
        MemberState.ADMITTED
    ]
    [shown] = _named(state, "first")
    assert (shown.name, shown.state) == ("first", MemberState.REVOKED)
    # Admitted after the last snapshot: found among the members now.
    second = certify(node, at, "second")
    state.add_local(second.cert)
    assert not [m for m in state.feed.current.members if m.name == "second"]
    [shown] = _named(state, "second")
    assert (shown.node_key, shown.state) == (second.key.public, MemberState.ADMITTED)
    with pytest.raises(UsageError, match="no member matches 'nobody'"):
        _named(state, "nobody")
