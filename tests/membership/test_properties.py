"""Properties of the trust layer: untrusted input never escapes as anything but our errors, and
the membership state is a CRDT.

The CRDT properties run over a fixed pool of valid records: two root-certified founders, an admin
and a member it certified, conflicting admissions under a single-use invite sponsored on both
sides of a partition, admissions under an admin's invite (one sponsored by a member who joined
with an invite), announcements with several sequence numbers, and revocations of a member, an
invite and the admin. Everything in the pool is valid at ``NOW``, so no record is refused in one
order and taken in another because of time.

It also holds the combinations that are hardest to make order-free: announcements from both
members of the single-use invite (one is displaced whenever the earlier admission arrives), the
revocation of a sponsor between two admissions it countersigned (one made before and listed by
the revocation, one after), copies of enrollments countersigned again by other members (one of
them revoked since) and by the same sponsor dated earlier (it replaces the first), and a member
with two certificates (a renewal), and WireGuard key rotations (several per member, of
members revoked or displaced, one to another member's key), renewals (replacing each other,
signed by an admin revoked since, of revoked members and of one that left) and leaves (of a
member twice, of revoked members, of a sponsor, of a member whose key then hands over), and
renewals of keys later handed over (they carry over to the new key).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from meshd.encoding import b64url_decode_untrusted, pack, unpack_canonical_untrusted
from meshd.errors import DecodeError, VerifyError
from meshd.membership import Member, Membership, MemberState
from meshd.node.store import Store
from meshd.records import (
    MAX_RECORD,
    Admission,
    Announcement,
    Certificate,
    Enrollment,
    Kind,
    Record,
    Renewal,
    Revocation,
    Role,
    Rollover,
    decode_record_untrusted,
    make_admin_handover,
    make_admission,
    make_announcement,
    make_certificate,
    make_enrollment,
    make_handover,
    make_leave,
    make_renewal,
    make_revocation,
    make_rollover,
    make_wg_rotation,
    record_id,
)
from meshd.trust.chain import Verifier
from meshd.trust.invites import Issuer, decode_token_untrusted, encode_token
from meshd.trust.keys import SigningKey
from tests.factory import DAY, T0, Net, Node

NOW = T0 + 1000
# Refusals that depend neither on order nor on time: a superseded announcement, one from an
# excluded member, or a sponsor's later copy of an admission it made earlier.
EXPECTED_REFUSALS = (
    "stale-announcement",
    "revoked",
    "superseded-admission",
    "superseded-handover",
    "stale-rotation",
    "superseded-renewal",
    "issuer-revoked",
    "left",
    "already-left",
    "admin-handed-over",
    "root-retired",
    "root-superseded",
)


# --- the pool -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    net: Net
    records: tuple[Record, ...]  # in an order where every record's dependencies come first
    keys: tuple[bytes, ...]  # every key a revocation could name
    token: str


@functools.cache
def pool() -> Pool:
    net = Net()
    founder, second = net.founder("founder"), net.founder("second")
    admin = net.admin()
    delegated = net.founder("delegated", issuer=admin)

    def side(*sponsors: Node) -> Membership:
        state = net.state()
        for node in sponsors:
            state.ingest(node.credential, NOW)
        return state

    # A single-use invite redeemed on both sides of a partition.
    single = net.invite()
    left = net.join(side(founder), founder, single, "left", at=T0 + 30)
    right = net.join(side(second), second, single, "right", at=T0 + 20)
    # An admin's invite for three; the third member is sponsored by one who joined with it.
    shared = net.invite(uses=3, issuer=admin)
    state = side(founder, delegated)
    first = net.join(state, founder, shared, "first", at=T0 + 40)
    state.ingest(first.credential, NOW)
    guest = net.join(state, delegated, shared, "guest", at=T0 + 41)
    state.ingest(guest.credential, NOW)
    third = net.join(state, first, shared, "third", at=T0 + 50)
    # An invite that is revoked after it was used.
    doomed = net.invite(uses=2)
    late = net.join(side(second), second, doomed, "late", at=T0 + 60)

    elder = net.join(side(founder), founder, net.invite(), "elder", at=T0 + 12)
    junior = net.join(side(founder, elder), elder, net.invite(), "junior", at=T0 + 30)
    # A member that leaves, and whose key (a copy of it) then hands its membership over.
    quitter = net.join(side(founder), founder, net.invite(), "quitter", at=T0 + 14)
    # A member whose key hands over three times (it forfeits its membership).
    twice = net.join(side(founder), founder, net.invite(), "twice", at=T0 + 16)

    members = (
        *(founder, second, delegated, left, right, first, guest, third, late, elder, junior),
        *(quitter, twice),
    )
    records: list[Record] = [node.credential for node in members]
    # The founder's certificate, renewed.
    records.append(
        make_certificate(
            net.root,
            network_id=net.anchor.network_id,
            subject=founder.key.public,
            role=Role.MEMBER,
            serial=bytes(16),
            not_before=T0 + 5,
            not_after=T0 + 400 * DAY,
            name="founder",
            wg_key=founder.wg.public,
        )
    )
    # Copies of enrollments countersigned again: by a member revoked since (not listed), by a
    # member dating it before the enrollment, and by one who joined with an invite.
    for sponsor, node, at in (
        (second, first, T0 + 45),
        (founder, right, T0 + 15),
        (first, left, T0 + 35),
        (founder, first, T0 + 35),  # first's own sponsor, re-dating it earlier: replaces it
    ):
        assert isinstance(node.credential, Admission)
        records.append(
            make_admission(sponsor.key, enrollment=node.credential.enrollment, admitted_at=at)
        )
    for node, count in ((founder, 3), (second, 2), (first, 2), (third, 1), (guest, 1)):
        records += [node.announce(net, NOW) for _ in range(count)]
    records += [delegated.announce(net, NOW), late.announce(net, NOW)]
    # WireGuard key rotations: several per member (one pair with equal counters, decided by
    # record id), of members revoked or displaced, and one to another member's key.
    for node, counter, wg_key in (
        (founder, 1, bytes([1]) * 32),
        (founder, 2, bytes([2]) * 32),
        (founder, 5, bytes([5]) * 32),
        (first, 3, bytes([3]) * 32),
        (first, 3, bytes([4]) * 32),
        (left, 1, bytes([6]) * 32),
        (right, 1, bytes([7]) * 32),
        (guest, 1, bytes([8]) * 32),
        (delegated, 2, bytes([9]) * 32),
        (junior, 1, bytes([10]) * 32),
        (second, 1, founder.wg.public),
    ):
        records.append(
            make_wg_rotation(
                node.key,
                network_id=net.anchor.network_id,
                counter=counter,
                issued_at=NOW - counter,
                wg_key=wg_key,
            )
        )
    records += [left.announce(net, NOW), right.announce(net, NOW)]
    records += [
        # ``second`` countersigned ``right`` before this, which lists it, and ``late`` after.
        net.revoke(second.key.public, at=T0 + 25, sponsored=[right.enrollment_id]),
        net.revoke(guest.key.public),
        net.revoke(third.key.public, issuer=admin),
        net.revoke(doomed.certificate.subject, Role.INVITE),
        net.revoke(admin.key.public, Role.ADMIN, at=T0 + 70),
    ]
    # Legacy revocations (no list). ``elder`` countersigned ``junior`` (T0 + 30) before its
    # legacy revocation at T0 + 48 and, afterwards, a stolen token's enrollment dated T0 + 44:
    # that one stands while only the legacy revocation is in the set, and no longer once the
    # listed one (T0 + 80, listing ``junior``) is. ``second`` also has a legacy revocation
    # beside its listed one (the list decides).
    stolen = net.invite(lifetime=60)
    thief = make_enrollment(
        SigningKey(stolen.secret),
        invite=stolen.certificate,
        node_key=SigningKey.generate().public,
        wg_key=second.wg.public,
        name="thief",
        created_at=T0 + 40,
    )
    records += [
        make_admission(elder.key, enrollment=thief, admitted_at=T0 + 44),
        net.revoke(elder.key.public, at=T0 + 48, sponsored=None),
        net.revoke(elder.key.public, at=T0 + 80, sponsored=[junior.enrollment_id]),
        net.revoke(second.key.public, at=T0 + 22, sponsored=None),
    ]
    # Renewals (of a member twice by the root, by the admin revoked since, of a revoked member,
    # of one that leaves) and leaves (twice by one member, by a revoked member, by a member
    # whose invite is revoked, and by a sponsor whose members stay).
    for issuer, node, days in (
        (net.issuer, founder, 500),
        (net.issuer, founder, 700),
        (admin, delegated, 300),
        (net.issuer, guest, 500),
        (net.issuer, first, 600),
        (net.issuer, left, 450),
        (net.issuer, junior, 550),  # its key is handed over below: carried to the winner's
    ):
        records.append(
            make_renewal(
                issuer.key,
                network_id=net.anchor.network_id,
                subject=node.key.public,
                issued_at=NOW - days,
                not_after=T0 + days * DAY,
                chain=issuer.chain,
            )
        )
    leaves = ((first, NOW - 5), (first, NOW - 9), (third, NOW), (late, NOW), (elder, NOW))
    for node, at in (*leaves, (quitter, NOW - 2)):
        records.append(make_leave(node.key, network_id=net.anchor.network_id, issued_at=at))
    # Node key hand-overs: a chain of three (each naming its predecessor by id); three from
    # one key (it forfeits its membership: the two earliest are kept, the latest leaves the
    # set with the one onward from it, in the legacy layout nesting it); one by a member
    # revoked since (the revocation wins), and one by a member that leaves (the leave wins);
    # renewals of the first and a middle key of the chain (they carry over).
    k1, k2, k3, k4, k5, k6, k7, k8, k9 = (SigningKey.generate() for _ in range(9))
    to_k1 = make_handover(
        junior.key,
        k1,
        network_id=net.anchor.network_id,
        issued_at=T0 + 60,
        wg_key=junior.wg.public,
        credential=junior.credential,
    )
    to_k2 = make_handover(
        twice.key,
        k2,
        network_id=net.anchor.network_id,
        issued_at=T0 + 61,
        wg_key=twice.wg.public,
        credential=twice.credential,
        legacy=True,
    )
    to_k3 = make_handover(
        k1,
        k3,
        network_id=net.anchor.network_id,
        issued_at=T0 + 62,
        wg_key=junior.wg.public,
        credential=to_k1,
    )
    records += [
        to_k1,
        to_k2,
        to_k3,
        make_handover(
            k3,
            k5,
            network_id=net.anchor.network_id,
            issued_at=T0 + 64,
            wg_key=junior.wg.public,
            credential=to_k3,
        ),
        make_handover(
            k2,
            k6,
            network_id=net.anchor.network_id,
            issued_at=T0 + 65,
            wg_key=twice.wg.public,
            credential=to_k2,
            legacy=True,
        ),
        *(
            make_handover(
                twice.key,
                key,
                network_id=net.anchor.network_id,
                issued_at=at,
                wg_key=twice.wg.public,
                credential=twice.credential,
            )
            for key, at in ((k8, T0 + 59), (k9, T0 + 58))
        ),
        make_renewal(  # of a key in the middle of the chain: carried to its end too
            net.issuer.key,
            network_id=net.anchor.network_id,
            subject=k3.public,
            issued_at=NOW - 3,
            not_after=T0 + 650 * DAY,
        ),
        make_handover(  # by a member that leaves: its new key stands nowhere
            quitter.key,
            k7,
            network_id=net.anchor.network_id,
            issued_at=T0 + 66,
            wg_key=quitter.wg.public,
            credential=quitter.credential,
        ),
        make_handover(
            guest.key,
            k4,
            network_id=net.anchor.network_id,
            issued_at=T0 + 63,
            wg_key=guest.wg.public,
            credential=guest.credential,
        ),
    ]
    # Admin key hand-overs: the root replaces ``steward``'s key at T0 + 50, and again at
    # T0 + 55 (the earlier sets the cut-off). What the old key certified before stands; what
    # it signs dated after does not (a member certificate, a renewal, a revocation of the
    # member it certified before); a member certified by the successor stands.
    steward = net.admin()
    old_cert = steward.certificate
    assert old_cert is not None

    def admin_cert(subject: bytes, at: int) -> Certificate:
        return make_certificate(
            net.root,
            network_id=net.anchor.network_id,
            subject=subject,
            role=Role.ADMIN,
            serial=bytes([at % 256]) * 16,
            not_before=at,
            not_after=T0 + 300 * DAY,
            caps=old_cert.caps,
            name="admin",
            prefixes=old_cert.prefixes,
        )

    def member_cert(issuer: Issuer, name: str, at: int) -> Certificate:
        return make_certificate(
            issuer.key,
            network_id=net.anchor.network_id,
            subject=SigningKey.generate().public,
            role=Role.MEMBER,
            serial=bytes([at % 256, 1]) * 8,
            not_before=at,
            not_after=T0 + 200 * DAY,
            name=name,
            wg_key=bytes([at % 256]) * 32,
            chain=issuer.chain,
        )

    stewarded = member_cert(steward, "stewarded", T0 + 5)
    successors = [SigningKey.generate(), SigningKey.generate()]
    for heir_key, at in zip(successors, (T0 + 50, T0 + 55), strict=True):
        heir_cert = admin_cert(heir_key.public, at)
        records.append(
            make_admin_handover(
                net.root,
                network_id=net.anchor.network_id,
                old_cert=old_cert,
                new_cert=heir_cert,
                issued_at=at,
            )
        )
    successor = Issuer(successors[0], admin_cert(successors[0].public, T0 + 50))
    records += [
        stewarded,
        member_cert(steward, "after", T0 + 52),
        member_cert(successor, "successor", T0 + 60),
        make_renewal(
            steward.key,
            network_id=net.anchor.network_id,
            subject=stewarded.subject,
            issued_at=T0 + 61,
            not_after=T0 + 250 * DAY,
            chain=steward.chain,
        ),
        net.revoke(stewarded.subject, at=T0 + 62, issuer=steward),
    ]
    # Root rollovers: two from the first root (the earlier wins), one onward from the winner
    # whose overlap has ended by NOW, and members certified by the new roots (the loser's
    # does not stand; the retired heir's is carried over by a renewal under the grandheir).
    # What the retired heir and the losing rival sign (renewals, revocations) never counts
    # at NOW, in any order; the heir's revocation of ``kept`` counts through its copy under
    # the grandheir. (Their targets hold no records of their own: a retired root's revocation
    # that counted for a while takes the target's renewals, leave and announcement with it,
    # which only sync brings back: threat model §3.19.)
    heir, rival, grandheir = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    for old, new, at, until in (
        (net.root, heir, T0 + 3, NOW + 400 * DAY),
        (net.root, rival, T0 + 4, NOW + 400 * DAY),
        (heir, grandheir, T0 + 6, NOW - 100),
    ):
        records.append(
            make_rollover(
                old,
                network_id=net.anchor.network_id,
                new_root=new.public,
                issued_at=at,
                overlap_until=until,
            )
        )
    heirs = [
        net.founder(name, issuer=Issuer(key))
        for name, key in (
            ("heir", heir),
            ("rival", rival),
            ("grand", grandheir),
            ("kept", grandheir),
            ("gone", grandheir),
        )
    ]
    records += [node.credential for node in heirs]
    for key, subject in ((grandheir, heirs[0]), (heir, guest), (rival, founder)):
        records.append(
            make_renewal(
                key,
                network_id=net.anchor.network_id,
                subject=subject.key.public,
                issued_at=T0 + 50,
                not_after=NOW + 900 * DAY,
            )
        )
    kept, gone = heirs[3].key.public, heirs[4].key.public
    records += [
        net.revoke(kept, at=T0 + 5, issuer=Issuer(heir), reason="kept"),
        net.revoke(kept, at=T0 + 7, issuer=Issuer(grandheir), reason="kept"),
        net.revoke(gone, at=T0 + 50, issuer=Issuer(heir), reason="gone"),
        net.revoke(gone, at=T0 + 50, issuer=Issuer(rival), reason="gone"),
    ]
    keys = (
        *(node.key.public for node in members),
        admin.key.public,
        single.certificate.subject,
        shared.certificate.subject,
        doomed.certificate.subject,
    )
    return Pool(net, tuple(records), keys, encode_token(net.invite(bootstrap=["/dns/a/tcp/1"])))


@dataclass(frozen=True)
class Snapshot:
    digest: bytes
    record_ids: list[bytes]
    members: list[Member]


def snapshot(state: Membership) -> Snapshot:
    """The state's set and its members; for a revoked member, without when it was last heard
    from: that hangs on which of its announcements came before its revocation (each one is
    refused after it), each dated by the member (meshd.membership.silence), not on the set."""
    members = [
        replace(m, last_seen=None) if m.state is MemberState.REVOKED else m
        for m in state.members(NOW)
    ]
    return Snapshot(state.digest(), state.record_ids(), members)


def ingest_all(state: Membership, records: Sequence[Record]) -> None:
    for record in records:
        try:
            state.ingest(record, NOW)
        except VerifyError as error:
            if error.reason not in EXPECTED_REFUSALS:
                raise


@st.composite
def sequences(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """A subset of the pool (as indices, in pool order) and a shuffle of it with repeats."""
    size = len(pool().records)
    # Mostly the whole pool (so that orderings between related records are exercised), with
    # a few records left out (so that some wait for what never comes).
    left_out = draw(st.sets(st.integers(0, size - 1), max_size=size // 3))
    subset = [i for i in range(size) if i not in left_out]
    order = list(draw(st.permutations(subset)))
    for position, index in draw(
        st.lists(st.tuples(st.integers(0, len(order)), st.sampled_from(subset)), max_size=8)
    ):
        order.insert(position, index)
    return subset, order


# --- CRDT laws ----------------------------------------------------------------------------


@given(sequences())
def test_any_order_and_repetition_gives_the_same_state(
    sequence: tuple[list[int], list[int]],
) -> None:
    subset, order = sequence
    records = pool().records
    reference = pool().net.state()
    ingest_all(reference, [records[i] for i in subset])
    shuffled = pool().net.state()
    ingest_all(shuffled, [records[i] for i in order])
    assert snapshot(shuffled) == snapshot(reference)


@given(sequences())
def test_what_a_retired_or_superseded_root_signed_never_counts(
    sequence: tuple[list[int], list[int]],
) -> None:
    """In any order, with repeats, once the three rollovers are in: the renewals and
    revocations signed under the retired heir or the losing rival are never in the set and
    revoke no one; the heir's revocation of ``kept`` counts through its grandheir copy; the
    grandheir's renewal carries the heir's member over its root's end."""
    subset, order = sequence
    records = pool().records
    chosen = [records[i] for i in subset]
    rollovers = [r for r in records if isinstance(r, Rollover)]
    assume(all(r in chosen for r in rollovers))
    state = pool().net.state()
    ingest_all(state, [records[i] for i in order])
    heir, rival, grandheir = (r.new_root for r in rollovers)

    def under_retired(pick: Sequence[Record]) -> list[Record]:
        signed = [r for r in pick if isinstance(r, Revocation | Renewal)]
        return [r for r in signed if (r.chain[0].issuer if r.chain else r.issuer) in (heir, rival)]

    assert under_retired(records)  # the pool has some (the subset drawn may leave them out)
    retired = under_retired(chosen)
    assert {record_id(r.raw) for r in retired}.isdisjoint(state.record_ids())
    by_reason = {r.reason: r for r in chosen if isinstance(r, Revocation) and r.issuer == grandheir}
    kept = next(r for r in records if isinstance(r, Revocation) and r.reason == "kept")
    gone = next(r for r in records if isinstance(r, Revocation) and r.reason == "gone")
    assert state.is_revoked(kept.target) == ("kept" in by_reason)
    assert not state.is_revoked(gone.target)
    carried = next(r for r in records if isinstance(r, Renewal) and r.issuer == grandheir)
    member = state.member(carried.subject, NOW)
    if member is not None:
        assert member.state.value == ("admitted" if carried in chosen else "expired")


