"""Root rollover (wire-format §6.11): the overlap, the chain of roots, and hostile rollovers.

Each hostile case is the attack, and what must hold in whatever order the records arrive.
"""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter
from collections.abc import Sequence

import pytest

from meshd.addressing import overlay_address, overlay_prefix
from meshd.errors import DecodeError, VerifyError
from meshd.membership import Membership, MemberState
from meshd.records import (
    Cap,
    Certificate,
    Record,
    Renewal,
    Revocation,
    Role,
    Rollover,
    make_certificate,
    make_renewal,
    make_rollover,
    record_id,
)
from meshd.trust.invites import Issuer
from meshd.trust.keys import SigningKey, WireGuardKey, fingerprint_bytes
from tests.factory import DAY, T0, Net, Node
from tests.trust.test_hostile import body_items, sign_items

NOW = T0 + 100
OVERLAP_END = T0 + 30 * DAY
AFTER = OVERLAP_END + 1


def rollover(
    net: Net,
    old: SigningKey,
    new: SigningKey,
    *,
    at: int = T0 + 50,
    until: int = OVERLAP_END,
) -> Rollover:
    return make_rollover(
        old,
        network_id=net.anchor.network_id,
        new_root=new.public,
        issued_at=at,
        overlap_until=until,
    )


def merge(state: Membership, records: Sequence[Record], now: int = NOW) -> list[str]:
    refused = []
    for record in records:
        try:
            state.ingest(record, now)
        except VerifyError as exc:
            refused.append(exc.reason)
    return refused


def state_of(net: Net, node: Node, state: Membership, at: int) -> tuple[MemberState, str]:
    member = state.member(node.key.public, at)
    assert member is not None
    return member.state, member.reason


class World:
    """A network rolled over from its first root to ``new``: a member certified by each."""

    def __init__(self) -> None:
        self.net = Net()
        self.new = SigningKey.generate()
        self.rollover = rollover(self.net, self.net.root, self.new)
        self.old_member = self.net.founder("old")
        self.new_member = self.net.founder("new", issuer=Issuer(self.new))

    def records(self) -> list[Record]:
        return [self.rollover, self.old_member.credential, self.new_member.credential]


# --- the rules --------------------------------------------------------------------------


def test_during_the_overlap_certificates_under_either_root_stand() -> None:
    w = World()
    state = w.net.state()
    assert merge(state, w.records()) == []
    for node in (w.old_member, w.new_member):
        assert state_of(w.net, node, state, NOW) == (MemberState.ADMITTED, "")


def test_after_the_overlap_only_the_new_root() -> None:
    w = World()
    state = w.net.state()
    merge(state, w.records())
    assert state_of(w.net, w.old_member, state, AFTER) == (MemberState.EXPIRED, "root-retired")
    assert state_of(w.net, w.new_member, state, AFTER) == (MemberState.ADMITTED, "")
    for moment in (NOW, AFTER):  # what `meshd status` counts, as the views say
        assert state.state_counts(moment) == Counter(m.state for m in state.members(moment))


def test_a_member_recertified_by_the_new_root_during_the_overlap_stays() -> None:
    w = World()
    again = make_certificate(
        w.new,
        network_id=w.net.anchor.network_id,
        subject=w.old_member.key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=T0 + 60,
        not_after=T0 + 365 * DAY,
        name="old",
        wg_key=w.old_member.wg.public,
    )
    state = w.net.state()
    merge(state, [*w.records(), again])
    assert state_of(w.net, w.old_member, state, AFTER) == (MemberState.ADMITTED, "")


def test_a_renewed_admin_issues_under_the_new_root() -> None:
    """An admin certified again by the new root (same key) keeps issuing after the overlap;
    what it issued under its old certificate retires with the old root."""
    w = World()
    old_admin = w.net.admin()
    new_cert = make_certificate(
        w.new,
        network_id=w.net.anchor.network_id,
        subject=old_admin.key.public,
        role=Role.ADMIN,
        serial=os.urandom(16),
        not_before=T0,
        not_after=T0 + 365 * DAY,
        caps=Cap.INVITE | Cap.REVOKE,
        name="admin",
        prefixes=(w.net.anchor.overlay,),
    )
    before = w.net.founder("before", issuer=old_admin)
    after = w.net.founder("after", issuer=Issuer(old_admin.key, new_cert))
    state = w.net.state()
    assert merge(state, [w.rollover, before.credential, after.credential]) == []
    assert state_of(w.net, before, state, AFTER) == (MemberState.EXPIRED, "root-retired")
    assert state_of(w.net, after, state, AFTER) == (MemberState.ADMITTED, "")


