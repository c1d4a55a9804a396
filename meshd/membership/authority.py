"""Merging the records that change who stands beyond one credential.

Revocations (which cascade), renewals and leaves (meshd.membership.lifecycle), admin key
hand-overs (meshd.membership.admins), root rollovers (meshd.membership.roots), and what leaves
the set when a root's acceptance ends (:meth:`AuthorityMerger.retire`). Each of these may
change the judgement of many members, so each marks the change for re-judging
(meshd.membership.settle). Credentials and announcements are meshd.membership.merge.
"""

from __future__ import annotations

from collections.abc import Callable

from meshd.errors import VerifyError
from meshd.membership.lifecycle import root_of
from meshd.membership.tables import Change, MembershipTables
from meshd.records import (
    U64,
    AdminHandover,
    Kind,
    Leave,
    Renewal,
    Revocation,
    Rollover,
    record_id,
)

MergeWaiting = Callable[[bytes, int, Change], None]
"""Merges the records that waited for a key (meshd.membership.merge.Merger.merge_waiting)."""

LeaveSet = Callable[[list[bytes], Change], None]
"""Takes credentials out of the set with what hangs on them (Merger._leave_set)."""


class AuthorityMerger:
    """Merges revocations, renewals, leaves, admin hand-overs and rollovers into the tables."""

    def __init__(
        self, tables: MembershipTables, merge_waiting: MergeWaiting, leave_set: LeaveSet
    ) -> None:
        self._t = tables
        self._merge_waiting = merge_waiting
        self._leave_set = leave_set

    def revocation(self, rev: Revocation, rid: bytes, now: int, change: Change) -> None:
        t = self._t
        t.verifier.revocation(rev)
        self._not_handed_over(rev.issuer, rev.issued_at, "revocation")
        t._not_future(rev.issued_at, now, "revocation")
        self._root_accepted(root_of(rev), now, "revocation")
        if rev.expires_at < now:
            raise VerifyError("expired", "the revocation has expired and may be pruned")
        change.touched |= t._standing.add_revocation(rev)
        change.touched |= t._standing.heirs_touched(rev.target)
        t._add(rid, Kind.REVOCATION, rev.raw, None, change)
        t._pending.drop_own(rev.target)
        self._drop_lifecycle(rev.target, change)
        t._judgements_changed(change)
        # A revoked key, and every key its membership was handed to after it, hands over
        # nothing (meshd.membership.merge): their hand-overs leave the set.
        standing = t._standing
        after = standing.hand_overs_from({rev.target} | standing.handed_to(rev.target))
        if after:
            self._leave_set(after, change)

    def renewal(self, renewal: Renewal, rid: bytes, now: int, change: Change) -> None:
        """A member's standing extended (meshd.membership.lifecycle): the greatest
        ``(not_after, record id)`` per subject and issuer is kept."""
        t = self._t
        renewals = t._standing.renewals
        if not renewals.newer(renewal, rid):
            raise VerifyError("superseded-renewal", "a later renewal by this issuer is known")
        t.verifier.renewal(renewal)
        self._not_handed_over(renewal.issuer, renewal.issued_at, "renewal")
        t._not_future(renewal.issued_at, now, "renewal")
        if renewal.not_after < now:
            raise VerifyError("expired", "the renewal has ended")
        self._root_accepted(root_of(renewal), now, "renewal")
        subject = renewal.subject
        if t._standing.is_revoked(subject):
            raise VerifyError("revoked", "a revoked member cannot be renewed")
        if subject in t._standing.departures:
            raise VerifyError("left", "the member has left the network")
        if t._standing.is_revoked(renewal.issuer):
            raise VerifyError("issuer-revoked", "the admin that signed the renewal is revoked")
        replaced = renewals.put(renewal, rid)
        if replaced is not None:
            t._remove(replaced, change)
        t._add(rid, Kind.RENEWAL, renewal.raw, None, change)
        t._standing.invalidate()
        change.touched.add(subject)
        change.touched |= t._standing.handed_to(subject)  # it moves their end too

    def leave(self, leave: Leave, rid: bytes, now: int, change: Change) -> bool:
        """A member's own departure: it no longer stands, for good. It waits in the pending
        pool until the member's credential is known (a fresh key's leave costs nothing)."""
        t = self._t
        node = leave.node_key
        departures = t._standing.departures
        if not departures.earlier(leave, rid):
            raise VerifyError("already-left", "an earlier leave of this member is known")
        t.verifier.leave(leave)
        t._not_future(leave.issued_at, now, "leave")
        if t._standing.is_revoked(node):
            raise VerifyError("revoked", "the member is revoked")
        if not t._standing.knows(node):
            t._pending.park(node, rid, leave.raw, own=True, source=change.source)
            return True
        replaced = departures.put(leave, rid)
        if replaced is not None:
            t._remove(replaced, change)
        t._add(rid, Kind.LEAVE, leave.raw, None, change)
        for dropped in t._standing.renewals.drop_subject(node):
            t._remove(dropped, change)
        t._pending.drop_own(node)
        change.touched.add(node)
        t._judgements_changed(change)
        return False

    def admin_handover(self, handover: AdminHandover, rid: bytes, now: int, change: Change) -> None:
        """The root replaces an admin key (meshd.membership.admins): every hand-over is kept;
        the old key's earliest sets its cut-off. Renewals and revocations it signed dated
        after the cut-off leave the set (they are refused from now on); credentials under
        what it certified after it stop standing."""
        t = self._t
        t.verifier.admin_handover(handover)
        t._not_future(handover.issued_at, now, "admin hand-over")
        self._root_accepted(handover.root, now, "admin hand-over")
        old = handover.old_key
        change.touched |= t._standing.add_admin_handover(handover, rid)
        t._add(rid, Kind.ADMIN_HANDOVER, handover.raw, None, change)
        t._judgements_changed(change)
        earliest = t._standing.admins.cutoff(old)
        cutoff = handover.issued_at if earliest is None else earliest
        late = [r for r in t._standing.revocations() if r.issuer == old and r.issued_at > cutoff]
        if late:
            change.touched |= t._standing.drop_revocations(late)
            for rev in late:
                t._remove(record_id(rev.raw), change)
                change.touched |= t._standing.heirs_touched(rev.target)
        for subject, dropped in t._standing.renewals.drop_signed_after(old, cutoff):
            t._remove(dropped, change)
            change.touched.add(subject)

    def rollover(self, rollover: Rollover, rid: bytes, now: int, change: Change) -> None:
        """A root hands over to a new one (meshd.membership.roots): kept, whichever wins;
        every judgement may change; what waited for the new root is merged now."""
        t = self._t
        t.verifier.rollover(rollover)
        t._not_future(rollover.issued_at, now, "rollover")
        t._roots.add(rollover, rid)
        t.verifier.roots.add(rollover.new_root)
        t._add(rid, Kind.ROLLOVER, rollover.raw, None, change)
        # A root key cannot be revoked: a revocation of this key, kept before it was named a
        # root, leaves the set (from now on it is refused, bad-target).
        revoking = [r for r in t._standing.revocations() if r.target == rollover.new_root]
        if revoking:
            change.touched |= t._standing.drop_revocations(revoking)
            for rev in revoking:
                t._remove(record_id(rev.raw), change)
        change.touched |= set(t._standing.nodes())
        t._judgements_changed(change)
        self.retire(now, change)
        self._merge_waiting(rollover.new_root, now, change)

    def retire(self, now: int, change: Change) -> None:
        """Revocations and renewals signed under a root whose acceptance ended before ``now``
        (or off the chain of roots) leave the set, as they would be refused now: every node
        holds the same set at ``now`` whenever each record came. What a retired root's
        revocation did is carried by its copy under the new root (meshd.membership.roots)."""
        t = self._t
        standing = t._standing
        ended = {root for root in t.verifier.roots if standing.root_end(root) < now}
        revocations = [r for r in standing.revocations() if root_of(r) in ended]
        renewals = {rid for root in ended for rid in standing.renewals.issued_under(root)}
        if revocations:
            change.touched |= standing.drop_revocations(revocations)
            for rev in revocations:
                t._remove(record_id(rev.raw), change)
            t._judgements_changed(change)
        if renewals:
            change.touched |= set(standing.renewals.drop_rids(renewals))
            for dropped in renewals:
                t._remove(dropped, change)
            standing.invalidate()
        # An admin key's cut-off counts only while the root that set it is accepted: a
        # retired root's key (stolen, say) moves no cut-off; the hand-over outlives its root
        # through its copy under the new root (``meshd root rollover``).
        handovers = set(standing.admins.signed_by(ended))
        if handovers:
            change.touched |= standing.drop_admin_handovers(handovers)
            for dropped in handovers:
                t._remove(dropped, change)
            t._judgements_changed(change)
        ends = (standing.root_end(root) for root in t.verifier.roots)
        t._retire_after = min((end for end in ends if end >= now), default=U64)

    def _root_accepted(self, root: bytes, now: int, what: str) -> None:
        """Refuse a revocation or renewal signed under a root no longer accepted at ``now``:
        a retired root's key (stolen, say) revokes and renews nothing, whatever it dates."""
        end = self._t._standing.root_end(root)
        if end < now:
            reason = "root-retired" if end else "root-superseded"
            raise VerifyError(reason, f"the {what} is signed under a root no longer accepted")

    def _not_handed_over(self, issuer: bytes, at: int, what: str) -> None:
        if self._t._standing.admins.signed_late(issuer, at):
            raise VerifyError(
                "admin-handed-over", f"the {what} is signed by an admin key after its hand-over"
            )

    def _drop_lifecycle(self, key: bytes, change: Change) -> None:
        """A revoked key's renewals (as subject or issuer) and leave leave the set: neither
        is merged again while the revocation is in the set."""
        t = self._t
        for subject, dropped in t._standing.renewals.drop(key):
            t._remove(dropped, change)
            change.touched.add(subject)
        dropped_leave = t._standing.departures.drop(key)
        if dropped_leave is not None:
            t._remove(dropped_leave, change)
