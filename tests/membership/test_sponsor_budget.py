"""A sponsor's budget under an invite (wire-format §6.4): the set keeps, of each sponsor and
invite, as many members as the invite has uses."""

from __future__ import annotations

import itertools

from meshd.errors import VerifyError
from meshd.membership import Membership, MemberState
from meshd.records import Admission, Invite, Record, make_admission
from meshd.trust.invites import enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import T0, Node
from tests.trust.test_hostile import World

NOW = T0 + 100


def minted(invite: Invite, sponsor: Node, at: int) -> Admission:
    """What a holder of ``invite``'s secret can make without end: an enrollment of a fresh
    key, countersigned by ``sponsor``."""
    enrollment = enroll(
        invite,
        node_key=SigningKey.generate().public,
        wg_key=WireGuardKey.generate().public,
        name="minted",
        now=at,
    )
    return make_admission(sponsor.key, enrollment=enrollment, admitted_at=at)


def merge(state: Membership, records: list[Record]) -> list[str]:
    refused = []
    for record in records:
        try:
            state.ingest(record, NOW)
        except VerifyError as exc:
            refused.append(exc.reason)
    return refused


def test_hostile_a_member_mints_admissions_with_its_own_invites_secret() -> None:
    """Every joiner holds its invite's secret (its token). A member minted enrollments of
    fresh keys with it and countersigned each: every one was kept in every node's set
    (300 kept, 0.6 ms each), at the gossip rate an author is allowed (20 a second), until
    its membership's end. Now the set keeps as many of a sponsor's members under an invite
    as the invite has uses: one here, whatever it mints and however it dates them."""
    w = World()
    invite = w.net.invite(uses=1)
    member = w.join(invite)
    before = len(w.state.record_ids())
    refused = merge(w.state, [minted(invite, member, T0 + 20 + i % 50) for i in range(300)])
    assert len(w.state.record_ids()) == before + 1
    assert set(refused) == {"sponsor-over-uses"}
    assert len(refused) >= 250
    assert w.state.member(member.key.public, NOW) is not None
    assert w.state.member(member.key.public, NOW).state is MemberState.ADMITTED  # type: ignore[union-attr]


def test_a_sponsor_admits_as_many_as_the_invite_has_uses_and_others_still_race() -> None:
    """An honest sponsor refuses once an invite is used up; what another sponsor admits
    across a partition is kept and ranked as before."""
    w = World()
    team = w.net.invite(uses=3)
    joined = [w.join(team, at=T0 + 10 + i) for i in range(3)]
    fourth = minted(team, w.founder, T0 + 40)
    assert merge(w.state, [fourth]) == ["sponsor-over-uses"]
    other = w.net.founder("other")
    w.ingest(other.credential)
    across = minted(team, other, T0 + 45)
    assert merge(w.state, [across]) == []
    states = [w.state.member(n.key.public, NOW) for n in joined]
    assert all(m is not None and m.state is MemberState.ADMITTED for m in states)
    loser = w.state.member(across.enrollment.node_key, NOW)
    assert loser is not None
    assert (loser.state, loser.reason) == (MemberState.REVOKED, "invite-used-up")


def test_a_sponsors_budget_keeps_the_same_members_in_every_order() -> None:
    """Three by one sponsor under a one-use invite: the best ranked is kept, in every order,
    with the same set; the others are refused or pushed out."""
    w = World()
    invite = w.net.invite(uses=1)
    admissions = [minted(invite, w.founder, T0 + at) for at in (30, 20, 25)]
    records: list[Record] = list(admissions)
    kept = {a.enrollment.node_key for a in admissions}
    snapshots = set()
    for order in itertools.permutations(records):
        state = w.elsewhere()
        merge(state, list(order))
        standing = {key for key in kept if state.member(key, NOW) is not None}
        assert standing == {admissions[1].enrollment.node_key}
        snapshots.add((state.digest(), tuple(state.record_ids())))
    assert len(snapshots) == 1


def test_hostile_a_revoked_member_mints_under_a_team_invite_its_listed_members_stay() -> None:
    """A member that joined with a team invite (it holds the secret) admitted a colleague
    with it, then was revoked, the colleague listed. It mints enrollments dated before the
    colleague's and countersigns them: the listed admission is kept first, so the colleague
    stays, and what it mints is refused."""
    w = World()
    team = w.net.invite(uses=3)
    member = w.join(team, at=T0 + 10)
    colleague = w.net.join(w.state, member, team, "colleague", at=T0 + 30)
    w.ingest(colleague.credential)
    w.ingest(w.net.revoke(member.key.public, at=NOW - 10, sponsored=[colleague.enrollment_id]))
    refused = merge(w.state, [minted(team, member, T0 + 11 + i) for i in range(10)])
    assert refused.count("sponsor-over-uses") >= 8
    mine = w.state.member(colleague.key.public, NOW)
    assert mine is not None
    assert mine.state is MemberState.ADMITTED


def test_a_listed_member_pushed_out_before_its_revocation_came_comes_back_with_it() -> None:
    """A node that joins reads a batch's admissions before its revocations: the flood pushes
    the colleague out there (or it is refused), as no revocation lists it yet. It is kept
    aside, and the revocation that lists it brings it back: the same set as a node that had
    the revocation first, in every order."""
    w = World()
    team = w.net.invite(uses=1)
    member = w.join(team, at=T0 + 10)
    solo = w.net.invite(uses=1)
    colleague = w.net.join(w.state, member, solo, "colleague", at=T0 + 30)
    revocation = w.net.revoke(member.key.public, at=NOW - 10, sponsored=[colleague.enrollment_id])
    flood = [minted(solo, member, T0 + 11 + i) for i in range(3)]
    joining = w.elsewhere(member)
    joining.ingest_batch([r.raw for r in (colleague.credential, *flood, revocation)], NOW)
    mine = joining.member(colleague.key.public, NOW)
    assert mine is not None
    assert mine.state is MemberState.ADMITTED
    digests = {joining.digest()}
    records: list[Record] = [colleague.credential, *flood, revocation]
    for order in itertools.permutations(records):
        state = w.elsewhere(member)
        merge(state, list(order))
        digests.add(state.digest())
        assert state.member(colleague.key.public, NOW) is not None, order
    assert len(digests) == 1