def test_the_network_id_topic_and_overlay_stay_anchored_to_the_first_root() -> None:
    w = World()
    state = w.net.state()
    merge(state, w.records())
    assert state.roots.current() == w.new.public
    assert state.anchor.network_id == fingerprint_bytes(w.net.root.public)
    assert w.new_member.credential.network_id == w.net.anchor.network_id
    member = state.member(w.new_member.key.public, NOW)
    assert member is not None
    assert member.overlay == overlay_address(w.net.root.public, w.new_member.key.public)
    assert member.overlay in overlay_prefix(w.net.root.public)


def test_a_chain_of_rollovers() -> None:
    w = World()
    third = SigningKey.generate()
    second_rollover = rollover(w.net, w.new, third, at=T0 + 70, until=OVERLAP_END + DAY)
    late = w.net.founder("late", issuer=Issuer(third))
    state = w.net.state()
    merge(state, [*w.records(), second_rollover, late.credential])
    assert state.roots.current() == third.public
    assert state_of(w.net, late, state, AFTER) == (MemberState.ADMITTED, "")
    assert state_of(w.net, w.new_member, state, AFTER) == (MemberState.ADMITTED, "")
    assert state_of(w.net, w.new_member, state, OVERLAP_END + DAY + 1) == (
        MemberState.EXPIRED,
        "root-retired",
    )


def test_a_member_offline_through_the_whole_overlap_catches_up_from_any_member() -> None:
    """A node that knew only the first root comes back after the overlap: one sync batch from
    any member, in any order, brings it to the same set, digest and member states."""
    w = World()
    third = SigningKey.generate()
    records = [
        *w.records(),
        rollover(w.net, w.new, third, at=T0 + 70, until=OVERLAP_END + DAY),
        w.net.founder("late", issuer=Issuer(third)).credential,
    ]
    online = w.net.state()
    merge(online, records, now=T0 + 80)
    offline = w.net.state()
    merge(offline, [w.old_member.credential], now=T0 + 10)
    shuffled = list(records)
    random.Random(7).shuffle(shuffled)
    batch = offline.ingest_batch([r.raw for r in shuffled], AFTER)
    assert batch.rejected == ()
    assert offline.digest() == online.digest()
    assert [(m.name, m.state, m.reason) for m in offline.members(AFTER)] == [
        (m.name, m.state, m.reason) for m in online.members(AFTER)
    ]


def test_records_under_a_new_root_that_arrive_first_wait_for_its_rollover() -> None:
    w = World()
    state = w.net.state()
    outcome = state.ingest(w.new_member.credential, NOW)
    assert outcome.pending
    assert state.member(w.new_member.key.public, NOW) is None
    state.ingest(w.rollover, NOW)
    assert state_of(w.net, w.new_member, state, NOW) == (MemberState.ADMITTED, "")


# --- hostile rollovers ------------------------------------------------------------------


def test_hostile_rollover_not_signed_by_the_current_root() -> None:
    """Someone names the root as old_root and signs with another key: bad-signature."""
    w = World()
    items = body_items(w.rollover)
    raw = sign_items(SigningKey.generate(), items)
    state = w.net.state()
    with pytest.raises(VerifyError) as caught:
        state.ingest_untrusted(raw, NOW)
    assert caught.value.reason == "bad-signature"
    assert state.roots.current() == w.net.root.public


