"""Node key hand-over (wire-format §6.12): the rules, and hostile hand-overs as named tests."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from meshd.addressing import host_prefix, overlay_address
from meshd.errors import VerifyError
from meshd.membership import Membership, MemberState
from meshd.records import (
    Admission,
    Certificate,
    Handover,
    Record,
    make_admission,
    make_handover,
    make_leave,
    record_id,
)
from meshd.trust.keys import SigningKey
from tests.factory import T0, Node
from tests.trust.test_hostile import World, body_items, sign_items

NOW = T0 + 100


def handover(
    w: World,
    node: Node,
    new: SigningKey,
    *,
    at: int = NOW - 10,
    credential: Certificate | Admission | Handover | None = None,
    sponsored: Sequence[bytes] = (),
) -> Handover:
    return make_handover(
        node.key,
        new,
        network_id=w.nid,
        issued_at=at,
        wg_key=node.wg.public,
        credential=credential or node.credential,
        sponsored=sponsored,
    )


def passed_on(
    w: World,
    old: SigningKey,
    new: SigningKey,
    *,
    at: int,
    wg_key: bytes,
    credential: Certificate | Admission | Handover,
    legacy: bool = False,
) -> Handover:
    """A hand-over from a key of no Node of the test (one handed a membership, or minted)."""
    return make_handover(
        old,
        new,
        network_id=w.nid,
        issued_at=at,
        wg_key=wg_key,
        credential=credential,
        legacy=legacy,
    )


def forks(w: World, node: Node, *dates: int) -> list[Record]:
    """Hand-overs of ``node``'s key to fresh keys, one at each of ``dates``."""
    return [handover(w, node, SigningKey.generate(), at=at) for at in dates]


def merge(state: Membership, records: Sequence[Record]) -> list[str]:
    refused = []
    for record in records:
        try:
            state.ingest(record, NOW)
        except VerifyError as exc:
            refused.append(exc.reason)
    return refused


def view(state: Membership, key: bytes) -> tuple[MemberState, str]:
    member = state.member(key, NOW)
    assert member is not None
    return member.state, member.reason


# --- the rules --------------------------------------------------------------------------


def test_a_hand_over_keeps_name_address_grants_and_validity() -> None:
    w = World()
    member = w.join(w.net.invite())
    before = w.state.member(member.key.public, NOW)
    assert before is not None
    new = SigningKey.generate()
    w.ingest(handover(w, member, new))
    after = w.state.member(new.public, NOW)
    assert after is not None
    assert after.state is MemberState.ADMITTED
    assert (after.name, after.overlay, after.not_after, after.wg_key) == (
        before.name,
        before.overlay,
        before.not_after,
        before.wg_key,
    )
    assert after.overlay == overlay_address(w.net.anchor.root_key, member.key.public)
    assert w.state.grants(new.public)[0] == host_prefix(before.overlay)
    assert view(w.state, member.key.public) == (MemberState.REVOKED, "handed-over")
    # The old key announces no more; the new one does.
    with pytest.raises(VerifyError) as caught:
        w.ingest(member.announce(w.net, NOW))
    assert caught.value.reason == "revoked"
    heir = Node(new, member.wg, member.name, member.credential)
    assert w.ingest(heir.announce(w.net, NOW, prefixes=(host_prefix(before.overlay),))).new


def test_a_chain_of_hand_overs_keeps_the_first_address() -> None:
    w = World()
    member = w.join(w.net.invite())
    first, second = SigningKey.generate(), SigningKey.generate()
    h1 = handover(w, member, first)
    heir = Node(first, member.wg, member.name, member.credential)
    h2 = handover(w, heir, second, at=NOW - 5, credential=h1)
    for order in ((h1, h2), (h2, h1)):
        state = w.elsewhere(member)
        assert merge(state, order) == []
        latest = state.member(second.public, NOW)
        assert latest is not None
        assert latest.state is MemberState.ADMITTED
        assert latest.overlay == overlay_address(w.net.anchor.root_key, member.key.public)
        assert view(state, first.public) == (MemberState.REVOKED, "handed-over")


