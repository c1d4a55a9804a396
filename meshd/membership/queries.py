"""The read side of the membership state: what the rest of meshd asks of it.

:class:`MemberQueries` answers about members and keys (views at ``now``, grants, credentials,
revocations, renewals, leaves, invite uses); :class:`RecordQueries` about the record set itself
(digests and records for anti-entropy, the pending pool, the roots and issuing certificates).
Both read the tables of meshd.membership.tables and change nothing; ``Membership`` has both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from meshd.addressing import Prefix
from meshd.membership.roots import RootChain
from meshd.membership.tables import MembershipTables
from meshd.membership.views import Member, MemberState
from meshd.records import (
    AdminHandover,
    Certificate,
    Leave,
    Renewal,
    Revocation,
    Role,
    WgRotation,
    decode_untrusted,
)
from meshd.records.body import not_after_of, not_before_of, role_of


def _name(member: Member) -> str:
    return member.name


def _node_id(member: Member) -> str:
    return member.node_id


class MemberQueries(MembershipTables):
    """Members and keys, as this node judges them."""

    def state_counts(self, now: int) -> Counter[MemberState]:
        """How many members :meth:`members` would say are in each state at ``now``, without a
        view of each (what ``meshd status`` and the metrics count: ~2 ms at 10,000 members,
        not ~80). Each member's state as the merges and ticks last judged it, while nothing
        can have changed it since: before the first moment one judged admitted may stop
        being so by time alone (``_next_due``), no root's acceptance ending, the clock not
        set back; a member heard from while not admitted, or any member past such a moment,
        is judged again here."""
        recorded = self._ticked <= now < self._next_due and now <= self._retire_after
        recheck = self._recheck
        entries = self._members
        counts: Counter[MemberState] = Counter()
        for node in self._standing.nodes():
            entry = entries.get(node)
            state = entry.state if entry is not None and recorded else None
            if state is None or node in recheck:
                state = self._judge(node, now)[0]
            counts[state] += 1
        return counts

    def judged_window(self) -> tuple[int, int]:
        """Since when and until when the states the merges and ticks recorded hold by time
        alone: from the last tick to the first moment one judged admitted may stop being so
        by time (``_next_due``) or a root's acceptance ends (what :meth:`state_counts`
        relies on). Past it, or before it (a clock set back), members must be judged again.
        """
        return self._ticked, min(self._next_due, self._retire_after)

    def admitted_wg_keys(self, now: int) -> list[bytes] | None:
        """The WireGuard keys of the members judged admitted, read from the states the
        merges and ticks recorded, without a view of each (~10 ms at 10,000 members, not the
        ~0.1 s of :meth:`members`); None when those states do not hold at ``now`` (outside
        :meth:`judged_window`). A member heard from while not admitted, to be judged again,
        is left out. What a start sets on WireGuard while its first round is planned
        (meshd.daemon.early_keys): that round, from the views, decides."""
        since, until = self.judged_window()
        if not since <= now < until:
            return None
        recheck = self._recheck
        entries = self._members
        standing = self._standing
        wg = self._wg
        keys: list[bytes] = []
        for node in standing.nodes():
            entry = entries.get(node)
            if entry is None or entry.state is not MemberState.ADMITTED or node in recheck:
                continue
            rotated = wg.current(node)
            held = rotated if rotated is not None else standing.standing(node)
            if held is not None:
                keys.append(held.wg_key)
        return keys

    def members(self, now: int, *, ending_by: int | None = None) -> list[Member]:
        """Every member this node has a credential for, sorted by name then node id; with
        ``ending_by``, only those whose credentials end then at the latest
        (:meth:`credentials_end`), the others' views not made (what a look for what ends
        soon reads: at rest, none of 10,000 views and the objects made from them)."""
        nodes: Iterable[bytes] = self._standing.nodes()
        if ending_by is not None:
            standing = self._standing
            nodes = (node for node in nodes if standing.credentials_end(node) <= ending_by)
        views = [self._view(node, now) for node in nodes]
        views.sort(key=_name)
        # Members of one name by node id, derived for them alone (the views keep none).
        start = 0
        for end in range(1, len(views) + 1):
            if end == len(views) or views[end].name != views[start].name:
                if end - start > 1:
                    views[start:end] = sorted(views[start:end], key=_node_id)
                start = end
        return views

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
        own = self._own(node_key)
        return (own, *credential.prefixes) if credential.prefixes else (own,)

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

    def admin_handovers(self) -> list[AdminHandover]:
        """The admin key hand-overs in the set (``meshd root rollover`` copies them)."""
        return self._standing.admins.records()

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

    def invite_uses(self, invite_key: bytes) -> int:
        return self._standing.invite_uses(invite_key)

    def sponsored_by(self, key: bytes) -> list[bytes]:
        """Ids of the enrollments countersigned by the members whose credentials depend on
        ``key`` (a member's own key, an invite's, an admin's), sorted: what a revocation of
        ``key`` lists so that those admissions keep standing (Revocation.sponsored)."""
        return self._standing.sponsored_by(key)


class RecordQueries(MembershipTables):
    """The record set, the pending pool, and the certificates and roots behind them."""

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

    def holds(self, rid: bytes) -> bool:
        """Whether the record is in the set (its bytes not put back together to say so)."""
        return rid in self._set

    def __len__(self) -> int:
        return len(self._set)

    def credential_record(self, node_key: bytes) -> bytes | None:
        """The record of the member's standing credential (a certificate, an admission or a
        hand-over), which a hand-over of its key names."""
        credential = self._standing.standing(node_key)
        return None if credential is None else self._set.get(credential.record_id)

    def issuing_certificates(self, lasting_over: int | None = None) -> list[Certificate]:
        """The invite and admin certificates that members' credentials were issued under;
        with ``lasting_over``, of the invites only those valid for longer than that (what a
        look at what ends soon reads, every minute: where every member came with an invite
        of its own, 10,000 of them decoded took ~60 ms).

        Decoded again (each was, and checked, as it came): not held decoded. The role and
        dates that choose them are read where they lie in their bytes."""
        return [
            decode_untrusted(raw, Certificate)
            for raw in self._issuing
            if lasting_over is None
            or role_of(raw) != Role.INVITE
            or not_after_of(raw) - not_before_of(raw) > lasting_over
        ]

    @property
    def roots(self) -> RootChain:
        """The root rollovers in the set and the chain of roots they make."""
        return self._roots

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def pending_evicted(self) -> int:
        """Records pushed out of the full pending pool since the start."""
        return self._pending.evicted