def test_hostile_rollover_by_a_revoked_admin() -> None:
    """An admin (revoked or not) signs a rollover from its own key: it is no root, so the
    rollover waits as unknown forever and what its "new root" certifies never stands."""
    w = World()
    admin = w.net.admin()
    thief = SigningKey.generate()
    forged = rollover(w.net, admin.key, thief)
    planted = w.net.founder("planted", issuer=Issuer(thief))
    revocation = w.net.revoke(admin.key.public, Role.ADMIN)
    for order in itertools.permutations([forged, planted.credential, revocation]):
        state = w.net.state()
        merge(state, [w.old_member.credential, *order])
        assert state.roots.current() == w.net.root.public
        assert state.member(planted.key.public, NOW) is None
        assert record_id(forged.raw) not in state.record_ids()


def test_hostile_two_rollovers_from_one_root() -> None:
    """The root signs two rollovers (or a thief of it signs a second): the one with the
    smallest (issued_at, record id) wins on every node, in every order; the other root's
    certificates do not stand."""
    w = World()
    rival = SigningKey.generate()
    second = rollover(w.net, w.net.root, rival, at=T0 + 60)
    rival_member = w.net.founder("rival", issuer=Issuer(rival))
    results = set()
    for order in itertools.permutations([*w.records(), second, rival_member.credential]):
        state = w.net.state()
        assert merge(state, order) == []
        assert state.roots.current() == w.new.public
        assert state_of(w.net, rival_member, state, NOW) == (
            MemberState.REVOKED,
            "root-superseded",
        )
        assert state_of(w.net, w.new_member, state, NOW) == (MemberState.ADMITTED, "")
        results.add(state.digest())
    assert len(results) == 1


def test_hostile_two_rollovers_from_one_root_at_the_same_time_are_decided_by_record_id() -> None:
    w = World()
    rival = SigningKey.generate()
    first = rollover(w.net, w.net.root, w.new, at=T0 + 50)
    second = rollover(w.net, w.net.root, rival, at=T0 + 50)
    winner = min((first, second), key=lambda r: record_id(r.raw))
    for order in ((first, second), (second, first)):
        state = w.net.state()
        merge(state, order)
        assert state.roots.current() == winner.new_root


def test_hostile_a_stolen_retired_root_is_still_fatal() -> None:
    """Documented limit: the first root's key, stolen after its rollover, signs a rollover
    backdated before the honest one: it wins. A stolen root key is fatal (threat model
    §3.11); the old root key must be destroyed once the rollover has spread."""
    w = World()
    thief = SigningKey.generate()
    backdated = rollover(w.net, w.net.root, thief, at=T0 + 1)
    state = w.net.state()
    merge(state, [*w.records(), backdated])
    assert state.roots.current() == thief.public
    assert state_of(w.net, w.new_member, state, NOW) == (MemberState.REVOKED, "root-superseded")


def test_hostile_certificates_under_the_old_root_after_the_overlap() -> None:
    """The retired root (or its thief) certifies a member after the overlap: the member is
    expired (root-retired) everywhere, whenever the certificate is dated."""
    w = World()
    for start in (T0 + 10, AFTER + 10):
        late = make_certificate(
            w.net.root,
            network_id=w.net.anchor.network_id,
            subject=SigningKey.generate().public,
            role=Role.MEMBER,
            serial=os.urandom(16),
            not_before=start,
            not_after=AFTER + 365 * DAY,
            name="late",
            wg_key=WireGuardKey.generate().public,
        )
        state = w.net.state()
        merge(state, [w.rollover, late], now=AFTER + 20)
        member = state.member(late.subject, AFTER + 20)
        assert member is not None
        assert (member.state, member.reason) == (MemberState.EXPIRED, "root-retired")


def test_hostile_rollover_back_to_the_first_root() -> None:
    w = World()
    back = rollover(w.net, w.new, w.net.root, at=T0 + 70)
    state = w.net.state()
    merge(state, [w.rollover])
    with pytest.raises(VerifyError) as caught:
        state.ingest(back, NOW)
    assert caught.value.reason == "bad-target"


def test_hostile_rollover_with_its_overlap_ending_before_it() -> None:
    w = World()
    state = w.net.state()
    with pytest.raises(VerifyError) as caught:
        state.ingest(rollover(w.net, w.net.root, w.new, at=T0 + 50, until=T0 + 49), NOW)
    assert caught.value.reason == "bad-validity"


