"""Admin key hand-over (wire-format §6.13): the root replaces an admin key; what the old key
issued before keeps standing, nothing it signs dated later counts. The rules, then hostile
inputs as a table (``test_hostile_admin_handover[case-id]``, as tests/trust/test_hostile.py).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from meshd.errors import MeshdError, VerifyError
from meshd.membership import Membership, MemberState
from meshd.records import (
    AdminHandover,
    Cap,
    Record,
    Role,
    make_admin_handover,
    make_admission,
    make_certificate,
)
from meshd.trust.invites import Issuer
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import DAY, T0, Net, Node
from tests.membership.test_lifecycle import renewal
from tests.trust.test_hostile import NOW, World, flip_signature, replace

CUT = T0 + 50  # the hand-over's date: the old key's cut-off
END = T0 + 300 * DAY  # a renewal's end, within the admins' certificates


def successor(
    net: Net, admin: Issuer, *, at: int = CUT, root: SigningKey | None = None, **cert: Any
) -> tuple[Issuer, AdminHandover]:
    """A new admin key for ``admin``'s, certified by the root, and the hand-over to it."""
    root = root or net.root
    old = admin.certificate
    assert old is not None
    key = SigningKey.generate()
    fields: dict[str, Any] = {
        "network_id": net.anchor.network_id,
        "subject": key.public,
        "role": Role.ADMIN,
        "serial": os.urandom(16),
        "not_before": at,
        "not_after": old.not_after,
        "caps": old.caps,
        "name": old.name,
        "prefixes": old.prefixes,
    }
    fields.update(cert)
    new = make_certificate(root, **fields)
    record = make_admin_handover(
        root, network_id=net.anchor.network_id, old_cert=old, new_cert=new, issued_at=at
    )
    return Issuer(key, new), record


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


def admitted_under(w: World, admin: Issuer, at: int) -> Node:
    """A member admitted by the founder with an invite ``admin`` signed at ``at``."""
    invite = w.net.invite(issuer=admin, at=at, uses=2)
    return w.net.join(w.state, w.founder, invite, "joiner", at=at + 5)


# --- the rules ----------------------------------------------------------------------------


def test_what_the_old_key_issued_before_keeps_standing_and_the_new_key_issues() -> None:
    w = World()
    admin = w.net.admin(not_after=T0 + 800 * DAY)
    invited = admitted_under(w, admin, T0 + 10)
    certified = w.net.founder("certified", issuer=admin)
    renewed = renewal(
        w.net, certified.key.public, issuer=admin, at=T0 + 20, not_after=T0 + 500 * DAY
    )
    victim = w.join(w.net.invite())
    revoked = w.net.revoke(victim.key.public, at=T0 + 30, issuer=admin)
    heir, handover = successor(w.net, admin)
    by_heir = admitted_under(w, heir, T0 + 60)
    records: list[Record] = [
        invited.credential,
        certified.credential,
        renewed,
        revoked,
        by_heir.credential,
        handover,
    ]
    digests = set()
    for order in (records, records[::-1]):
        state = w.elsewhere(victim)
        assert merge(state, order) == []
        for node in (invited, certified, by_heir):
            assert view(state, node.key.public) == (MemberState.ADMITTED, "")
        assert view(state, victim.key.public) == (MemberState.REVOKED, "revoked")
        member = state.member(certified.key.public, NOW)
        assert member is not None
        assert member.not_after == T0 + 500 * DAY  # the old key's renewal still counts
        digests.add(state.digest())
    assert len(digests) == 1