@given(sequences())
def test_a_legacy_revocation_keeps_dates_until_a_listed_one_is_in_the_set(
    sequence: tuple[list[int], list[int]],
) -> None:
    """The pool's legacy-revoked ``elder`` countersigned a stolen token's enrollment after its
    revocation, dated before it: in any order, with repeats, it stands exactly when the set
    holds what it needs and not the listed revocation (the legacy one alone keeps it)."""
    subset, order = sequence
    records = pool().records
    state = pool().net.state()
    ingest_all(state, [records[i] for i in order])
    chosen = [records[i] for i in subset]
    elder = next(r for r in records if isinstance(r, Admission) and r.enrollment.name == "elder")
    thief = next(r for r in records if isinstance(r, Admission) and r.enrollment.name == "thief")
    target = elder.enrollment.node_key
    revocations = [r for r in chosen if isinstance(r, Revocation) and r.target == target]
    founder = records[0]
    assert isinstance(founder, Certificate)
    expected = (
        elder in chosen
        and thief in chosen
        # one of the founder's certificates (its first or the renewal)
        and any(isinstance(r, Certificate) and r.subject == founder.subject for r in chosen)
        # not revoked, or by the legacy revocation alone
        and all(r.legacy for r in revocations)
    )
    member = state.member(thief.enrollment.node_key, NOW)
    assert (member is not None and member.state.value == "admitted") == expected