def test_hostile_rollover_from_another_network() -> None:
    w = World()
    other = Net()
    state = w.net.state()
    with pytest.raises(VerifyError) as caught:
        state.ingest(rollover(other, w.net.root, w.new), NOW)
    assert caught.value.reason == "wrong-network"


def test_hostile_rollover_dated_beyond_the_clock_skew() -> None:
    w = World()
    state = w.net.state()
    with pytest.raises(VerifyError) as caught:
        state.ingest(rollover(w.net, w.net.root, w.new, at=NOW + 301, until=NOW + DAY), NOW)
    assert caught.value.reason == "not-yet-valid"


def test_hostile_rollover_with_a_short_key() -> None:
    w = World()
    items = body_items(w.rollover)
    items[4] = bytes(31)
    with pytest.raises(DecodeError):
        w.net.state().ingest_untrusted(sign_items(w.net.root, items), NOW)


def test_credentials_end_at_the_overlap_unless_certified_again_by_the_new_root() -> None:
    """What `peers` shows and the expiry warnings count from: a member under the old root
    ends when the overlap does; one certified again by the new root ends with that."""
    w = World()
    state = w.net.state()
    merge(state, w.records())
    assert state.credentials_end(w.old_member.key.public) == OVERLAP_END
    new_cert, old_cert = w.new_member.credential, w.old_member.credential
    assert isinstance(new_cert, Certificate)
    assert isinstance(old_cert, Certificate)
    assert state.credentials_end(w.new_member.key.public) == new_cert.not_after
    without = w.net.state()
    merge(without, [old_cert])
    assert without.credentials_end(w.old_member.key.public) == old_cert.not_after


# --- carried over the overlap, and what a retired root signs after it ----------------------


def renewal(issuer: Issuer, net: Net, subject: bytes, *, at: int, until: int) -> Renewal:
    return make_renewal(
        issuer.key,
        network_id=net.anchor.network_id,
        subject=subject,
        issued_at=at,
        not_after=until,
        chain=issuer.chain,
    )


def admin_under(w: World, root: SigningKey, admin: Issuer) -> Issuer:
    """The same admin key, certified (again) by ``root``."""
    assert admin.certificate is not None
    cert = make_certificate(
        root,
        network_id=w.net.anchor.network_id,
        subject=admin.key.public,
        role=Role.ADMIN,
        serial=os.urandom(16),
        not_before=T0 + 60,
        not_after=T0 + 3 * 365 * DAY,
        caps=admin.certificate.caps,
        name="admin",
        prefixes=admin.certificate.prefixes,
    )
    return Issuer(admin.key, cert)


def test_a_renewal_under_the_new_root_carries_a_member_of_the_old_one_over_the_overlap() -> None:
    """A member certified by the old root is re-anchored by a renewal signed by the new root:
    it stands after the overlap, until the renewal's end."""
    w = World()
    until = T0 + 400 * DAY
    carried = renewal(Issuer(w.new), w.net, w.old_member.key.public, at=T0 + 70, until=until)
    for order in itertools.permutations([*w.records(), carried]):
        state = w.net.state()
        assert merge(state, order) == []
        assert state_of(w.net, w.old_member, state, AFTER) == (MemberState.ADMITTED, "")
        assert state.credentials_end(w.old_member.key.public) == until
        assert state_of(w.net, w.old_member, state, until + 1) == (
            MemberState.EXPIRED,
            "credential-expired",
        )


