"""The membership CRDT of one network, seen from one node: merging, the record set, events.

Judging who stands is in meshd.membership.standing; what this module emits is in
meshd.membership.views.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from meshd.addressing import Prefix, host_prefix, overlay_address
from meshd.errors import DecodeError, VerifyError
from meshd.membership.lifecycle import root_of
from meshd.membership.pending import LOCAL, PendingPool
from meshd.membership.recordset import RecordSet
from meshd.membership.roots import RootChain
from meshd.membership.standing import Standing
from meshd.membership.views import (
    Admitted,
    Batch,
    Event,
    Expired,
    Member,
    MemberState,
    Outcome,
    Revoked,
    Stored,
    Updated,
)
from meshd.membership.wgkeys import WgKeys
from meshd.records import (
    U64,
    AdminHandover,
    Admission,
    Announcement,
    Certificate,
    Enrollment,
    Handover,
    Kind,
    Leave,
    Record,
    RecordId,
    Renewal,
    Revocation,
    Rollover,
    WgRotation,
    decode_record_untrusted,
    make_admission,
    record_id,
)
from meshd.trust.chain import (
    Anchor,
    Credential,
    UnknownRoot,
    Verifier,
    check_announced_prefixes,
    check_announcement_signature,
    check_announcement_signatures,
)
from meshd.trust.keys import NodeKey, SigningKey, WgKey, fingerprint

# The order in which records that arrived together are merged (announcements last).
# Renewals before the credentials they extend (an admission past its own end stands on one).
_INGEST_ORDER: dict[type[Record], int] = {
    Rollover: -1,  # first: what a new root signed verifies only once the rollover is known
    AdminHandover: -1,  # before what the old admin key signed after it (refused, not dropped)
    Renewal: 0,
    Certificate: 1,
    Admission: 2,
    Handover: 2,
    Revocation: 3,
}


@dataclass(slots=True)
class _Change:
    stored: list[Stored] = field(default_factory=list)
    dropped: list[bytes] = field(default_factory=list)
    touched: set[bytes] = field(default_factory=set)
    announced: set[bytes] = field(default_factory=set)
    judgements_changed: bool = False
    signature_checked: bool = False  # the top record's signature was checked by the caller
    source: str = LOCAL  # the peer that delivered the records (the pending pool's quota key)


class Membership:
    """The membership CRDT of one network, seen from one node."""

    def __init__(
        self,
        anchor: Anchor,
        *,
        announce_ttl: int | None = None,
        clock_skew: int = 300,
        max_pending: int = 4096,
    ) -> None:
        self.anchor = anchor
        self.verifier = Verifier(anchor)
        self.announce_ttl = announce_ttl
        self.clock_skew = clock_skew
        self.max_pending = max_pending
        self._set = RecordSet()
        self._standing = Standing()
        self._announcements: dict[bytes, Announcement] = {}
        self._announcement_ids: dict[bytes, bytes] = {}
        self._identity: dict[bytes, tuple[str, ipaddress.IPv6Address]] = {}
        self._last_seen: dict[bytes, int] = {}
        # Since when no member reaches us (cut_off): silence stops counting until we are back.
        self._cut_off_since: int | None = None
        # Records waiting for a member's first credential, by that member's key: its own
        # announcements, and admissions it countersigned.
        self._pending = PendingPool(max_pending)
        self._status: dict[bytes, MemberState] = {}
        self._issuing: dict[bytes, Certificate] = {}
        self._admission_slots: dict[tuple[bytes, bytes], tuple[int, bytes]] = {}
        self._wg = WgKeys()
        self._roots = RootChain(anchor.root_key)
        # New node key -> (issued_at, record id, old key) of its earliest hand-over: the
        # overlay address follows hand-overs back to the key that enrolled.
        self._origin: dict[bytes, tuple[int, bytes, bytes]] = {}
        self._standing.roots = self._roots
        # Revocations and renewals signed under a root leave the set once its acceptance ends
        # (meshd.membership.roots): the next moment that may happen.
        self._retire_after = U64

    # --- merging ------------------------------------------------------------------------

    def ingest_untrusted(self, data: bytes, now: int, *, source: str = LOCAL) -> Outcome:
        """Decode, verify and merge one record. Raises DecodeError or VerifyError only."""
        return self.ingest(decode_record_untrusted(data), now, source=source)

    def ingest(
        self, record: Record, now: int, *, signature_checked: bool = False, source: str = LOCAL
    ) -> Outcome:
        """Verify and merge one decoded record.

        ``signature_checked``: the caller has already checked this announcement's signature
        with trust.check_announcement_signatures (e.g. in a worker thread). Every other check
        still runs, and other kinds of record are always verified in full. ``source``: the
        authenticated peer that delivered the record; a record that has to wait counts
        against that peer's share of the pending pool.
        """
        rid = record_id(record.raw)
        if rid in self._set:
            return Outcome(record, new=False)
        retiring = None
        if now > self._retire_after:
            retiring = _Change(source=source)
            self._retire(now, retiring)
        if type(record) is Announcement and retiring is None:
            refreshed = self._refresh(record, rid, now, signature_checked)
            if refreshed is not None:
                return self._refreshed_outcome(record, rid, *refreshed)
        change = _Change(
            signature_checked=signature_checked and type(record) is Announcement, source=source
        )
        if retiring is not None:
            change.dropped, change.touched = retiring.dropped, retiring.touched
            change.judgements_changed = retiring.judgements_changed
        pending = self._merge(record, rid, now, change)
        if change.judgements_changed:
            self._settle(change, now)
        events = self._reevaluate(change.touched, now, change.announced)
        return Outcome(
            record,
            new=not pending,
            pending=pending,
            stored=tuple(change.stored),
            dropped=tuple(change.dropped),
            events=events,
        )

    def ingest_batch(self, raws: Iterable[bytes], now: int, *, source: str = LOCAL) -> Batch:
        """Decode, verify and merge records that arrived together (what a sync brings)."""
        records, rejected = decode_batch_untrusted(raws)
        return self.merge_batch(records, now, rejected=rejected, source=source)

    def merge_batch(
        self,
        records: Iterable[Record],
        now: int,
        *,
        announcements_checked: bool = False,
        rejected: Iterable[str] = (),
        source: str = LOCAL,
    ) -> Batch:
        """Verify and merge records that arrived together; refusals are counted, not raised.

        Credentials go first (admissions by admission time, so that a sponsor's own admission
        comes before those it countersigned), then revocations, then announcements: the order
        that parks the fewest. ``announcements_checked``: the caller has checked the signature
        of every announcement in ``records`` (trust.check_announcement_signatures, e.g. in a
        worker thread); every other check still runs. ``rejected``: reasons of records the
        caller already refused, carried into the result. ``source``: as for :meth:`ingest`.
        """
        reasons = list(rejected)
        announcements: list[Announcement] = []
        others: list[tuple[int, int, Record]] = []
        for record in records:
            if type(record) is Announcement:
                announcements.append(record)
            else:
                at = record.admitted_at if type(record) is Admission else 0
                others.append((_INGEST_ORDER.get(type(record), len(_INGEST_ORDER)), at, record))
        others.sort(key=lambda item: item[:2])
        stored: list[Stored] = []
        dropped: list[bytes] = []
        events: list[Event] = []
        new = 0
        for *_, record in others:
            try:
                outcome = self.ingest(record, now, source=source)
            except VerifyError as exc:
                reasons.append(exc.reason)
                continue
            new += outcome.new
            stored += outcome.stored
            dropped += outcome.dropped
            events += outcome.events
        # Announcements, in three passes: the cheap refusals (known already, or older than
        # what is known), then every remaining signature in one go (libsodium's work back to
        # back: interleaved with merging it measured slower), then merging. Most refresh a
        # member already known; their Updated events are gathered and emitted once per
        # member, after everything else.
        fresh: list[tuple[Announcement, RecordId]] = []
        for ann in announcements:
            rid = record_id(ann.raw)
            if rid in self._set:
                continue
            current = self._announcements.get(ann.node_key)
            if current is not None and (
                (current.seq, self._announcement_ids[ann.node_key]) >= (ann.seq, rid)
            ):
                reasons.append("stale-announcement")
                continue
            fresh.append((ann, rid))
        if not announcements_checked:
            checked = check_announcement_signatures([ann for ann, _ in fresh])
            reasons += [error.reason for error in checked if error is not None]
            fresh = [item for item, error in zip(fresh, checked, strict=True) if error is None]
        updated: dict[bytes, Credential] = {}
        for ann, rid in fresh:
            try:
                refreshed = self._refresh(ann, rid, now, True)
                if refreshed is None:
                    outcome = self.ingest(ann, now, signature_checked=True, source=source)
                    new += outcome.new
                    stored += outcome.stored
                    dropped += outcome.dropped
                    events += outcome.events
                    continue
            except VerifyError as exc:
                reasons.append(exc.reason)
                continue
            new += 1
            stored.append(Stored(rid, Kind.ANNOUNCEMENT, ann.raw, ann.node_key))
            if refreshed[1]:
                updated[ann.node_key] = refreshed[0]
        for node, credential in updated.items():
            if self._status.get(node) is MemberState.ADMITTED:
                events.append(Updated(self._member(node, MemberState.ADMITTED, "", credential)))
        in_set = self._set
        return Batch(
            stored=tuple(s for s in stored if s.rid in in_set),
            dropped=tuple(rid for rid in dict.fromkeys(dropped) if rid not in in_set),
            events=tuple(events),
            new=new,
            rejected=tuple(reasons),
        )

    def _merge(self, record: Record, rid: bytes, now: int, change: _Change) -> bool:
        """Merge; return True when the record went to the pending pool instead."""
        try:
            return self._merge_kind(record, rid, now, change)
        except UnknownRoot as exc:
            if self._standing.knows(exc.key) or any(
                c.subject == exc.key for c in self._issuing.values()
            ):
                # A member's, an invite's or an admin's key: no root.
                raise VerifyError("bad-chain", "the chain ends at a key that is no root") from None
            # Signed under a key that may be a root a rollover not yet here hands over to.
            self._pending.park(exc.key, rid, record.raw, own=False, source=change.source)
            return True

    def _merge_kind(self, record: Record, rid: bytes, now: int, change: _Change) -> bool:
        if isinstance(record, AdminHandover):
            self._merge_admin_handover(record, rid, now, change)
            return False
        if isinstance(record, Rollover):
            self._merge_rollover(record, rid, now, change)
            return False
        if isinstance(record, Handover):
            return self._merge_handover(record, rid, now, change)
        if isinstance(record, Announcement):
            return self._merge_announcement(record, rid, now, change)
        if isinstance(record, Admission):
            return self._merge_admission(record, rid, now, change)
        if isinstance(record, Revocation):
            self._merge_revocation(record, rid, now, change)
            return False
        if isinstance(record, Certificate):
            self._merge_certificate(record, rid, now, change)
            return False
        if isinstance(record, WgRotation):
            return self._merge_wg_rotation(record, rid, now, change)
        if isinstance(record, Renewal):
            self._merge_renewal(record, rid, now, change)
            return False
        if isinstance(record, Leave):
            return self._merge_leave(record, rid, now, change)
        raise VerifyError("not-gossiped", f"a {type(record).__name__.lower()} is not gossiped")

    def _not_future(self, at: int, now: int, what: str) -> None:
        if at > now + self.clock_skew:
            raise VerifyError("not-yet-valid", f"the {what} is dated in the future")

    def _merge_certificate(self, cert: Certificate, rid: bytes, now: int, change: _Change) -> None:
        credential = self.verifier.member_certificate(cert)
        self._not_future(cert.not_before, now, "certificate")
        if self._standing.renewals.end(credential) < now:
            raise VerifyError("expired", "the member certificate has expired")
        for admin in cert.chain:
            self._issuing.setdefault(record_id(admin.raw), admin)
        self._add_credential(credential, rid, Kind.CERTIFICATE, cert.raw, now, change)

    def _merge_admission(self, admission: Admission, rid: bytes, now: int, change: _Change) -> bool:
        credential = self.verifier.admission(admission)
        self._not_future(admission.admitted_at, now, "admission")
        self._not_future(admission.enrollment.created_at, admission.admitted_at, "enrollment")
        if self._standing.renewals.end(credential) < now:
            raise VerifyError("expired", "the membership has expired")
        if not self._standing.knows(admission.sponsor):
            self._pending.park(
                admission.sponsor, rid, admission.raw, own=False, source=change.source
            )
            return True
        # One admission per enrollment and sponsor is kept: the earliest by (time, id). Copies
        # countersigned by other keys are kept beside it: each can add a way for the member to
        # stand, none can take one away (meshd.membership.standing), and together they take
        # one of the invite's uses. So each key adds at most one admission per enrollment.
        slot = (credential.enrollment, admission.sponsor)
        kept = self._admission_slots.get(slot)
        if kept is not None:
            if kept <= (admission.admitted_at, rid):
                raise VerifyError(
                    "superseded-admission", "an earlier admission of this member is already known"
                )
            change.touched |= self._standing.drop_credential(credential.node_key, kept[1])
            self._remove(kept[1], change)
            self._judgements_changed(change)
        self._admission_slots[slot] = (admission.admitted_at, rid)
        # Whether the sponsor stood when it countersigned is judged from the whole set (see
        # meshd.membership.standing), so the outcome does not depend on arrival order.
        invite = admission.enrollment.invite
        for cert in (invite, *invite.chain):
            self._issuing.setdefault(record_id(cert.raw), cert)
        self._add_credential(credential, rid, Kind.ADMISSION, admission.raw, now, change)
        return False

    def _add_credential(
        self, credential: Credential, rid: bytes, kind: Kind, raw: bytes, now: int, change: _Change
    ) -> None:
        node = credential.node_key
        change.touched |= self._standing.add_credential(credential, rid)
        self._last_seen.setdefault(node, now)
        self._add(rid, kind, raw, None, change)
        self._judgements_changed(change)
        # Records that waited for this member can now be merged.
        for pending_rid, pending_raw in self._pending.take(node):
            record = decode_record_untrusted(pending_raw)
            try:
                self._merge(record, pending_rid, now, change)
            except VerifyError:
                continue

    def _refresh(
        self, ann: Announcement, rid: bytes, now: int, signature_checked: bool
    ) -> tuple[Credential, bool] | None:
        """The common case on the hot path: an announcement without prefixes from an admitted
        member, its first or a newer one.

        Same rules as _merge_announcement, fewer steps. Returns None when it does not apply
        (the caller takes the general path); else, merged, the member's credential and whether
        the announcement says anything new (endpoints, addresses, prefixes).
        """
        node = ann.node_key
        if ann.prefixes or self._status.get(node) is not MemberState.ADMITTED:
            return None
        current = self._announcements.get(node)
        if current is not None and (current.seq, self._announcement_ids[node]) >= (ann.seq, rid):
            return None
        if ann.network_id != self.anchor.network_id:
            return None  # the general path says why
        if not signature_checked:
            check_announcement_signature(ann)
        if ann.issued_at > now + self.clock_skew:
            raise VerifyError("not-yet-valid", "the announcement is dated in the future")
        credential = self._standing.standing(node)
        if credential is None or credential.not_after < now:
            return None
        if current is None:
            self._set.add(rid, ann.raw)
        else:
            self._set.replace(self._announcement_ids[node], rid, ann.raw)
        self._announcements[node] = ann
        self._announcement_ids[node] = rid
        last_seen = self._last_seen.get(node)
        if last_seen is None or now > last_seen:
            self._last_seen[node] = now
        return credential, current is None or _says_more(current, ann)

    def _refreshed_outcome(
        self, ann: Announcement, rid: bytes, credential: Credential, changed: bool
    ) -> Outcome:
        node = ann.node_key
        events: tuple[Event, ...] = ()
        if changed:
            events = (Updated(self._member(node, MemberState.ADMITTED, "", credential)),)
        stored = (Stored(rid, Kind.ANNOUNCEMENT, ann.raw, node),)
        return Outcome(ann, True, False, stored, (), events)

    def _merge_announcement(self, ann: Announcement, rid: bytes, now: int, change: _Change) -> bool:
        node = ann.node_key
        current = self._announcements.get(node)
        if current is not None and (current.seq, self._announcement_ids[node]) >= (ann.seq, rid):
            raise VerifyError(
                "stale-announcement", "a newer announcement from this member is already known"
            )
        self.verifier.announcement(ann, signature_checked=change.signature_checked)
        change.signature_checked = False  # it covered this announcement, nothing adopted later
        self._not_future(ann.issued_at, now, "announcement")
        credential = self._standing.standing(node)
        if credential is None:
            if self._standing.knows(node) and not self._standing.unsponsored(node):
                raise VerifyError("revoked", "the member is revoked")
            # Unknown, or waiting for a sponsor (a credential or a revocation's list): it waits.
            self._pending.park(node, rid, ann.raw, own=True, source=change.source)
            return True
        if ann.prefixes:
            own = host_prefix(self._identity_of(node)[1])
            check_announced_prefixes(ann, credential.prefixes, own)
        if current is not None:
            # The store replaces a member's announcement by node; no separate delete is needed.
            self._remove(self._announcement_ids[node], change, superseded=True)
        self._announcements[node] = ann
        self._announcement_ids[node] = rid
        self._last_seen[node] = max(now, self._last_seen.get(node, now))
        self._add(rid, Kind.ANNOUNCEMENT, ann.raw, node, change)
        change.touched.add(node)
        if current is None or _says_more(current, ann):
            change.announced.add(node)
        return False

    def _merge_revocation(self, rev: Revocation, rid: bytes, now: int, change: _Change) -> None:
        self.verifier.revocation(rev)
        self._not_handed_over(rev.issuer, rev.issued_at, "revocation")
        self._not_future(rev.issued_at, now, "revocation")
        self._root_accepted(root_of(rev), now, "revocation")
        if rev.expires_at < now:
            raise VerifyError("expired", "the revocation has expired and may be pruned")
        change.touched |= self._standing.add_revocation(rev)
        change.touched |= self._standing.heirs_touched(rev.target)
        self._add(rid, Kind.REVOCATION, rev.raw, None, change)
        self._pending.drop_own(rev.target)
        self._drop_lifecycle(rev.target, change)
        self._judgements_changed(change)

    def _merge_renewal(self, renewal: Renewal, rid: bytes, now: int, change: _Change) -> None:
        """A member's standing extended (meshd.membership.lifecycle): the greatest
        ``(not_after, record id)`` per subject and issuer is kept."""
        renewals = self._standing.renewals
        if not renewals.newer(renewal, rid):
            raise VerifyError("superseded-renewal", "a later renewal by this issuer is known")
        self.verifier.renewal(renewal)
        self._not_handed_over(renewal.issuer, renewal.issued_at, "renewal")
        self._not_future(renewal.issued_at, now, "renewal")
        if renewal.not_after < now:
            raise VerifyError("expired", "the renewal has ended")
        self._root_accepted(root_of(renewal), now, "renewal")
        subject = renewal.subject
        if self._standing.is_revoked(subject):
            raise VerifyError("revoked", "a revoked member cannot be renewed")
        if subject in self._standing.departures:
            raise VerifyError("left", "the member has left the network")
        if self._standing.is_revoked(renewal.issuer):
            raise VerifyError("issuer-revoked", "the admin that signed the renewal is revoked")
        replaced = renewals.put(renewal, rid)
        if replaced is not None:
            self._remove(replaced, change)
        self._add(rid, Kind.RENEWAL, renewal.raw, None, change)
        self._standing.invalidate()
        change.touched.add(subject)

    def _merge_leave(self, leave: Leave, rid: bytes, now: int, change: _Change) -> bool:
        """A member's own departure: it no longer stands, for good. It waits in the pending
        pool until the member's credential is known (a fresh key's leave costs nothing)."""
        node = leave.node_key
        departures = self._standing.departures
        if not departures.earlier(leave, rid):
            raise VerifyError("already-left", "an earlier leave of this member is known")
        self.verifier.leave(leave)
        self._not_future(leave.issued_at, now, "leave")
        if self._standing.is_revoked(node):
            raise VerifyError("revoked", "the member is revoked")
        if not self._standing.knows(node):
            self._pending.park(node, rid, leave.raw, own=True, source=change.source)
            return True
        replaced = departures.put(leave, rid)
        if replaced is not None:
            self._remove(replaced, change)
        self._add(rid, Kind.LEAVE, leave.raw, None, change)
        for dropped in self._standing.renewals.drop_subject(node):
            self._remove(dropped, change)
        self._pending.drop_own(node)
        change.touched.add(node)
        self._judgements_changed(change)
        return False

    def _not_handed_over(self, issuer: bytes, at: int, what: str) -> None:
        if self._standing.admins.signed_late(issuer, at):
            raise VerifyError(
                "admin-handed-over", f"the {what} is signed by an admin key after its hand-over"
            )

    def _merge_admin_handover(
        self, handover: AdminHandover, rid: bytes, now: int, change: _Change
    ) -> None:
        """The root replaces an admin key (meshd.membership.admins): every hand-over is kept;
        the old key's earliest sets its cut-off. Renewals and revocations it signed dated
        after the cut-off leave the set (they are refused from now on); credentials under
        what it certified after it stop standing."""
        self.verifier.admin_handover(handover)
        self._not_future(handover.issued_at, now, "admin hand-over")
        old = handover.old_key
        change.touched |= self._standing.add_admin_handover(
            old, handover.new_key, handover.issued_at, rid
        )
        self._add(rid, Kind.ADMIN_HANDOVER, handover.raw, None, change)
        self._judgements_changed(change)
        earliest = self._standing.admins.cutoff(old)
        cutoff = handover.issued_at if earliest is None else earliest
        late = [r for r in self._standing.revocations() if r.issuer == old and r.issued_at > cutoff]
        if late:
            change.touched |= self._standing.drop_revocations(late)
            for rev in late:
                self._remove(record_id(rev.raw), change)
                change.touched |= self._standing.heirs_touched(rev.target)
        for subject, dropped in self._standing.renewals.drop_signed_after(old, cutoff):
            self._remove(dropped, change)
            change.touched.add(subject)

    def _drop_lifecycle(self, key: bytes, change: _Change) -> None:
        """A revoked key's renewals (as subject or issuer) and leave leave the set: neither
        is merged again while the revocation is in the set."""
        for subject, dropped in self._standing.renewals.drop(key):
            self._remove(dropped, change)
            change.touched.add(subject)
        dropped_leave = self._standing.departures.drop(key)
        if dropped_leave is not None:
            self._remove(dropped_leave, change)

    def _merge_wg_rotation(
        self, rotation: WgRotation, rid: bytes, now: int, change: _Change
    ) -> bool:
        """A member's new WireGuard key: last writer wins by (counter, record id)."""
        node = rotation.node_key
        if not self._wg.newer(rotation, rid):
            raise VerifyError("stale-rotation", "a newer key rotation of this member is known")
        self.verifier.wg_rotation(rotation)
        self._not_future(rotation.issued_at, now, "key rotation")
        if self._standing.standing(node) is None:
            if self._standing.knows(node) and not self._standing.unsponsored(node):
                raise VerifyError("revoked", "the member is revoked")
            self._pending.park(node, rid, rotation.raw, own=True, source=change.source)
            return True
        replaced = self._wg.put(rotation, rid)
        if replaced is not None:
            self._remove(replaced, change)
        self._add(rid, Kind.WG_ROTATION, rotation.raw, None, change)
        change.touched.add(node)
        change.announced.add(node)
        return False

    def _merge_rollover(self, rollover: Rollover, rid: bytes, now: int, change: _Change) -> None:
        """A root hands over to a new one (meshd.membership.roots): kept, whichever wins;
        every judgement may change; what waited for the new root is merged now."""
        self.verifier.rollover(rollover)
        self._not_future(rollover.issued_at, now, "rollover")
        self._roots.add(rollover, rid)
        self.verifier.roots.add(rollover.new_root)
        self._add(rid, Kind.ROLLOVER, rollover.raw, None, change)
        # A root key cannot be revoked: a revocation of this key, kept before it was named a
        # root, leaves the set (from now on it is refused, bad-target).
        revoking = [r for r in self._standing.revocations() if r.target == rollover.new_root]
        if revoking:
            change.touched |= self._standing.drop_revocations(revoking)
            for rev in revoking:
                self._remove(record_id(rev.raw), change)
        change.touched |= set(self._standing.nodes())
        self._judgements_changed(change)
        self._retire(now, change)
        for pending_rid, pending_raw in self._pending.take(rollover.new_root):
            try:
                self._merge(decode_record_untrusted(pending_raw), pending_rid, now, change)
            except VerifyError:
                continue

    def _root_accepted(self, root: bytes, now: int, what: str) -> None:
        """Refuse a revocation or renewal signed under a root no longer accepted at ``now``:
        a retired root's key (stolen, say) revokes and renews nothing, whatever it dates."""
        end = self._standing.root_end(root)
        if end < now:
            reason = "root-retired" if end else "root-superseded"
            raise VerifyError(reason, f"the {what} is signed under a root no longer accepted")

    def _retire(self, now: int, change: _Change) -> None:
        """Revocations and renewals signed under a root whose acceptance ended before ``now``
        (or off the chain of roots) leave the set, as they would be refused now: every node
        holds the same set at ``now`` whenever each record came. What a retired root's
        revocation did is carried by its copy under the new root (meshd.membership.roots)."""
        ended = {root for root in self.verifier.roots if self._standing.root_end(root) < now}
        revocations = [r for r in self._standing.revocations() if root_of(r) in ended]
        renewals = {rid for root in ended for rid in self._standing.renewals.issued_under(root)}
        if revocations:
            change.touched |= self._standing.drop_revocations(revocations)
            for rev in revocations:
                self._remove(record_id(rev.raw), change)
            self._judgements_changed(change)
        if renewals:
            change.touched |= set(self._standing.renewals.drop_rids(renewals))
            for dropped in renewals:
                self._remove(dropped, change)
            self._standing.invalidate()
        ends = (self._standing.root_end(root) for root in self.verifier.roots)
        self._retire_after = min((end for end in ends if end >= now), default=U64)

    def _merge_handover(self, handover: Handover, rid: bytes, now: int, change: _Change) -> bool:
        """A member's node key hands over to a new one (``meshd rotate node``): the new key
        gets the old one's credential, sponsored by the old key (meshd.membership.standing),
        and the old key stops standing; its earliest hand-over wins."""
        credential = self.verifier.handover(handover)
        self._not_future(handover.issued_at, now, "hand-over")
        if self._standing.renewals.end(credential) < now:
            raise VerifyError("expired", "the membership handed over has ended")
        old, new = handover.old_key, handover.new_key
        if handover.previous:
            # Linked by id: the named hand-over must be a credential of the old key, of the
            # same enrolled membership; until it is here, this one waits for it.
            link = self._standing.credential_by_id(handover.previous)
            if link is None:
                self._pending.park(old, rid, handover.raw, own=False, source=change.source)
                return True
            if link.node_key != old or link.origin != credential.origin:
                raise VerifyError("bad-chain", "the hand-over it names did not go to the old key")
        if not self._standing.knows(old):
            self._pending.park(old, rid, handover.raw, own=False, source=change.source)
            return True
        origin = self._origin.get(new)
        if origin is None or (handover.issued_at, rid) < origin[:2]:
            self._origin[new] = (handover.issued_at, rid, old)
            self._identity.clear()
        change.touched |= self._standing.add_handover(
            old, handover.issued_at, rid, handover.sponsored
        )
        self._add_credential(credential, rid, Kind.HANDOVER, handover.raw, now, change)
        return False

    def first_key(self, node: bytes) -> bytes:
        """The node key a member enrolled with, following its hand-overs back."""
        seen = {node}
        while (origin := self._origin.get(node)) is not None and origin[2] not in seen:
            node = origin[2]
            seen.add(node)
        return node

    def _drop_wg_rotation(self, node: bytes, change: _Change) -> None:
        """A member that no longer stands loses its rotation from the set (as its
        announcement); it waits outside the set if the member may stand again."""
        dropped = self._wg.pop(node)
        if dropped is not None:
            self._remove(dropped[0], change)
            if self._standing.unsponsored(node):
                self._pending.park(node, dropped[0], dropped[1].raw, own=True, source=change.source)

    # --- the record set -----------------------------------------------------------------

    def _add(self, rid: bytes, kind: Kind, raw: bytes, node: bytes | None, change: _Change) -> None:
        self._set.add(rid, raw)
        change.stored.append(Stored(rid, kind, raw, node))

    def _remove(self, rid: bytes, change: _Change, *, superseded: bool = False) -> None:
        if self._set.remove(rid) and not superseded:
            change.dropped.append(rid)

    # --- judging ------------------------------------------------------------------------

    def _judgements_changed(self, change: _Change) -> None:
        self._standing.invalidate()
        change.judgements_changed = True

    def _settle(self, change: _Change, now: int) -> None:
        """After a credential or revocation joined the set: re-judge what it can affect.

        Standing can change for the members touched directly and, through sponsorship, for
        every member they (transitively) countersigned. Members that no longer stand lose their
        announcement, and members that stand now take the announcements that waited for it, so
        the set is the same whatever order the records came in.
        """
        change.touched = self._standing.with_sponsored(change.touched)
        for node in sorted(change.touched):
            if self._standing.standing(node) is None:
                if node in self._announcements:
                    ann = self._announcements.pop(node)
                    rid = self._announcement_ids.pop(node)
                    self._remove(rid, change)
                    if self._standing.unsponsored(node):
                        # It may stand again (another admission of it may still arrive): its
                        # announcement waits for that, outside the set.
                        self._pending.park(node, rid, ann.raw, own=True, source=change.source)
                self._drop_wg_rotation(node, change)
                continue
            for pending_rid, pending_raw in self._pending.take(node):
                try:
                    self._merge(decode_record_untrusted(pending_raw), pending_rid, now, change)
                except VerifyError:
                    continue

    def _judge(self, node: bytes, now: int) -> tuple[MemberState, str, Credential]:
        last = self._last_seen.get(node)
        if last is not None and self._cut_off_since is not None:
            last += max(0, now - self._cut_off_since)  # our silence is not theirs
        return self._standing.judge(node, now, last, self.announce_ttl)

    def _view(self, node: bytes, now: int) -> Member:
        return self._member(node, *self._judge(node, now))

    def _member(
        self, node: bytes, state: MemberState, reason: str, credential: Credential
    ) -> Member:
        ann = self._announcements.get(node)
        node_id, overlay = self._identity_of(node)
        wg_key, wg_counter, wg_since = self._wg.key_of(node, credential.wg_key)
        # Positional: this runs once per announcement on the ingest hot path.
        return Member(
            NodeKey(node),
            node_id,
            credential.name,
            WgKey(wg_key),
            overlay,
            state,
            reason,
            credential.admitted_at,
            credential.not_after,
            ann,
            self._last_seen.get(node),
            wg_counter,
            wg_since,
        )

    def _identity_of(self, node: bytes) -> tuple[str, ipaddress.IPv6Address]:
        """A member's node id and overlay address, derived once."""
        identity = self._identity.get(node)
        if identity is None:
            first = self.first_key(node)
            identity = (fingerprint(node), overlay_address(self.anchor.root_key, first))
            self._identity[node] = identity
        return identity

    def _reevaluate(
        self, nodes: Iterable[bytes], now: int, announced: set[bytes] | None = None
    ) -> tuple[Event, ...]:
        events: list[Event] = []
        for node in sorted(nodes):
            if not self._standing.knows(node):
                continue
            member = self._view(node, now)
            before = self._status.get(node)
            self._status[node] = member.state
            if member.state is before:
                if announced and node in announced and member.state is MemberState.ADMITTED:
                    events.append(Updated(member))
            elif member.state is MemberState.ADMITTED:
                events.append(Admitted(member))
            elif member.state is MemberState.EXPIRED:
                events.append(Expired(member))
            else:
                events.append(Revoked(member))
        return tuple(events)

    def tick(self, now: int) -> tuple[Event, ...]:
        """Re-judge every member at ``now``: emits Expired, and Admitted for returns. What a
        root whose acceptance ended signed (revocations, renewals) leaves the set first (a
        store forgets it on its next load, when it is refused; merging reports it dropped
        when a record comes first)."""
        if now > self._retire_after:
            change = _Change()
            self._retire(now, change)
            if change.judgements_changed:
                self._settle(change, now)
        return self._reevaluate(list(self._standing.nodes()), now)

    # --- our own reachability -----------------------------------------------------------

    def cut_off(self, now: int) -> None:
        """No member reaches this node since ``now``: members' silence stops counting, so a
        node whose own link is down does not expire everyone (and drop them from WireGuard)
        because *it* cannot hear them. Credentials still end on their dates."""
        if self._cut_off_since is None:
            self._cut_off_since = now

    def reconnected(self, now: int) -> None:
        """A member reaches us again: silence counts from here on, with the time we were cut
        off left out of every member's."""
        since, self._cut_off_since = self._cut_off_since, None
        if since is None:
            return
        gap = max(0, now - since)
        for node, last in self._last_seen.items():
            self._last_seen[node] = min(now, last + gap)

    # --- queries ------------------------------------------------------------------------

    def members(self, now: int) -> list[Member]:
        """Every member this node has a credential for, sorted by name then node id."""
        views = [self._view(node, now) for node in self._standing.nodes()]
        return sorted(views, key=lambda m: (m.name, m.node_id))

    def member(self, node_key: bytes, now: int) -> Member | None:
        if not self._standing.knows(node_key):
            return None
        return self._view(node_key, now)

    def grants(self, node_key: bytes) -> tuple[Prefix, ...]:
        """The prefixes a member may announce or route: its own overlay /128 and what its
        standing credential grants. Empty when it does not stand."""
        credential = self._standing.standing(node_key)
        if credential is None:
            return ()
        return (host_prefix(self._identity_of(node_key)[1]), *credential.prefixes)

    def credentials_end(self, node_key: bytes) -> int:
        """When the last of a member's known credentials ends (0 when none is known)."""
        return self._standing.credentials_end(node_key)

    def root_bound(self, node_key: bytes) -> bool:
        """Whether a member is anchored only to a root being retired: it ends with that
        root's overlap unless renewed or certified under a newer root."""
        return self._standing.root_bound(node_key)

    def is_revoked(self, key: bytes) -> bool:
        return self._standing.is_revoked(key)

    def admin_cutoff(self, key: bytes) -> int | None:
        """When the admin key ``key`` was handed over (``meshd admin rotate``), or None."""
        return self._standing.admins.cutoff(key)

    def credential_record(self, node_key: bytes) -> bytes | None:
        """The record of the member's standing credential (a certificate, an admission or a
        hand-over), which a hand-over of its key names."""
        credential = self._standing.standing(node_key)
        return None if credential is None else self._set.get(credential.record_id)

    @property
    def roots(self) -> RootChain:
        """The root rollovers in the set and the chain of roots they make."""
        return self._roots

    def wg_rotation(self, node_key: bytes) -> WgRotation | None:
        """The member's newest WireGuard key rotation in the set, if any."""
        return self._wg.current(node_key)

    def only_legacy_revocations(self, key: bytes) -> bool:
        """Whether ``key`` is revoked by legacy revocations only (Revocation.legacy): its
        countersignatures dated before them still stand; a new revocation closes that."""
        return self._standing.only_legacy_revocations(key)

    def revocations(self) -> list[Revocation]:
        return self._standing.revocations()

    def renewals_of(self, node_key: bytes) -> list[Renewal]:
        """The renewals of a member in the set (one per issuer), latest end first."""
        return self._standing.renewals.of(node_key)

    def leave_of(self, node_key: bytes) -> Leave | None:
        """The member's leave, if it left."""
        return self._standing.departures.get(node_key)

    def revocation_of(self, node_key: bytes) -> Revocation | None:
        """The revocation that excludes the member, if one does (its reason is for people)."""
        return self._standing.revocation_of(node_key)

    def issuing_certificates(self) -> list[Certificate]:
        """The invite and admin certificates that members' credentials were issued under."""
        return list(self._issuing.values())

    def invite_uses(self, invite_key: bytes) -> int:
        return self._standing.invite_uses(invite_key)

    def sponsored_by(self, key: bytes) -> list[bytes]:
        """Ids of the enrollments countersigned by the members whose credentials depend on
        ``key`` (a member's own key, an invite's, an admin's), sorted: what a revocation of
        ``key`` lists so that those admissions keep standing (Revocation.sponsored)."""
        return self._standing.sponsored_by(key)

    def digest(self) -> bytes:
        """A digest of the record set: equal sets give equal digests."""
        return self._set.digest()

    def bucket_digests(self) -> list[bytes]:
        """One digest per bucket of record ids (bucket = first byte of the id)."""
        return self._set.bucket_digests()

    def record_ids(self, bucket: int | None = None) -> list[bytes]:
        return self._set.ids(bucket)

    def record(self, rid: bytes) -> bytes | None:
        return self._set.get(rid)

    def __len__(self) -> int:
        return len(self._set)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def pending_evicted(self) -> int:
        """Records pushed out of the full pending pool since the start."""
        return self._pending.evicted

    # --- sponsoring ---------------------------------------------------------------------

    def check_enrollment(self, enrollment: Enrollment, now: int) -> None:
        """Decide on this node's clock whether an enrollment may be admitted now."""
        self.verifier.enrollment(enrollment)
        invite = enrollment.invite
        if enrollment.created_at > now + self.clock_skew:
            raise VerifyError(
                "not-yet-valid",
                "the enrollment is dated in the future",
                hint="check the joining machine's clock",
            )
        if now < invite.not_before:
            raise VerifyError("not-yet-valid", "the invite is not valid yet")
        if now > invite.not_after:
            raise VerifyError(
                "invite-expired", "the invite has expired", hint="ask for a new invite"
            )
        if invite.chain and self._standing.admins.signed_late(invite.issuer, invite.not_before):
            raise VerifyError(
                "admin-handed-over",
                "the invite was signed by an admin key after it was replaced",
                hint="ask for a new invite",
            )
        for key in (invite.subject, *(c.subject for c in invite.chain)):
            if self._standing.is_revoked(key):
                raise VerifyError(
                    "invite-revoked", "the invite has been revoked", hint="ask for a new invite"
                )
        if enrollment.node_key in self._standing.departures:
            raise VerifyError(
                "left",
                "this node key has left the network",
                hint="join with a new identity (a fresh --state-dir)",
            )
        if self._standing.is_revoked(enrollment.node_key):
            raise VerifyError(
                "revoked",
                "this node key has been revoked",
                hint="a revoked key cannot rejoin; the network's admin decides",
            )
        if self.invite_uses(invite.subject) >= invite.max_uses:
            raise VerifyError(
                "invite-used-up", "the invite has been used up", hint="ask for a new invite"
            )

    def sponsor(self, sponsor_key: SigningKey, enrollment: Enrollment, now: int) -> Admission:
        """Countersign an enrollment with this node's key and clock, if the rules allow it."""
        if self._standing.standing(sponsor_key.public) is None:
            raise VerifyError("sponsor-not-member", "this node is not an admitted member")
        if self._standing.standing(enrollment.node_key) is not None:
            raise VerifyError("already-member", "this node key is already a member")
        self.check_enrollment(enrollment, now)
        return make_admission(sponsor_key, enrollment=enrollment, admitted_at=now)


def _says_more(current: Announcement, newer: Announcement) -> bool:
    """Whether ``newer`` tells others anything ``current`` did not (beyond being newer)."""
    return (
        newer.endpoints != current.endpoints
        or newer.addrs != current.addrs
        or newer.prefixes != current.prefixes
    )


def decode_batch_untrusted(raws: Iterable[bytes]) -> tuple[list[Record], list[str]]:
    """Decode records that arrived together: those that decode, and a reason per refusal."""
    records: list[Record] = []
    rejected: list[str] = []
    for raw in raws:
        try:
            records.append(decode_record_untrusted(raw))
        except DecodeError:
            rejected.append("decode")
    return records, rejected
