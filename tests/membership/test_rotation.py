"""WireGuard key rotation (wire-format §6.8): the rules, and hostile rotations as named cases.

Each hostile case is the attack, and what must hold in whatever order the records arrive.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from meshd.encoding import pack
from meshd.errors import DecodeError, VerifyError
from meshd.membership import Membership, MemberState, Updated
from meshd.mesh.desired import desired_peers
from meshd.records import (
    CONTEXTS,
    Kind,
    Record,
    WgRotation,
    make_wg_rotation,
    record_id,
    signed_body,
)
from meshd.trust.keyfiles import read_secret, replace_secret
from meshd.trust.keys import NodeKey, SigningKey, WgKey, WireGuardKey
from tests.factory import T0, Net, Node
from tests.trust.test_hostile import World, body_items, sign_items

NOW = T0 + 100


def rotation(
    w: World | Net, node: Node, counter: int, *, at: int = NOW - 10, key: bytes | None = None
) -> WgRotation:
    net = w.net if isinstance(w, World) else w
    return make_wg_rotation(
        node.key,
        network_id=net.anchor.network_id,
        counter=counter,
        issued_at=at,
        wg_key=key or WireGuardKey.generate().public,
    )


def wg_key_of(state: Membership, node: Node) -> bytes:
    member = state.member(node.key.public, NOW)
    assert member is not None
    return member.wg_key


def merge_quietly(state: Membership, records: Sequence[Record]) -> list[str]:
    refused = []
    for record in records:
        try:
            state.ingest(record, NOW)
        except VerifyError as exc:
            refused.append(exc.reason)
    return refused


# --- the rules --------------------------------------------------------------------------


def test_a_rotation_replaces_the_key_everywhere_and_emits_updated() -> None:
    w = World()
    new = WireGuardKey.generate().public
    outcome = w.ingest(rotation(w, w.founder, 1, key=new))
    assert outcome.new
    assert [type(e) for e in outcome.events] == [Updated]
    assert wg_key_of(w.state, w.founder) == new
    member = w.state.member(w.founder.key.public, NOW)
    assert member is not None
    assert member.wg_counter == 1


def test_the_newest_rotation_is_the_only_one_in_the_set() -> None:
    w = World()
    first, second = rotation(w, w.founder, 1), rotation(w, w.founder, 2)
    w.ingest(first)
    w.ingest(second)
    assert record_id(first.raw) not in w.state.record_ids()
    assert record_id(second.raw) in w.state.record_ids()
    assert w.state.wg_rotation(w.founder.key.public) == second


def test_equal_counters_are_decided_by_record_id() -> None:
    w = World()
    a, b = rotation(w, w.founder, 4), rotation(w, w.founder, 4)
    winner = max((a, b), key=lambda r: record_id(r.raw))
    for order in ((a, b), (b, a)):
        state = w.elsewhere()
        merge_quietly(state, order)
        assert wg_key_of(state, w.founder) == winner.wg_key


def test_a_rotation_of_an_unknown_member_waits_for_its_credential() -> None:
    w = World()
    invite = w.net.invite()
    joiner = w.net.join(w.state, w.founder, invite, "joiner")
    rot = rotation(w, joiner, 1)
    state = w.elsewhere()
    outcome = state.ingest(rot, NOW)
    assert outcome.pending
    assert not outcome.new
    state.ingest(joiner.credential, NOW)
    assert wg_key_of(state, joiner) == rot.wg_key


def test_the_peers_follow_the_rotation() -> None:
    """Every peer's WireGuard configuration drops the old key and takes the new one."""
    w = World()
    other = w.join(w.net.invite())
    old = other.wg.public
    before = desired_peers(
        w.state.members(NOW),
        own_node_key=NodeKey(w.founder.key.public),
        own_wg_key=WgKey(w.founder.wg.public),
    )
    assert set(before.peers) == {old}
    rot = rotation(w, other, 1)
    w.ingest(rot)
    after = desired_peers(
        w.state.members(NOW),
        own_node_key=NodeKey(w.founder.key.public),
        own_wg_key=WgKey(w.founder.wg.public),
    )
    assert set(after.peers) == {rot.wg_key}


def test_a_key_file_is_replaced_atomically_and_stays_private(tmp_path: Path) -> None:
    path = tmp_path / "wg.key"
    first, second = WireGuardKey.generate(), WireGuardKey.generate()
    replace_secret(path, first.secret)
    replace_secret(path, second.secret)
    assert read_secret(path) == second.secret
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["wg.key"]


# --- hostile rotations ------------------------------------------------------------------


def test_hostile_rotation_signed_by_the_wrong_key() -> None:
    """A member signs a rotation naming another member's node key: bad-signature."""
    w = World()
    victim = w.join(w.net.invite())
    forged = rotation(w, victim, 1)
    items = body_items(forged)
    raw = sign_items(w.founder.key, items)
    with pytest.raises(VerifyError) as caught:
        w.ingest(raw)
    assert caught.value.reason == "bad-signature"
    assert wg_key_of(w.state, victim) == victim.wg.public


def test_hostile_rotation_signed_under_another_kinds_context() -> None:
    w = World()
    rot = rotation(w, w.founder, 1)
    body = signed_body(rot)
    raw = pack([body, w.founder.key.sign(CONTEXTS[Kind.ANNOUNCEMENT], body)])
    with pytest.raises(VerifyError) as caught:
        w.ingest(raw)
    assert caught.value.reason == "bad-signature"