def test_nothing_the_old_key_signs_dated_after_counts_in_any_order() -> None:
    """Dated after the cut-off: a member under an invite or certificate the old key signed
    stands nowhere (admin-handed-over); its renewal and revocation are refused when the
    hand-over is known, and leave the set when it comes later: one set in every order."""
    w = World()
    admin = w.net.admin()
    victim = w.join(w.net.invite())
    late_invite = admitted_under(w, admin, CUT + 1)
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    certificate = make_certificate(
        admin.key,
        network_id=w.nid,
        subject=key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=CUT + 1,
        not_after=T0 + 200 * DAY,
        name="late",
        wg_key=wg.public,
        chain=admin.chain,
    )
    late_cert = Node(key, wg, "late", certificate)
    late_renewal = renewal(w.net, w.founder.key.public, issuer=admin, at=CUT + 2, not_after=END)
    late_revocation = w.net.revoke(victim.key.public, at=CUT + 3, issuer=admin)
    _, handover = successor(w.net, admin)
    records: list[Record] = [
        late_invite.credential,
        late_cert.credential,
        late_renewal,
        late_revocation,
        handover,
    ]
    digests = set()
    for order in itertools.permutations(records):
        state = w.elsewhere(victim)
        refused = merge(state, order)
        assert set(refused) <= {"admin-handed-over"}
        position = order.index(handover)
        assert len(refused) == sum(r in (late_renewal, late_revocation) for r in order[position:])
        for node in (late_invite, late_cert):
            assert view(state, node.key.public) == (MemberState.REVOKED, "admin-handed-over")
        assert view(state, victim.key.public) == (MemberState.ADMITTED, "")
        assert state.renewals_of(w.founder.key.public) == []
        digests.add(state.digest())
    assert len(digests) == 1


def test_a_revocation_of_the_old_key_wins_and_takes_the_successor_with_it() -> None:
    w = World()
    admin = w.net.admin()
    before = admitted_under(w, admin, T0 + 10)
    heir, handover = successor(w.net, admin)
    by_heir = admitted_under(w, heir, T0 + 60)
    revocation = w.net.revoke(admin.key.public, Role.ADMIN, at=CUT + 10)
    records: list[Record] = [before.credential, by_heir.credential, handover, revocation]
    digests = set()
    for order in itertools.permutations(records):
        state = w.elsewhere()
        merge(state, order)
        for node in (before, by_heir):
            assert view(state, node.key.public) == (MemberState.REVOKED, "issuer-revoked")
        assert state.is_revoked(heir.key.public)
        digests.add(state.digest())
    assert len(digests) == 1
    # A renewal by the successor of a revoked admin key is refused like the admin's own.
    with pytest.raises(VerifyError) as caught:
        state.ingest(
            renewal(w.net, w.founder.key.public, issuer=heir, at=CUT + 20, not_after=END), NOW
        )
    assert caught.value.reason == "issuer-revoked"


def test_two_hand_overs_of_one_key_the_earliest_sets_the_cut_off() -> None:
    w = World()
    admin = w.net.admin()
    first, earlier = successor(w.net, admin, at=CUT)
    second, later = successor(w.net, admin, at=CUT + 20)
    between = admitted_under(w, admin, CUT + 10)
    for order in itertools.permutations([earlier, later, between.credential]):
        state = w.elsewhere()
        merge(state, list(order))
        assert view(state, between.key.public) == (MemberState.REVOKED, "admin-handed-over")
        for heir in (first, second):  # both are admins the root certified
            assert not state.is_revoked(heir.key.public)


def test_an_enrollment_under_an_invite_dated_after_the_hand_over_is_not_sponsored() -> None:
    w = World()
    admin = w.net.admin()
    invite = w.net.invite(issuer=admin, at=CUT + 1)
    w.ingest(successor(w.net, admin)[1])
    with pytest.raises(VerifyError) as caught:
        w.sponsor(w.enrollment(invite, at=CUT + 5))
    assert caught.value.reason == "admin-handed-over"


# --- hostile inputs -----------------------------------------------------------------------

Expected = str | None  # a VerifyError reason; None: the hostile thing changes nothing
CASES: list[Any] = []