@given(sequences())
def test_ingesting_a_sequence_again_changes_nothing(
    sequence: tuple[list[int], list[int]],
) -> None:
    _, order = sequence
    records = [pool().records[i] for i in order]
    state = pool().net.state()
    ingest_all(state, records)
    before = snapshot(state)
    for record in records:
        try:
            outcome = state.ingest(record, NOW)
        except VerifyError as error:
            if error.reason not in EXPECTED_REFUSALS:
                raise
            continue
        assert not outcome.new
        assert outcome.stored == ()
        assert outcome.dropped == ()
        assert outcome.events == ()
    assert snapshot(state) == before


@given(sequences(), st.data())
def test_batches_give_the_same_state_and_the_same_store(
    sequence: tuple[list[int], list[int]], data: st.DataObject
) -> None:
    """Merging in batches (as a sync does) ends where one record at a time ends, and what the
    batches tell the store to write and delete leaves it holding exactly the record set."""
    subset, order = sequence
    records = pool().records
    reference = pool().net.state()
    ingest_all(reference, [records[i] for i in subset])
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=4)))
    chunks = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    state = pool().net.state()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.db")
        try:
            for chunk in chunks:
                batch = state.ingest_batch([records[i].raw for i in chunk], NOW)
                assert set(batch.rejected) <= set(EXPECTED_REFUSALS)
                store.apply([batch])
            assert snapshot(state) == snapshot(reference)
            assert sorted(rid for rid, _ in store.rows()) == state.record_ids()
        finally:
            store.close()


