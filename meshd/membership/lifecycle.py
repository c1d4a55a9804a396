"""Renewals and departures: how long a member stands, and whether it left (pure).

A :class:`~meshd.records.Renewal` extends a member's standing without a new enrollment. It is
signed by the root, or by an admin with the invite capability (never past the admin's own
end: meshd.trust.chain). Renewals are kept one per (subject, issuer, root of the issuer's
chain): the one with the greatest ``(not_after, record id)``; a smaller one is refused
(``superseded-renewal``) and a greater one replaces it, so the set is the same whatever order
they come in. A credential of the subject lasts until the latest ``not_after`` among its own
and those of the renewals that apply to it: one by the root applies to every credential; one
by an admin only to credentials whose granted prefixes all lie within the admin's (a renewal
extends time, never grants). A renewal of a key also applies to the credentials a hand-over of
that key passed its membership to (``meshd rotate node`` keeps the renewed end:
meshd.membership.standing.Standing.lineage).

Across a root rollover (meshd.membership.roots), what a record signed under a root gives lasts
no longer than that root is accepted: a credential's own end is capped at its root's end, and
a renewal's at the end of the root its issuer's chain ends at. So a renewal signed under the new
root carries a member admitted under the old one over the end of the overlap (it re-anchors
it), and one signed under the old root gives nothing once its overlap has ended.

A :class:`~meshd.records.Leave` is a member's own departure, signed by its node key. It ends
every credential of that key, and those a hand-over of the key passed its membership to (the
member state is ``revoked``, reason ``left``: meshd.membership.standing); it does not
touch what the member countersigned while it stood (rule (a): no record a member signs takes
another member's standing away). One leave per member is kept, its earliest by ``(issued_at,
record id)``.

Neither survives a revocation: a revocation of a key drops the renewals of that key (as
subject or as issuer) and its leave, and both are refused afterwards (meshd.membership.state),
so a renewal replayed after a revocation does nothing, in any order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from meshd.addressing import Prefix, prefix_within
from meshd.records import Leave, Renewal, Revocation
from meshd.trust.credential import Credential

# Until when records signed under a root key are accepted (meshd.membership.roots); b"": the
# network's first root.
RootEnd = Callable[[bytes], int]


@dataclasses.dataclass(frozen=True, slots=True)
class _Kept:
    not_after: int
    rid: bytes
    renewal: Renewal
    grants: tuple[Prefix, ...] | None  # the admin's prefixes; None for the root
    root: bytes  # the root its issuer's chain ends at


class Renewals:
    """The renewals in the set, by subject and by issuer."""

    __slots__ = ("_by_issuer", "_by_subject")

    def __init__(self) -> None:
        self._by_subject: dict[bytes, dict[bytes, _Kept]] = {}
        self._by_issuer: dict[bytes, set[bytes]] = {}

    def __len__(self) -> int:
        return sum(len(slots) for slots in self._by_subject.values())

    def newer(self, renewal: Renewal, rid: bytes) -> bool:
        """Whether ``renewal`` orders after the one kept for its subject and issuer."""
        kept = self._by_subject.get(renewal.subject, {}).get(_slot(renewal))
        return kept is None or (kept.not_after, kept.rid) < (renewal.not_after, rid)

    def put(self, renewal: Renewal, rid: bytes) -> bytes | None:
        """Keep ``renewal`` (newer than what its slot holds); returns the record id it replaces."""
        slots = self._by_subject.setdefault(renewal.subject, {})
        replaced = slots.get(_slot(renewal))
        grants = renewal.chain[0].prefixes if renewal.chain else None
        slots[_slot(renewal)] = _Kept(renewal.not_after, rid, renewal, grants, root_of(renewal))
        self._by_issuer.setdefault(renewal.issuer, set()).add(renewal.subject)
        return replaced.rid if replaced is not None else None

    def drop(self, key: bytes) -> list[tuple[bytes, bytes]]:
        """Forget the renewals of ``key`` and those ``key`` signed (it was revoked); returns
        their subjects and record ids."""
        dropped = [(key, rid) for rid in self.drop_subject(key)]
        for subject in self._by_issuer.pop(key, set()):
            slots = self._by_subject[subject]
            for slot in [slot for slot in slots if slot[:32] == key]:
                dropped.append((subject, slots.pop(slot).rid))
            if not slots:
                del self._by_subject[subject]
        return dropped

    def drop_subject(self, key: bytes) -> list[bytes]:
        """Forget the renewals of the member ``key`` (it left); returns their record ids."""
        slots = self._by_subject.pop(key, {})
        for issuer in {slot[:32] for slot in slots}:
            subjects = self._by_issuer[issuer]
            subjects.discard(key)
            if not subjects:
                del self._by_issuer[issuer]
        return [kept.rid for kept in slots.values()]

    def drop_signed_after(self, issuer: bytes, at: int) -> list[tuple[bytes, bytes]]:
        """Forget the renewals ``issuer`` signed dated after ``at`` (an admin key handed over
        then); returns their subjects and record ids."""
        dropped: list[tuple[bytes, bytes]] = []
        for subject, slots in list(self._by_subject.items()):
            late = [s for s, k in slots.items() if k.renewal.issuer == issuer]
            late = [s for s in late if slots[s].renewal.issued_at > at]
            for slot in late:
                dropped.append((subject, slots.pop(slot).rid))
            if late and not any(k.renewal.issuer == issuer for k in slots.values()):
                subjects = self._by_issuer.get(issuer, set())
                subjects.discard(subject)
                if not subjects:
                    self._by_issuer.pop(issuer, None)
            if not slots:
                del self._by_subject[subject]
        return dropped

    def of(self, subject: bytes) -> list[Renewal]:
        """The renewals kept for a member, latest end first."""
        kept = sorted(self._by_subject.get(subject, {}).values(), key=lambda k: -k.not_after)
        return [k.renewal for k in kept]

    def end(
        self,
        credential: Credential,
        root_end: RootEnd | None = None,
        subjects: Sequence[bytes] = (),
        own: int | None = None,
    ) -> int:
        """When ``credential`` ends, renewals included; with ``root_end``, each end (its own,
        each renewal's) capped at the end of the root it was signed under. ``subjects``: the
        keys whose renewals apply (the credential's own key, and those its membership was
        handed over from); its node key alone by default. ``own``: the credential's own
        ``not_after`` when the caller has read it (it is read from the credential's bytes)."""
        end = credential.not_after if own is None else own
        if root_end is not None:
            end = min(end, root_end(credential.root))
        by_subject = self._by_subject
        if not by_subject:  # no renewal at all: nothing to look up
            return end
        for subject in subjects or (credential.node_key,):
            slots = by_subject.get(subject)
            if not slots:
                continue
            for kept in slots.values():
                until = kept.not_after
                if root_end is not None:
                    until = min(until, root_end(kept.root))
                if until > end and _applies(kept.grants, credential.prefixes):
                    end = until
        return end

    def issued_under(self, root: bytes) -> list[bytes]:
        """Record ids of the renewals whose issuer's chain ends at ``root``."""
        return [
            k.rid for slots in self._by_subject.values() for k in slots.values() if k.root == root
        ]

    def drop_rids(self, rids: set[bytes]) -> list[bytes]:
        """Forget the renewals with these record ids; returns their subjects."""
        subjects = []
        for subject, slots in list(self._by_subject.items()):
            for slot, kept in list(slots.items()):
                if kept.rid in rids:
                    del slots[slot]
                    subjects.append(subject)
                    issuer = slot[:32]
                    if not any(other[:32] == issuer for other in slots):
                        issued = self._by_issuer.get(issuer, set())
                        issued.discard(subject)
                        if not issued:
                            self._by_issuer.pop(issuer, None)
            if not slots:
                del self._by_subject[subject]
        return subjects

    def extend(
        self,
        credential: Credential,
        root_end: RootEnd | None = None,
        subjects: Sequence[bytes] = (),
    ) -> Credential:
        """``credential`` with its end moved to the latest renewal that applies to it (capped
        at the roots' ends with ``root_end``; ``subjects`` as for :meth:`end`)."""
        own = credential.not_after  # read from its bytes: once
        end = self.end(credential, root_end, subjects, own)
        return credential if end == own else credential.renewed(end)


def _slot(renewal: Renewal) -> bytes:
    """One renewal is kept per subject, issuer and root its issuer's chain ends at (an admin
    certified again by a new root renews under each, and the old root's goes with it)."""
    return renewal.issuer + root_of(renewal)


def root_of(record: Renewal | Revocation) -> bytes:
    """The root key a renewal's (or revocation's) issuer chain ends at."""
    return record.chain[0].issuer if record.chain else record.issuer


def _applies(grants: tuple[Prefix, ...] | None, prefixes: tuple[Prefix, ...]) -> bool:
    """Whether an issuer granting ``grants`` (None: the root, anything) may renew a credential
    that grants ``prefixes``."""
    if grants is None:
        return True
    return all(any(prefix_within(p, g) for g in grants) for p in prefixes)


class Departures:
    """The members that left, by node key: the earliest leave of each."""

    __slots__ = ("_left",)

    def __init__(self) -> None:
        self._left: dict[bytes, tuple[int, bytes, Leave]] = {}

    def __contains__(self, node: object) -> bool:
        return node in self._left

    def __len__(self) -> int:
        return len(self._left)

    def earlier(self, leave: Leave, rid: bytes) -> bool:
        """Whether ``leave`` orders before the one kept for its member (or none is kept)."""
        kept = self._left.get(leave.node_key)
        return kept is None or (leave.issued_at, rid) < kept[:2]

    def put(self, leave: Leave, rid: bytes) -> bytes | None:
        """Keep ``leave``; returns the record id of the later one it replaces."""
        replaced = self._left.get(leave.node_key)
        self._left[leave.node_key] = (leave.issued_at, rid, leave)
        return replaced[1] if replaced is not None else None

    def drop(self, node: bytes) -> bytes | None:
        """Forget the member's leave (it was revoked); returns its record id."""
        kept = self._left.pop(node, None)
        return kept[1] if kept is not None else None

    def get(self, node: bytes) -> Leave | None:
        kept = self._left.get(node)
        return kept[2] if kept is not None else None
