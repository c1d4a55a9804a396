"""The membership state core: events, cascades, the pending pool, sponsors and digests."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import os
from typing import Any

import pytest

from meshd.errors import VerifyError
from meshd.membership import (
    BUCKETS,
    Admitted,
    Expired,
    Membership,
    MemberState,
    Revoked,
    Updated,
)
from meshd.records import (
    Admission,
    Certificate,
    Enrollment,
    Invite,
    Kind,
    Role,
    make_admission,
    make_certificate,
    record_id,
)
from meshd.trust.invites import enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import DAY, T0, Net, Node

NOW = T0 + 100


def network() -> tuple[Net, Node, Membership]:
    net = Net()
    founder = net.founder()
    state = net.state()
    state.ingest(founder.credential, NOW)
    return net, founder, state


def state_of(state: Membership, node: Node, now: int = NOW) -> tuple[MemberState, str]:
    member = state.member(node.key.public, now)
    assert member is not None
    return member.state, member.reason


def stranger(net: Net, founder: Node) -> Node:
    return Node(SigningKey.generate(), WireGuardKey.generate(), "stranger", founder.credential)


# --- events -------------------------------------------------------------------------------


def test_founder_certificate_admits() -> None:
    net = Net()
    founder = net.founder()
    state = net.state()
    outcome = state.ingest(founder.credential, NOW)
    assert outcome.new
    assert not outcome.pending
    assert [s.kind for s in outcome.stored] == [Kind.CERTIFICATE]
    assert outcome.stored[0].rid == record_id(founder.credential.raw)
    [event] = outcome.events
    assert isinstance(event, Admitted)
    assert event.member.node_key == founder.key.public
    assert event.member.name == "founder"
    assert event.member.wg_key == founder.wg.public
    assert event.member.state is MemberState.ADMITTED
    assert event.member.overlay in net.anchor.overlay
    assert len(state) == 1


def test_admission_admits_the_joiner() -> None:
    net, founder, state = network()
    node = net.join(state, founder, net.invite(), "joiner")
    outcome = state.ingest(node.credential, NOW)
    assert [type(e) for e in outcome.events] == [Admitted]
    assert outcome.events[0].member.name == "joiner"
    assert state_of(state, node) == (MemberState.ADMITTED, "")
    assert state.invite_uses(node.credential.enrollment.invite.subject) == 1  # type: ignore[union-attr]


def test_announcements_update_and_supersede() -> None:
    net, founder, state = network()
    first = founder.announce(net, NOW, endpoints=["192.0.2.1:51820"])
    outcome = state.ingest(first, NOW)
    [event] = outcome.events
    assert isinstance(event, Updated)
    assert event.member.announcement == first
    assert [s.node_key for s in outcome.stored] == [founder.key.public]

    second = founder.announce(net, NOW + 1, endpoints=["192.0.2.2:51820"])
    outcome = state.ingest(second, NOW + 1)
    assert isinstance(outcome.events[0], Updated)
    assert state.record(record_id(first.raw)) is None
    assert record_id(first.raw) not in state.record_ids()
    member = state.member(founder.key.public, NOW + 1)
    assert member is not None
    assert member.announcement == second
    assert member.last_seen == NOW + 1


def test_a_refresh_that_says_nothing_new_is_no_event() -> None:
    """Members re-announce all the time to show they are there: only a change of endpoints,
    addresses or prefixes is an Updated event (what WireGuard and Babel act on)."""
    net, founder, state = network()
    state.ingest(founder.announce(net, NOW, endpoints=["192.0.2.1:51820"]), NOW)
    same = founder.announce(net, NOW + 5, endpoints=["192.0.2.1:51820"])
    outcome = state.ingest(same, NOW + 5)
    assert outcome.new
    assert outcome.events == ()
    assert [s.rid for s in outcome.stored] == [record_id(same.raw)]
    member = state.member(founder.key.public, NOW + 5)
    assert member is not None
    assert member.announcement == same
    assert member.last_seen == NOW + 5
    moved = founder.announce(net, NOW + 6, addrs=["/ip4/192.0.2.9/tcp/4001"])
    [event] = state.ingest(moved, NOW + 6).events
    assert isinstance(event, Updated)
    assert event.member.announcement == moved


def test_a_batch_nets_out_what_it_replaced() -> None:
    """Several announcements of one member in a batch: the store writes only the last, and
    one Updated event, emitted after the rest, carries it."""
    net, founder, state = network()
    state.ingest(founder.announce(net, NOW, endpoints=["192.0.2.1:51820"]), NOW)
    joiner = net.join(state, founder, net.invite(), "joiner")
    first = founder.announce(net, NOW + 1, endpoints=["192.0.2.2:51820"])
    last = founder.announce(net, NOW + 2, endpoints=["192.0.2.3:51820"])
    stale = first
    batch = state.ingest_batch([last.raw, first.raw, joiner.credential.raw, b"junk"], NOW + 2)
    assert batch.new == 2  # the credential and ``last``; ``first`` came after ``last``
    assert sorted(batch.rejected) == ["decode", "stale-announcement"]
    assert [s.rid for s in batch.stored] == [
        record_id(joiner.credential.raw),
        record_id(last.raw),
    ]
    assert [type(e) for e in batch.events] == [Admitted, Updated]
    assert batch.events[1].member.announcement == last
    assert state.record(record_id(stale.raw)) is None


def test_a_batch_with_signatures_checked_still_checks_everything_else() -> None:
    net, founder, state = network()
    state.ingest(founder.announce(net, NOW), NOW)
    outsider = stranger(net, founder)
    other_net = Net()
    batch = state.merge_batch(
        [
            founder.announce(net, NOW + 10 * DAY),  # from the future
            founder.announce(other_net, NOW),  # another network
            outsider.announce(net, NOW),  # nobody knows it: waits in the pool
        ],
        NOW,
        announcements_checked=True,
    )
    assert sorted(batch.rejected) == ["not-yet-valid", "wrong-network"]
    assert batch.new == 0
    assert state.pending_count == 1


def test_announcement_with_equal_seq_is_decided_by_record_id() -> None:
    net, founder, state = network()
    a = founder.announce(net, NOW, endpoints=["192.0.2.1:1"])
    founder.seq -= 1
    b = founder.announce(net, NOW, endpoints=["192.0.2.2:2"])
    low, high = sorted([a, b], key=lambda r: record_id(r.raw))
    state.ingest(low, NOW)
    state.ingest(high, NOW)
    with pytest.raises(VerifyError) as info:
        state.ingest(low, NOW)
    assert info.value.reason == "stale-announcement"
    assert state.member(founder.key.public, NOW).announcement == high  # type: ignore[union-attr]


def test_silent_member_expires_on_tick_and_returns_on_refresh() -> None:
    net = Net()
    founder = net.founder()
    state = net.state(announce_ttl=3600)
    state.ingest(founder.credential, NOW)
    assert state.tick(NOW + 3600) == ()
    [event] = state.tick(NOW + 3601)
    assert isinstance(event, Expired)
    assert event.member.reason == "silent"
    assert state.tick(NOW + 3602) == ()  # reported once

    later = NOW + 7200
    outcome = state.ingest(founder.announce(net, later), later)
    [back] = outcome.events
    assert isinstance(back, Admitted)
    assert back.member.last_seen == later
    assert state.tick(later + 3600) == ()
    assert isinstance(state.tick(later + 3601)[0], Expired)


def test_credential_end_expires_on_tick() -> None:
    net = Net()
    founder = net.founder()
    invite = net.invite(member_ttl=1000)
    state = net.state()
    state.ingest(founder.credential, NOW)
    node = net.join(state, founder, invite, "short", at=NOW)
    state.ingest(node.credential, NOW)
    assert state.tick(NOW + 1000) == ()
    [event] = state.tick(NOW + 1001)
    assert isinstance(event, Expired)
    assert event.member.reason == "credential-expired"
    assert event.member.not_after == NOW + 1000


def test_revocation_emits_revoked_and_drops_the_announcement() -> None:
    net, founder, state = network()
    node = net.join(state, founder, net.invite(), "joiner")
    state.ingest(node.credential, NOW)
    ann = node.announce(net, NOW)
    state.ingest(ann, NOW)
    rev = net.revoke(node.key.public)
    outcome = state.ingest(rev, NOW)
    assert outcome.new
    assert outcome.dropped == (record_id(ann.raw),)
    [event] = outcome.events
    assert isinstance(event, Revoked)
    assert event.member.reason == "revoked"
    assert event.member.announcement is None
    assert state.is_revoked(node.key.public)
    assert state.revocations() == [rev]
    # Revoked for good: a later tick says nothing new, a fresh announcement is refused.
    assert state.tick(NOW + DAY) == ()
    with pytest.raises(VerifyError) as info:
        state.ingest(node.announce(net, NOW), NOW)
    assert info.value.reason == "revoked"


def test_revocation_of_an_unknown_key_is_kept() -> None:
    net, _, state = network()
    target = SigningKey.generate().public
    outcome = state.ingest(net.revoke(target), NOW)
    assert outcome.new
    assert outcome.events == ()
    assert state.is_revoked(target)


# --- cascade ------------------------------------------------------------------------------


def test_revoking_an_invite_excludes_its_members_only() -> None:
    net, founder, state = network()
    invite = net.invite(uses=2)
    first = net.join(state, founder, invite, "first")
    state.ingest(first.credential, NOW)
    second = net.join(state, founder, invite, "second")
    state.ingest(second.credential, NOW)
    other = net.join(state, founder, net.invite(), "other")
    state.ingest(other.credential, NOW)

    outcome = state.ingest(net.revoke(invite.certificate.subject, Role.INVITE), NOW)
    revoked = sorted(e.member.name for e in outcome.events if isinstance(e, Revoked))
    assert revoked == ["first", "second"]
    assert state_of(state, first) == (MemberState.REVOKED, "issuer-revoked")
    assert state_of(state, other) == (MemberState.ADMITTED, "")
    assert state_of(state, founder) == (MemberState.ADMITTED, "")


def test_revoking_an_admin_excludes_everything_issued_through_it() -> None:
    net, founder, state = network()
    admin = net.admin()
    certified = net.founder("certified", issuer=admin)
    state.ingest(certified.credential, NOW)
    invited = net.join(state, founder, net.invite(issuer=admin), "invited")
    state.ingest(invited.credential, NOW)
    by_root = net.join(state, founder, net.invite(), "by-root")
    state.ingest(by_root.credential, NOW)
    for node in (certified, invited):
        state.ingest(node.announce(net, NOW), NOW)

    outcome = state.ingest(net.revoke(admin.key.public, Role.ADMIN), NOW)
    assert sorted(e.member.name for e in outcome.events) == ["certified", "invited"]
    assert len(outcome.dropped) == 2
    for node in (certified, invited):
        assert state_of(state, node) == (MemberState.REVOKED, "issuer-revoked")
    assert state_of(state, by_root) == (MemberState.ADMITTED, "")
    # Records issued through the admin after its revocation are excluded as they arrive.
    late = net.founder("late", issuer=admin)
    outcome = state.ingest(late.credential, NOW)
    assert isinstance(outcome.events[0], Revoked)


def test_revocation_by_an_admin_with_the_capability() -> None:
    net, founder, state = network()
    admin = net.admin()
    outcome = state.ingest(net.revoke(founder.key.public, issuer=admin), NOW)
    assert isinstance(outcome.events[0], Revoked)


# --- the pending pool ---------------------------------------------------------------------


def test_announcement_before_admission_is_adopted() -> None:
    net, founder, state = network()
    node = net.join(state, founder, net.invite(), "joiner")
    ann = node.announce(net, NOW)
    outcome = state.ingest(ann, NOW)
    assert outcome.pending
    assert not outcome.new
    assert outcome.stored == ()
    assert state.pending_count == 1
    assert state.record(record_id(ann.raw)) is None
    # Offered again while waiting: still waiting, counted once.
    assert state.ingest(ann, NOW).pending
    assert state.pending_count == 1

    outcome = state.ingest(node.credential, NOW)
    assert outcome.new
    assert [s.kind for s in outcome.stored] == [Kind.ADMISSION, Kind.ANNOUNCEMENT]
    [event] = outcome.events
    assert isinstance(event, Admitted)
    assert event.member.announcement == ann
    assert state.pending_count == 0


def test_admission_before_its_sponsor_is_adopted() -> None:
    net = Net()
    founder = net.founder()
    elsewhere = net.state()
    elsewhere.ingest(founder.credential, NOW)
    node = net.join(elsewhere, founder, net.invite(), "joiner")

    state = net.state()
    assert state.ingest(node.credential, NOW).pending
    ann = node.announce(net, NOW)
    assert state.ingest(ann, NOW).pending
    assert state.pending_count == 2
    outcome = state.ingest(founder.credential, NOW)
    assert [s.kind for s in outcome.stored] == [Kind.CERTIFICATE, Kind.ADMISSION, Kind.ANNOUNCEMENT]
    assert sorted(e.member.name for e in outcome.events) == ["founder", "joiner"]
    assert state.pending_count == 0
    # The same set as the sponsor's side, which saw them in order.
    elsewhere.ingest(node.credential, NOW)
    elsewhere.ingest(ann, NOW)
    assert state.record_ids() == elsewhere.record_ids()
    assert state.digest() == elsewhere.digest()


def test_pending_pool_is_bounded_and_a_flood_cannot_freeze_it() -> None:
    """Anyone can sign announcements that wait forever; a full pool pushes out the record that
    waited longest, so an honest record that comes after a flood still waits and is adopted."""
    net = Net()
    founder = net.founder()
    state = net.state(max_pending=3)
    state.ingest(founder.credential, NOW)
    flood = [stranger(net, founder) for _ in range(5)]
    for node in flood:
        assert state.ingest(node.announce(net, NOW), NOW).pending
    assert state.pending_count == 3
    assert state.pending_evicted == 2
    joiner = net.join(state, founder, net.invite(), "joiner")
    early = joiner.announce(net, NOW, endpoints=["192.0.2.7:51820"])
    assert state.ingest(early, NOW).pending  # before its credential: it waits
    assert state.pending_count == 3
    outcome = state.ingest(joiner.credential, NOW)
    assert record_id(early.raw) in [s.rid for s in outcome.stored]
    member = state.member(joiner.key.public, NOW)
    assert member is not None
    assert member.announcement == early
    # A revocation of a waiting key frees the places of its own records.
    state.ingest(net.revoke(flood[-1].key.public), NOW)
    assert state.pending_count == 1


def test_pending_record_that_turns_out_bad_is_dropped() -> None:
    net, founder, state = network()
    node = net.join(state, founder, net.invite(), "joiner")
    hijack = node.announce(net, NOW, prefixes=[ipaddress.ip_network("10.0.0.0/8")])
    assert state.ingest(hijack, NOW).pending
    outcome = state.ingest(node.credential, NOW)
    assert [s.kind for s in outcome.stored] == [Kind.ADMISSION]
    assert state.pending_count == 0
    assert state.member(node.key.public, NOW).announcement is None  # type: ignore[union-attr]


# --- sponsors -----------------------------------------------------------------------------


def enrollment_for(net: Net, at: int = T0 + 10) -> tuple[Invite, Enrollment]:
    invite = net.invite()
    key = SigningKey.generate()
    return invite, enroll(
        invite, node_key=key.public, wg_key=WireGuardKey.generate().public, name="j", now=at
    )


def test_sponsor_countersigns_with_its_clock() -> None:
    net, founder, state = network()
    _, enrollment = enrollment_for(net)
    admission = state.sponsor(founder.key, enrollment, NOW)
    assert admission.sponsor == founder.key.public
    assert admission.admitted_at == NOW
    assert admission.enrollment == enrollment
    assert state.ingest(admission, NOW).new


def test_sponsor_refuses_when_not_a_member() -> None:
    net, _, state = network()
    _, enrollment = enrollment_for(net)
    for key in (SigningKey.generate(), net.root):
        with pytest.raises(VerifyError) as info:
            state.sponsor(key, enrollment, NOW)
        assert info.value.reason == "sponsor-not-member"


def test_revoked_member_cannot_sponsor() -> None:
    net, founder, state = network()
    state.ingest(net.revoke(founder.key.public), NOW)
    _, enrollment = enrollment_for(net)
    with pytest.raises(VerifyError) as info:
        state.sponsor(founder.key, enrollment, NOW)
    assert info.value.reason == "sponsor-not-member"


def test_invite_admits_up_to_its_uses() -> None:
    net, founder, state = network()
    invite = net.invite(uses=2)
    for name in ("a", "b"):
        state.ingest(net.join(state, founder, invite, name).credential, NOW)
    with pytest.raises(VerifyError) as info:
        net.join(state, founder, invite, "c")
    assert info.value.reason == "invite-used-up"
    assert state.invite_uses(invite.certificate.subject) == 2


def test_conflicting_admissions_rank_by_sponsor_time_then_enrollment_id() -> None:
    net, founder, state = network()
    other = net.founder("other")
    state.ingest(other.credential, NOW)
    invite = net.invite()
    # Same sponsor time on both sides of a partition: the enrollment's record id decides.
    sides = []
    for sponsor, name in ((founder, "left"), (other, "right")):
        side = net.state()
        side.ingest(founder.credential, NOW)
        side.ingest(other.credential, NOW)
        sides.append(net.join(side, sponsor, invite, name, at=T0 + 50))
    winner, loser = sorted(sides, key=lambda n: n.enrollment_id)
    for node in (loser, winner):
        state.ingest(node.credential, NOW)
    assert state_of(state, winner) == (MemberState.ADMITTED, "")
    assert state_of(state, loser) == (MemberState.REVOKED, "invite-used-up")


def test_earlier_admission_displaces_a_later_one() -> None:
    net, founder, state = network()
    other = net.founder("other")
    state.ingest(other.credential, NOW)
    invite = net.invite()
    side = net.state()
    side.ingest(other.credential, NOW)
    late = net.join(state, founder, invite, "late", at=T0 + 60)
    early = net.join(side, other, invite, "early", at=T0 + 30)
    state.ingest(late.credential, NOW)
    outcome = state.ingest(early.credential, NOW)
    events = {e.member.name: type(e) for e in outcome.events}
    assert events == {"early": Admitted, "late": Revoked}
    assert state_of(state, late) == (MemberState.REVOKED, "invite-used-up")
    assert state.invite_uses(invite.certificate.subject) == 2


# --- digests ------------------------------------------------------------------------------


def test_bucket_digests_agree_with_digest_and_record_ids() -> None:
    net, founder, state = network()
    for name in ("a", "b", "c"):
        node = net.join(state, founder, net.invite(), name)
        state.ingest(node.credential, NOW)
        state.ingest(node.announce(net, NOW), NOW)
    state.ingest(net.revoke(SigningKey.generate().public), NOW)

    buckets = state.bucket_digests()
    assert len(buckets) == BUCKETS
    expected = hashlib.sha256(b"meshd digest v1\x00" + b"".join(buckets)).digest()[:16]
    assert state.digest() == expected
    total = 0
    for index, bucket in enumerate(buckets):
        ids = state.record_ids(index)
        assert all(rid[0] == index for rid in ids)
        assert int.from_bytes(bucket[16:], "big") == len(ids)
        total += len(ids)
        if not ids:
            assert bucket == bytes(20)
    assert total == len(state) == len(state.record_ids())
    assert sorted(rid for i in range(BUCKETS) for rid in state.record_ids(i)) == state.record_ids()


def test_digest_follows_the_set_not_the_history() -> None:
    net, founder, state = network()
    empty = net.state().digest()
    assert state.digest() != empty
    before = state.digest()
    first = founder.announce(net, NOW)
    state.ingest(first, NOW)
    with_first = state.digest()
    assert with_first != before
    state.ingest(founder.announce(net, NOW), NOW)
    # Same set as a state that only ever saw the certificate and the newest announcement.
    fresh = net.state()
    for rid in state.record_ids():
        raw = state.record(rid)
        assert raw is not None
        fresh.ingest_untrusted(raw, NOW)
    assert fresh.digest() == state.digest()
    assert fresh.bucket_digests() == state.bucket_digests()
    assert state.digest() not in (before, with_first)


# --- ordering and renewal ------------------------------------------------------------------------


def test_renewed_certificate_keeps_the_member_admitted() -> None:
    net, founder, state = network()
    renewal = make_certificate(
        net.root,
        network_id=net.anchor.network_id,
        subject=founder.key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=T0 + 300 * DAY,
        not_after=T0 + 700 * DAY,
        name="founder",
        wg_key=founder.wg.public,
    )
    state.ingest(renewal, T0 + 300 * DAY)
    assert state_of(state, founder, T0 + 400 * DAY) == (MemberState.ADMITTED, "")


def test_displaced_member_loses_its_announcement() -> None:
    net, founder, state = network()
    other = net.founder("other")
    state.ingest(other.credential, NOW)
    invite = net.invite()
    side = net.state()
    side.ingest(other.credential, NOW)
    late = net.join(state, founder, invite, "late", at=T0 + 60)
    early = net.join(side, other, invite, "early", at=T0 + 30)
    ann = late.announce(net, NOW)
    state.ingest(late.credential, NOW)
    state.ingest(ann, NOW)
    outcome = state.ingest(early.credential, NOW)
    assert record_id(ann.raw) in outcome.dropped
    assert state.record(record_id(ann.raw)) is None


def test_sponsor_revocation_does_not_depend_on_arrival_order() -> None:
    net = Net()
    founder = net.founder()
    side = net.state()
    side.ingest(founder.credential, NOW)
    node = net.join(side, founder, net.invite(), "joiner")
    revocation = net.revoke(founder.key.public, sponsored=[node.enrollment_id])

    states = []
    for order in (
        [founder.credential, node.credential, revocation],
        [node.credential, revocation, founder.credential],
        [revocation, founder.credential, node.credential],
    ):
        state = net.state()
        for record in order:
            state.ingest(record, NOW)
        states.append(state)
        assert state_of(state, node) == (MemberState.ADMITTED, "")
    assert all(s.record_ids() == states[0].record_ids() for s in states)


# --- revocations name what their subject sponsored (rule b) ---------------------------------


def test_a_revoked_sponsor_admits_only_what_its_revocation_lists() -> None:
    """Of a revoked key's countersignatures, only those its revocations list stand, whatever
    their dates; what the listed members sponsored stands with them."""
    net, founder, state = network()
    sponsor = net.join(state, founder, net.invite(), "sponsor", at=T0 + 10)
    state.ingest(sponsor.credential, NOW)
    listed = net.join(state, sponsor, net.invite(), "listed", at=T0 + 20)
    state.ingest(listed.credential, NOW)
    below = net.join(state, listed, net.invite(), "below", at=T0 + 25)
    state.ingest(below.credential, NOW)
    unlisted = net.join(state, sponsor, net.invite(), "unlisted", at=T0 + 30)
    revocation = net.revoke(sponsor.key.public, at=T0 + 40, sponsored=[listed.enrollment_id])
    assert state.sponsored_by(sponsor.key.public) == [listed.enrollment_id]
    outcome = state.ingest(revocation, NOW)
    assert {e.member.name for e in outcome.events} == {"sponsor"}
    state.ingest(unlisted.credential, NOW)
    assert state_of(state, sponsor) == (MemberState.REVOKED, "revoked")
    assert state_of(state, listed) == (MemberState.ADMITTED, "")
    assert state_of(state, below) == (MemberState.ADMITTED, "")
    # Dated before the revocation, and not listed: it does not stand.
    assert state_of(state, unlisted) == (MemberState.REVOKED, "sponsor-not-member")
    # A later revocation of the same key that lists it lets it stand: the lists add up.
    more = net.revoke(sponsor.key.public, at=T0 + 50, sponsored=[unlisted.enrollment_id])
    outcome = state.ingest(more, NOW)
    assert [(type(e), e.member.name) for e in outcome.events] == [(Admitted, "unlisted")]


# --- legacy revocations (no list: written before revocations had one) ----------------------


def _countersigned(net: Net, sponsor: Node, name: str, at: int, lifetime: int = DAY) -> Node:
    """A member ``sponsor`` countersigns with ``admitted_at=at``, whether or not it stands."""
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    invite = net.invite(lifetime=lifetime)
    enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name=name, now=at - 5)
    return Node(key, wg, name, make_admission(sponsor.key, enrollment=enrollment, admitted_at=at))


def test_a_legacy_revocation_keeps_the_date_rule_until_a_listed_one_arrives() -> None:
    """While every revocation of a key is legacy, its countersignatures dated before the
    earliest of them stand, as before lists existed: the backdating of attack 2 (a stolen
    expired token's enrollment countersigned after the revocation, dated before it) stands
    too. Once a listed revocation of the key is in the set, only its list counts. Same end
    state in every arrival order."""
    net, founder, first = network()
    sponsor = net.join(first, founder, net.invite(), "sponsor", at=T0 + 10)
    before = _countersigned(net, sponsor, "before", T0 + 20)
    backdated = _countersigned(net, sponsor, "backdated", T0 + 40, lifetime=60)
    after = _countersigned(net, sponsor, "after", T0 + 80)
    legacy = net.revoke(sponsor.key.public, at=T0 + 70, sponsored=None)
    later_legacy = net.revoke(sponsor.key.public, at=T0 + 30, sponsored=None)
    assert legacy.legacy
    assert later_legacy.legacy
    listed = net.revoke(sponsor.key.public, at=T0 + 90, sponsored=[before.enrollment_id])
    members = (before, backdated, after)

    def judged(records: list[Any]) -> tuple[Membership, list[tuple[MemberState, str]]]:
        state = net.state()
        for record in (founder.credential, sponsor.credential, *records):
            state.ingest(record, NOW)
        return state, [state_of(state, m) for m in (sponsor, *members)]

    admitted, unsponsored = (MemberState.ADMITTED, ""), (MemberState.REVOKED, "sponsor-not-member")
    revoked = (MemberState.REVOKED, "revoked")
    credentials = [m.credential for m in members]
    state, states = judged([legacy, *credentials])
    assert states == [revoked, admitted, admitted, unsponsored]
    assert state.only_legacy_revocations(sponsor.key.public)
    # What a new revocation would list: what stands now, not what is dated after.
    assert state.sponsored_by(sponsor.key.public) == sorted(
        [before.enrollment_id, backdated.enrollment_id]
    )
    # The earliest legacy revocation decides.
    _, states = judged([legacy, later_legacy, *credentials])
    assert states == [revoked, admitted, unsponsored, unsponsored]
    # A listed revocation closes the window, in every order (and with the legacy one twice).
    digests = set()
    for order in itertools.permutations([legacy, listed, *credentials]):
        state, states = judged([*order, legacy])
        assert states == [revoked, admitted, unsponsored, unsponsored], order
        assert not state.only_legacy_revocations(sponsor.key.public)
        digests.add(state.digest())
    assert len(digests) == 1
    assert {record_id(legacy.raw), record_id(listed.raw)} <= set(state.record_ids())


def test_a_legacy_revocation_of_an_invite_judges_its_members_countersignatures_by_date() -> None:
    net, founder, first = network()
    invite = net.invite()
    member = net.join(first, founder, invite, "member", at=T0 + 10)
    early = _countersigned(net, member, "early", T0 + 20)
    late = _countersigned(net, member, "late", T0 + 60)
    target = invite.certificate.subject
    for revocations, expected in (
        ([net.revoke(target, Role.INVITE, at=T0 + 50, sponsored=None)], ["admitted", "revoked"]),
        (
            [
                net.revoke(target, Role.INVITE, at=T0 + 50, sponsored=None),
                net.revoke(target, Role.INVITE, at=T0 + 55, sponsored=[]),
            ],
            ["revoked", "revoked"],
        ),
    ):
        state = net.state()
        for record in (founder.credential, member.credential, *revocations):
            state.ingest(record, NOW)
        for record in (early.credential, late.credential):
            state.ingest(record, NOW)
        assert state_of(state, member) == (MemberState.REVOKED, "issuer-revoked")
        assert [state_of(state, m)[0].value for m in (early, late)] == expected


def test_revoking_the_sponsor_of_a_sponsor_drops_the_unlisted_branch() -> None:
    net, founder, state = network()
    sponsor = net.join(state, founder, net.invite(), "sponsor", at=T0 + 10)
    state.ingest(sponsor.credential, NOW)
    child = net.join(state, sponsor, net.invite(), "child", at=T0 + 20)
    state.ingest(child.credential, NOW)
    grandchild = net.join(state, child, net.invite(), "grandchild", at=T0 + 30)
    state.ingest(grandchild.credential, NOW)
    ann = grandchild.announce(net, NOW)
    state.ingest(ann, NOW)
    outcome = state.ingest(net.revoke(sponsor.key.public, at=T0 + 40), NOW)
    assert {e.member.name for e in outcome.events} == {"sponsor", "child", "grandchild"}
    assert record_id(ann.raw) in outcome.dropped
    assert state_of(state, grandchild) == (MemberState.REVOKED, "sponsor-not-member")


def test_revoking_an_invite_lists_what_its_members_sponsored() -> None:
    net, founder, _ = network()
    invite = net.invite(uses=2)
    side = net.state()
    side.ingest(founder.credential, NOW)
    member = net.join(side, founder, invite, "member", at=T0 + 10)
    side.ingest(member.credential, NOW)
    sponsored = net.join(side, member, net.invite(), "sponsored", at=T0 + 20)
    side.ingest(sponsored.credential, NOW)
    target = invite.certificate.subject
    assert side.sponsored_by(target) == [sponsored.enrollment_id]
    for listed, expected in (([sponsored.enrollment_id], "admitted"), ([], "revoked")):
        state = net.state()
        for record in (founder.credential, member.credential, sponsored.credential):
            state.ingest(record, NOW)
        state.ingest(net.revoke(target, Role.INVITE, sponsored=listed), NOW)
        assert state_of(state, member) == (MemberState.REVOKED, "issuer-revoked")
        assert state_of(state, sponsored)[0].value == expected


def test_a_countersignature_stands_whatever_date_its_sponsor_wrote() -> None:
    """Sponsorship is judged without dates: a member's countersignature dated before its own
    certificate starts stands (dates decide only the invite's window and its ranking)."""
    net, _, state = network()
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    late = make_certificate(
        net.root,
        network_id=net.anchor.network_id,
        subject=key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=T0 + 50,
        not_after=T0 + DAY,
        name="late",
        wg_key=wg.public,
    )
    state.ingest(late, NOW)
    _, enrollment = enrollment_for(net)
    state.ingest(make_admission(key, enrollment=enrollment, admitted_at=T0 + 40), NOW)
    member = state.member(enrollment.node_key, NOW)
    assert member is not None
    assert member.state is MemberState.ADMITTED


def test_an_enrollment_dated_after_its_admission_is_refused() -> None:
    net, founder, state = network()
    invite = net.invite()
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name="j", now=NOW + 301)
    with pytest.raises(VerifyError) as info:
        state.sponsor(founder.key, enrollment, NOW)
    assert info.value.reason == "not-yet-valid"
    admission = make_admission(founder.key, enrollment=enrollment, admitted_at=NOW)
    with pytest.raises(VerifyError) as info:
        state.ingest(admission, NOW)
    assert info.value.reason == "not-yet-valid"


def test_sponsor_check_does_not_depend_on_arrival_order() -> None:
    net = Net()
    key, wg = SigningKey.generate(), WireGuardKey.generate()

    def cert(start: int) -> Certificate:
        return make_certificate(
            net.root,
            network_id=net.anchor.network_id,
            subject=key.public,
            role=Role.MEMBER,
            serial=os.urandom(16),
            not_before=start,
            not_after=T0 + DAY,
            name="sponsor",
            wg_key=wg.public,
        )

    early, late = cert(T0), cert(T0 + 50)
    _, enrollment = enrollment_for(net)
    admission = make_admission(key, enrollment=enrollment, admitted_at=T0 + 20)
    results = []
    orders: list[list[Certificate | Admission]] = [
        [late, early, admission],
        [late, admission, early],
    ]
    for order in orders:
        state = net.state()
        for record in order:
            with contextlib.suppress(VerifyError):
                state.ingest(record, NOW)
        results.append(state.record_ids())
    assert results[0] == results[1]


# --- copies of an enrollment countersigned again (rule a) ----------------------------------


def test_copies_of_an_enrollment_are_kept_one_per_sponsor_and_use_one_slot() -> None:
    """Anyone who has seen an enrollment can countersign it again. Each key's earliest copy is
    kept beside the others, whatever the order; together they take one of the invite's uses,
    and the member stands while any of them does."""
    net, founder, _ = network()
    other = net.founder("other")
    invite, enrollment = enrollment_for(net)
    copies = [
        make_admission(founder.key, enrollment=enrollment, admitted_at=T0 + 30),
        make_admission(other.key, enrollment=enrollment, admitted_at=T0 + 20),
        make_admission(founder.key, enrollment=enrollment, admitted_at=T0 + 40),
    ]
    results = []
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2], [0, 2, 1]):
        state = net.state()
        state.ingest(founder.credential, NOW)
        state.ingest(other.credential, NOW)
        for i in order:
            with contextlib.suppress(VerifyError):
                state.ingest(copies[i], NOW)
        assert state.invite_uses(invite.certificate.subject) == 1
        member = state.member(enrollment.node_key, NOW)
        assert member is not None
        assert member.state is MemberState.ADMITTED
        results.append(state.record_ids())
    assert all(r == results[0] for r in results)
    assert {record_id(copies[0].raw), record_id(copies[1].raw)} <= set(results[0])
    assert record_id(copies[2].raw) not in results[0]
    state = net.state()
    state.ingest(founder.credential, NOW)
    state.ingest(copies[0], NOW)
    with pytest.raises(VerifyError) as info:
        state.ingest(copies[2], NOW)
    assert info.value.reason == "superseded-admission"


