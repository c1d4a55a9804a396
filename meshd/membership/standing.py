"""Who stands: the judgements of members from the record set alone (pure).

:class:`Standing` judges on top of the sponsorship graph (meshd.membership.sponsor_graph: the
indexes of the set, and which credentials are sponsored within their invites' uses). A
credential stands when it is sponsored, no revocation names a key it depends on (its own, its
invite's, its admin's, or an admin key its admin's descends from by hand-over) nor any key of
its membership (every key a chain of hand-overs passed it to or from: a revoked membership
does not live on in a key its old key hands it to), it was not
issued by an admin key after that key's hand-over, its root is on the chain of roots, and its
member neither left nor handed its key over. A member's state at ``now`` adds time: its
credential's end (renewals included, each capped at its root's end: meshd.membership.lifecycle)
and, when asked, its silence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from meshd.membership.sponsor_graph import SponsorGraph
from meshd.membership.spreading import MAX_SPONSOR_DEPTH
from meshd.membership.views import MemberState
from meshd.records import U64, Revocation
from meshd.records.body import subject_of
from meshd.trust.credential import Credential

if TYPE_CHECKING:
    from meshd.membership.tables import MemberEntry


class Standing(SponsorGraph):
    """The judgement indexes of one membership state."""

    _revoked_memberships: tuple[object, dict[bytes, bytes]] | None = None
    _forked_memberships: tuple[object, frozenset[bytes]] | None = None

    def __init__(
        self, entries: dict[bytes, MemberEntry], entry: Callable[[bytes], MemberEntry]
    ) -> None:
        super().__init__(entries, entry)
        self._twice: set[bytes] = set()  # keys that handed over twice (then kept: few)

    # --- a revocation reaches the whole membership --------------------------------------

    def add_revocation(self, revocation: Revocation) -> set[bytes]:
        touched = super().add_revocation(revocation)
        return touched | self._membership_touched({revocation.target})

    def drop_revocations(self, revocations: Iterable[Revocation]) -> set[bytes]:
        dropped = list(revocations)
        touched = super().drop_revocations(dropped)
        return touched | self._membership_touched({r.target for r in dropped})

    def _membership_touched(self, keys: set[bytes]) -> set[bytes]:
        """The other keys of the memberships of ``keys`` (hand-overs to and from them), and
        what depends on those: their standing follows a revocation of any one."""
        if not self._handed_from:
            return set()
        mates = {m for key in keys for m in self._membership_keys(key)} - keys
        if not mates:
            return set()
        touched = set(mates)
        for mate in mates:
            touched |= self._dependents_of(mate)
        if any(node in self._sponsored for node in touched):
            touched |= self._recompute()
        return touched

    def _membership_keys(self, key: bytes) -> set[bytes]:
        """Every key of the memberships ``key`` holds a credential of: the keys before it
        (its lineage), and every key any of them handed over to."""
        found: set[bytes] = set()
        for credential in self._held(key):
            for old in self.lineage(credential):
                found.add(old)
                found |= self.handed_to(old)
        return found

    def _revoked_membership(self, credential: Credential) -> bytes | None:
        """A revoked key of the credential's membership (the same enrolled credential,
        ``origin``, through hand-overs), if any: a membership revoked under one of its keys
        is revoked under all of them. Before, a member revoked under its current key
        signed, with the key it had handed over from, a second hand-over dated earlier
        than the first, and stood again under a third key."""
        if not self._handed_from or not self._revocations:
            return None  # no hand-over: a membership is one key, judged as such
        cached = self._revoked_memberships
        if cached is None or cached[0] is not self._judging:
            origins: dict[bytes, bytes] = {}
            for key in sorted(self._revocations):
                for held in self._held(key):
                    origins.setdefault(held.origin, key)
            cached = self._revoked_memberships = (self._judging, origins)
        return cached[1].get(credential.origin)

    # --- a key that hands over twice forfeits its membership -----------------------------

    def add_handover(
        self, old: bytes, issued_at: int, rid: bytes, kept: Iterable[bytes]
    ) -> set[bytes]:
        touched = super().add_handover(old, issued_at, rid, kept)
        if len(self.handovers[old]) > 1:
            self._twice.add(old)
            touched |= self._membership_touched({old}) | {old}
        return touched

    def hands_over_nothing(self, old: bytes, origin: bytes) -> bool:
        """Whether a hand-over from ``old`` of the membership enrolled as ``origin`` is
        refused: ``old``, or a key before it in the membership's chain, is revoked. Nothing
        after a revoked key is sponsored (its hand-over carries no new key: ``_edge``), so
        nothing such a hand-over passes on could stand; before, each was kept, and a revoked
        membership handed over to fresh keys without end (a chain of 200 hand-overs, 200
        records in every node's set, none standing)."""
        if old in self._revocations:
            return True
        return any(key in self._revocations for key in self.handed_lineage(old, origin)[1:])

    def _forked(self, credential: Credential) -> bool:
        """Whether a key of the credential's membership (the same enrolled credential,
        ``origin``) handed over twice. Only its holder signs a hand-over, and an honest one
        hands over once (``meshd rotate node``): a second shows a copy of the key in other
        hands, and no key of the membership stands from then on, whichever hand-over is
        dated first. Before, the earliest won: a thief of a key the member had rotated away
        from took the membership with a hand-over dated before the member's."""
        if not self._twice:
            return False
        cached = self._forked_memberships
        if cached is None or cached[0] is not self._judging:
            origins: set[bytes] = set()
            for old in self._twice:
                entries = self.handovers.get(old, ())
                if len(entries) > 1:  # (one may have left the set with a key forgotten)
                    for _, rid, _ in entries:
                        handed = self._by_rid.get(rid)
                        if handed is not None:
                            origins.add(handed.origin)
            cached = self._forked_memberships = (self._judging, frozenset(origins))
        return bool(cached[1]) and credential.origin in cached[1]

    # --- judgements ---------------------------------------------------------------------

    def standing(self, node: bytes) -> Credential | None:
        """The member's earliest credential that stands, if any."""
        entry = self._entries.get(node)
        if entry is None:
            return None  # no credential
        if entry.judged is self._judging:
            return entry.standing
        found = None
        for credential in self._held(node):
            if (
                self.sponsored(credential)
                and self._revoked_by(credential) is None
                and self._revoked_membership(credential) is None
                and not self._forked(credential)
                and not (self.admins and self.admins.late(credential))
                and self._root_on_chain(credential)
            ):
                found = None if self._left(credential) else self.extend(credential)
                break
        entry.standing, entry.judged = found, self._judging
        return found

    def judge(
        self, node: bytes, now: int, last_seen: int | None, announce_ttl: int | None
    ) -> tuple[MemberState, str, Credential]:
        """The member's state at ``now``, why, and the credential that decides it."""
        entries = self._held(node)
        entry = self._entries.get(node)
        # What standing() found, extended, for the judgements as they are (None: not judged
        # since they changed): its end is the one worked out here, so it is not again.
        held = entry.standing if entry is not None and entry.judged is self._judging else None
        reason = ""
        expired: Credential | None = None
        retired: Credential | None = None
        for credential in entries:
            excluded = self._exclusion(node, credential)
            if excluded:
                reason = reason or excluded
                continue
            end, extended = self._ended(credential, held)
            if end < now:
                keys = self.lineage(credential)
                if self.renewals.end(credential, subjects=keys) >= now:
                    # Valid but for its root(s): rolled over, and the overlap has ended.
                    retired = retired or self.renewals.extend(credential, subjects=keys)
                else:
                    expired = expired or self.renewals.extend(credential, subjects=keys)
                continue
            credential = extended
            if announce_ttl is not None:
                last = credential.admitted_at if last_seen is None else last_seen
                if last + announce_ttl < now:
                    return MemberState.EXPIRED, "silent", credential
                end = min(end, last + announce_ttl)
            self.due = end + 1  # admitted until then, unless a record or a sighting comes
            return MemberState.ADMITTED, "", credential
        if expired is not None:
            return MemberState.EXPIRED, "credential-expired", expired
        if retired is not None:
            return MemberState.EXPIRED, "root-retired", retired
        return MemberState.REVOKED, reason, entries[0]

    def root_end(self, root: bytes) -> int:
        """Until when records signed under the root key ``root`` (b"": the first) are
        accepted: 0 for a key off the chain of roots."""
        if self.roots is None:
            return U64
        return self.roots.end(root or self.roots.first)

    def end(self, credential: Credential) -> int:
        """When a credential ends: the latest of its own end and its renewals', each capped
        at the end of the root it was signed under (a renewal under a newer root carries it
        over a rollover)."""
        return self.renewals.end(credential, self.root_end, self.lineage(credential))

    def extend(self, credential: Credential) -> Credential:
        return self.renewals.extend(credential, self.root_end, self.lineage(credential))

    def _ended(self, credential: Credential, held: Credential | None) -> tuple[int, Credential]:
        """The credential's :meth:`end` and the credential :meth:`extend` makes, worked out
        once (its own end read once from its bytes); ``held``: what :meth:`standing` found and
        extended, for the judgements as they are: when it is this credential, its end is
        the one to work out."""
        # The same record: the same bytes (a certificate's id is worked out from them).
        if held is not None and (
            held is credential or held.held is credential.held or held.raw == credential.raw
        ):
            return held.not_after, held
        own = credential.not_after
        end = self.renewals.end(credential, self.root_end, self.lineage(credential), own)
        return end, credential if end == own else credential.renewed(end)

    def lineage(self, credential: Credential) -> tuple[bytes, ...]:
        """The credential's node key, then the keys its membership was handed over from
        (``meshd rotate node``), back to the key it enrolled with: the renewals of each apply
        to it, as they did to theirs (a hand-over keeps the remaining validity)."""
        keys = [credential.node_key]
        if not self._handed_from:  # no hand-over in the set: no id to look up
            return (credential.node_key,)
        rid = credential.record_id
        while len(keys) <= MAX_SPONSOR_DEPTH:
            old = self._handed_from.get(rid)
            if old is None or old in keys:
                break
            keys.append(old)
            held = self._handed(old, credential.origin)
            rid = b"" if held is None else held.record_id
        return tuple(keys)

    def _left(self, credential: Credential) -> bool:
        """Whether the member left: its key, or a key its membership was handed over from,
        signed a leave (a leave is treated like a revocation, which a hand-over does not
        escape: a left key hands over nothing, in any order)."""
        if not self.departures:
            return False
        return any(key in self.departures for key in self.lineage(credential))

    def handed_to(self, key: bytes) -> set[bytes]:
        """The keys ``key``'s membership was handed over to, and theirs, transitively: whose
        end a renewal of ``key`` moves too."""
        found: set[bytes] = set()
        queue = [key]
        while queue:
            for _, rid, _ in self.handovers.get(queue.pop(), ()):
                credential = self._by_rid.get(rid)
                if credential is not None and credential.node_key not in found:
                    found.add(credential.node_key)
                    queue.append(credential.node_key)
        return found

    def handed_lineage(self, old: bytes, origin: bytes) -> tuple[bytes, ...]:
        """The keys a hand-over from ``old`` of the membership enrolled as ``origin`` passes
        on: ``old`` and the keys before it (only ``old`` while its credential is not here)."""
        credential = self._handed(old, origin)
        return (old,) if credential is None else self.lineage(credential)

    def _handed(self, key: bytes, origin: bytes) -> Credential | None:
        """``key``'s credential of the membership enrolled as ``origin`` (one handed to it,
        else the enrolled one); None when none is known."""
        found = None
        for credential in self._held(key):
            if credential.origin == origin:
                if credential.record_id in self._handed_from:
                    return credential
                found = found or credential
        return found

    def _root_on_chain(self, credential: Credential) -> bool:
        return self.roots is None or self.roots.on_chain(credential.root or self.roots.first)

    def _exclusion(self, node: bytes, credential: Credential) -> str:
        """Why a credential does not stand, or "" when it does."""
        if self._left(credential):
            return "left"
        revoked_key = self._revoked_by(credential)
        if revoked_key is not None:
            if revoked_key == node and node in self.handovers and node not in self._revocations:
                return "handed-over"
            return "revoked" if revoked_key == node else "issuer-revoked"
        if self._revoked_membership(credential) is not None:
            return "revoked"
        if self._forked(credential):
            return "forked"
        if self.admins and self.admins.late(credential):
            return "admin-handed-over"
        if not self._root_on_chain(credential):
            return "root-superseded"
        if not self.sponsored(credential, uses=False):
            return "sponsor-not-member"
        if not self._within_uses(credential):
            return "invite-used-up"
        if not self.sponsored(credential):
            return "sponsor-not-member"
        return ""

    def unsponsored(self, node: bytes) -> bool:
        """Whether a credential of the member fails only for want of a sponsor: a credential
        or a revocation's list that arrives later can still make it stand."""
        return any(
            self._exclusion(node, credential) == "sponsor-not-member"
            for credential in self._held(node)
        )

    def _revoked_by(self, credential: Credential) -> bytes | None:
        heirs = self._revoked_heirs()
        if not heirs and not self._revocations:  # nothing revoked: no tuple to build
            return credential.node_key if credential.node_key in self.handovers else None
        depends = credential.depends_on
        if heirs and not heirs.keys().isdisjoint(depends):
            return min((self._revocations.keys() | heirs.keys()).intersection(depends))
        if self._revocations.keys().isdisjoint(depends):
            # A key handed over no longer stands for itself.
            return credential.node_key if credential.node_key in self.handovers else None
        return min(self._revocations.keys() & depends)

    # --- queries ------------------------------------------------------------------------

    def admission_of(self, node: bytes, enrollment: bytes, sponsor: bytes) -> Credential | None:
        """The member's admission of ``enrollment`` countersigned by ``sponsor``, if one is
        in the set: one is kept per enrollment and sponsor, the earliest by (time, id), so
        its credentials tell (no table of them is kept)."""
        for credential in self._held(node):
            if credential.enrollment == enrollment and credential.sponsor == sponsor:
                return credential
        return None

    def knows(self, node: bytes) -> bool:
        """Whether the member holds a credential (or held one, about to be replaced)."""
        entry = self._entries.get(node)
        return entry is not None and entry.credentials is not None

    def nodes(self) -> Iterator[bytes]:
        """Every member that holds a credential, in the order they got their first."""
        return (node for node, entry in self._entries.items() if entry.credentials is not None)

    def credential_by_id(self, rid: bytes, raw: bytes | None = None) -> Credential | None:
        """The verified credential of record id ``rid``, if it is in the set: an admission's
        or a hand-over's, or given its bytes ``raw`` (the set's), a certificate's."""
        found = self._by_rid.get(rid)
        if found is not None or raw is None:
            return found
        subject = subject_of(raw)
        held = () if subject is None else self._held(subject)
        return next((c for c in held if c.raw == raw), None)

    def credentials_end(self, node: bytes) -> int:
        """When the last of a member's known credentials ends (0 when none is known)."""
        entries = self._held(node)
        # A credential under a root that was rolled over ends with the overlap at the latest,
        # unless a renewal signed under a newer root carries it further.
        return max((self.end(c) for c in entries), default=0)

    def root_bound(self, node: bytes) -> bool:
        """Whether the member's end is its root's: all it holds would last longer but for
        the overlap of the (retiring) root it is anchored to. None is before any rollover
        (every credential chains to the first root, which never ends): not worked out then,
        for each member of ``meshd peers``."""
        if self.roots is None or not len(self.roots):
            return False
        entries = self._held(node)
        end = max((self.end(c) for c in entries), default=0)
        return end < max(
            (self.renewals.end(c, subjects=self.lineage(c)) for c in entries), default=0
        )

    def is_revoked(self, key: bytes) -> bool:
        """Whether ``key`` is revoked, or is the successor of a revoked admin key."""
        return key in self._revocations or key in self._revoked_heirs()

    def revocations(self) -> list[Revocation]:
        return [r for rs in self._revocations.values() for r in rs]

    def revocation_of(self, node: bytes) -> Revocation | None:
        """The revocation that excludes a credential of the member (of its key, or of the
        invite or admin key it depends on); None when none does."""
        for credential in self._held(node):
            key = self._revoked_by(credential) or self._revoked_membership(credential)
            key = self._revoked_heirs().get(key, key) if key is not None else None
            if key is not None and key in self._revocations:  # not a key handed over
                return self._revocations[key][0]
        return None

    def invite_uses(self, invite_key: bytes) -> int:
        """How many members have an admission under the invite that takes a use: one whose
        sponsor is sponsored, uses not counted (a revoked key's unlisted ones take none)."""
        candidate = self._candidate
        return sum(
            any(c.record_id in candidate for c in self._under(invite_key, node))
            for node in self._ranked.get(invite_key)
        )

    def only_legacy_revocations(self, key: bytes) -> bool:
        """Whether ``key`` is revoked, by legacy revocations only (its countersignatures are
        still judged by their dates: a listed revocation closes that)."""
        return key in self._revocations and key not in self._listed

    def sponsored_by(self, key: bytes) -> list[bytes]:
        """Ids of the enrollments countersigned by members whose credentials depend on
        ``key``: what a revocation of ``key`` lists to let them keep standing. When ``key``
        is revoked by legacy revocations only, those dated from the earliest of them on are
        left out: they do not stand now, and a list must not make them stand."""
        until = self._legacy_from.get(key) if self.only_legacy_revocations(key) else None
        admissions = (
            self._by_rid[rid]
            for node in self._dependents_of(key)
            for rid in self._sponsored.get(node)
        )
        found = {a.enrollment for a in admissions if until is None or a.admitted_at < until}
        return sorted(found)