def test_countersignatures_of_the_old_key_stand_when_listed_and_the_new_key_sponsors() -> None:
    w = World()
    member = w.join(w.net.invite(uses=3))
    invite = w.net.invite(uses=3)
    listed = w.net.join(w.state, member, invite, "listed")
    w.ingest(listed.credential)
    late = make_admission(member.key, enrollment=w.enrollment(invite), admitted_at=NOW - 20)
    new = SigningKey.generate()
    h = handover(w, member, new, sponsored=[listed.enrollment_id])
    fresh = w.enrollment(invite)
    by_heir = make_admission(new, enrollment=fresh, admitted_at=NOW - 5)
    records: list[Record] = [h, late, by_heir]
    for order in itertools.permutations(records):
        state = w.elsewhere(member, listed)
        merge(state, order)
        assert view(state, listed.key.public) == (MemberState.ADMITTED, "")
        assert view(state, late.enrollment.node_key)[0] is MemberState.REVOKED
        assert view(state, fresh.node_key) == (MemberState.ADMITTED, "")


# --- hostile hand-overs -----------------------------------------------------------------


def test_hostile_hand_over_signed_by_the_wrong_key() -> None:
    w = World()
    victim = w.join(w.net.invite())
    h = handover(w, victim, SigningKey.generate())
    raw = sign_items(w.founder.key, body_items(h))
    with pytest.raises(VerifyError) as caught:
        w.ingest(raw)
    assert caught.value.reason == "bad-signature"
    assert view(w.state, victim.key.public) == (MemberState.ADMITTED, "")


def test_hostile_hand_over_to_a_key_another_member_uses_without_its_acceptance() -> None:
    """A member hands its membership to another member's node key, to take over its address
    or name: the new key's acceptance is missing (signed by someone else): bad-signature."""
    w = World()
    member = w.join(w.net.invite())
    victim = w.join(w.net.invite())
    forged = handover(w, member, SigningKey.generate())
    items = body_items(forged)
    items[4] = victim.key.public  # new_key: the victim's; the acceptance is not its
    with pytest.raises(VerifyError) as caught:
        w.ingest(sign_items(member.key, items))
    assert caught.value.reason == "bad-signature"
    assert view(w.state, victim.key.public) == (MemberState.ADMITTED, "")


def test_hostile_hand_over_of_another_members_credential() -> None:
    w = World()
    member = w.join(w.net.invite())
    other = w.join(w.net.invite())
    h = handover(w, member, SigningKey.generate(), credential=other.credential)
    with pytest.raises(VerifyError) as caught:
        w.ingest(h)
    assert caught.value.reason == "bad-chain"


def test_hostile_two_hand_overs_from_one_key() -> None:
    """The member rotated its key (X -> Y); a thief of X hands over to its own key, dated
    before the member's hand-over. The earliest hand-over won: the thief took the
    membership (name, address, grants). A key that hands over twice forfeits its membership:
    neither new key stands, on every node, in every order."""
    w = World()
    member = w.join(w.net.invite())
    honest, thief = SigningKey.generate(), SigningKey.generate()
    h1 = handover(w, member, honest, at=NOW - 10)
    h2 = handover(w, member, thief, at=NOW - 20)
    digests = set()
    for order in ((h1, h2), (h2, h1)):
        state = w.elsewhere(member)
        assert merge(state, order) == []
        assert view(state, honest.public) == (MemberState.REVOKED, "forked")
        assert view(state, thief.public) == (MemberState.REVOKED, "forked")
        assert view(state, member.key.public)[0] is MemberState.REVOKED
        digests.add(state.digest())
    assert len(digests) == 1
    # Each step alone, as a running node sees it: the honest key stands until the thief's
    # hand-over comes, then neither does.
    w.ingest(h1)
    assert view(w.state, honest.public) == (MemberState.ADMITTED, "")
    outcome = w.ingest(h2)
    assert {type(e).__name__ for e in outcome.events} == {"Revoked"}
    assert view(w.state, honest.public) == (MemberState.REVOKED, "forked")


def test_hostile_hand_over_racing_a_revocation() -> None:
    """The member is revoked while it hands over: the revocation wins in every order, even
    when the revoker knew of the hand-over (its list names the new key's credential). A
    revoked key hands over nothing: the hand-over is refused, or leaves the set."""
    w = World()
    member = w.join(w.net.invite())
    new = SigningKey.generate()
    h = handover(w, member, new)
    revocations = [
        w.net.revoke(member.key.public, at=NOW - 5),
        w.net.revoke(member.key.public, at=NOW - 5, sponsored=[record_id(h.raw)]),
    ]
    for revocation in revocations:
        digests = set()
        for order in ((h, revocation), (revocation, h)):
            state = w.elsewhere(member)
            merge(state, order)
            assert view(state, member.key.public) == (MemberState.REVOKED, "revoked")
            assert state.member(new.public, NOW) is None
            digests.add(state.digest())
        assert len(digests) == 1