def case(case_id: str, expected: Expected) -> Callable[[Callable[[World], object]], Any]:
    def register(action: Callable[[World], object]) -> Any:
        CASES.append(pytest.param(action, expected, id=case_id))
        return action

    return register


@case("hand-over-signed-by-the-old-admin-itself", "bad-chain")
def _signed_by_old(w: World) -> object:
    admin = w.net.admin()
    _, record = successor(w.net, admin, root=admin.key)
    return w.ingest(record)


@case("hand-over-signed-by-a-revoked-admin", "bad-chain")
def _signed_by_revoked(w: World) -> object:
    """A revoked admin key (or its thief) hands itself over, to get a key no revocation
    names: only a root signs a hand-over, and the revocation would win anyway."""
    admin = w.net.admin()
    w.ingest(w.net.revoke(admin.key.public, Role.ADMIN, at=T0 + 40))
    _, record = successor(w.net, admin, root=admin.key)
    return w.ingest(record)


@case("hand-over-signed-by-a-non-admin-member", "bad-chain")
def _signed_by_member(w: World) -> object:
    """A member signs a hand-over as if it were a root: a key known here as a member's."""
    admin = w.net.admin()
    _, record = successor(w.net, admin, root=w.founder.key)
    return w.ingest(record)


@case("hand-over-with-its-successor-certified-by-another-key", "bad-chain")
def _other_certifier(w: World) -> object:
    admin = w.net.admin()
    _, record = successor(w.net, admin)
    stranger = make_certificate(SigningKey.generate(), **_cert_fields(w, record))
    return w.ingest(replace(record, w.net.root, 5, stranger.raw))


def _cert_fields(w: World, record: AdminHandover) -> dict[str, Any]:
    new = record.new_cert
    return {
        "network_id": w.nid,
        "subject": new.subject,
        "role": Role.ADMIN,
        "serial": new.serial,
        "not_before": new.not_before,
        "not_after": new.not_after,
        "caps": new.caps,
        "name": new.name,
        "prefixes": new.prefixes,
    }


@case("hand-over-of-a-revoked-admin-key", None)
def _of_revoked(w: World) -> object:
    """The root hands over a key already revoked (or revoked at the same time): the
    revocation wins, its successor counts as revoked and what it issues does not stand."""
    admin = w.net.admin()
    heir, record = successor(w.net, admin)
    invite = w.net.invite(issuer=heir, at=CUT + 10)
    member = w.net.join(w.elsewhere(), w.founder, invite, "joiner", at=CUT + 15)
    w.ingest(w.net.revoke(admin.key.public, Role.ADMIN, at=T0 + 40))
    w.ingest(record)
    w.ingest(member.credential)
    assert view(w.state, member.key.public) == (MemberState.REVOKED, "issuer-revoked")
    return w.ingest(record)


@case("hand-over-replayed", None)
def _replayed(w: World) -> object:
    _, record = successor(w.net, w.net.admin())
    w.ingest(record)
    return w.ingest(record)


@case("renewal-by-the-old-key-after-the-hand-over", "admin-handed-over")
def _late_renewal(w: World) -> object:
    admin = w.net.admin()
    w.ingest(successor(w.net, admin)[1])
    return w.ingest(renewal(w.net, w.founder.key.public, issuer=admin, at=CUT + 1, not_after=END))


@case("revocation-by-the-old-key-after-the-hand-over", "admin-handed-over")
def _late_revocation(w: World) -> object:
    admin = w.net.admin()
    w.ingest(successor(w.net, admin)[1])
    return w.ingest(w.net.revoke(w.founder.key.public, at=CUT + 1, issuer=admin))


@case("old-admins-invite-dated-after-the-hand-over", "admin-handed-over")
def _late_invite(w: World) -> object:
    admin = w.net.admin()
    w.ingest(successor(w.net, admin)[1])
    return w.sponsor(w.enrollment(w.net.invite(issuer=admin, at=CUT + 1), at=CUT + 2))