@given(sequences())
def test_a_store_loaded_in_one_pass_gives_the_same_state(
    sequence: tuple[list[int], list[int]],
) -> None:
    """Membership.load (a store at start: judged once at the end) ends where one record at a
    time ends, whatever the order; and loading what that state holds with its signatures
    trusted (a sealed store) gives the same state again."""
    subset, order = sequence
    records = pool().records
    reference = pool().net.state()
    ingest_all(reference, [records[i] for i in subset])
    loaded = pool().net.state()
    batch = loaded.load([records[i] for i in order], NOW)
    assert set(batch.rejected) <= set(EXPECTED_REFUSALS)
    assert snapshot(loaded) == snapshot(reference)
    stored = [decode_record_untrusted(raw) for rid in reference.record_ids()
              if (raw := reference.record(rid)) is not None]  # fmt: skip
    trusted = pool().net.state()
    again = trusted.load(stored, NOW, signatures_trusted=True)
    assert again.rejected == ()
    assert snapshot(trusted) == snapshot(reference)
    assert not trusted.verifier.signatures_trusted
    # As a sealed store loads: the announcements apart, each merged as it comes once the
    # rest is judged, and nothing handed back to be stored.
    apart = pool().net.state()
    split = apart.load(
        [r for r in stored if not isinstance(r, Announcement)],
        NOW,
        signatures_trusted=True,
        announcements=(r for r in stored if isinstance(r, Announcement)),
        stored_already=True,
    )
    assert split.rejected == ()
    assert split.stored == ()
    assert snapshot(apart) == snapshot(reference)