def test_a_copy_dated_earlier_does_not_win_an_invite_race() -> None:
    """A copy of the losing joiner's enrollment, dated before the winner's admission, ranks no
    earlier than the enrollment itself: the winner keeps the invite's one use."""
    net, founder, state = network()
    other = net.founder("other")
    state.ingest(other.credential, NOW)
    invite = net.invite()
    winner = net.join(state, founder, invite, "winner", at=T0 + 30)
    side = net.state()
    side.ingest(other.credential, NOW)
    loser = net.join(side, other, invite, "loser", at=T0 + 60)
    assert isinstance(loser.credential, Admission)
    copy = make_admission(founder.key, enrollment=loser.credential.enrollment, admitted_at=T0 + 5)
    for record in (winner.credential, loser.credential, copy):
        state.ingest(record, NOW)
    assert state_of(state, winner) == (MemberState.ADMITTED, "")
    assert state_of(state, loser) == (MemberState.REVOKED, "invite-used-up")


def test_named_invite_names_the_member() -> None:
    net, founder, state = network()
    node = net.join(state, founder, net.invite(name="bob"), "whatever-the-joiner-says")
    state.ingest(node.credential, NOW)
    member = state.member(node.key.public, NOW)
    assert member is not None
    assert member.name == "bob"


def test_invite_repr_hides_its_secret() -> None:
    invite = Net().invite()
    assert invite.secret.hex() not in repr(invite)
    assert repr(invite.secret) not in repr(invite)


