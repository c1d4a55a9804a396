"""The sponsorship graph: the indexes of the record set, and who is sponsored (pure).

:class:`SponsorGraph` holds every verified credential by member, the ranking of members under
each invite, the revocations, who countersigned what, and the node and admin key hand-overs,
renewals, departures and chain of roots that the judgements read (meshd.membership.standing).
From these, and from nothing that depends on arrival order or on the dates a sponsor writes,
it keeps up to date which credentials are sponsored; a credential stands when:

- it is a *candidate*: a certificate is; an admission is when one of its sponsor's
  credentials is a candidate and, if a revocation names a key that sponsor credential depends
  on, every such revoked key has a revocation that lists the admission's enrollment. A revoked
  key therefore admits no one but those its revokers listed, whatever date it writes, and a
  sponsor revoked later does not take the listed members it admitted with it;
- it is within its invite's uses: the members with a candidate admission under an invite are
  ranked by their earliest such admission's rank time (the later of the sponsor's time and the
  enrollment's), then the enrollment's record id, and the first N are within. Admissions that
  are no candidates (a revoked key's unlisted ones) take no use;
- it is *sponsored*: as a candidate, counting uses (each admission on the way is within its
  invite's uses);
- no revocation names a key it depends on (its own, its invite's, its admin's): judged in
  meshd.membership.standing, with the other exclusions.

Legacy revocations (written before revocations had a list: ``Revocation.sponsored`` is None)
keep the date rule the releases before the list applied: while every revocation of a key in
the set is legacy, an admission under that key stands as for the list if its ``admitted_at``
is before the earliest of them (so a key revoked that way can still backdate, until revoked
again). Once one listed revocation of the key is in the set, only lists count for it. Both
are functions of the set alone. Only the admission's own date counts, not its sponsor's: an
admission replaced by an earlier copy (``drop_credential``) is then carried whenever the one
it replaces was.

Both are reachability from the certificates through countersignatures (at most
``MAX_SPONSOR_DEPTH`` steps), worked out by meshd.membership.spreading. Adding a credential
only ever adds to them, so they are extended in place (for a new admission whose member
countersigned no one, under an invite with uses left, in one step: ``spreading.place``),
unless a new candidate pushes a member out of its invite's uses; that, a revocation or a
lower use limit recomputes them. Every member keeps every admission it has
(one per enrollment and sponsor), so a record countersigned by someone else can add a way to
stand, never take one away.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from meshd.membership.admins import AdminHandovers
from meshd.membership.key_sets import KeySets
from meshd.membership.lifecycle import Departures, Renewals
from meshd.membership.roots import RootChain
from meshd.membership.spreading import place, spread, starts
from meshd.records import U64, AdminHandover, Revocation
from meshd.trust.credential import Credential

if TYPE_CHECKING:
    from meshd.membership.tables import MemberEntry


def _order(credential: Credential) -> tuple[int, bytes]:
    """How a member's credentials are ordered: earliest first, then by record id."""
    return credential.admitted_at, credential.record_id