@given(sequences())
def test_revocations_only_grow_and_announcements_only_advance(
    sequence: tuple[list[int], list[int]],
) -> None:
    _, order = sequence
    keys = pool().keys
    state = pool().net.state()
    revoked: set[bytes] = set()
    newest: dict[bytes, int] = {}
    for index in order:
        ingest_all(state, [pool().records[index]])
        now_revoked = {key for key in keys if state.is_revoked(key)}
        assert now_revoked >= revoked
        revoked = now_revoked
        for member in state.members(NOW):
            ann = member.announcement
            if ann is None:
                continue
            assert ann.seq >= newest.get(member.node_key, 0)
            newest[member.node_key] = ann.seq
    # What stands at the end is the newest announcement of each member still in good standing.
    for member in state.members(NOW):
        offered = [
            pool().records[i]
            for i in order
            if isinstance(pool().records[i], Announcement)
            and pool().records[i].signer == member.node_key
        ]
        if member.announcement is not None:
            assert member.announcement.seq == max(a.seq for a in offered)  # type: ignore[union-attr]


# --- untrusted input never escapes as another exception -----------------------------------


def decode_quietly(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_record_untrusted(data)


def ingest_quietly(state: Membership, data: bytes) -> None:
    with contextlib.suppress(DecodeError, VerifyError):
        state.ingest_untrusted(data, NOW)


def fresh_state() -> Membership:
    state = pool().net.state()
    ingest_all(state, pool().records)
    return state


@given(st.binary(max_size=MAX_RECORD + 16))
def test_any_bytes_to_the_decoders(data: bytes) -> None:
    decode_quietly(data)
    with contextlib.suppress(DecodeError):
        unpack_canonical_untrusted(data, max_size=MAX_RECORD, what="fuzz")
    with contextlib.suppress(DecodeError):
        b64url_decode_untrusted(data.decode("latin-1"), what="fuzz")
    with contextlib.suppress(DecodeError):
        decode_token_untrusted("meshd1" + data.decode("latin-1"))


@given(st.text(max_size=200))
def test_any_text_to_the_text_decoders(text: str) -> None:
    for candidate in (text, "meshd1" + text):
        with contextlib.suppress(DecodeError):
            decode_token_untrusted(candidate)
        with contextlib.suppress(DecodeError):
            b64url_decode_untrusted(candidate, what="fuzz")


@given(st.binary(max_size=600))
def test_any_bytes_to_the_state(data: bytes) -> None:
    ingest_quietly(pool().net.state(), data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


@given(
    st.sampled_from([*Kind, 0, 8]),
    st.lists(msgpack_values, max_size=16),
    st.binary(min_size=64, max_size=64),
)
def test_well_formed_envelopes_with_any_fields(kind: int, fields: list[Any], sig: bytes) -> None:
    # Past the envelope, into every field decoder.
    raw = pack([pack([int(kind), 1, *fields]), sig])
    decode_quietly(raw)
    ingest_quietly(pool().net.state(), raw)


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(pool().records)).raw)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if what == "flip" and raw:
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif what == "truncate":
            del raw[at:]
        elif what == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif what == "delete" and raw:
            del raw[at : at + draw(st.integers(1, 4))]
        elif raw:
            raw[at] = draw(st.integers(0, 255))
    return bytes(raw)