def test_hostile_a_membership_revoked_under_its_new_key_does_not_live_on_in_a_fork() -> None:
    """A member rotated its key (X -> Y) and kept X; it is revoked as `meshd revoke` does
    it, under its current key Y. With X it signs a second hand-over, X -> Z, dated before
    X -> Y (the earliest hand-over of a key wins). Z stood, with X's name and address, in
    every order; a revocation of any key of a membership now reaches every key of it."""
    w = World()
    member = w.join(w.net.invite())
    y, z = SigningKey.generate(), SigningKey.generate()
    to_y = handover(w, member, y, at=NOW - 50)
    revocation = w.net.revoke(y.public, at=NOW - 5)
    fork = handover(w, member, z, at=NOW - 60)
    digests = set()
    records: list[Record] = [to_y, revocation, fork]
    for order in itertools.permutations(records):
        state = w.elsewhere(member)
        merge(state, order)
        assert view(state, z.public) == (MemberState.REVOKED, "revoked"), order
        assert view(state, y.public)[0] is MemberState.REVOKED
        assert state.revocation_of(z.public) is not None
        digests.add(state.digest())
    assert len(digests) == 1
    # As it happens on a node that runs: Z's arrival is its revocation, and its
    # announcement is refused.
    w.ingest(to_y)
    w.ingest(revocation)
    outcome = w.ingest(fork)
    assert [type(e).__name__ for e in outcome.events] == ["Revoked"]
    heir = Node(z, member.wg, member.name, member.credential)
    mine = w.state.member(z.public, NOW)
    assert mine is not None
    with pytest.raises(VerifyError) as caught:
        w.ingest(heir.announce(w.net, NOW, prefixes=(host_prefix(mine.overlay),)))
    assert caught.value.reason == "revoked"


def test_a_revocation_of_the_old_key_still_reaches_the_new_one_and_no_further() -> None:
    """The rule the other way round, as before: revoking the old key X after X -> Y
    excludes Y; another member stays admitted."""
    w = World()
    member, other = w.join(w.net.invite()), w.join(w.net.invite())
    y = SigningKey.generate()
    w.ingest(handover(w, member, y))
    w.ingest(w.net.revoke(member.key.public, at=NOW - 5))
    assert w.state.member(y.public, NOW) is None  # the hand-over left the set
    assert view(w.state, other.key.public) == (MemberState.ADMITTED, "")


def test_hostile_replayed_hand_over_is_ignored() -> None:
    w = World()
    member = w.join(w.net.invite())
    h = handover(w, member, SigningKey.generate())
    w.ingest(h)
    before = w.state.digest()
    outcome = w.ingest(h.raw)
    assert not outcome.new
    assert w.state.digest() == before


def test_hostile_hand_over_to_the_root_key() -> None:
    w = World()
    member = w.join(w.net.invite())
    with pytest.raises(VerifyError) as caught:
        w.ingest(handover(w, member, w.net.root))
    assert caught.value.reason == "bad-target"


def test_hostile_hand_over_by_a_key_that_is_no_member_waits() -> None:
    w = World()
    stranger = w.net.join(w.elsewhere(), w.founder, w.net.invite(), "elsewhere")
    before = w.state.digest()
    outcome = w.ingest(handover(w, stranger, SigningKey.generate()))
    assert outcome.pending
    assert w.state.digest() == before


def test_the_old_key_has_no_revocation_record_to_show() -> None:
    """A key handed over is excluded without a revocation: nothing names one for it."""
    w = World()
    member = w.join(w.net.invite())
    w.ingest(handover(w, member, SigningKey.generate()))
    assert w.state.revocation_of(member.key.public) is None
    assert not w.state.is_revoked(member.key.public)


# --- one hand-over a key: what a key's other hand-overs cost (wire-format §6.12) -----------