class SponsorGraph:
    """The indexes of one membership state, and who is sponsored (candidates, distances)."""

    def __init__(
        self, entries: dict[bytes, MemberEntry], entry: Callable[[bytes], MemberEntry]
    ) -> None:
        # The members' entries, kept by the tables (``entry`` makes one): their credentials.
        self._entries = entries
        self._entry = entry
        self._judging = object()  # what the standing judged in an entry is valid for
        # Of the last member judged admitted (meshd.membership.standing, ``judge``): the
        # first moment time alone ends that (its end, extended, or its silence limit).
        self.due = U64
        # Record id -> the credential, for admissions and hand-overs (what spreading steps
        # through): a certificate's, found from its member (its entry), is not kept here
        # (its id and this table's entry: ~80 bytes a member certified by a root); while
        # spreading starts from certificates, they are in ``_starting`` (:meth:`_credential`).
        self._by_rid: dict[bytes, Credential] = {}
        self._starting: dict[bytes, Credential] = {}
        # invite key -> the members holding an admission under it (their admissions, each
        # ranked by (rank time, enrollment id), are among their credentials: _under)
        self._ranked = KeySets()
        self._invite_uses: dict[bytes, int] = {}
        self._within: dict[bytes, frozenset[bytes]] = {}
        # Key -> the other members whose credentials depend on it (its revocation excludes
        # them); a member depends on its own key too, which is not stored (_dependents_of).
        self._dependents = KeySets()
        self._revocations: dict[bytes, list[Revocation]] = {}
        # Revoked key -> enrollment ids still standing; a key is here once one of its
        # revocations has a list (then its legacy revocations no longer count).
        self._listed: dict[bytes, set[bytes]] = {}
        # Revoked key -> the earliest issued_at among its legacy revocations.
        self._legacy_from: dict[bytes, int] = {}
        self._sponsored = KeySets()  # sponsor -> admission record ids
        self._sponsored_nodes = KeySets()  # sponsor -> members
        # Steps from a certificate through countersignatures: of every credential whose
        # sponsor chain holds when invite uses are not counted (the candidates, which take
        # their invite's uses), and of those that also hold within uses (they stand, if
        # not revoked). Admissions and hand-overs only: a certificate (no sponsor) is at 0 in
        # both, always, so it is not stored (see :meth:`sponsored`).
        self._candidate: dict[bytes, int] = {}
        self._distance: dict[bytes, int] = {}
        self.renewals = Renewals()
        self.departures = Departures()
        self.roots: RootChain | None = None  # the root rollovers; None: the first root only
        # Node keys handed over (``meshd rotate node``): old key -> its hand-overs, earliest
        # first by (issued_at, record id), each with the enrollment ids whose admissions under
        # the old key keep standing (its own id: the new key's credential). The earliest wins.
        self.handovers: dict[bytes, list[tuple[int, bytes, frozenset[bytes]]]] = {}
        # Each hand-over's record id (the new key's credential) -> the old key: the keys a
        # membership passed through, whose renewals carry over (meshd.membership.standing).
        self._handed_from: dict[bytes, bytes] = {}
        self.admins = AdminHandovers()  # admin keys handed over (meshd.membership.admins)
        self._heirs: dict[bytes, bytes] | None = None  # successors of revoked admin keys

    def _held(self, node: bytes) -> tuple[Credential, ...]:
        """The member's credentials, earliest first (none when it is unknown)."""
        entry = self._entries.get(node)
        held = () if entry is None or entry.credentials is None else entry.credentials
        return held if isinstance(held, tuple) else (held,)

    def _under(self, invite: bytes, node: bytes) -> Iterator[Credential]:
        """The member's admissions under ``invite`` (what ranks it among its members)."""
        return (c for c in self._held(node) if c.invite == invite)

    # --- changes ------------------------------------------------------------------------

    def add_credential(self, credential: Credential, rid: bytes) -> set[bytes]:
        """Index a verified credential; returns the members whose standing may change."""
        node = credential.node_key
        entries = self._held(node)
        self._entry(node).credentials = (
            tuple(sorted((*entries, credential), key=_order)) if entries else credential
        )
        if credential.sponsor is not None:
            self._by_rid[rid] = credential
        for key in credential.issuers:  # never its own key
            self._dependents.add(key, node)
        if credential.sponsor is not None:
            self._sponsored.add(credential.sponsor, rid)
            self._sponsored_nodes.add(credential.sponsor, node)
        self.invalidate()
        touched = {node}
        if credential.invite is not None:
            invite = credential.invite
            self._ranked.add(invite, node)
            members = self._ranked.get(invite)
            uses = self._invite_uses.get(invite)
            limit = credential.max_uses if uses is None else min(uses, credential.max_uses)
            self._invite_uses[invite] = limit
            if uses is not None and limit < uses:
                return touched | set(members) | self._recompute()
            if (
                credential.sponsor is not None
                and node not in self._sponsored
                and len(members) <= limit
                and rid not in self._candidate
            ):
                # It leads nowhere yet and pushes no one out: what spreading would do.
                place(self, credential, credential.sponsor, rid)
                return touched
        elif credential.sponsor is None and node not in self._sponsored:
            # A certificate (at 0) of a member that countersigned nothing: spreading finds it alone.
            return touched
        if credential.sponsor is not None:
            return self._spread_from(credential, rid, touched)
        self._starting = {rid: credential}  # a certificate spreading starts from
        try:
            return self._spread_from(credential, rid, touched)
        finally:
            self._starting = {}

    def _spread_from(self, credential: Credential, rid: bytes, touched: set[bytes]) -> set[bytes]:
        """What :meth:`add_credential` spreads from a new credential ``rid``."""
        # What this credential makes a candidate can take uses of invites over their limit;
        # a member pushed out of one is only handled by recomputing.
        before: dict[bytes, frozenset[bytes]] = {}
        grown = self._spread(
            self._starts([rid], self._candidate, uses=False), uses=False, before=before
        )
        entered: list[bytes] = []
        for invite, within in before.items():
            after = self._within_set(invite)
            if not within <= after:
                return touched | set(self._ranked.get(invite)) | self._recompute()
            for member in after - within:
                entered += (c.record_id for c in self._under(invite, member))
        starts = self._starts(
            [r for r in (*grown, *entered) if r not in self._distance], self._distance, uses=True
        )
        return touched | self._nodes(self._spread(starts, uses=True))

    def drop_credential(self, node: bytes, rid: bytes) -> set[bytes]:
        """Forget a superseded admission; returns the members whose standing may change.

        Only ever followed by adding the admission that supersedes it: the same enrollment
        countersigned by the same sponsor, hence sponsored exactly as it was. So what it led
        to keeps its distance, and the whole is not recomputed (a member re-dating its own
        copies cannot make every node recompute the set)."""
        kept = tuple(c for c in self._held(node) if c.record_id != rid)
        self._entry(node).credentials = kept[0] if len(kept) == 1 else kept
        dropped = self._by_rid.pop(rid)  # an admission
        touched = {node}
        if dropped.invite is not None:
            if next(self._under(dropped.invite, node), None) is None:
                self._ranked.discard(dropped.invite, node)
            self._within.pop(dropped.invite, None)
            touched.update(self._ranked.get(dropped.invite))
        if dropped.sponsor is not None:
            self._sponsored.discard(dropped.sponsor, rid)
        self._candidate.pop(rid, None)
        self._distance.pop(rid, None)
        self.invalidate()
        return touched

    def forget_credential(self, credential: Credential) -> set[bytes]:
        """Forget a credential that leaves the set: a hand-over an earlier one of its key
        replaces, or one from a revoked key, and what was merged only while a key that no
        longer holds a credential held one (meshd.membership.merge). Returns the members
        whose standing may change; who is sponsored is not worked out again
        (:meth:`after_forgetting`)."""
        node, rid, sponsor = credential.node_key, credential.record_id, credential.sponsor
        kept = tuple(c for c in self._held(node) if c.record_id != rid)
        self._entry(node).credentials = (kept[0] if len(kept) == 1 else kept) or None
        self._by_rid.pop(rid, None)
        for key in credential.issuers:
            if not any(key in c.issuers for c in kept):
                self._dependents.discard(key, node)
        touched = {node}
        if sponsor is not None:
            self._sponsored.discard(sponsor, rid)
            if not any(c.sponsor == sponsor for c in kept):
                self._sponsored_nodes.discard(sponsor, node)
        invite = credential.invite
        if invite is not None:
            if next(self._under(invite, node), None) is None:
                self._ranked.discard(invite, node)
            self._within.pop(invite, None)
            touched.update(self._ranked.get(invite))
        old = self._handed_from.pop(rid, None)
        if old is not None:
            left = [e for e in self.handovers.get(old, ()) if e[1] != rid]
            if left:
                self.handovers[old] = left
            else:
                self.handovers.pop(old, None)
            touched.add(old)
        self.invalidate()
        return touched

    def after_forgetting(self) -> set[bytes]:
        """Work out who is sponsored again after :meth:`forget_credential`; returns the
        members whose credentials changed."""
        return self._recompute()

    def holds(self, node: bytes, origin: bytes) -> bool:
        """Whether ``node`` holds, in the set, a credential of the membership enrolled as
        ``origin``: what a hand-over of that membership from ``node`` needs."""
        return any(c.origin == origin for c in self._held(node))

    def hand_overs_from(self, keys: set[bytes]) -> list[bytes]:
        """The record ids of the hand-overs from ``keys`` in the set."""
        return [rid for key in sorted(keys) for _, rid, _ in self.handovers.get(key, ())]

    def handed(self, credential: Credential) -> bool:
        """Whether the credential is a hand-over's."""
        return credential.record_id in self._handed_from

    def countersigned(self, key: bytes) -> list[Credential]:
        """The credentials ``key`` sponsors: admissions it countersigned, hand-overs from it."""
        return [self._by_rid[rid] for rid in self._sponsored.get(key)]

    def origin_of(self, node: bytes) -> tuple[int, bytes, bytes] | None:
        """(issued_at, record id, old key) of the earliest hand-over to ``node`` in the set."""
        found = None
        for credential in self._held(node):
            old = self._handed_from.get(credential.record_id)
            if old is None:
                continue
            for at, rid, _ in self.handovers.get(old, ()):
                if rid == credential.record_id and (found is None or (at, rid) < found[:2]):
                    found = (at, rid, old)
        return found

    def add_revocation(self, revocation: Revocation) -> set[bytes]:
        """Index a verified revocation; returns the members whose standing may change."""
        target = revocation.target
        self._index_revocation(revocation)
        self.invalidate()
        dependents = self._dependents_of(target)
        if any(node in self._sponsored for node in dependents):
            return dependents | self._recompute()
        return dependents

    def _index_revocation(self, revocation: Revocation) -> None:
        target = revocation.target
        self._revocations.setdefault(target, []).append(revocation)
        if revocation.sponsored is None:
            since = self._legacy_from.get(target)
            if since is None or revocation.issued_at < since:
                self._legacy_from[target] = revocation.issued_at
        else:
            self._listed.setdefault(target, set()).update(revocation.sponsored)

    def drop_revocations(self, revocations: Iterable[Revocation]) -> set[bytes]:
        """Forget revocations (signed under a root no longer accepted); returns the members
        whose standing may change."""
        gone = {r.raw for r in revocations}
        targets = {r.target for r in revocations}
        touched: set[bytes] = set()
        for target in targets:
            kept = [r for r in self._revocations.pop(target, []) if r.raw not in gone]
            self._listed.pop(target, None)
            self._legacy_from.pop(target, None)
            for revocation in kept:
                self._index_revocation(revocation)
            touched |= self._dependents_of(target)
        self.invalidate()
        return touched | self._recompute()

    def add_handover(
        self, old: bytes, issued_at: int, rid: bytes, kept: Iterable[bytes]
    ) -> set[bytes]:
        """Index a verified hand-over of ``old``; returns the members whose standing may
        change (the old key stops standing; what it countersigned is judged again)."""
        entries = self.handovers.setdefault(old, [])
        entries.append((issued_at, rid, frozenset(kept) | {rid}))
        self._handed_from[rid] = old
        entries.sort(key=lambda e: e[:2])
        self.invalidate()
        return {old} | self._recompute()

    def invalidate(self) -> None:
        self._judging = object()  # every entry's judged standing is stale
        self._heirs = None

    def add_admin_handover(self, handover: AdminHandover, rid: bytes) -> set[bytes]:
        """Index a verified admin key hand-over; returns the members whose standing may
        change (those under the old key, and under its successors)."""
        old = handover.old_key
        keys = {old} | self.admins.successors(old)
        self.admins.add(handover, rid)
        self.invalidate()
        keys |= self.admins.successors(old)
        return {n for key in keys for n in self._dependents_of(key)} | self._recompute()

    def drop_admin_handovers(self, rids: set[bytes]) -> set[bytes]:
        """Forget admin key hand-overs (signed under a root no longer accepted); returns the
        members whose standing may change."""
        keys: set[bytes] = set()
        for old in self.admins.old_keys(rids):
            keys |= {old} | self.admins.successors(old)  # as they were: some go now
        self.admins.drop(rids)
        self.invalidate()
        return {n for key in keys for n in self._dependents_of(key)} | self._recompute()

    def heirs_touched(self, key: bytes) -> set[bytes]:
        """After a revocation of (or a change to the revocations of) admin key ``key``: the
        members under its successors, which stand or fall with it."""
        heirs = self.admins.successors(key)
        if not heirs:
            return set()
        self.invalidate()
        return {n for heir in heirs for n in self._dependents_of(heir)} | self._recompute()

    def _revoked_heirs(self) -> dict[bytes, bytes]:
        """Successors of revoked admin keys -> the revoked key each descends from."""
        if self._heirs is None:
            self._heirs = self.admins.revoked_heirs(self._revocations) if self.admins else {}
        return self._heirs

    def with_sponsored(self, nodes: Iterable[bytes]) -> set[bytes]:
        """``nodes`` and every member they (transitively) countersigned."""
        queue = list(nodes)
        seen = set(queue)
        while queue:
            for sponsored in self._sponsored_nodes.get(queue.pop()):
                if sponsored not in seen:
                    seen.add(sponsored)
                    queue.append(sponsored)
        return seen

    # --- sponsorship --------------------------------------------------------------------

    def _edge(self, sponsor: Credential, admission: Credential) -> bool:
        """Whether ``sponsor``'s credential carries ``admission``: each revoked key it depends
        on has a revocation listing the admission's enrollment or, when all of that key's
        revocations are legacy, the admission is dated before the earliest of them. A
        hand-over is carried only by its old key's credential of the same membership (before,
        any: a key that also stood on an admission of its own carried a membership handed
        on from one that did not stand)."""
        if admission.record_id in self._handed_from and sponsor.origin != admission.origin:
            return False
        handed = self.handovers.get(sponsor.node_key)
        if handed is not None:
            # A key handed over carries what its winning hand-over lists (and its new key,
            # unless a revocation of the old key came: revoked wins), nothing else.
            kept = handed[0][2]
            if admission.enrollment not in kept:
                return False
            if admission.enrollment == handed[0][1] and sponsor.node_key in self._revocations:
                return False
        if self.admins and self.admins.late(sponsor):
            return False  # under an admin key's certificate dated after its hand-over
        heirs = self._revoked_heirs()
        depends = sponsor.depends_on
        if self._revocations.keys().isdisjoint(depends) and heirs.keys().isdisjoint(depends):
            return True
        for key in depends:
            if key not in self._revocations:
                if key not in heirs:
                    continue
                key = heirs[key]  # a revoked admin key's successor falls with it
            listed = self._listed.get(key)
            if listed is None:
                if admission.admitted_at >= self._legacy_from[key]:
                    return False
            elif admission.enrollment not in listed:
                return False
        return True

    def _starts(
        self, rids: list[bytes], distance: dict[bytes, int], *, uses: bool
    ) -> list[tuple[bytes, int]]:
        return starts(self, rids, distance, uses=uses)

    def _spread(
        self,
        starts: list[tuple[bytes, int]],
        *,
        uses: bool,
        before: dict[bytes, frozenset[bytes]] | None = None,
    ) -> list[bytes]:
        return spread(self, starts, uses=uses, before=before)

    def sponsored(self, credential: Credential, *, uses: bool = True) -> bool:
        """Whether the credential is sponsored (``uses``: within its invite's uses; else a
        candidate, uses not counted)."""
        if credential.sponsor is None:
            return True
        return credential.record_id in (self._distance if uses else self._candidate)

    def _dependents_of(self, key: bytes) -> set[bytes]:
        """The members whose credentials depend on ``key``: under it, or its own."""
        found = set(self._dependents.get(key))
        entry = self._entries.get(key)
        if entry is not None and entry.credentials is not None:
            found.add(key)
        return found

    def _credential(self, rid: bytes) -> Credential:
        """The credential of record id ``rid``, which spreading reached: an admission's or a
        hand-over's, or a certificate's it started from."""
        found = self._by_rid.get(rid)
        return self._starting[rid] if found is None else found

    def _nodes(self, rids: Iterable[bytes]) -> set[bytes]:
        return {self._credential(rid).node_key for rid in rids}

    def _recompute(self) -> set[bytes]:
        """Recompute candidates and who is sponsored from the certificates; returns the
        members whose credentials changed."""
        before = self._distance
        self._candidate = {}
        self._distance = {}
        self._within.clear()
        # From the certificates of the members that countersigned someone: from any other,
        # spreading reaches no one.
        certificates = {
            c.record_id: c
            for sponsor in self._sponsored
            for c in self._held(sponsor)
            if c.sponsor is None
        }
        roots = [(rid, 0) for rid in certificates]
        starting, self._starting = self._starting, {**self._starting, **certificates}
        try:
            self._spread(roots, uses=False)
            self._within.clear()
            self._spread(roots, uses=True)
        finally:
            self._starting = starting
        self.invalidate()
        return self._nodes(r for r in before.keys() ^ self._distance.keys() if r in self._by_rid)

    def _within_set(self, invite: bytes) -> frozenset[bytes]:
        """The members within an invite's uses: the first N by their best rank."""
        within = self._within.get(invite)
        if within is None:
            candidate = self._candidate
            ranking: list[tuple[tuple[int, bytes], bytes]] = []
            for node in self._ranked.get(invite):
                # A member ranks by its best admission that is a candidate, if it has one.
                ranks = [
                    (c.rank, c.enrollment)
                    for c in self._under(invite, node)
                    if c.record_id in candidate
                ]
                if ranks:
                    ranking.append((min(ranks), node))
            ranking.sort()
            within = frozenset(node for _, node in ranking[: self._invite_uses.get(invite, 0)])
            self._within[invite] = within
        return within

    def _crowded(self, invite: bytes) -> bool:
        """Whether more members hold admissions under the invite than it has uses."""
        return self._ranked.count(invite) > self._invite_uses.get(invite, 0)

    def _within_uses(self, credential: Credential) -> bool:
        invite = credential.invite
        if invite is None or not self._crowded(invite):
            return True
        return credential.node_key in self._within_set(invite)
