"""A mesh that lives for years: an admin key handed over twice, a chain of ten root rollovers
with a member carried by each root and a node offline through all of them, renewals that do
not pile up, and the clock at the edges of a membership's end.

Each case is what must hold in whatever order the records arrive.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Sequence

import pytest

from meshd.daemon.renew_policy import ExpiryWarnings, carry_revocations, endings
from meshd.errors import VerifyError
from meshd.membership import Membership, MemberState
from meshd.records import (
    Certificate,
    Handover,
    Record,
    Role,
    make_admin_handover,
    make_certificate,
    make_handover,
    make_rollover,
    record_id,
)
from meshd.records.build import recertify
from meshd.trust.invites import Issuer
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import DAY, T0, Net, Node
from tests.membership.test_admin_handover import admitted_under, successor, view
from tests.membership.test_lifecycle import leave, renewal
from tests.trust.test_hostile import NOW, World

FIRST_CUT = T0 + 30  # A -> B
SECOND_CUT = T0 + 60  # B -> C
END = T0 + 300 * DAY
LONGER = T0 + 600 * DAY  # past the invites' membership length, within the admins'


def merge(state: Membership, records: Sequence[Record], now: int = NOW) -> list[str]:
    refused = []
    for record in records:
        try:
            state.ingest(record, now)
        except VerifyError as exc:
            refused.append(exc.reason)
    return refused


# --- an admin key handed over twice ----------------------------------------------------


def test_an_admin_key_handed_over_twice_each_key_counts_until_its_own_cut_off() -> None:
    """A -> B -> C: what each key signed before its own cut-off stands, what it signed after
    counts nowhere, in every order of the hand-overs and what was signed."""
    w = World()
    a = w.net.admin(not_after=T0 + 800 * DAY)
    b, a_to_b = successor(w.net, a, at=FIRST_CUT)
    c, b_to_c = successor(w.net, b, at=SECOND_CUT)
    by_a = admitted_under(w, a, T0 + 10)
    by_a_late = admitted_under(w, a, FIRST_CUT + 10)
    by_b = admitted_under(w, b, FIRST_CUT + 10)
    by_b_late = admitted_under(w, b, SECOND_CUT + 10)
    by_c = admitted_under(w, c, SECOND_CUT + 10)
    b_renews_late = renewal(
        w.net, by_a.key.public, issuer=b, at=SECOND_CUT + 20, not_after=T0 + 700 * DAY
    )
    c_renews = renewal(w.net, by_b.key.public, issuer=c, at=SECOND_CUT + 20, not_after=LONGER)
    records: list[Record] = [
        a_to_b,
        b_to_c,
        by_a.credential,
        by_a_late.credential,
        by_b.credential,
        by_b_late.credential,
        by_c.credential,
        b_renews_late,
        c_renews,
    ]
    digests = set()
    orders = [records, records[::-1], *(random.Random(i).sample(records, 9) for i in range(6))]
    for order in orders:
        state = w.elsewhere()
        refused = merge(state, order)
        assert set(refused) <= {"admin-handed-over"}
        for node in (by_a, by_b, by_c):
            assert view(state, node.key.public) == (MemberState.ADMITTED, "")
        for node in (by_a_late, by_b_late):
            assert view(state, node.key.public) == (MemberState.REVOKED, "admin-handed-over")
        renewed = state.member(by_b.key.public, NOW)
        assert renewed is not None
        assert renewed.not_after == LONGER
        stays = state.member(by_a.key.public, NOW)
        assert stays is not None
        assert stays.not_after < T0 + 700 * DAY
        assert state.admin_cutoff(a.key.public) == FIRST_CUT
        assert state.admin_cutoff(b.key.public) == SECOND_CUT
        assert state.admin_cutoff(c.key.public) is None
        digests.add(state.digest())
    assert len(digests) == 1


@pytest.mark.parametrize("revoked", ["first", "middle"])
def test_a_revocation_in_a_chain_of_admin_hand_overs_takes_every_later_key(revoked: str) -> None:
    """Revoking A takes B and C with it; revoking B takes C, and leaves what A issued."""
    w = World()
    a = w.net.admin()
    b, a_to_b = successor(w.net, a, at=FIRST_CUT)
    c, b_to_c = successor(w.net, b, at=SECOND_CUT)
    by_a = admitted_under(w, a, T0 + 10)
    by_b = admitted_under(w, b, FIRST_CUT + 10)
    by_c = admitted_under(w, c, SECOND_CUT + 10)
    target = a if revoked == "first" else b
    revocation = w.net.revoke(target.key.public, Role.ADMIN, at=SECOND_CUT + 20)
    records: list[Record] = [
        a_to_b,
        b_to_c,
        by_a.credential,
        by_b.credential,
        by_c.credential,
        revocation,
    ]
    digests = set()
    for order in itertools.islice(itertools.permutations(records), 0, None, 37):
        state = w.elsewhere()
        assert merge(state, order) == []
        assert state.is_revoked(c.key.public)
        assert state.is_revoked(b.key.public)
        assert state.is_revoked(a.key.public) == (revoked == "first")
        for node in (by_b, by_c):
            assert view(state, node.key.public)[0] is MemberState.REVOKED
        expected_a = MemberState.REVOKED if revoked == "first" else MemberState.ADMITTED
        assert view(state, by_a.key.public)[0] is expected_a
        with pytest.raises(VerifyError) as caught:
            state.ingest(
                renewal(w.net, w.founder.key.public, issuer=c, at=NOW - 5, not_after=END), NOW
            )
        assert caught.value.reason == "issuer-revoked"
        digests.add(state.digest())
    assert len(digests) == 1


# --- ten root rollovers ----------------------------------------------------------------

ROOTS = 10
STEP = 30 * DAY  # a rollover a month, each with a 20-day overlap
OVERLAP = 20 * DAY


class Decade:
    """A network rolled over ROOTS times. At each rollover, as ``meshd root rollover`` does,
    the new root certifies the standing member again (same key, remaining validity) and signs
    a copy of every revocation under the retiring root."""

    def __init__(self) -> None:
        self.net = Net()
        self.keys = [self.net.root] + [SigningKey.generate() for _ in range(ROOTS)]
        self.member = self.net.founder("carried")
        self.revoked = self.net.founder("revoked")
        self.revocation = self.net.revoke(self.revoked.key.public, at=T0 + 20)
        self.online = self.net.state()
        self.records: list[Record] = []
        self._add([self.member.credential, self.revoked.credential, self.revocation], T0 + 30)
        for i in range(1, ROOTS + 1):
            at = T0 + i * STEP
            old, new = self.keys[i - 1], self.keys[i]
            rollover = make_rollover(
                old,
                network_id=self.net.anchor.network_id,
                new_root=new.public,
                issued_at=at,
                overlap_until=at + OVERLAP,
            )
            again = make_certificate(
                new,
                network_id=self.net.anchor.network_id,
                subject=self.member.key.public,
                role=Role.MEMBER,
                serial=os.urandom(16),
                not_before=at,
                not_after=T0 + 5 * 365 * DAY,
                name="carried",
                wg_key=self.member.wg.public,
            )
            self._add([rollover, again], at)
            copies = carry_revocations(self.online, Issuer(new), self.net.anchor.network_id, at)
            assert len(copies) == 1  # the one revocation, copied under each new root in turn
            self._add(copies, at)

    def _add(self, records: Sequence[Record], at: int) -> None:
        assert merge(self.online, records, at) == []
        self.records += records


def test_ten_rollovers_carry_a_member_and_a_revocation_and_a_node_offline_throughout_catches_up(
) -> None:  # fmt: skip
    d = Decade()
    last = T0 + ROOTS * STEP
    # Online all along: the member stood at every rollover, every overlap's end, and after.
    for i in range(1, ROOTS + 1):
        for at in (T0 + i * STEP, T0 + i * STEP + OVERLAP, T0 + i * STEP + OVERLAP + 1):
            member = d.online.member(d.member.key.public, at)
            assert member is not None
            assert member.state is MemberState.ADMITTED, (i, at)
            revoked = d.online.member(d.revoked.key.public, at)
            assert revoked is not None
            assert revoked.state is MemberState.REVOKED, (i, at)
    assert d.online.roots.current() == d.keys[-1].public
    assert len(d.online.roots.chain()) == ROOTS + 1
    # After the last overlap, and before the revocation's own end (it would be pruned then).
    after = last + OVERLAP + 1
    assert after < d.revocation.expires_at
    d.online.tick(after)
    # A node that knew only the first root and its records comes back after the last overlap
    # and takes everything from one member, in any order.
    for seed in range(3):
        offline = d.net.state()
        assert (
            merge(offline, [d.member.credential, d.revoked.credential, d.revocation], T0 + 30) == []
        )
        shuffled = random.Random(seed).sample(d.records, len(d.records))
        offline.ingest_batch([r.raw for r in shuffled], after)
        offline.tick(after)
        assert offline.roots.current() == d.keys[-1].public
        assert offline.digest() == d.online.digest()
        assert [(m.name, m.state, m.reason) for m in offline.members(after)] == [
            (m.name, m.state, m.reason) for m in d.online.members(after)
        ]
        member = offline.member(d.member.key.public, after)
        assert member is not None
        assert member.state is MemberState.ADMITTED
        revoked = offline.member(d.revoked.key.public, after)
        assert revoked is not None
        assert revoked.state is MemberState.REVOKED
    # A retired root (its key stolen, say) revokes and renews nothing, whatever it dates.
    thief = Issuer(d.keys[3])
    with pytest.raises(VerifyError) as caught:
        d.online.ingest(
            d.net.revoke(d.member.key.public, at=T0 + 3 * STEP + 1, issuer=thief), after
        )
    assert caught.value.reason == "root-retired"
    with pytest.raises(VerifyError) as caught:
        d.online.ingest(
            renewal(d.net, d.revoked.key.public, issuer=thief, at=T0 + 3 * STEP + 1), after
        )
    assert caught.value.reason == "root-retired"


# --- renewals do not pile up ------------------------------------------------------------


def test_daily_renewals_for_years_keep_one_record_per_member_and_issuer() -> None:
    """Auto-renew signs a renewal a day (or a thousand): the set keeps one per member,
    issuer and root, so renewals never pile up, whatever order they come in."""
    w = World()
    admin = w.net.admin(not_after=T0 + 3 * 365 * DAY)
    member = w.net.founder("m")
    merge(w.state, [member.credential])
    renewals = [
        renewal(w.net, member.key.public, issuer=issuer, at=T0 + i, not_after=T0 + (400 + i) * DAY)
        for i in range(1, 60)
        for issuer in (w.net.issuer, admin)
    ]
    before = len(w.elsewhere(member))
    for order in (renewals, renewals[::-1]):
        state = w.elsewhere(member)
        refused = merge(state, order)
        assert set(refused) <= {"superseded-renewal"}
        assert len(state) == before + 2
        got = state.member(member.key.public, NOW)
        assert got is not None
        assert got.not_after == T0 + 459 * DAY


# --- the clock at the edges -------------------------------------------------------------


def test_a_membership_ends_at_its_last_second_and_a_renewal_then_brings_it_back() -> None:
    """Admitted up to and including ``not_after``; expired one second later; a renewal made
    later (an admin's clock ahead, within the skew) brings it back; one dated beyond the
    skew is refused and changes nothing."""
    w = World()
    member = w.net.founder("m")
    merge(w.state, [member.credential])
    assert isinstance(member.credential, Certificate)
    end = member.credential.not_after
    assert view_at(w.state, member, end) == (MemberState.ADMITTED, "")
    assert view_at(w.state, member, end + 1) == (MemberState.EXPIRED, "credential-expired")
    skew = w.state.clock_skew
    with pytest.raises(VerifyError) as caught:
        w.state.ingest(
            renewal(w.net, member.key.public, at=end + 1 + skew + 1, not_after=end + DAY), end + 1
        )
    assert caught.value.reason == "not-yet-valid"
    assert view_at(w.state, member, end + 1) == (MemberState.EXPIRED, "credential-expired")
    w.state.ingest(
        renewal(w.net, member.key.public, at=end + 1 + skew, not_after=end + DAY), end + 1
    )
    assert view_at(w.state, member, end + 1) == (MemberState.ADMITTED, "")
    assert view_at(w.state, member, end + DAY) == (MemberState.ADMITTED, "")
    assert view_at(w.state, member, end + DAY + 1) == (MemberState.EXPIRED, "credential-expired")


def view_at(state: Membership, node: Node, at: int) -> tuple[MemberState, str]:
    member = state.member(node.key.public, at)
    assert member is not None
    return member.state, member.reason


# --- what the daily warnings say of admin keys -------------------------------------------


def _admin_warnings(state: Membership, now: int, own: Sequence[Certificate] = ()) -> list[int]:
    due = ExpiryWarnings().due(now, endings(state, now, own))
    return [e.ends_at for e in due if e.kind == "admin"]


def test_an_admin_certified_again_is_not_warned_about_on_its_older_certificates_end() -> None:
    """A member admitted under an admin's first certificate carries it; the admin's renewed
    certificate (its admin.cert) ends a year later: no warning about the first one's end."""
    w = World()
    admin = w.net.admin(not_after=T0 + 20 * DAY)
    member = admitted_under(w, admin, T0 + 10)
    merge(w.state, [member.credential])
    now = T0 + 5 * DAY
    assert _admin_warnings(w.state, now) == [T0 + 20 * DAY]  # the first certificate alone
    assert admin.certificate is not None
    renewed = recertify(
        w.net.root,
        admin.certificate,
        network_id=w.nid,
        not_before=now,
        not_after=now + 365 * DAY,
    )
    assert _admin_warnings(w.state, now, [renewed]) == []
    assert _admin_warnings(w.state, now + 340 * DAY, [renewed]) == [now + 365 * DAY]


def test_an_admin_key_handed_over_is_not_warned_about_its_successor_is() -> None:
    w = World()
    admin = w.net.admin(not_after=T0 + 20 * DAY)
    member = admitted_under(w, admin, T0 + 10)
    heir, handover = successor(w.net, admin, at=FIRST_CUT)
    merge(w.state, [member.credential, handover])
    assert heir.certificate is not None
    assert _admin_warnings(w.state, T0 + 5 * DAY, [heir.certificate]) == [T0 + 20 * DAY]
    found = endings(w.state, T0 + 5 * DAY, [heir.certificate])
    assert [e.key for e in found if e.kind == "admin"] == [heir.key.public]


def test_an_admin_under_a_retiring_root_is_warned_about_at_the_overlaps_end() -> None:
    """Its certificate lasts a year, its root only until the overlap ends: the warning says
    the overlap's end, until the admin installs the certificate the new root wrote for it."""
    w = World()
    admin = w.net.admin(not_after=T0 + 365 * DAY)
    member = admitted_under(w, admin, T0 + 10)
    new_root = SigningKey.generate()
    overlap_end = T0 + 30 * DAY
    rolled = make_rollover(
        w.net.root,
        network_id=w.nid,
        new_root=new_root.public,
        issued_at=T0 + 50,
        overlap_until=overlap_end,
    )
    merge(w.state, [member.credential, rolled])
    assert _admin_warnings(w.state, T0 + 5 * DAY) == [overlap_end]
    assert admin.certificate is not None
    again = recertify(
        new_root, admin.certificate, network_id=w.nid, not_before=T0 + 60, not_after=T0 + 365 * DAY
    )
    assert _admin_warnings(w.state, T0 + 5 * DAY, [again]) == []


def test_a_long_lived_invite_an_admin_signed_is_warned_about_on_its_own_end() -> None:
    w = World()
    admin = w.net.admin(not_after=T0 + 365 * DAY)
    invite = w.net.invite(issuer=admin, at=T0, lifetime=60 * DAY, uses=5)
    node = w.net.join(w.state, w.founder, invite, "joiner", at=T0 + 5)
    merge(w.state, [node.credential])
    now = T0 + 45 * DAY
    due = ExpiryWarnings().due(now, endings(w.state, now))
    assert [(e.kind, e.ends_at) for e in due if e.kind == "invite"] == [
        ("invite", invite.certificate.not_after)
    ]


# --- a node key rotated after renewals ---------------------------------------------------

TTL = 10 * DAY  # the member's own end, from its invite
RENEWED = T0 + 400 * DAY


def _renewed_member(w: World) -> tuple[Node, Record]:
    member = w.join(w.net.invite(member_ttl=TTL))
    return member, renewal(w.net, member.key.public, at=T0 + 5 * DAY, not_after=RENEWED)


def _hand_over(w: World, node: Node, new: SigningKey, at: int) -> Handover:
    return make_handover(
        node.key,
        new,
        network_id=w.nid,
        issued_at=at,
        wg_key=node.wg.public,
        credential=node.credential,
    )


def test_a_hand_over_keeps_the_renewed_end_in_any_order() -> None:
    """``meshd rotate node`` keeps the remaining validity: the old key's renewal carries over
    to the new key (it expired on its invite's date, ten days in, a year early)."""
    w = World()
    member, renewed = _renewed_member(w)
    new = SigningKey.generate()
    handover = _hand_over(w, member, new, T0 + 8 * DAY)
    digests = set()
    for order in ([renewed, handover], [handover, renewed]):
        state = w.elsewhere(member)
        assert merge(state, order, T0 + 8 * DAY) == []
        for at in (T0 + 11 * DAY, RENEWED):
            assert view_at(state, _key(new), at) == (MemberState.ADMITTED, "")
        assert view_at(state, _key(new), RENEWED + 1) == (MemberState.EXPIRED, "credential-expired")
        got = state.member(new.public, T0 + 11 * DAY)
        assert got is not None
        assert got.not_after == RENEWED
        assert state.credentials_end(new.public) == RENEWED
        digests.add(state.digest())
    assert len(digests) == 1


def test_a_member_standing_on_a_renewal_can_hand_over_its_key() -> None:
    """Past its own end, standing on a renewal: the hand-over is accepted (it was refused,
    "the membership handed over has ended") and the new key stands until the renewal's end."""
    w = World()
    member, renewed = _renewed_member(w)
    state = w.elsewhere(member)
    at = T0 + 20 * DAY
    assert merge(state, [renewed], T0 + 5 * DAY) == []
    new = SigningKey.generate()
    assert merge(state, [_hand_over(w, member, new, at)], at) == []
    assert view_at(state, _key(new), at) == (MemberState.ADMITTED, "")
    assert view_at(state, _key(member.key), at) == (MemberState.REVOKED, "handed-over")


def test_renewals_along_a_chain_of_hand_overs_all_count_and_a_late_one_readmits() -> None:
    """Keys k0 -> k1 -> k2: a renewal of any of them extends k2; one of k0 arriving after k2
    expired brings k2 back at once (an Admitted event for k2)."""
    w = World()
    member = w.join(w.net.invite(member_ttl=TTL))
    k1, k2 = SigningKey.generate(), SigningKey.generate()
    first = _hand_over(w, member, k1, T0 + 2 * DAY)
    second = make_handover(
        k1, k2, network_id=w.nid, issued_at=T0 + 3 * DAY, wg_key=member.wg.public, credential=first
    )
    assert second.previous == record_id(first.raw)
    state = w.elsewhere(member)
    assert merge(state, [first, second], T0 + 3 * DAY) == []
    assert view_at(state, _key(k2), T0 + 11 * DAY) == (MemberState.EXPIRED, "credential-expired")
    state.tick(T0 + 11 * DAY)
    by_k1 = renewal(w.net, k1.public, at=T0 + 11 * DAY, not_after=T0 + 200 * DAY)
    outcome = state.ingest(by_k1, T0 + 11 * DAY)
    assert [(type(e).__name__, e.member.node_key) for e in outcome.events] == [
        ("Admitted", k2.public)
    ]
    by_k0 = renewal(w.net, member.key.public, at=T0 + 11 * DAY, not_after=RENEWED)
    state.ingest(by_k0, T0 + 11 * DAY)
    got = state.member(k2.public, T0 + 11 * DAY)
    assert got is not None
    assert got.not_after == RENEWED


def test_a_revocation_of_the_old_key_still_wins_over_its_carried_renewal() -> None:
    w = World()
    member, renewed = _renewed_member(w)
    new = SigningKey.generate()
    handover = _hand_over(w, member, new, T0 + 8 * DAY)
    revocation = w.net.revoke(member.key.public, at=T0 + 9 * DAY)
    for order in itertools.permutations([renewed, handover, revocation]):
        state = w.elsewhere(member)
        merge(state, order, T0 + 9 * DAY)
        # A revoked key hands over nothing: the new key holds no credential.
        assert state.member(new.public, T0 + 9 * DAY) is None
        assert state.renewals_of(member.key.public) == []


def _key(key: SigningKey) -> Node:
    """A stand-in Node for ``view_at``, which reads only its key."""
    return Node(key, None, "", None)  # type: ignore[arg-type]


# --- a left key hands over nothing ------------------------------------------------------


@pytest.mark.parametrize("dated", ["after-the-leave", "backdated-before-the-leave"])
def test_hostile_a_left_members_key_hands_its_membership_to_a_thief(dated: str) -> None:
    """The member left (``meshd leave``); a copy of its node key signs a hand-over to a key of
    the thief's: the thief's key stands nowhere (it stood, with the member's name, address and
    grants, before a leave was treated like a revocation here too), in any order."""
    w = World()
    member = w.join(w.net.invite())
    left = leave(w.net, member, at=T0 + 9 * DAY)
    thief = SigningKey.generate()
    at = T0 + 10 * DAY if dated == "after-the-leave" else T0 + 8 * DAY
    stolen = _hand_over(w, member, thief, at)
    digests = set()
    orders: list[list[Record]] = [[left, stolen], [stolen, left]]
    for order in orders:
        state = w.elsewhere(member)
        merge(state, order, T0 + 10 * DAY)
        assert view_at(state, _key(thief), T0 + 10 * DAY) == (MemberState.REVOKED, "left")
        assert view_at(state, member, T0 + 10 * DAY) == (MemberState.REVOKED, "left")
        assert state.credential_record(thief.public) is None
        digests.add(state.digest())
    assert len(digests) == 1


def test_a_leave_by_a_key_already_handed_over_ends_the_membership_like_a_revocation() -> None:
    """Every node treats a leave like a revocation: one by the old key (a copy of it, the
    owner having rotated) ends the membership it handed over, as a revocation of it would."""
    w = World()
    member = w.join(w.net.invite())
    k1, k2 = SigningKey.generate(), SigningKey.generate()
    first = _hand_over(w, member, k1, T0 + 2 * DAY)
    second = make_handover(
        k1, k2, network_id=w.nid, issued_at=T0 + 3 * DAY, wg_key=member.wg.public, credential=first
    )
    left = leave(w.net, member, at=T0 + 4 * DAY)
    records: list[Record] = [first, second, left]
    digests = set()
    for order in itertools.permutations(records):
        state = w.elsewhere(member)
        merge(state, order, T0 + 5 * DAY)
        for key in (k1, k2):
            assert view_at(state, _key(key), T0 + 5 * DAY)[0] is MemberState.REVOKED
        assert view_at(state, _key(k2), T0 + 5 * DAY) == (MemberState.REVOKED, "left")
        digests.add(state.digest())
    assert len(digests) == 1


def test_a_chain_of_hand_overs_past_its_first_end_merges_the_same_in_any_order() -> None:
    """k0 -> k1 -> k2, all past the invite's first end and standing on k0's renewal: the
    last hand-over is judged with k0's renewal whether or not the first is here yet (it waits
    for it), so every order of the hand-overs gives the same set and k2 stands; in a batch
    (a sync, a store's load: renewals first) any order of the three does."""
    w = World()
    member, renewed = _renewed_member(w)
    k1, k2 = SigningKey.generate(), SigningKey.generate()
    first = _hand_over(w, member, k1, T0 + 12 * DAY)
    second = make_handover(
        k1, k2, network_id=w.nid, issued_at=T0 + 13 * DAY, wg_key=member.wg.public, credential=first
    )
    at = T0 + 14 * DAY
    digests = set()
    for order in itertools.permutations([first, second]):
        state = w.elsewhere(member)
        assert merge(state, [renewed, *order], at) == [], order
        assert view_at(state, _key(k2), at) == (MemberState.ADMITTED, "")
        digests.add(state.digest())
    for batch in itertools.permutations([renewed, first, second]):
        state = w.elsewhere(member)
        assert state.ingest_batch([r.raw for r in batch], at).rejected == ()
        assert view_at(state, _key(k2), at) == (MemberState.ADMITTED, "")
        digests.add(state.digest())
    assert len(digests) == 1


# --- admin hand-overs across a rollover --------------------------------------------------


def test_hostile_a_retired_root_hands_an_admin_key_over_to_exclude_what_it_admitted() -> None:
    """After the overlap, a thief of the retired first root signs a hand-over of an admin
    key (certified again by the new root), backdated before everything the admin signed: it
    is refused (root-retired), as the retired root's revocations are, and the members the
    admin certified keep standing (they were revoked, admin-handed-over, before this rule)."""
    w = World()
    admin = w.net.admin(not_after=T0 + 365 * DAY)
    new_root = SigningKey.generate()
    rolled = make_rollover(
        w.net.root,
        network_id=w.nid,
        new_root=new_root.public,
        issued_at=T0 + 50,
        overlap_until=T0 + 30 * DAY,
    )
    assert admin.certificate is not None
    again = recertify(
        new_root, admin.certificate, network_id=w.nid, not_before=T0 + 60, not_after=T0 + 365 * DAY
    )
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    cert = make_certificate(
        admin.key,
        network_id=w.nid,
        subject=key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=T0 + 100,
        not_after=T0 + 300 * DAY,
        name="m",
        wg_key=wg.public,
        chain=(again,),
    )
    member = Node(key, wg, "m", cert)
    after = T0 + 40 * DAY
    _, stolen = successor(w.net, admin, at=T0 - 1)  # signed by the retired first root
    state = w.net.state()
    assert merge(state, [rolled, member.credential], after) == []
    assert view_at(state, member, after) == (MemberState.ADMITTED, "")
    assert merge(state, [stolen], after) == ["root-retired"]
    assert view_at(state, member, after) == (MemberState.ADMITTED, "")
    assert state.admin_cutoff(admin.key.public) is None


def _rolled_with_an_admin_handed_over(
    copy: bool,
) -> tuple[Membership, Net, Issuer, Node, Node, int]:
    """The first root hands an admin key over (cut-off T0 + 30), then rolls over to a new
    root (overlap until T0 + 30 days), which certifies the successor again and, with
    ``copy``, copies the hand-over as ``meshd root rollover`` does."""
    w = World()
    admin = w.net.admin(not_after=T0 + 365 * DAY)
    heir, handover = successor(w.net, admin, at=FIRST_CUT)
    before = w.net.founder("before", issuer=admin)  # certified by the old key at T0
    new_root = SigningKey.generate()
    rolled = make_rollover(
        w.net.root,
        network_id=w.nid,
        new_root=new_root.public,
        issued_at=T0 + 50,
        overlap_until=T0 + 30 * DAY,
    )
    assert heir.certificate is not None
    heir_again = recertify(
        new_root,
        heir.certificate,
        network_id=w.nid,
        not_before=T0 + 60,
        not_after=heir.certificate.not_after,
    )
    records: list[Record] = [handover, rolled, before.credential]
    if copy:
        records.append(
            make_admin_handover(
                new_root,
                network_id=w.nid,
                old_cert=handover.old_cert,
                new_cert=heir_again,
                issued_at=handover.issued_at,
            )
        )
    # The old key, still in a thief's hands, certifies a member after its cut-off, under a
    # certificate the new root gave it before it knew of the hand-over.
    assert admin.certificate is not None
    old_again = recertify(
        new_root, admin.certificate, network_id=w.nid, not_before=T0 + 60, not_after=T0 + 300 * DAY
    )
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    late = Node(
        key,
        wg,
        "late",
        make_certificate(
            admin.key,
            network_id=w.nid,
            subject=key.public,
            role=Role.MEMBER,
            serial=os.urandom(16),
            not_before=T0 + 100,
            not_after=T0 + 300 * DAY,
            name="late",
            wg_key=wg.public,
            chain=(old_again,),
        ),
    )
    records.append(late.credential)
    state = w.net.state()
    assert merge(state, records, T0 + 200) == []
    return state, w.net, admin, before, late, T0 + 40 * DAY


def test_an_admin_hand_over_copied_under_the_new_root_keeps_its_cut_off_after_the_overlap() -> None:
    state, _, admin, _, late, after = _rolled_with_an_admin_handed_over(copy=True)
    assert view_at(state, late, T0 + 200) == (MemberState.REVOKED, "admin-handed-over")
    state.tick(after)
    assert state.admin_cutoff(admin.key.public) == FIRST_CUT
    assert view_at(state, late, after) == (MemberState.REVOKED, "admin-handed-over")


def test_limit_an_admin_hand_over_nobody_copied_lapses_with_its_roots_overlap() -> None:
    """As a revocation under the old root that nobody carried over: the cut-off ends with
    the overlap, and what the old key signed after it stands (docs/threat-model.md §3.22)."""
    state, _, admin, _, late, after = _rolled_with_an_admin_handed_over(copy=False)
    assert view_at(state, late, T0 + 200) == (MemberState.REVOKED, "admin-handed-over")
    state.tick(after)
    assert state.admin_cutoff(admin.key.public) is None
    assert view_at(state, late, after) == (MemberState.ADMITTED, "")