def test_an_admin_certified_again_carries_whom_it_admitted_under_its_old_certificate() -> None:
    """An admin's invite under its old certificate admits a member during the overlap; the
    same admin key, certified again by the new root, renews it: it stands after the overlap."""
    w = World()
    admin = w.net.admin()
    invite = w.net.invite(issuer=admin, at=T0 + 60, member_ttl=365 * DAY)
    state = w.net.state()
    merge(state, w.records(), now=T0 + 61)
    joiner = w.net.join(state, w.old_member, invite, "joiner", at=T0 + 61)
    again = admin_under(w, w.new, admin)
    carried = renewal(again, w.net, joiner.key.public, at=T0 + 70, until=T0 + 300 * DAY)
    assert merge(state, [joiner.credential, carried], now=T0 + 71) == []
    assert state_of(w.net, joiner, state, AFTER) == (MemberState.ADMITTED, "")
    # Its old certificate's renewal alone does not: what the old root gives ends with it.
    without = w.net.state()
    stale = renewal(admin, w.net, joiner.key.public, at=T0 + 70, until=T0 + 300 * DAY)
    assert merge(without, [*w.records(), joiner.credential, stale], now=T0 + 71) == []
    assert state_of(w.net, joiner, without, OVERLAP_END) == (MemberState.ADMITTED, "")
    assert state_of(w.net, joiner, without, AFTER) == (MemberState.EXPIRED, "root-retired")
    assert without.credentials_end(joiner.key.public) == OVERLAP_END


def test_one_renewal_is_kept_per_issuer_and_root() -> None:
    """An admin's renewal under its old certificate, ending later, does not replace the one
    it signed under the new root: each root's is kept, and the old one leaves with its root."""
    w = World()
    admin = w.net.admin()
    again = admin_under(w, w.new, admin)
    member = w.old_member.key.public
    under_new = renewal(again, w.net, member, at=T0 + 70, until=T0 + 300 * DAY)
    under_old = renewal(admin, w.net, member, at=T0 + 71, until=T0 + 364 * DAY)
    for order in ((under_new, under_old), (under_old, under_new)):
        state = w.net.state()
        assert merge(state, [*w.records(), *order], now=T0 + 72) == []
        assert len(state.renewals_of(member)) == 2
        assert state.credentials_end(member) == T0 + 300 * DAY
        state.tick(AFTER)
        assert state.renewals_of(member) == [under_new]


def test_hostile_renewal_under_the_old_root_after_the_overlap() -> None:
    """The retired root (or its thief) renews a member after the overlap, dated inside it:
    refused (root-retired), counted; the member's end does not move."""
    w = World()
    state = w.net.state()
    merge(state, w.records())
    forged = renewal(
        w.net.issuer, w.net, w.new_member.key.public, at=T0 + 100, until=T0 + 9000 * DAY
    )
    before = state.credentials_end(w.new_member.key.public)
    with pytest.raises(VerifyError) as caught:
        state.ingest(forged, AFTER + DAY)
    assert caught.value.reason == "root-retired"
    batch = state.merge_batch([forged], AFTER + DAY)
    assert batch.rejected == ("root-retired",)
    assert state.credentials_end(w.new_member.key.public) == before


def test_a_renewal_by_the_old_root_during_the_overlap_gives_nothing_after_it() -> None:
    """Signed during the overlap, it counts until the overlap ends (never past it), then
    leaves the set on every node: those that held it and those that get it later."""
    w = World()
    old = renewal(w.net.issuer, w.net, w.new_member.key.public, at=T0 + 100, until=T0 + 900 * DAY)
    cert = w.new_member.credential
    assert isinstance(cert, Certificate)
    held = w.net.state()
    merge(held, [*w.records(), old])
    assert held.credentials_end(w.new_member.key.public) == cert.not_after
    held.tick(AFTER)
    assert held.renewals_of(w.new_member.key.public) == []
    late = w.net.state()
    assert merge(late, [*w.records(), old], now=AFTER) == ["root-retired"]
    assert held.digest() == late.digest()


def revocation_by(issuer: Issuer, net: Net, target: bytes, *, at: int) -> Revocation:
    return net.revoke(target, at=at, issuer=issuer, sponsored=[])


