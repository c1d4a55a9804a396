"""Merging one verified record into the membership tables: credentials and announcements.

:class:`Merger` takes a decoded record, checks it against the trust roots and the tables, and
adds it to the set (or parks it in the pending pool when it waits for something unknown), noting
in a :class:`~meshd.membership.tables.Change` what was stored, dropped and whom it may concern.
Member credentials (certificates, admissions, node key hand-overs), announcements (with the
fast path of a refresh) and WireGuard key rotations are merged here; the records that change
who stands beyond one credential (revocations, renewals, leaves, admin hand-overs, rollovers)
in meshd.membership.authority. Re-judging afterwards is meshd.membership.settle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from meshd.errors import VerifyError
from meshd.membership.authority import AuthorityMerger
from meshd.membership.tables import (
    Change,
    MembershipTables,
    ahead_message,
    not_newer,
    says_more,
)
from meshd.membership.views import MemberState
from meshd.records import (
    AdminHandover,
    Admission,
    Announcement,
    Certificate,
    Handover,
    Kind,
    Leave,
    Record,
    Renewal,
    Revocation,
    Rollover,
    WgRotation,
    decode_record_untrusted,
    record_id,
)
from meshd.trust.announced import check_announced_prefixes, check_announcement_signature
from meshd.trust.chain import UnknownRoot
from meshd.trust.credential import Credential

_Merge = Callable[[Any, bytes, int, Change], bool]

KEPT_HANDOVERS: Final = 2
"""How many hand-overs of one key the set keeps: its earliest (its membership's next key)
and, if it signed another, the earliest other, which shows that it handed over twice."""

ENDED: Final = b"ended:"
"""The pending pool files an ended credential under this and its member's key
(:meth:`Merger._ended`)."""


# A member's announcement, as it is kept, holds the very node key its credential (and every
# table) holds rather than the equal copy decoded from its own bytes (65 bytes a member).
# The value is the same, so the field is set in place, as a frozen dataclass's own __init__
# does (inline on the hot path: a call of its own would cost more than the set).
_set_field = object.__setattr__

# Merger.refresh's ``newer_than`` when the caller compared nothing.
_UNCOMPARED = object()


def _never_parked(merge: Callable[[Any, bytes, int, Change], None]) -> _Merge:
    """A merge that never parks its record, as a merge that says so."""

    def merged(record: Any, rid: bytes, now: int, change: Change) -> bool:
        merge(record, rid, now, change)
        return False

    return merged


class Merger:
    """Merges records into one node's membership tables."""

    def __init__(self, tables: MembershipTables) -> None:
        self._t = tables
        self._authority = AuthorityMerger(tables, self.merge_waiting, self._leave_set)
        authority = self._authority
        # The merge of each kind of gossiped record, in the order of batch.INGEST_ORDER
        # (announcements last); each returns True when the record went to the pending pool.
        self._by_kind: dict[type[Record], _Merge] = {
            Rollover: _never_parked(authority.rollover),
            AdminHandover: _never_parked(authority.admin_handover),
            Renewal: _never_parked(authority.renewal),
            Certificate: _never_parked(self._certificate),
            Admission: self._admission,
            Handover: self._handover,
            Revocation: _never_parked(authority.revocation),
            WgRotation: self._wg_rotation,
            Leave: authority.leave,
            Announcement: self._announcement,
        }

    @property
    def authority(self) -> AuthorityMerger:
        return self._authority

    def merge(self, record: Record, rid: bytes, now: int, change: Change) -> bool:
        """Merge; return True when the record went to the pending pool instead."""
        t = self._t
        try:
            return self._merge_kind(record, rid, now, change)
        except UnknownRoot as exc:
            if t._standing.knows(exc.key) or any(s == exc.key for s in t._issuing.values()):
                # A member's, an invite's or an admin's key: no root.
                raise VerifyError("bad-chain", "the chain ends at a key that is no root") from None
            # Signed under a key that may be a root a rollover not yet here hands over to.
            t._pending.park(exc.key, rid, record.raw, own=False, source=change.source)
            return True

    def merge_waiting(self, key: bytes, now: int, change: Change) -> None:
        """Merge the records that waited for ``key`` (refused ones are left out)."""
        for pending_rid, pending_raw in self._t._pending.take(key):
            try:
                self.merge(decode_record_untrusted(pending_raw), pending_rid, now, change)
            except VerifyError:
                continue

    def _merge_kind(self, record: Record, rid: bytes, now: int, change: Change) -> bool:
        merge = self._by_kind.get(type(record))
        if merge is None:
            raise VerifyError("not-gossiped", f"a {type(record).__name__.lower()} is not gossiped")
        return merge(record, rid, now, change)

    # --- credentials --------------------------------------------------------------------

    def _certificate(self, cert: Certificate, rid: bytes, now: int, change: Change) -> None:
        t = self._t
        credential = t.verifier.member_certificate(cert)
        # Its dates from the certificate decoded, not read again from its bytes.
        t._not_future(cert.not_before, now, "certificate")
        if t._standing.renewals.end(credential, own=cert.not_after) < now:
            self._ended(credential.node_key, rid, cert.raw, change, "member certificate")
        for admin in cert.chain:
            t._issuing.setdefault(admin.raw, admin.subject)
        self._add_credential(
            credential, rid, Kind.CERTIFICATE, cert.raw, now, change, cert.not_before
        )

    def _admission(self, admission: Admission, rid: bytes, now: int, change: Change) -> bool:
        t = self._t
        credential = t.verifier.admission(admission)
        t._not_future(admission.admitted_at, now, "admission")
        t._not_future(admission.enrollment.created_at, admission.admitted_at, "enrollment")
        if t._standing.renewals.end(credential) < now:
            self._ended(credential.node_key, rid, admission.raw, change, "membership")
        if not t._standing.knows(admission.sponsor):
            t._pending.park(admission.sponsor, rid, admission.raw, own=False, source=change.source)
            self._wake_ended(admission.sponsor, now, change)
            return True
        # One admission per enrollment and sponsor is kept: the earliest by (time, id). Copies
        # countersigned by other keys are kept beside it: each can add a way for the member to
        # stand, none can take one away (meshd.membership.standing), and together they take
        # one of the invite's uses. So each key adds at most one admission per enrollment.
        node = credential.node_key
        kept = t._standing.admission_of(node, credential.enrollment, admission.sponsor)
        if kept is not None and (kept.admitted_at, kept.record_id) <= (admission.admitted_at, rid):
            raise VerifyError(
                "superseded-admission", "an earlier admission of this member is already known"
            )
        if kept is not None:
            change.touched |= t._standing.drop_credential(node, kept.record_id)
            t._remove(kept.record_id, change)
            t._judgements_changed(change)
        # Whether the sponsor stood when it countersigned is judged from the whole set (see
        # meshd.membership.standing), so the outcome does not depend on arrival order.
        invite = admission.enrollment.invite
        terms = credential.terms
        # The invite's bytes and key as its members' terms hold them: one object each.
        raw = terms.invite_raw if terms.invite_raw == invite.raw else invite.raw
        key = terms.invite if terms.invite == invite.subject else invite.subject
        t._issuing.setdefault(raw, key)
        for admin in invite.chain:
            t._issuing.setdefault(admin.raw, admin.subject)
        self._add_credential(credential, rid, Kind.ADMISSION, admission.raw, now, change)
        return False

    def _handover(self, handover: Handover, rid: bytes, now: int, change: Change) -> bool:
        """A member's node key hands over to a new one (``meshd rotate node``): the new key
        gets the old one's credential, sponsored by the old key (meshd.membership.standing),
        and the old key stops standing; its earliest hand-over wins."""
        t = self._t
        old, new = handover.old_key, handover.new_key
        # A key that hands over twice forfeits its membership (meshd.membership.standing), so
        # its two earliest hand-overs say all there is: a later one is refused before its
        # signatures are checked; an earlier one takes the place of the later kept (below).
        kept = [entry[:2] for entry in t._standing.handovers.get(old, ())]
        if len(kept) >= KEPT_HANDOVERS and kept[KEPT_HANDOVERS - 1] <= (handover.issued_at, rid):
            raise VerifyError(
                "superseded-handover", "two earlier hand-overs of this key are already known"
            )
        credential = t.verifier.handover(handover)
        t._not_future(handover.issued_at, now, "hand-over")
        previous = handover.previous
        if not previous and isinstance(handover.credential, Handover):
            # The legacy layout nests the hand-over it names: it counts once that one is in
            # the set, as a linked one's. Before, the nested one was only checked by its
            # signatures: a thief of an old key handed its membership to a key of its own,
            # sent only a legacy hand-over onward that nested it, and took the membership
            # (the old key showed one hand-over in the set).
            previous = record_id(handover.credential.raw)
        if previous:
            # Linked by id: the named hand-over must be a credential of the old key, of the
            # same enrolled membership; until it is here, this one waits for it.
            link = t._standing.credential_by_id(previous, t._set.get(previous))
            if link is None:
                t._pending.park(old, rid, handover.raw, own=False, source=change.source)
                return True
            if link.node_key != old or link.origin != credential.origin:
                raise VerifyError("bad-chain", "the hand-over it names did not go to the old key")
        if not t._standing.holds(old, credential.origin):
            # The old key holds no credential of the membership it hands over (yet): this
            # waits for it, as what leaves the set with it does (:meth:`_leave_set`).
            t._pending.park(old, rid, handover.raw, own=False, source=change.source)
            self._wake_ended(old, now, change)
            return True
        # The membership as renewed: renewals of the old key and of the keys before it carry
        # over (meshd.membership.standing.Standing.lineage). Judged once the old key's
        # credential is here, so that the keys before it are known whatever the order.
        if t._standing.hands_over_nothing(old, credential.origin):
            raise VerifyError("revoked", "a revoked key, or one after it, hands over nothing")
        lineage = t._standing.handed_lineage(old, credential.origin)
        if new in lineage:
            # Back to a key the membership passed through: a cycle of hand-overs would hold
            # itself in the set after the hand-over that started it left.
            raise VerifyError("bad-chain", "the hand-over goes back to a key it came through")
        carried = (new, *lineage)
        if t._standing.renewals.end(credential, subjects=carried) < now:
            self._ended(new, rid, handover.raw, change, "membership handed over")
        beyond = sorted([*kept, (handover.issued_at, rid)])[KEPT_HANDOVERS:]
        if beyond:
            self._leave_set([kept_rid for _, kept_rid in beyond], change)
        origin = t._origin.get(new)
        if origin is None or (handover.issued_at, rid) < origin[:2]:
            t._origin[new] = (handover.issued_at, rid, old)
            t._forget_overlays()
        change.touched |= t._standing.add_handover(old, handover.issued_at, rid, handover.sponsored)
        self._add_credential(credential, rid, Kind.HANDOVER, handover.raw, now, change)
        return False

    def _leave_set(self, rids: list[bytes], change: Change) -> None:
        """Credentials leave the set (hand-overs that earlier ones of their key replace, or
        from a key revoked or after one), and with them
        what was merged only because their members held a credential (each such key holds
        none now): the credentials it countersigned or handed over (and, in turn, what hung
        on theirs), its leave, its announcement and key rotation (meshd.membership.settle).
        Each waits for that key in the pending pool, where it would be had the key never held
        a credential: the set is the same in any order. Before, every hand-over of a key was
        kept: a member (or one revoked since) could add one record to every node's set, and
        make each recompute who stands, per hand-over it signed, without end. The credentials
        in ``rids`` themselves are not kept."""
        t = self._t
        standing = t._standing
        todo: list[tuple[bytes, bytes | None]] = [(rid, None) for rid in rids]
        while todo:
            rid, waits_for = todo.pop()
            credential = standing.credential_by_id(rid)
            if credential is None:
                continue  # gone already
            node = credential.node_key
            change.touched |= standing.forget_credential(credential)
            t._remove(rid, change)
            if waits_for is not None:
                t._pending.park(waits_for, rid, credential.raw, own=False, source=change.source)
            origin = t._origin.get(node)
            if origin is not None and origin[1] == rid:
                found = standing.origin_of(node)
                if found is None:
                    del t._origin[node]
                else:
                    t._origin[node] = found
                t._forget_overlays()
            if standing.knows(node):
                # It holds another credential: hand-overs from it of this one's membership
                # leave if it holds that membership no more (it would not have let them in).
                lost = credential.origin
                if not standing.holds(node, lost):
                    todo += [
                        (c.record_id, node)
                        for c in standing.countersigned(node)
                        if c.origin == lost and standing.handed(c)
                    ]
                continue
            todo += [(c.record_id, node) for c in standing.countersigned(node)]
            leave = standing.departures.get(node)
            if leave is not None:
                dropped = standing.departures.drop(node)
                assert dropped is not None
                t._remove(dropped, change)
                t._pending.park(node, dropped, leave.raw, own=True, source=change.source)
        change.touched |= standing.after_forgetting()
        t._judgements_changed(change)

    def _ended(self, node: bytes, rid: bytes, raw: bytes, change: Change, what: str) -> None:
        """A credential that has ended (its renewals too) is merged only while a record of
        another member waits here for its key: an admission it countersigned, whose member
        stands on it (sponsorship is judged without dates), or a hand-over from it. Else it
        is refused (``expired``) and kept aside in the pending pool under its own key, for
        such a record that comes later (:meth:`_wake_ended`). Before, it was refused either
        way, and a load or a sync that read it before what it sponsored (a store's order)
        lost both: a member admitted by one that left, was revoked or ran out vanished from
        every node that restarted or joined, while running nodes held it admitted."""
        t = self._t
        if t._pending.waited_for(node):
            return
        # Under a key of its own: a revocation of the member drops what waits for it as its
        # own (its announcements), and a revoked sponsor's members it lists need this.
        t._pending.park(ENDED + node, rid, raw, own=True, source=change.source)
        raise VerifyError("expired", f"the {what} has expired")

    def _wake_ended(self, key: bytes, now: int, change: Change) -> None:
        """A record waits for ``key`` now: the ended credentials of ``key`` kept aside
        (:meth:`_ended`) are merged, and with them what waits for ``key``."""
        for rid, raw in self._t._pending.take(ENDED + key):
            try:
                self.merge(decode_record_untrusted(raw), rid, now, change)
            except VerifyError:
                continue

    def _add_credential(
        self,
        credential: Credential,
        rid: bytes,
        kind: Kind,
        raw: bytes,
        now: int,
        change: Change,
        admitted_at: int | None = None,
    ) -> None:
        """Index and store a verified credential; ``admitted_at``: its date when the caller
        has it decoded (else read from its bytes)."""
        t = self._t
        node = credential.node_key
        change.touched |= t._standing.add_credential(credential, rid)
        at = credential.admitted_at if admitted_at is None else admitted_at
        t._silence.credential(node, at, now, t.clock_skew)
        # A certificate's credential holds its bytes elided: the set keeps it in their place.
        t._add(rid, kind, raw, None, change, None if credential.held is raw else credential)
        t._judgements_changed(change)
        # Records that waited for this member can now be merged.
        self.merge_waiting(node, now, change)

    # --- announcements and key rotations -----------------------------------------------

    def refresh(
        self,
        ann: Announcement,
        rid: bytes,
        now: int,
        signature_checked: bool,
        newer_than: object = _UNCOMPARED,
    ) -> tuple[Credential, bool] | None:
        """The common case on the hot path: an announcement without prefixes from an admitted
        member, its first or a newer one.

        Same rules as the general path, fewer steps. Returns None when it does not apply
        (the caller takes the general path); else, merged, the member's credential and whether
        the announcement says anything new (endpoints, addresses, prefixes). ``newer_than``:
        the member's announcement the caller found ``ann`` newer than (None: it held none),
        not compared again (sequence numbers read from both) while it is still the member's.
        """
        t = self._t
        node = ann.node_key
        entry = t._members.get(node)
        if ann.prefixes or entry is None or entry.state is not MemberState.ADMITTED:
            return None
        current = entry.announcement
        if current is not newer_than and not_newer(ann, rid, current):
            return None
        if ann.network_id != t.anchor.network_id:
            return None  # the general path says why
        if not signature_checked:
            check_announcement_signature(ann)
        issued_at = ann.issued_at  # read from its bytes: once
        if issued_at > now + t.clock_skew:
            raise VerifyError("not-yet-valid", ahead_message("announcement", issued_at, now, t))
        credential = t._standing.standing(node)
        if credential is None or credential.not_after < now:
            return None
        if ann.node_key is not credential.node_key:
            _set_field(ann, "node_key", credential.node_key)
        if current is None:
            # Not in the set (its callers looked), nor can it have joined since: a member's
            # announcement is in the set only as its entry's.
            t._set.add_new(rid, ann)  # it holds its bytes (elided): the set keeps it
        else:
            t._set.replace(record_id(current.raw), rid, ann)
        entry.announcement = ann
        t._silence.announced(node, issued_at, now, t.clock_skew)
        return credential, current is None or says_more(current, ann)

    def _announcement(self, ann: Announcement, rid: bytes, now: int, change: Change) -> bool:
        t = self._t
        node = ann.node_key
        entry = t._members.get(node)
        current = None if entry is None else entry.announcement
        if not_newer(ann, rid, current):
            raise VerifyError(
                "stale-announcement", "a newer announcement from this member is already known"
            )
        t.verifier.announcement(ann, signature_checked=change.signature_checked)
        change.signature_checked = False  # it covered this announcement, nothing adopted later
        issued_at = ann.issued_at  # read from its bytes: once
        t._not_future(issued_at, now, "announcement")
        credential = t._standing.standing(node)
        if credential is None:
            if t._standing.knows(node) and not t._standing.unsponsored(node):
                raise VerifyError("revoked", "the member is revoked")
            # Unknown, or waiting for a sponsor (a credential or a revocation's list): it waits.
            t._pending.park(node, rid, ann.raw, own=True, source=change.source)
            return True
        if ann.prefixes:
            own = t._own(node)
            check_announced_prefixes(ann, credential.prefixes, own)
        if current is not None:
            # The store replaces a member's announcement by node; no separate delete is needed.
            t._remove(record_id(current.raw), change, superseded=True)
        if ann.node_key is not credential.node_key:
            _set_field(ann, "node_key", credential.node_key)
        t._entry(node).announcement = ann
        t._silence.announced(node, issued_at, now, t.clock_skew)
        t._add(rid, Kind.ANNOUNCEMENT, ann.raw, node, change, ann)
        change.touched.add(node)
        if current is None or says_more(current, ann):
            change.announced.add(node)
        return False

    def _wg_rotation(self, rotation: WgRotation, rid: bytes, now: int, change: Change) -> bool:
        """A member's new WireGuard key: last writer wins by (counter, record id)."""
        t = self._t
        node = rotation.node_key
        if not t._wg.newer(rotation, rid):
            raise VerifyError("stale-rotation", "a newer key rotation of this member is known")
        t.verifier.wg_rotation(rotation)
        t._not_future(rotation.issued_at, now, "key rotation")
        if t._standing.standing(node) is None:
            if t._standing.knows(node) and not t._standing.unsponsored(node):
                raise VerifyError("revoked", "the member is revoked")
            t._pending.park(node, rid, rotation.raw, own=True, source=change.source)
            return True
        replaced = t._wg.put(rotation, rid)
        if replaced is not None:
            t._remove(replaced, change)
        t._add(rid, Kind.WG_ROTATION, rotation.raw, None, change)
        change.touched.add(node)
        change.announced.add(node)
        return False