@pytest.mark.parametrize("revoked", [False, True], ids=["member", "revoked-member"])
def test_hostile_a_key_that_signs_hand_overs_without_end_adds_two_records(revoked: bool) -> None:
    """A member, or one revoked since, signs hand-overs of its key to fresh keys: dated
    after its first two, and dated earlier each time. Every one was kept in the set,
    flooded to every node and made each recompute who stands (300 kept; 1.5 ms each at 300
    members). A key that hands over twice forfeits its membership, so its two earliest
    hand-overs are all the set keeps: a later one is refused (``superseded-handover``), an
    earlier one takes the place of the later kept. A revoked key's are all refused."""
    w = World()
    member = w.join(w.net.invite())
    if revoked:
        w.ingest(w.net.revoke(member.key.public, at=NOW - 5))
        before = len(w.state.record_ids())
        signed = [handover(w, member, SigningKey.generate(), at=NOW - 99 + i) for i in range(60)]
        assert merge(w.state, signed) == ["revoked"] * 60  # a revoked key hands over nothing
        assert len(w.state.record_ids()) == before
        return
    before = len(w.state.record_ids())
    first = SigningKey.generate()
    w.ingest(handover(w, member, first, at=NOW - 100))
    later = [handover(w, member, SigningKey.generate(), at=NOW - 99 + i) for i in range(60)]
    assert merge(w.state, later) == ["superseded-handover"] * 59
    assert len(w.state.record_ids()) == before + 2
    earliest = []
    for i in range(60):
        earliest.append(SigningKey.generate())
        assert merge(w.state, [handover(w, member, earliest[-1], at=NOW - 101 - i)]) == []
    assert len(w.state.record_ids()) == before + 2
    reason = "revoked" if revoked else "forked"
    for key in earliest[-2:]:
        assert view(w.state, key.public) == (MemberState.REVOKED, reason)
    for key in (first, *earliest[:-2]):
        assert w.state.member(key.public, NOW) is None  # no credential of it is kept


def test_what_hung_on_a_hand_over_that_earlier_ones_replace_leaves_the_set() -> None:
    """X -> Y, and from Y: a hand-over onward (Y -> W, named by id), an admission it
    countersigned, its leave. X also hands over twice, dated earlier: X -> Y leaves the set.
    Every node ends with the same set in every order, as if X -> Y had never come: what Y
    signed waits for Y outside the set (it was kept in the set where it came first)."""
    w = World()
    member = w.join(w.net.invite())
    y, wk, z1, z2 = (SigningKey.generate() for _ in range(4))
    to_y = handover(w, member, y, at=NOW - 10)
    onward = make_handover(
        y, wk, network_id=w.nid, issued_at=NOW - 8, wg_key=member.wg.public, credential=to_y
    )
    joiner = w.enrollment(w.net.invite(), key=SigningKey.generate().public)
    admitted = make_admission(y, enrollment=joiner, admitted_at=NOW - 9)
    gone = make_leave(y, network_id=w.nid, issued_at=NOW - 7)
    earlier = [handover(w, member, z1, at=NOW - 20), handover(w, member, z2, at=NOW - 30)]
    snapshots = set()
    records: list[Record] = [to_y, onward, admitted, gone, *earlier]
    for order in itertools.permutations(records):
        state = w.elsewhere(member)
        merge(state, order)
        for key in (z1.public, z2.public):
            assert view(state, key) == (MemberState.REVOKED, "forked"), order
        for key in (y.public, wk.public, joiner.node_key):
            assert state.member(key, NOW) is None, order
        snapshots.add((state.digest(), tuple(state.record_ids())))
    assert len(snapshots) == 1


def test_hostile_a_key_a_revoked_member_hands_over_to_joins_at_its_own_address() -> None:
    """Revoked X hands its membership over to a fresh key Q, and Q joins with an invite of
    its own. Q stands on its own admission, not on the hand-over (X is revoked), yet it got
    X's /128: the address followed the hand-over back to X, whatever Q stood on, and every
    route and rule written for X's address reached Q. Now the address follows the hand-overs
    of the credential a member stands on, in every order."""
    w = World()
    team = w.net.invite(uses=3)
    x = w.join(team)
    q = SigningKey.generate()
    revocation = w.net.revoke(x.key.public, at=NOW - 10)
    to_q = handover(w, x, q, at=NOW - 5)
    enrollment = w.enrollment(team, key=q.public)
    admission = w.sponsor(enrollment)
    own = overlay_address(w.net.anchor.root_key, q.public)
    records: list[Record] = [revocation, to_q, admission]
    for order in itertools.permutations(records):
        state = w.elsewhere(x)
        merge(state, order)
        member = state.member(q.public, NOW)
        assert member is not None
        assert (member.state, member.overlay) == (MemberState.ADMITTED, own), order
        assert state.grants(q.public)[0] == host_prefix(own)
    # While X stands, Q stands on the hand-over (its earliest credential): X's address.
    state = w.elsewhere(x)
    merge(state, [to_q, admission])
    member = state.member(q.public, NOW)
    assert member is not None
    assert member.overlay == overlay_address(w.net.anchor.root_key, x.key.public)