def test_credentials_end_covers_renewals() -> None:
    net, founder, state = network()
    renewal = make_certificate(
        net.root,
        network_id=net.anchor.network_id,
        subject=founder.key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=T0 + 50,
        not_after=T0 + 900 * DAY,
        name="founder",
        wg_key=founder.wg.public,
    )
    state.ingest(renewal, NOW)
    assert state.credentials_end(founder.key.public) == T0 + 900 * DAY
    assert state.credentials_end(b"\x00" * 32) == 0


def test_grants_are_the_own_address_and_the_invites_prefixes() -> None:
    net, founder, state = network()
    node = net.join(
        state, founder, net.invite(prefixes=[ipaddress.ip_network("10.20.0.0/24")]), "site"
    )
    state.ingest(node.credential, NOW)
    member = state.member(node.key.public, NOW)
    assert member is not None
    assert state.grants(node.key.public) == (
        ipaddress.ip_network(f"{member.overlay}/128"),
        ipaddress.ip_network("10.20.0.0/24"),
    )
    # One object: the member's view holds its interned /128 (whose address it reads).
    assert member.overlay_prefix is state.grants(node.key.public)[0]
    assert member.overlay == member.overlay_prefix.network_address
    state.ingest(net.revoke(node.key.public), NOW)
    assert state.grants(node.key.public) == ()