@case("old-admins-invite-replayed-after-the-hand-over", None)
def _invite_replayed(w: World) -> object:
    """An invite the old key signed before keeps its uses (a single-use one stays used): the
    admission replayed changes nothing, a second enrollment with it is refused."""
    admin = w.net.admin()
    invite = w.net.invite(issuer=admin, at=T0 + 10)
    member = w.join(invite)
    w.ingest(successor(w.net, admin)[1])
    assert view(w.state, member.key.public) == (MemberState.ADMITTED, "")
    with pytest.raises(VerifyError) as caught:
        w.sponsor(w.enrollment(invite, at=T0 + 20))
    assert caught.value.reason == "invite-used-up"
    return w.ingest(member.credential)


@case("admission-backdated-by-the-old-key-member-after-the-hand-over", None)
def _countersigned_late(w: World) -> object:
    """A member certified by the old key before its hand-over countersigns afterwards: that is
    the member's signature, not the old key's, and stands (the admin key is not revoked)."""
    admin = w.net.admin()
    certified = w.net.founder("certified", issuer=admin)
    w.ingest(certified.credential)
    w.ingest(successor(w.net, admin)[1])
    enrollment = w.enrollment(w.net.invite(at=T0 + 60), at=T0 + 60)
    admission = make_admission(certified.key, enrollment=enrollment, admitted_at=T0 + 70)
    w.ingest(admission)
    assert view(w.state, enrollment.node_key) == (MemberState.ADMITTED, "")
    return w.ingest(admission)


@case("successor-with-wider-capabilities", "bad-grants")
def _wider_caps(w: World) -> object:
    return w.ingest(successor(w.net, w.net.admin(Cap.INVITE), caps=Cap.INVITE | Cap.REVOKE)[1])


@case("successor-valid-longer-than-the-old-key", "outlives-issuer")
def _longer(w: World) -> object:
    admin = w.net.admin(not_after=T0 + 30 * DAY)
    return w.ingest(successor(w.net, admin, not_after=T0 + 31 * DAY)[1])


@case("successor-is-the-old-key", "bad-target")
def _same_key(w: World) -> object:
    admin = w.net.admin()
    return w.ingest(successor(w.net, admin, subject=admin.key.public)[1])


@case("hand-over-of-a-member-certificate", "bad-role")
def _member_cert(w: World) -> object:
    admin = w.net.admin()
    _, record = successor(w.net, admin)
    return w.ingest(replace(record, w.net.root, 4, w.founder.credential.raw))


@case("hand-over-for-another-network", "wrong-network")
def _other_net(w: World) -> object:
    _, record = successor(w.net, w.net.admin())
    return w.ingest(replace(record, w.net.root, 2, bytes(16)))


@case("hand-over-dated-beyond-clock-skew", "not-yet-valid")
def _future(w: World) -> object:
    admin = w.net.admin()
    return w.ingest(successor(w.net, admin, at=NOW + 301)[1])


@case("hand-over-with-its-cut-off-moved", "bad-signature")
def _moved(w: World) -> object:
    """Someone moves the cut-off later (to let a late record count): the root's signature."""
    _, record = successor(w.net, w.net.admin())
    return w.ingest(replace(record, SigningKey.generate(), 6, CUT + 40))


@case("hand-over-signature-bit-flipped", "bad-signature")
def _flipped(w: World) -> object:
    _, record = successor(w.net, w.net.admin())
    return w.ingest(flip_signature(record, 3))


@pytest.mark.parametrize(("action", "expected"), CASES)
def test_hostile_admin_handover(action: Callable[[World], object], expected: Expected) -> None:
    world = World()
    if expected is None:
        outcome = action(world)
        assert not getattr(outcome, "new", True)
        assert getattr(outcome, "stored", ()) == ()
        return
    with pytest.raises(MeshdError) as info:
        action(world)
    assert isinstance(info.value, VerifyError), repr(info.value)
    assert info.value.reason == expected, str(info.value)
