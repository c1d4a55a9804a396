"""The membership state core: a CRDT of signed records (pure: no I/O, time is an argument).

The state is a set of verified records: member credentials (certificates and admissions),
revocations, and the latest announcement of each member in good standing. Merging is
commutative, associative and idempotent: any order or repetition of the same records gives the
same set, the same member states and the same digest.

- Revocations only grow, and cascade: revoking an invite or admin key excludes every member
  whose credential depends on it. A revoked member's announcement is dropped from the set.
- Announcements are last-writer-wins by the member's sequence number (ties by record id): an
  older or replayed announcement never overwrites a newer one.
- An invite for N uses admits at most N members network-wide. All admissions under it are kept;
  they are ranked by (sponsor's timestamp, record id) and only the first N stand. Every node
  holding the same records ranks them the same way.
- Records that name something not yet known (an announcement from a member whose credential has
  not arrived, an admission whose sponsor is unknown) wait in a bounded pending pool, outside the
  set, and are merged when what they wait for arrives.

Member states seen from here (``admitted``, ``expired``, ``revoked``) also depend on the time:
a credential past its end, or a member whose announcements stopped for longer than the TTL, is
``expired``; it returns when it refreshes.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from meshd.addressing import host_prefix, overlay_address
from meshd.errors import VerifyError
from meshd.keys import SigningKey, fingerprint
from meshd.records import (
    Admission,
    Announcement,
    Certificate,
    Enrollment,
    Kind,
    Record,
    Revocation,
    decode_record_untrusted,
    make_admission,
    record_id,
)
from meshd.trust import Anchor, Credential, Verifier, check_announced_prefixes

BUCKETS = 256
MAX_SPONSOR_DEPTH = 256  # an admission further than this from a certificate does not stand


class MemberState(StrEnum):
    ADMITTED = "admitted"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Member:
    """What this node knows of one member, at one instant."""

    node_key: bytes
    node_id: str
    name: str
    wg_key: bytes
    overlay: ipaddress.IPv6Address
    state: MemberState
    reason: str
    admitted_at: int
    not_after: int
    announcement: Announcement | None
    last_seen: int | None


@dataclass(frozen=True, slots=True)
class Admitted:
    member: Member


@dataclass(frozen=True, slots=True)
class Updated:
    member: Member


@dataclass(frozen=True, slots=True)
class Expired:
    member: Member


@dataclass(frozen=True, slots=True)
class Revoked:
    member: Member


Event = Admitted | Updated | Expired | Revoked


@dataclass(frozen=True, slots=True)
class Stored:
    """A record that joined the set; the store persists it."""

    rid: bytes
    kind: Kind
    raw: bytes
    node_key: bytes | None  # the member an announcement belongs to


@dataclass(frozen=True, slots=True)
class Outcome:
    """What merging one record did."""

    record: Record
    new: bool  # the record joined the set (gossip forwards only new records)
    pending: bool = False  # it waits for a record it depends on
    stored: tuple[Stored, ...] = ()  # records added to the set (this one, adopted ones)
    # Record ids removed from the set, except announcements replaced by a newer one from the same
    # member (the newer one is in ``stored`` and replaces it by node).
    dropped: tuple[bytes, ...] = ()
    events: tuple[Event, ...] = ()


@dataclass(slots=True)
class _Change:
    stored: list[Stored] = field(default_factory=list)
    dropped: list[bytes] = field(default_factory=list)
    touched: set[bytes] = field(default_factory=set)
    announced: set[bytes] = field(default_factory=set)
    judgements_changed: bool = False
    signature_checked: bool = False  # the top record's signature was checked by the caller


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
        self._records: dict[bytes, bytes] = {}
        self._bucket_acc = [0] * BUCKETS
        self._bucket_count = [0] * BUCKETS
        self._credentials: dict[bytes, list[tuple[int, bytes, Credential]]] = {}
        self._by_invite: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
        self._invite_uses: dict[bytes, int] = {}
        self._dependents: dict[bytes, set[bytes]] = {}
        self._revocations: dict[bytes, list[Revocation]] = {}
        self._revocation_ids: dict[bytes, None] = {}
        self._announcements: dict[bytes, Announcement] = {}
        self._announcement_ids: dict[bytes, bytes] = {}
        self._identity: dict[bytes, tuple[str, ipaddress.IPv6Address]] = {}
        self._last_seen: dict[bytes, int] = {}
        # Records waiting for a member's first credential, by that member's key: its own
        # announcements, and admissions it countersigned.
        self._pending: dict[bytes, dict[bytes, tuple[bytes, bool]]] = {}
        self._pending_count = 0
        self._status: dict[bytes, MemberState] = {}
        self._issuing: dict[bytes, Certificate] = {}
        self._sponsored: dict[bytes, set[bytes]] = {}
        self._admission_slots: dict[tuple[bytes, bytes], tuple[int, bytes]] = {}
        # Judgements that depend only on the record set; cleared whenever a credential or a
        # revocation joins it (announcements, the hot path, leave them intact).
        self._chain_cache: dict[bytes, bool] = {}
        self._standing_cache: dict[bytes, Credential | None] = {}

    # --- merging ------------------------------------------------------------------------

    def ingest_untrusted(self, data: bytes, now: int) -> Outcome:
        """Decode, verify and merge one record. Raises DecodeError or VerifyError only."""
        return self.ingest(decode_record_untrusted(data), now)

    def ingest(self, record: Record, now: int, *, signature_checked: bool = False) -> Outcome:
        """Verify and merge one decoded record.

        ``signature_checked``: the caller has already checked this announcement's signature
        with trust.check_announcement_signatures (e.g. in a worker thread). Every other check
        still runs, and other kinds of record are always verified in full.
        """
        rid = record_id(record.raw)
        if rid in self._records:
            return Outcome(record, new=False)
        if type(record) is Announcement:
            fast = self._refresh(record, rid, now, signature_checked)
            if fast is not None:
                return fast
        change = _Change(signature_checked=signature_checked and type(record) is Announcement)
        pending = self._merge(record, rid, now, change)
        if change.judgements_changed:
            self._settle(change)
        events = self._reevaluate(change.touched, now, change.announced)
        return Outcome(
            record,
            new=not pending,
            pending=pending,
            stored=tuple(change.stored),
            dropped=tuple(change.dropped),
            events=events,
        )

    def _merge(self, record: Record, rid: bytes, now: int, change: _Change) -> bool:
        """Merge; return True when the record went to the pending pool instead."""
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
        raise VerifyError("not-gossiped", f"a {type(record).__name__.lower()} is not gossiped")

    def _not_future(self, at: int, now: int, what: str) -> None:
        if at > now + self.clock_skew:
            raise VerifyError("not-yet-valid", f"the {what} is dated in the future")

    def _merge_certificate(self, cert: Certificate, rid: bytes, now: int, change: _Change) -> None:
        credential = self.verifier.member_certificate(cert)
        self._not_future(cert.not_before, now, "certificate")
        if credential.not_after < now:
            raise VerifyError("expired", "the member certificate has expired")
        for admin in cert.chain:
            self._issuing.setdefault(record_id(admin.raw), admin)
        self._add_credential(credential, rid, Kind.CERTIFICATE, cert.raw, now, change)

    def _merge_admission(self, admission: Admission, rid: bytes, now: int, change: _Change) -> bool:
        credential = self.verifier.admission(admission)
        self._not_future(admission.admitted_at, now, "admission")
        if credential.not_after < now:
            raise VerifyError("expired", "the membership has expired")
        if admission.sponsor not in self._credentials:
            self._park(admission.sponsor, rid, admission.raw, own=False)
            return True
        # One admission per member and invite is kept: the earliest by (time, id). Copies of
        # an enrollment countersigned again (by anyone who has seen it) cannot take more of an
        # invite's uses or grow the set; the earliest wins wherever they meet.
        slot = (credential.node_key, admission.enrollment.invite.subject)
        kept = self._admission_slots.get(slot)
        if kept is not None:
            if kept <= (admission.admitted_at, rid):
                raise VerifyError(
                    "superseded-admission", "an earlier admission of this member is already known"
                )
            self._drop_credential(credential.node_key, kept[1], change)
        self._admission_slots[slot] = (admission.admitted_at, rid)
        # Whether the sponsor stood when it countersigned is judged from the whole set (see
        # _chain_ok), so the outcome does not depend on the order records arrive in.
        self._sponsored.setdefault(admission.sponsor, set()).add(credential.node_key)
        invite = admission.enrollment.invite
        for cert in (invite, *invite.chain):
            self._issuing.setdefault(record_id(cert.raw), cert)
        self._add_credential(credential, rid, Kind.ADMISSION, admission.raw, now, change)
        return False

    def _add_credential(
        self, credential: Credential, rid: bytes, kind: Kind, raw: bytes, now: int, change: _Change
    ) -> None:
        node = credential.node_key
        entries = self._credentials.setdefault(node, [])
        bisect.insort(entries, (credential.admitted_at, rid, credential))
        for key in credential.depends_on:
            self._dependents.setdefault(key, set()).add(node)
        if credential.invite is not None:
            ranked = self._by_invite.setdefault(credential.invite, [])
            bisect.insort(ranked, (credential.admitted_at, rid, node))
            uses = self._invite_uses.get(credential.invite)
            self._invite_uses[credential.invite] = (
                credential.max_uses if uses is None else min(uses, credential.max_uses)
            )
            change.touched.update(n for _, _, n in ranked)
        self._last_seen.setdefault(node, now)
        self._add(rid, kind, raw, None, change)
        change.touched.add(node)
        self._judgements_changed(change)
        # Records that waited for this member can now be merged.
        for pending_rid, pending_raw in self._unpark(node):
            record = decode_record_untrusted(pending_raw)
            try:
                self._merge(record, pending_rid, now, change)
            except VerifyError:
                continue

    def _drop_credential(self, node: bytes, rid: bytes, change: _Change) -> None:
        """Take a superseded admission out of the set and of the indexes."""
        entries = self._credentials[node]
        dropped = next(c for _, r, c in entries if r == rid)
        entries[:] = [e for e in entries if e[1] != rid]
        if dropped.invite is not None:
            ranked = self._by_invite[dropped.invite]
            ranked[:] = [e for e in ranked if e[1] != rid]
            change.touched.update(n for _, _, n in ranked)
        self._remove(rid, change)
        change.touched.add(node)
        self._judgements_changed(change)

    def _refresh(
        self, ann: Announcement, rid: bytes, now: int, signature_checked: bool
    ) -> Outcome | None:
        """The common case on the hot path: a newer announcement from an admitted member.

        Same rules as _merge_announcement, fewer steps; returns None for anything else.
        """
        node = ann.node_key
        current = self._announcements.get(node)
        if (
            current is None
            or ann.prefixes
            or self._status.get(node) is not MemberState.ADMITTED
            or (current.seq, self._announcement_ids[node]) >= (ann.seq, rid)
        ):
            return None
        self.verifier.announcement(ann, signature_checked=signature_checked)
        if ann.issued_at > now + self.clock_skew:
            raise VerifyError("not-yet-valid", "the announcement is dated in the future")
        credential = self._standing_credential(node)
        if credential is None or credential.not_after < now:
            return None
        old = self._announcement_ids[node]
        records, acc, count = self._records, self._bucket_acc, self._bucket_count
        del records[old]
        acc[old[0]] ^= int.from_bytes(old, "big")
        count[old[0]] -= 1
        records[rid] = ann.raw
        acc[rid[0]] ^= int.from_bytes(rid, "big")
        count[rid[0]] += 1
        self._announcements[node] = ann
        self._announcement_ids[node] = rid
        if now > self._last_seen.get(node, now):
            self._last_seen[node] = now
        event = Updated(self._member(node, MemberState.ADMITTED, "", credential))
        return Outcome(
            ann, True, False, (Stored(rid, Kind.ANNOUNCEMENT, ann.raw, node),), (), (event,)
        )

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
        credential = self._standing_credential(node)
        if credential is None:
            if node in self._credentials:
                raise VerifyError("revoked", "the member is revoked")
            self._park(node, rid, ann.raw, own=True)
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
        change.announced.add(node)
        return False

    def _merge_revocation(self, rev: Revocation, rid: bytes, now: int, change: _Change) -> None:
        self.verifier.revocation(rev)
        self._not_future(rev.issued_at, now, "revocation")
        if rev.expires_at < now:
            raise VerifyError("expired", "the revocation has expired and may be pruned")
        self._revocations.setdefault(rev.target, []).append(rev)
        self._revocation_ids[rid] = None
        self._add(rid, Kind.REVOCATION, rev.raw, None, change)
        change.touched.update(self._dependents.get(rev.target, ()))
        self._drop_own_pending(rev.target)
        self._judgements_changed(change)

    # --- the record set -----------------------------------------------------------------

    def _add(self, rid: bytes, kind: Kind, raw: bytes, node: bytes | None, change: _Change) -> None:
        self._records[rid] = raw
        self._fold(rid)
        self._bucket_count[rid[0]] += 1
        change.stored.append(Stored(rid, kind, raw, node))

    def _remove(self, rid: bytes, change: _Change, *, superseded: bool = False) -> None:
        if self._records.pop(rid, None) is not None:
            self._fold(rid)
            self._bucket_count[rid[0]] -= 1
            if not superseded:
                change.dropped.append(rid)

    def _fold(self, rid: bytes) -> None:
        # Record ids are already SHA-256 output: XOR-ing them is an order-free set hash.
        self._bucket_acc[rid[0]] ^= int.from_bytes(rid, "big")

    def _park(self, waiting_for: bytes, rid: bytes, raw: bytes, *, own: bool) -> None:
        """Keep a record until ``waiting_for`` is known; ``own``: it is that member's own."""
        if self._pending_count >= self.max_pending:
            raise VerifyError("pending-full", "too many records wait for unknown members")
        bucket = self._pending.setdefault(waiting_for, {})
        if rid not in bucket:
            bucket[rid] = (raw, own)
            self._pending_count += 1

    def _unpark(self, key: bytes) -> Iterator[tuple[bytes, bytes]]:
        bucket = self._pending.pop(key, {})
        self._pending_count -= len(bucket)
        return iter(sorted((rid, raw) for rid, (raw, _) in bucket.items()))

    def _drop_own_pending(self, key: bytes) -> None:
        """A revoked key's own announcements can never be merged: forget them. Admissions it
        countersigned wait on, since those made before its revocation still stand."""
        bucket = self._pending.get(key)
        if not bucket:
            return
        for rid in [rid for rid, (_, own) in bucket.items() if own]:
            del bucket[rid]
            self._pending_count -= 1
        if not bucket:
            del self._pending[key]

    # --- judging ------------------------------------------------------------------------

    def _judgements_changed(self, change: _Change) -> None:
        self._chain_cache.clear()
        self._standing_cache.clear()
        change.judgements_changed = True

    def _settle(self, change: _Change) -> None:
        """After a credential or revocation joined the set: re-judge what it can affect.

        Standing can change for the members touched directly and, through sponsorship, for
        every member they (transitively) countersigned. Members that no longer stand lose their
        announcement, so the set is the same whatever order the records came in.
        """
        queue = list(change.touched)
        seen = set(queue)
        while queue:
            for sponsored in self._sponsored.get(queue.pop(), ()):
                if sponsored not in seen:
                    seen.add(sponsored)
                    queue.append(sponsored)
        change.touched = seen
        for node in seen:
            if node in self._announcements and self._standing_credential(node) is None:
                del self._announcements[node]
                self._remove(self._announcement_ids.pop(node), change)

    def _within_uses(self, credential: Credential, rid: bytes) -> bool:
        if credential.invite is None:
            return True
        ranked = self._by_invite[credential.invite]
        limit = self._invite_uses[credential.invite]
        position = bisect.bisect_left(ranked, (credential.admitted_at, rid, b""))
        return position < limit

    def _revoked_by(self, credential: Credential) -> bytes | None:
        if credential.depends_on.isdisjoint(self._revocations):
            return None
        return min(credential.depends_on & self._revocations.keys())

    def _revoked_at(self, credential: Credential, at: int) -> bool:
        """Whether a revocation issued at or before ``at`` excludes this credential."""
        for key in credential.depends_on:
            for revocation in self._revocations.get(key, ()):
                if revocation.issued_at <= at:
                    return True
        return False

    def _chain_ok(self, rid: bytes, credential: Credential, depth: int = 0) -> bool:
        """Within its invite's uses, and countersigned by a member who then stood.

        A sponsor stood at time t when it held a credential admitted no later than t, itself
        within its uses and countersigned by a member who stood then, and no revocation issued
        at or before t excluded it. A sponsor revoked later does not take the members it
        admitted before with it.
        """
        cached = self._chain_cache.get(rid)
        if cached is not None:
            return cached
        self._chain_cache[rid] = False  # breaks cycles; replaced below
        ok = self._within_uses(credential, rid)
        if ok and credential.sponsor is not None:
            ok = False
            if depth < MAX_SPONSOR_DEPTH:
                for admitted_at, sponsor_rid, sponsor in self._credentials.get(
                    credential.sponsor, ()
                ):
                    if admitted_at > credential.admitted_at:
                        break
                    if (
                        sponsor_rid != rid
                        and self._chain_ok(sponsor_rid, sponsor, depth + 1)
                        and not self._revoked_at(sponsor, credential.admitted_at)
                    ):
                        ok = True
                        break
        self._chain_cache[rid] = ok
        return ok

    def _exclusion(self, node: bytes, rid: bytes, credential: Credential) -> str:
        """Why a credential does not stand, or "" when it does."""
        if not self._within_uses(credential, rid):
            return "invite-used-up"
        revoked_key = self._revoked_by(credential)
        if revoked_key is not None:
            return self._revocation_reason(node, revoked_key)
        if not self._chain_ok(rid, credential):
            return "sponsor-not-member"
        return ""

    def _standing_credential(self, node: bytes) -> Credential | None:
        """The member's earliest credential that stands, if any."""
        if node in self._standing_cache:
            return self._standing_cache[node]
        found = None
        for _, rid, credential in self._credentials.get(node, ()):
            if self._revoked_by(credential) is None and self._chain_ok(rid, credential):
                found = credential
                break
        self._standing_cache[node] = found
        return found

    def _judge(self, node: bytes, now: int) -> tuple[MemberState, str, Credential]:
        entries = self._credentials[node]
        reason = ""
        expired: Credential | None = None
        for _, rid, credential in entries:
            excluded = self._exclusion(node, rid, credential)
            if excluded:
                reason = reason or excluded
                continue
            if credential.not_after < now:
                expired = expired or credential
                continue
            if self.announce_ttl is not None:
                last = self._last_seen.get(node, credential.admitted_at)
                if last + self.announce_ttl < now:
                    return MemberState.EXPIRED, "silent", credential
            return MemberState.ADMITTED, "", credential
        if expired is not None:
            return MemberState.EXPIRED, "credential-expired", expired
        return MemberState.REVOKED, reason, entries[0][2]

    def _revocation_reason(self, node: bytes, key: bytes) -> str:
        if key == node:
            return "revoked"
        return "issuer-revoked"

    def _view(self, node: bytes, now: int) -> Member:
        return self._member(node, *self._judge(node, now))

    def _member(
        self, node: bytes, state: MemberState, reason: str, credential: Credential
    ) -> Member:
        ann = self._announcements.get(node)
        node_id, overlay = self._identity_of(node)
        # Positional: this runs once per announcement on the ingest hot path.
        return Member(
            node,
            node_id,
            credential.name,
            credential.wg_key,
            overlay,
            state,
            reason,
            credential.admitted_at,
            credential.not_after,
            ann,
            self._last_seen.get(node),
        )

    def _identity_of(self, node: bytes) -> tuple[str, ipaddress.IPv6Address]:
        """A member's node id and overlay address, derived once."""
        identity = self._identity.get(node)
        if identity is None:
            identity = (fingerprint(node), overlay_address(self.anchor.root_key, node))
            self._identity[node] = identity
        return identity

    def _reevaluate(
        self, nodes: Iterable[bytes], now: int, announced: set[bytes] | None = None
    ) -> tuple[Event, ...]:
        events: list[Event] = []
        for node in sorted(nodes):
            if node not in self._credentials:
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
        """Re-judge every member at ``now``: emits Expired, and Admitted for returns."""
        return self._reevaluate(self._credentials, now)

    # --- queries ------------------------------------------------------------------------

    def members(self, now: int) -> list[Member]:
        """Every member this node has a credential for, sorted by name then node id."""
        views = [self._view(node, now) for node in self._credentials]
        return sorted(views, key=lambda m: (m.name, m.node_id))

    def member(self, node_key: bytes, now: int) -> Member | None:
        if node_key not in self._credentials:
            return None
        return self._view(node_key, now)

    def credentials_end(self, node_key: bytes) -> int:
        """When the last of a member's known credentials ends (0 when none is known)."""
        return max((c.not_after for _, _, c in self._credentials.get(node_key, ())), default=0)

    def is_revoked(self, key: bytes) -> bool:
        return key in self._revocations

    def revocations(self) -> list[Revocation]:
        return [r for rs in self._revocations.values() for r in rs]

    def issuing_certificates(self) -> list[Certificate]:
        """The invite and admin certificates that members' credentials were issued under."""
        return list(self._issuing.values())

    def invite_uses(self, invite_key: bytes) -> int:
        return len(self._by_invite.get(invite_key, ()))

    def digest(self) -> bytes:
        """A digest of the record set: equal sets give equal digests."""
        h = hashlib.sha256(b"meshd digest v1\x00")
        for acc, count in zip(self._bucket_acc, self._bucket_count, strict=True):
            h.update(acc.to_bytes(16, "big") + count.to_bytes(4, "big"))
        return h.digest()[:16]

    def bucket_digests(self) -> list[bytes]:
        """One digest per bucket of record ids (bucket = first byte of the id)."""
        return [
            acc.to_bytes(16, "big") + count.to_bytes(4, "big")
            for acc, count in zip(self._bucket_acc, self._bucket_count, strict=True)
        ]

    def record_ids(self, bucket: int | None = None) -> list[bytes]:
        if bucket is None:
            return sorted(self._records)
        return sorted(rid for rid in self._records if rid[0] == bucket)

    def record(self, rid: bytes) -> bytes | None:
        return self._records.get(rid)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def pending_count(self) -> int:
        return self._pending_count

    # --- sponsoring ---------------------------------------------------------------------

    def check_enrollment(self, enrollment: Enrollment, now: int) -> None:
        """Decide on this node's clock whether an enrollment may be admitted now."""
        self.verifier.enrollment(enrollment)
        invite = enrollment.invite
        if now < invite.not_before:
            raise VerifyError("not-yet-valid", "the invite is not valid yet")
        if now > invite.not_after:
            raise VerifyError(
                "invite-expired", "the invite has expired", hint="ask for a new invite"
            )
        for key in (invite.subject, *(c.subject for c in invite.chain)):
            if key in self._revocations:
                raise VerifyError(
                    "invite-revoked", "the invite has been revoked", hint="ask for a new invite"
                )
        if enrollment.node_key in self._revocations:
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
        if self._standing_credential(sponsor_key.public) is None:
            raise VerifyError("sponsor-not-member", "this node is not an admitted member")
        standing = self._standing_credential(enrollment.node_key)
        if standing is not None:
            raise VerifyError("already-member", "this node key is already a member")
        self.check_enrollment(enrollment, now)
        return make_admission(sponsor_key, enrollment=enrollment, admitted_at=now)