# --- what hangs on a hand-over that leaves the set (found by a review of the rules above) ---


def _records_in_orders(
    w: World, members: Sequence[Node], records: list[Record], orders: int = 60
) -> list[Membership]:
    """States that took ``records`` in ``orders`` shuffles (seeded), and in the given order."""
    import random

    shuffler = random.Random(7)
    states = []
    for n in range(orders):
        order = list(records)
        if n:
            shuffler.shuffle(order)
        state = w.elsewhere(*members)
        merge(state, order)
        states.append(state)
    return states


@pytest.mark.parametrize("legacy", [False, True], ids=["linked", "legacy"])
def test_hostile_a_revoked_membership_handed_on_stands_nowhere_when_its_link_leaves(
    legacy: bool,
) -> None:
    """R -> S; S countersigned W; W (revoked) handed its membership to X, which stands on an
    admission of its own too; X handed W's membership on to Z. R then hands over twice,
    earlier: R -> S leaves the set, and with it what hung on it. Z stood with W's revoked
    membership (its name and grants): X kept its own credential, so X -> Z stayed while the
    link it names (W -> X) left, and the revocation of W reached no key any more."""
    w = World()
    r = w.join(w.net.invite(), at=T0 + 10)
    x = w.join(w.net.invite(), at=T0 + 11)
    s, z = SigningKey.generate(), SigningKey.generate()
    to_s = handover(w, r, s, at=NOW - 40)
    wkey = SigningKey.generate()
    joined = w.enrollment(w.net.invite(), key=wkey.public)
    admitted = make_admission(s, enrollment=joined, admitted_at=NOW - 35)
    w_to_x = passed_on(
        w, wkey, x.key, at=NOW - 30, wg_key=joined.wg_key, credential=admitted, legacy=legacy
    )
    x_to_z = passed_on(
        w, x.key, z, at=NOW - 25, wg_key=joined.wg_key, credential=w_to_x, legacy=legacy
    )
    forked = forks(w, r, NOW - 50, NOW - 60)
    records: list[Record] = [to_s, admitted, w_to_x, x_to_z, w.net.revoke(wkey.public), *forked]
    states = _records_in_orders(w, [r, x], records)
    for state in states:
        member = state.member(z.public, NOW)
        assert member is None or member.state is not MemberState.ADMITTED
    assert len({(s.digest(), tuple(s.record_ids())) for s in states}) == 1


def test_hostile_a_thief_of_an_old_key_cannot_nest_its_hand_over_in_a_legacy_one() -> None:
    """The member rotated E0 -> E1. A thief of E0, a member X itself, signs E0 -> X and never
    sends it; it sends a legacy X -> Z that nests it. E0 showed one hand-over in the set (no
    fork), and Z stood with the member's name and grants beside E1. A nested hand-over now
    counts only once it is in the set, as a linked one's: X -> Z waits for it."""
    w = World()
    member = w.join(w.net.invite())
    x = w.join(w.net.invite())
    e1, z = SigningKey.generate(), SigningKey.generate()
    honest = handover(w, member, e1, at=NOW - 10)
    stolen = passed_on(
        w,
        member.key,
        x.key,
        at=NOW - 20,
        wg_key=member.wg.public,
        credential=member.credential,
        legacy=True,
    )
    onward = passed_on(
        w, x.key, z, at=NOW - 15, wg_key=member.wg.public, credential=stolen, legacy=True
    )
    for order in ((honest, onward), (onward, honest)):
        state = w.elsewhere(member, x)
        merge(state, order)
        assert view(state, e1.public) == (MemberState.ADMITTED, "")
        assert state.member(z.public, NOW) is None
    # Sent after all, it is a second hand-over of E0: neither new key stands.
    state = w.elsewhere(member, x)
    merge(state, [honest, onward, stolen])
    assert view(state, e1.public) == (MemberState.REVOKED, "forked")
    assert view(state, z.public)[0] is MemberState.REVOKED