def test_while_cut_off_no_member_expires_by_silence_and_the_gap_does_not_count() -> None:
    net = Net()
    founder = net.founder()
    state = net.state(announce_ttl=3600)
    state.ingest(founder.credential, NOW)
    state.cut_off(NOW + 100)  # our own link went down
    assert state.tick(NOW + 100_000) == ()
    assert state.member(founder.key.public, NOW + 100_000).state is MemberState.ADMITTED  # type: ignore[union-attr]
    state.cut_off(NOW + 50_000)  # said again: the first moment holds
    state.reconnected(NOW + 100_000)
    # Silent 100 s before the cut, and from the reconnection on: it has 3,500 s left.
    assert state.tick(NOW + 100_000 + 3500) == ()
    [event] = state.tick(NOW + 100_000 + 3501)
    assert isinstance(event, Expired)
    assert event.member.reason == "silent"


def test_while_cut_off_credentials_still_end_on_their_dates() -> None:
    net = Net()
    founder = net.founder()
    invite = net.invite(member_ttl=1000)
    state = net.state(announce_ttl=3600)
    state.ingest(founder.credential, NOW)
    node = net.join(state, founder, invite, "short", at=NOW)
    state.ingest(node.credential, NOW)
    state.cut_off(NOW)
    [event] = state.tick(NOW + 1001)
    assert isinstance(event, Expired)
    assert event.member.reason == "credential-expired"
    state.reconnected(NOW + 5000)  # with nothing cut off any more, a second call does nothing
    state.reconnected(NOW + 6000)
    assert state.member(founder.key.public, NOW + 6000).state is MemberState.ADMITTED  # type: ignore[union-attr]
