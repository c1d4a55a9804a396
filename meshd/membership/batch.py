"""The announcements of a batch (a sync message, a store at start), merged in three passes.

First the cheap refusals (known already, or older than what is known), then every remaining
signature in one go (libsodium's work back to back: interleaved with merging it measured
slower), then merging. Most refresh a member already known; their Updated events are
gathered and emitted once per member, after everything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from meshd.errors import VerifyError
from meshd.membership.merge import Merger
from meshd.membership.tables import not_newer
from meshd.membership.views import Event, MemberState, Stored, Updated
from meshd.records import (
    AdminHandover,
    Admission,
    Announcement,
    Certificate,
    Handover,
    Kind,
    Record,
    RecordId,
    Renewal,
    Revocation,
    Rollover,
    record_id,
)
from meshd.trust.announced import check_announcement_signatures
from meshd.trust.credential import Credential

if TYPE_CHECKING:
    from meshd.membership.state import Membership


# The order in which records that arrived together are merged (announcements last).
# Renewals before the credentials they extend (an admission past its own end stands on one).
INGEST_ORDER: dict[type[Record], int] = {
    Rollover: -1,  # first: what a new root signed verifies only once the rollover is known
    AdminHandover: -1,  # before what the old admin key signed after it (refused, not dropped)
    Renewal: 0,
    Certificate: 1,
    Admission: 2,
    Handover: 2,
    Revocation: 3,
}


def in_ingest_order(records: Iterable[Record]) -> tuple[list[Announcement], list[Record]]:
    """The announcements, and the other records in INGEST_ORDER (admissions by admission
    time, so that a sponsor's own admission comes before those it countersigned)."""
    announcements: list[Announcement] = []
    others: list[tuple[int, int, Record]] = []
    for record in records:
        if type(record) is Announcement:
            announcements.append(record)
        else:
            at = record.admitted_at if type(record) is Admission else 0
            others.append((INGEST_ORDER.get(type(record), len(INGEST_ORDER)), at, record))
    others.sort(key=lambda item: item[:2])
    return announcements, [record for *_, record in others]


class NotKept(list[Stored]):
    """A list of what a merge stored that keeps none of it: a store's load of its own rows
    (each row is in the store already, under its id), whose every record made a
    :class:`Stored` held to the end of the load (~0.15 KiB a member at its peak)."""

    __slots__ = ()

    def append(self, item: Stored) -> None:
        pass

    def extend(self, items: Iterable[Stored]) -> None:
        pass

    def __iadd__(self, items: Iterable[Stored]) -> Self:  # type: ignore[override,misc]
        return self


@dataclass(slots=True)
class Merged:
    """What merging part of a batch did, added up."""

    new: int = 0
    stored: list[Stored] = field(default_factory=list)
    dropped: list[bytes] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def merge_announcements(
    state: Membership,
    merger: Merger,
    announcements: Sequence[Announcement],
    now: int,
    merged: Merged,
    *,
    checked: bool,
    source: str,
    emit: bool = True,
) -> None:
    """Merge a batch's announcements into ``state``, adding to ``merged``. ``checked``: their
    signatures were checked by the caller; ``emit=False``: no events (a store's load)."""
    # Each with the member's announcement it was found newer than (None: none was held).
    fresh = [item for ann in announcements if (item := _fresh(state, ann, merged)) is not None]
    if not checked:
        results = check_announcement_signatures([ann for ann, _, _ in fresh])
        merged.reasons += [error.reason for error in results if error is not None]
        fresh = [item for item, error in zip(fresh, results, strict=True) if error is None]
    updated: dict[bytes, Credential] | None = {} if emit else None
    for ann, rid, current in fresh:
        _merge_fresh(state, merger, ann, rid, current, now, merged, source, updated)
    members = state._members
    for node, credential in (updated or {}).items():
        if members[node].state is MemberState.ADMITTED:
            merged.events.append(Updated(state._member(node, MemberState.ADMITTED, "", credential)))


def merge_each_announcement(
    state: Membership,
    merger: Merger,
    records: Iterable[Record],
    now: int,
    merged: Merged,
    *,
    source: str,
) -> list[Record]:
    """Merge ``records``, announcements whose signatures were checked (a store's sealed
    rows, at most one a member), each as it comes and let go once merged, with no events;
    what is not an announcement is returned, not merged. The same as
    :func:`merge_announcements` over them all, where each is one member's only one (none is
    judged against another of the same batch)."""
    stray: list[Record] = []
    for ann in records:
        if type(ann) is not Announcement:
            stray.append(ann)
            continue
        item = _fresh(state, ann, merged)
        del ann  # the caller's iterator may be the record's last holder
        if item is not None:
            _merge_fresh(state, merger, *item, now, merged, source, None)
            del item
    return stray


def _fresh(
    state: Membership, ann: Announcement, merged: Merged
) -> tuple[Announcement, RecordId, Announcement | None] | None:
    """``ann`` with its id and the member's announcement it is newer than (None: none
    held), or None (counted in ``merged``) if it is known or not newer."""
    rid = record_id(ann.raw)
    if rid in state._set:
        return None
    entry = state._members.get(ann.node_key)
    current = None if entry is None else entry.announcement
    if not_newer(ann, rid, current):
        merged.reasons.append("stale-announcement")
        return None
    return ann, rid, current


def _merge_fresh(
    state: Membership,
    merger: Merger,
    ann: Announcement,
    rid: RecordId,
    current: Announcement | None,
    now: int,
    merged: Merged,
    source: str,
    updated: dict[bytes, Credential] | None,
) -> None:
    """Merge one announcement found fresh (:func:`_fresh`); its member's credential, if
    the announcement refreshed it, into ``updated`` (None: no events)."""
    try:
        refreshed = merger.refresh(ann, rid, now, True, newer_than=current)
        if refreshed is None:
            outcome = state.ingest(ann, now, signature_checked=True, source=source)
            merged.new += outcome.new
            merged.stored += outcome.stored
            merged.dropped += outcome.dropped
            if updated is not None:
                merged.events += outcome.events
            return
    except VerifyError as exc:
        merged.reasons.append(exc.reason)
        return
    merged.new += 1
    merged.stored.append(Stored(rid, Kind.ANNOUNCEMENT, ann, ann.node_key))
    if refreshed[1] and updated is not None:
        updated[ann.node_key] = refreshed[0]