def test_a_hand_over_back_to_a_key_the_membership_came_through_is_refused() -> None:
    """E -> X, X -> Y, then Y -> X: a cycle held itself in the set after E -> X left it (E
    forked), where it was merged first; elsewhere it waited. Now refused (bad-chain)."""
    w = World()
    e = w.join(w.net.invite())
    x, y = SigningKey.generate(), SigningKey.generate()
    e_to_x = handover(w, e, x, at=NOW - 30)
    x_to_y = passed_on(w, x, y, at=NOW - 25, wg_key=e.wg.public, credential=e_to_x)
    y_to_x = passed_on(w, y, x, at=NOW - 20, wg_key=e.wg.public, credential=x_to_y)
    state = w.elsewhere(e)
    assert merge(state, [e_to_x, x_to_y, y_to_x]) == ["bad-chain"]
    forked = forks(w, e, NOW - 40, NOW - 50)
    states = _records_in_orders(w, [e], [e_to_x, x_to_y, y_to_x, *forked])
    assert len({(s.digest(), tuple(s.record_ids())) for s in states}) == 1
    assert all(s.member(x.public, NOW) is None for s in states)


def test_a_hand_over_onward_leaves_with_the_link_it_names() -> None:
    """X stands on its own admission and is handed W's membership too; it hands W's on to Z
    (naming W -> X). W forks: W -> X leaves, and X -> Z with it, though X still holds its
    own credential (before, it stayed where it came first and waited elsewhere)."""
    w = World()
    x = w.join(w.net.invite())
    wm = w.join(w.net.invite())
    z = SigningKey.generate()
    w_to_x = handover(w, wm, x.key, at=NOW - 10)
    x_to_z = passed_on(w, x.key, z, at=NOW - 8, wg_key=wm.wg.public, credential=w_to_x)
    forked = forks(w, wm, NOW - 20, NOW - 30)
    snapshots = set()
    records: list[Record] = [w_to_x, x_to_z, *forked]
    for order in itertools.permutations(records):
        state = w.elsewhere(x, wm)
        merge(state, order)
        assert state.member(z.public, NOW) is None
        assert view(state, x.key.public) == (MemberState.ADMITTED, "")
        snapshots.add((state.digest(), tuple(state.record_ids())))
    assert len(snapshots) == 1


def test_hostile_a_revoked_membership_hands_over_nothing_onward() -> None:
    """The membership of X -> Y is revoked under X: X, Y and each key after it hand over
    nothing (nothing after a revoked key is sponsored). Before, Y handed over to fresh keys
    in a chain, each new key a new author: 200 hand-overs, 200 records in every node's set
    (1.3 ms each at 300 members), none standing."""
    w = World()
    member = w.join(w.net.invite())
    y = SigningKey.generate()
    to_y = handover(w, member, y, at=NOW - 50)
    ending: Record = w.net.revoke(member.key.public, at=NOW - 40)
    chain: list[Record] = []
    old, held = y, to_y
    for n in range(20):
        new = SigningKey.generate()
        step = passed_on(w, old, new, at=NOW - 39 + n, wg_key=member.wg.public, credential=held)
        chain.append(step)
        old, held = new, step
    digests = set()
    for records in ([to_y, ending, *chain], [to_y, *chain, ending], [*chain, ending, to_y]):
        state = w.elsewhere(member)
        before = len(state.record_ids())
        merge(state, records)
        assert len(state.record_ids()) == before + 1, records.index(ending)  # the revocation
        digests.add(state.digest())
    assert len(digests) == 1


def test_a_copy_of_the_enrollment_dated_earlier_keeps_the_hand_over() -> None:
    """N rotated its key (N -> N2); its sponsor countersigns N's enrollment again, dated a
    second earlier (the copy replaces N's admission). The hand-over still passes N's
    membership on: a membership is its enrollment's, whichever copy carries it. Before, a
    node that got the copy first had N2 hold nothing, and with N2 revoked the old key N
    stood again."""
    w = World()
    member = w.join(w.net.invite())
    admitted = member.credential
    assert isinstance(admitted, Admission)
    n2 = SigningKey.generate()
    to_n2 = handover(w, member, n2)
    copy = make_admission(
        w.founder.key, enrollment=admitted.enrollment, admitted_at=admitted.admitted_at - 1
    )
    revoked = w.net.revoke(n2.public, at=NOW - 5)
    digests = set()
    orders: list[list[Record]] = [[admitted, to_n2, copy], [copy, admitted, to_n2]]
    for order in orders:
        state = w.net.state()
        state.ingest(w.founder.credential, NOW)
        merge(state, order)
        assert view(state, n2.public) == (MemberState.ADMITTED, "")
        digests.add(state.digest())
        merge(state, [revoked])
        assert view(state, member.key.public)[0] is MemberState.REVOKED
        assert view(state, n2.public) == (MemberState.REVOKED, "revoked")
    assert len(digests) == 1
