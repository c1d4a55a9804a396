"""The announcements of a batch (a sync message, a store at start), merged in three passes.

First the cheap refusals (known already, or older than what is known), then every remaining
signature in one go (libsodium's work back to back: interleaved with merging it measured
slower), then merging. Most refresh a member already known; their Updated events are
gathered and emitted once per member, after everything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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
    fresh: list[tuple[Announcement, RecordId, Announcement | None]] = []
    members = state._members
    for ann in announcements:
        rid = record_id(ann.raw)
        if rid in state._set:
            continue
        entry = members.get(ann.node_key)
        current = None if entry is None else entry.announcement
        if not_newer(ann, rid, current):
            merged.reasons.append("stale-announcement")
            continue
        fresh.append((ann, rid, current))
    if not checked:
        results = check_announcement_signatures([ann for ann, _, _ in fresh])
        merged.reasons += [error.reason for error in results if error is not None]
        fresh = [item for item, error in zip(fresh, results, strict=True) if error is None]
    updated: dict[bytes, Credential] = {}
    for ann, rid, current in fresh:
        try:
            refreshed = merger.refresh(ann, rid, now, True, newer_than=current)
            if refreshed is None:
                outcome = state.ingest(ann, now, signature_checked=True, source=source)
                merged.new += outcome.new
                merged.stored += outcome.stored
                merged.dropped += outcome.dropped
                if emit:
                    merged.events += outcome.events
                continue
        except VerifyError as exc:
            merged.reasons.append(exc.reason)
            continue
        merged.new += 1
        merged.stored.append(Stored(rid, Kind.ANNOUNCEMENT, ann, ann.node_key))
        if refreshed[1] and emit:
            updated[ann.node_key] = refreshed[0]
    for node, credential in updated.items():
        if members[node].state is MemberState.ADMITTED:
            merged.events.append(Updated(state._member(node, MemberState.ADMITTED, "", credential)))