def test_hostile_revocation_by_the_retired_root_dated_inside_the_overlap_received_after() -> None:
    """A thief of the retired root key revokes a member after the overlap, dating it inside:
    refused (root-retired) on every node, whatever its date; nobody is revoked."""
    w = World()
    forged = revocation_by(w.net.issuer, w.net, w.new_member.key.public, at=T0 + 200)
    state = w.net.state()
    merge(state, w.records())
    assert merge(state, [forged], now=AFTER + DAY) == ["root-retired"]
    assert state_of(w.net, w.new_member, state, AFTER + DAY) == (MemberState.ADMITTED, "")
    # The same from an admin certified by the retired root.
    admin = w.net.admin()
    by_admin = revocation_by(admin, w.net, w.new_member.key.public, at=T0 + 200)
    assert merge(state, [by_admin], now=AFTER + DAY) == ["root-retired"]
    assert not state.is_revoked(w.new_member.key.public)


def test_a_revocation_under_the_old_root_is_for_good_through_its_copy_under_the_new() -> None:
    """The old root's revocation made during the overlap, and its copy under the new root
    (what `meshd root rollover` and auto-renewing daemons sign): the member stays revoked
    after the overlap on every node, including one offline through the whole overlap; the
    old root's own leaves the set."""
    w = World()
    target = w.new_member.key.public
    original = revocation_by(w.net.issuer, w.net, target, at=T0 + 80)
    copy = revocation_by(Issuer(w.new), w.net, target, at=T0 + 90)
    online = w.net.state()
    merge(online, [*w.records(), original, copy], now=T0 + 95)
    online.tick(AFTER)
    assert online.revocations() == [copy]
    offline = w.net.state()
    records = [*w.records(), original, copy]
    random.Random(3).shuffle(records)
    batch = offline.ingest_batch([r.raw for r in records], AFTER)
    assert batch.rejected == ("root-retired",)
    assert offline.digest() == online.digest()
    for state in (online, offline):
        assert state_of(w.net, w.new_member, state, AFTER) == (MemberState.REVOKED, "revoked")


def test_limit_an_old_root_revocation_nobody_carried_over_lapses_with_the_overlap() -> None:
    """Documented limit (threat model §3.19): a revocation signed under the old root that no
    holder of a key under the new root copied during the overlap stops counting when the
    overlap ends, like everything that root signed."""
    w = World()
    target = w.new_member.key.public
    state = w.net.state()
    merge(state, [*w.records(), revocation_by(w.net.issuer, w.net, target, at=T0 + 80)])
    assert state_of(w.net, w.new_member, state, OVERLAP_END) == (MemberState.REVOKED, "revoked")
    state.tick(AFTER)
    assert state.revocations() == []
    assert state_of(w.net, w.new_member, state, AFTER) == (MemberState.ADMITTED, "")


def test_revocations_of_a_superseded_root_do_not_count() -> None:
    """Two rollovers from one root: the losing root's revocations leave the set (its
    certificates do not stand either), in either order."""
    w = World()
    rival = SigningKey.generate()
    second = rollover(w.net, w.net.root, rival, at=T0 + 60)
    by_rival = revocation_by(Issuer(rival), w.net, w.old_member.key.public, at=T0 + 65)
    pair: list[Record] = [second, by_rival]
    for order in itertools.permutations(pair):
        state = w.net.state()
        refused = merge(state, [*w.records(), *order])
        assert refused in ([], ["root-superseded"])
        assert not state.is_revoked(w.old_member.key.public)
        assert record_id(by_rival.raw) not in state.record_ids()


def test_hostile_an_admin_revokes_the_new_root_key() -> None:
    """An admin (or a thief of an admin key with the revoke capability) revokes the key a
    rollover names, to have every renewal by the new root refused (issuer-revoked): a root
    key cannot be revoked, in either order; the new root's renewals count."""
    w = World()
    admin = w.net.admin()
    attack = revocation_by(admin, w.net, w.new.public, at=T0 + 40)
    carried = renewal(
        Issuer(w.new), w.net, w.old_member.key.public, at=T0 + 70, until=T0 + 400 * DAY
    )
    pair: list[Record] = [w.rollover, attack]
    for order in itertools.permutations(pair):
        state = w.net.state()
        refused = merge(state, [*order, w.old_member.credential, carried])
        assert refused in ([], ["bad-target"])
        assert not state.is_revoked(w.new.public)
        assert record_id(attack.raw) not in state.record_ids()
        assert state_of(w.net, w.old_member, state, AFTER) == (MemberState.ADMITTED, "")