@given(mutations())
def test_mutated_records(data: bytes) -> None:
    decode_quietly(data)
    ingest_quietly(pool().net.state(), data)


@settings(max_examples=20)
@given(st.lists(mutations(), min_size=1, max_size=4))
def test_mutated_records_against_a_full_state(batch: list[bytes]) -> None:
    state = fresh_state()
    for data in batch:
        ingest_quietly(state, data)


TOKEN_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ "


@st.composite
def token_mutations(draw: st.DrawFn) -> str:
    text = pool().token
    at = draw(st.integers(0, len(text) - 1))
    replacement = draw(
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ ", max_size=3)
    )
    return text[:at] + replacement + text[at + draw(st.integers(0, 3)) :]


@given(token_mutations())
def test_mutated_tokens(text: str) -> None:
    with contextlib.suppress(DecodeError, VerifyError):
        Verifier(pool().net.anchor).invite(decode_token_untrusted(text))


# --- rule (a): no record a member signs removes another member's standing -----------------


def _key(label: str, n: int) -> SigningKey:
    return SigningKey(hashlib.sha256(f"{label}/{n}".encode()).digest())


@dataclass(frozen=True)
class Honest:
    net: Net
    records: tuple[Record, ...]
    members: tuple[SigningKey, ...]  # every key that ever held a credential
    enrollments: tuple[Enrollment, ...]
    dates: tuple[int, ...]  # the invites' start, every admission's and revocation's date
    invites: tuple[tuple[SigningKey, Certificate], ...]  # keys a thief of the tokens holds