def test_hostile_rotation_to_a_key_another_member_uses() -> None:
    """The founder (admitted first) rotates to a later member's WireGuard key, to take its
    place in every peer list. The key stays with the member that enrolled with it; the
    rotating member is left out (shadowed), whatever order the records came in."""
    w = World()
    victim = w.join(w.net.invite())
    observer = w.join(w.net.invite())
    theft = rotation(w, w.founder, 1, key=victim.wg.public)
    for order in ((theft, victim.credential), (victim.credential, theft)):
        state = w.elsewhere(observer)
        merge_quietly(state, order)
        desired = desired_peers(
            state.members(NOW),
            own_node_key=NodeKey(observer.key.public),
            own_wg_key=WgKey(observer.wg.public),
        )
        assert desired.members[WgKey(victim.wg.public)] == victim.key.public
        assert [s.member.node_key for s in desired.shadowed] == [w.founder.key.public]


def test_hostile_rotation_to_a_key_another_member_rotated_to_earlier() -> None:
    """Both rotated: the earlier rotation keeps the key."""
    w = World()
    honest = w.join(w.net.invite())
    observer = w.join(w.net.invite())
    key = WireGuardKey.generate().public
    first = rotation(w, honest, 1, at=NOW - 50, key=key)
    copy = rotation(w, w.founder, 1, at=NOW - 10, key=key)
    for order in ((copy, first), (first, copy)):
        state = w.elsewhere(honest, observer)
        merge_quietly(state, order)
        desired = desired_peers(
            state.members(NOW),
            own_node_key=NodeKey(observer.key.public),
            own_wg_key=WgKey(observer.wg.public),
        )
        assert desired.members[WgKey(key)] == honest.key.public


def test_hostile_replayed_old_rotation() -> None:
    """An old rotation replayed after a newer one: stale-rotation, the old key never comes
    back; and the set and digest are the same in every order."""
    w = World()
    old, new = rotation(w, w.founder, 1), rotation(w, w.founder, 2)
    w.ingest(old)
    w.ingest(new)
    with pytest.raises(VerifyError) as caught:
        w.ingest(old.raw)
    assert caught.value.reason == "stale-rotation"
    assert wg_key_of(w.state, w.founder) == new.wg_key
    digests = set()
    for order in itertools.permutations((old, new, old)):
        state = w.net.state()
        merge_quietly(state, [w.founder.credential, *order])
        assert wg_key_of(state, w.founder) == new.wg_key
        digests.add(state.digest())
    assert len(digests) == 1


def test_hostile_rotation_racing_a_revocation() -> None:
    """A member rotates while it is revoked: the revocation wins in either order; the
    rotation is not in the set, the member is no peer, the digest is the same."""
    w = World()
    member = w.join(w.net.invite())
    rot = rotation(w, member, 1)
    revocation = w.net.revoke(member.key.public, at=NOW - 5)
    results = []
    for order in ((rot, revocation), (revocation, rot)):
        state = w.elsewhere(member)
        refused = merge_quietly(state, order)
        view = state.member(member.key.public, NOW)
        assert view is not None
        assert view.state is MemberState.REVOKED
        assert record_id(rot.raw) not in state.record_ids()
        results.append((state.digest(), refused))
    assert results[0][0] == results[1][0]
    assert results[1][1] == ["revoked"]


def test_hostile_rotation_from_another_network() -> None:
    w = World()
    other = Net()
    raw = make_wg_rotation(
        w.founder.key,
        network_id=other.anchor.network_id,
        counter=1,
        issued_at=NOW,
        wg_key=os.urandom(32),
    ).raw
    with pytest.raises(VerifyError) as caught:
        w.ingest(raw)
    assert caught.value.reason == "wrong-network"


def test_hostile_rotation_with_counter_zero() -> None:
    """Counter 0 is the enrolled key: a rotation cannot claim it."""
    w = World()
    items = body_items(rotation(w, w.founder, 1))
    items[4] = 0
    with pytest.raises(DecodeError):
        w.ingest(sign_items(w.founder.key, items))


def test_hostile_rotation_dated_beyond_the_clock_skew() -> None:
    w = World()
    with pytest.raises(VerifyError) as caught:
        w.ingest(rotation(w, w.founder, 1, at=NOW + 301))
    assert caught.value.reason == "not-yet-valid"


def test_hostile_rotation_by_a_stranger_never_enters_the_set() -> None:
    """A key that is no member signs rotations: they wait in the bounded pending pool and
    never reach the set nor anyone's peers."""
    w = World()
    stranger = Node(SigningKey.generate(), WireGuardKey.generate(), "x", w.founder.credential)
    before = w.state.digest()
    outcome = w.ingest(rotation(w, stranger, 1))
    assert outcome.pending
    assert w.state.digest() == before
    assert w.state.member(stranger.key.public, NOW) is None


def test_hostile_rotation_with_a_key_of_31_bytes() -> None:
    w = World()
    items = body_items(rotation(w, w.founder, 1))
    items[6] = bytes(31)
    with pytest.raises(DecodeError):
        w.ingest(sign_items(w.founder.key, items))
