"""This node's own standing, watched in one place (meshd/daemon/standing.py): how it ended
(revoked, with the revocation's reason; left), published once, at the change that ends it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from meshd.daemon.lifecycle import REVOKED_NOTE, stop_when_revoked
from meshd.daemon.standing import (
    FORKED,
    LEFT_THE_SET,
    Ended,
    Ending,
    OwnStanding,
    own_ending,
)
from meshd.daemon.state import NodeState
from meshd.errors import NodeRevoked
from meshd.node.statedir import NodeDir, now
from meshd.records import make_handover, make_leave
from meshd.trust.keys import SigningKey
from tests.daemon.fakes import certify, revoke, run_on_fake_clock


def test_own_ending_revoked_left_or_none(node: NodeDir) -> None:
    at = now()
    state = NodeState(node, announce_ttl=None)
    assert own_ending(state.membership, state.key, at) is None
    other = certify(node, at)
    state.add_local(other.cert)
    state.add_local(revoke(node, other.key.public, at))
    assert own_ending(state.membership, other.key.public, at) == Ending(Ended.REVOKED, "test")
    assert own_ending(state.membership, state.key, at) is None  # another's revocation
    state.add_local(make_leave(node.node_key, network_id=node.anchor.network_id, issued_at=at))
    assert own_ending(state.membership, state.key, at) == Ending(Ended.LEFT)


def test_own_ending_of_a_membership_whose_key_handed_over_twice_says_so(node: NodeDir) -> None:
    """No revocation names it: the daemon's line says why it stopped."""
    at = now()
    state = NodeState(node, announce_ttl=None)
    member = certify(node, at)
    state.add_local(member.cert)
    ours, theirs = SigningKey.generate(), SigningKey.generate()
    for new, dated in ((ours, at), (theirs, at - 1)):
        state.add_local(
            make_handover(
                member.key,
                new,
                network_id=node.anchor.network_id,
                issued_at=dated,
                wg_key=member.wg,
                credential=member.cert,
            )
        )
    assert own_ending(state.membership, ours.public, at) == Ending(Ended.REVOKED, FORKED)
    assert own_ending(state.membership, state.key, at) is None


def test_a_node_whose_credential_leaves_the_set_has_ended() -> None:
    """The hand-over that gave this node its key is replaced by two earlier ones of the key
    before: its credential leaves the set. It held one and holds none now: it has ended, as
    forked (before, it went on as if it stood: no view of it, so no ending)."""
    from types import SimpleNamespace

    from tests.membership.test_handover import NOW, handover
    from tests.trust.test_hostile import World

    w = World()
    member = w.join(w.net.invite())
    ours = SigningKey.generate()
    w.ingest(handover(w, member, ours, at=NOW - 10))
    state = SimpleNamespace(membership=w.state, key=ours.public, clock=lambda: NOW)
    watcher = OwnStanding(state)  # type: ignore[arg-type]
    assert watcher.check() is None
    w.ingest(handover(w, member, SigningKey.generate(), at=NOW - 20))
    assert watcher.check() == Ending(Ended.REVOKED, FORKED)  # forked, still in the set
    w2 = World()
    member = w2.join(w2.net.invite())
    w2.ingest(handover(w2, member, ours, at=NOW - 10))
    state = SimpleNamespace(membership=w2.state, key=ours.public, clock=lambda: NOW)
    watcher = OwnStanding(state)  # type: ignore[arg-type]
    assert watcher.check() is None
    for at in (NOW - 20, NOW - 30):
        w2.ingest(handover(w2, member, SigningKey.generate(), at=at))
    assert w2.state.member(ours.public, NOW) is None
    assert watcher.check() == Ending(Ended.REVOKED, LEFT_THE_SET)


def test_the_ending_is_published_at_the_change_not_at_the_next_look(node: NodeDir) -> None:
    base = now()
    seen: list[tuple[Ending, float]] = []

    async def main() -> None:
        state = NodeState(node, announce_ttl=None, clock=lambda: base + int(trio.current_time()))
        state.standing.poll = 3600.0  # only the membership's change can wake it
        async with trio.open_nursery() as nursery:
            await nursery.start(state.feed.run)
            await nursery.start(state.standing.run)

            async def subscriber() -> None:
                seen.append((await state.standing.wait(), trio.current_time()))

            nursery.start_soon(subscriber)
            nursery.start_soon(subscriber)
            await trio.sleep(100)
            assert seen == []
            state.add_local(revoke(node, state.key, base + 100))
            await trio.testing.wait_all_tasks_blocked()
            assert seen == [(Ending(Ended.REVOKED, "test"), 100.0)] * 2
            nursery.cancel_scope.cancel()
        assert state.standing.check() == Ending(Ended.REVOKED, "test")  # for good

    run_on_fake_clock(main)


def test_stop_when_revoked_leaves_the_reason_and_raises(node: NodeDir) -> None:
    state = NodeState(node, announce_ttl=None)
    state.add_local(revoke(node, state.key, now()))

    async def main() -> None:
        await stop_when_revoked(state.standing, node.paths.root)

    with pytest.raises(NodeRevoked):
        trio.run(main)
    assert (node.paths.root / REVOKED_NOTE).read_text() == "test\n"