@st.composite
def honest_networks(draw: st.DrawFn) -> Honest:
    """A network grown by honest hands: root-certified founders, invites of 1 to 3 uses,
    joiners countersigned at once by a member that stands at the time (so single-use invites
    can be raced from both sides of a partition), and revocations by the root that list
    everything their target sponsored. Keys and serials come from the draw, so a failing
    example replays exactly."""
    net = Net(root=_key("root", 0))
    nid = net.anchor.network_id
    state = net.state()
    records: list[Record] = []
    members: list[SigningKey] = []
    enrollments: list[Enrollment] = []

    def add(record: Record) -> None:
        records.append(record)
        with contextlib.suppress(VerifyError):
            state.ingest(record, NOW)

    for n in range(draw(st.integers(1, 2))):
        key = _key("founder", n)
        members.append(key)
        add(
            make_certificate(
                net.root,
                network_id=nid,
                subject=key.public,
                role=Role.MEMBER,
                serial=n.to_bytes(16, "big"),
                not_before=T0,
                not_after=T0 + DAY,
                name=f"founder{n}",
                wg_key=_key("wg-founder", n).public,
            )
        )
    invites = []
    for n in range(draw(st.integers(1, 3))):
        key = _key("invite", n)
        cert = make_certificate(
            net.root,
            network_id=nid,
            subject=key.public,
            role=Role.INVITE,
            serial=(100 + n).to_bytes(16, "big"),
            not_before=T0,
            not_after=T0 + DAY,
            max_uses=draw(st.integers(1, 3)),
            member_ttl=DAY,
        )
        invites.append((key, cert))
    dates = [T0]
    for n in range(draw(st.integers(1, 6))):
        at = T0 + 10 * (n + 1)
        dates.append(at)
        if draw(st.booleans()) and len(members) > 1:
            target = draw(st.sampled_from(members))
            if state.member(target.public, NOW) is not None:
                add(net.revoke(target.public, at=at, sponsored=state.sponsored_by(target.public)))
            continue
        standing = [m for m in members if state.grants(m.public)]
        if not standing:
            break
        sponsor = draw(st.sampled_from(standing))
        invite_key, invite = draw(st.sampled_from(invites))
        key = _key("joiner", n)
        enrollment = make_enrollment(
            invite_key,
            invite=invite,
            node_key=key.public,
            wg_key=_key("wg-joiner", n).public,
            name=f"joiner{n}",
            created_at=at,
        )
        members.append(key)
        enrollments.append(enrollment)
        add(make_admission(sponsor, enrollment=enrollment, admitted_at=at))
    for key in members:
        add(make_announcement(key, network_id=nid, seq=1, issued_at=NOW))
    return Honest(
        net, tuple(records), tuple(members), tuple(enrollments), tuple(dates), tuple(invites)
    )


@st.composite
def signed_by_a_member(draw: st.DrawFn, honest: Honest) -> tuple[SigningKey, list[Record]]:
    """One key that holds or held a credential, and records it alone can sign: countersigned
    copies of any enrollment in the set with any date, announcements, and certificates and
    revocations it is not entitled to."""
    key = draw(st.sampled_from(honest.members))
    nid = honest.net.anchor.network_id
    others = [m.public for m in honest.members]
    made: list[Record] = []
    for n in range(draw(st.integers(1, 6))):
        choice = draw(st.integers(0, 3))
        if choice == 0 and honest.enrollments:
            enrollment = draw(st.sampled_from(honest.enrollments))
            # Any date, or one just before, at or after a date the honest records hold.
            near = st.sampled_from(honest.dates).flatmap(
                lambda t: st.sampled_from([t - 1, t, t + 1])
            )
            at = draw(st.one_of(st.integers(T0 - 400, NOW + 300), near))
            made.append(make_admission(key, enrollment=enrollment, admitted_at=at))
        elif choice == 1:
            made.append(
                make_announcement(key, network_id=nid, seq=draw(st.integers(0, 3)), issued_at=NOW)
            )
        elif choice == 2:
            made.append(
                make_revocation(
                    key,
                    network_id=nid,
                    target=draw(st.sampled_from(others)),
                    target_role=Role.MEMBER,
                    issued_at=NOW,
                    expires_at=NOW + DAY,
                )
            )
        else:
            made.append(
                make_certificate(
                    key,
                    network_id=nid,
                    subject=draw(st.sampled_from(others)),
                    role=Role.MEMBER,
                    serial=(1000 + n).to_bytes(16, "big"),
                    not_before=T0,
                    not_after=T0 + DAY,
                    wg_key=bytes(32),
                )
            )
    return key, made


def _standing(state: Membership) -> set[bytes]:
    return {m.node_key for m in state.members(NOW) if m.state.value == "admitted"}


@settings(max_examples=300)
@given(st.data())
def test_no_record_a_member_signs_removes_another_members_standing(data: st.DataObject) -> None:
    """Rule (a): whatever a member or former member signs, merged in any order with the
    honest records, every other member that stood without it still stands."""
    honest = data.draw(honest_networks())
    attacker, made = data.draw(signed_by_a_member(honest))
    reference = honest.net.state()
    for record in honest.records:
        with contextlib.suppress(VerifyError):
            reference.ingest(record, NOW)
    attacked = honest.net.state()
    for record in data.draw(st.permutations([*honest.records, *made])):
        with contextlib.suppress(VerifyError):
            attacked.ingest(record, NOW)
    lost = _standing(reference) - _standing(attacked) - {attacker.public}
    assert not lost


@settings(max_examples=200)
@given(st.data())
def test_a_revoked_key_admits_no_one_and_removes_no_one(data: st.DataObject) -> None:
    """Rule (b), and rule (a) for a former member holding stolen tokens: a revoked member
    countersigns enrollments made with the invites' secrets for keys of its choosing, and
    copies of enrollments in the set, with any dates. Nobody new stands, and nobody who
    stood stops standing."""
    honest = data.draw(honest_networks())
    revoked = [
        key
        for key in honest.members
        if any(isinstance(r, Revocation) and r.target == key.public for r in honest.records)
    ]
    assume(revoked)
    attacker = data.draw(st.sampled_from(revoked))
    near = st.sampled_from(honest.dates).flatmap(lambda t: st.sampled_from([t - 1, t, t + 1]))
    dates = st.one_of(st.integers(T0 - 400, NOW + 300), near)
    made: list[Record] = []
    for n in range(data.draw(st.integers(1, 5))):
        if data.draw(st.booleans()) and honest.enrollments:
            enrollment = data.draw(st.sampled_from(honest.enrollments))
        else:
            invite_key, invite = data.draw(st.sampled_from(honest.invites))
            enrollment = make_enrollment(
                invite_key,
                invite=invite,
                node_key=_key("stowaway", n).public,
                wg_key=_key("wg-stowaway", n).public,
                name=f"stowaway{n}",
                created_at=data.draw(dates),
            )
        made.append(make_admission(attacker, enrollment=enrollment, admitted_at=data.draw(dates)))
    reference = honest.net.state()
    for record in honest.records:
        with contextlib.suppress(VerifyError):
            reference.ingest(record, NOW)
    attacked = honest.net.state()
    for record in data.draw(st.permutations([*honest.records, *made])):
        with contextlib.suppress(VerifyError):
            attacked.ingest(record, NOW)
    assert _standing(attacked) == _standing(reference)
