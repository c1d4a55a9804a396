"""Loading a node's own store at start: every record merged, judged once at the end.

What a store holds was merged (and verified) by this node before it was written, so loading
it differs from a sync in two ways, both about cost (10,000 members are 20,000 records):

* the credentials, revocations and the rest are merged into one change and re-judged once at
  the end (meshd.membership.settle), instead of one re-judging and one view per record;
* with ``signatures_trusted`` (the store's rows are sealed by this node: meshd.node.store),
  no signature is checked again, neither the record's nor its chain's. Everything else is:
  the chain to a root, capabilities, dates, expiry, revocations, invite uses, standing.

The set, the pending pool and every judgement come out as merging the same records one by
one would make them (the merge is order-independent). No events are made, and no member's
view is built: what loads is read from the state afterwards (``members``).

A first load (into a membership never ticked) judges every member at its ``now`` and so
counts as the first tick (``_ticked``, and ``_next_due`` worked out by that judging): the
tick a start makes right after it judges only what is due by then (meshd.membership.settle,
``due_nodes``), not every member a second time (~0.14 s at 10,000 members), and the states
it recorded can be read at once (``judged_window``, ``admitted_wg_keys``).

Records are merged in INGEST_ORDER (meshd.membership.batch). Those that come in it (a
store's rows come by kind: the roots' and admins' hand-overs, renewals, then the
certificates) are merged as they come, each let go once merged, not all decoded and held
until sorted: a member's decoded certificate and its bytes live for its own merge only, so
what they took is taken again by the next (held to the end of the load, they were left as
unused pools in the allocator's arenas: ~0.1 KiB a member of RSS at 10,000 once the records
were held elided, docs/footprint.md). From the first that does not, the rest are sorted and
merged as before. A store's announcements (one a member) come apart, after the rest is
judged, and with sealed rows each is merged as it is read (all of them decoded and held
until the judging was ~0.45 KiB a member at the load's peak); a store's own rows, under
their own ids, hand nothing back to be stored (``stored_already``: a :class:`Stored` and
the id it names, a record, held to the end of the load). The load's peak above what it
keeps: ~0.1 KiB a member, from ~0.5.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING

from meshd.errors import VerifyError
from meshd.membership.batch import (
    INGEST_ORDER,
    Merged,
    NotKept,
    in_ingest_order,
    merge_announcements,
    merge_each_announcement,
)
from meshd.membership.merge import Merger
from meshd.membership.pending import LOCAL
from meshd.membership.settle import reevaluate, settle
from meshd.membership.tables import Change
from meshd.membership.views import Batch
from meshd.records import U64, Announcement, Record, record_id

if TYPE_CHECKING:
    from meshd.membership.state import Membership


def load_batch(
    state: Membership,
    merger: Merger,
    records: Iterable[Record],
    now: int,
    *,
    signatures_trusted: bool,
    rejected: Iterable[str],
    announcements: Iterable[Record] = (),
    stored_already: bool = False,
) -> Batch:
    """Merge a store's records into ``state`` (see the module's docstring). No events: the
    caller reads the state that results. ``announcements``: a store's announcements (at
    most one a member), merged after ``records`` are judged; with ``signatures_trusted``
    each as it comes, not all held until then. ``stored_already``: no record is handed
    back to be stored (:class:`~meshd.membership.batch.NotKept`)."""
    merged = Merged(reasons=list(rejected))
    if stored_already:
        merged.stored = NotKept()
    first = state._ticked == 0  # never ticked: judging every member below is a tick's
    if first:
        state._next_due = U64  # lowered by each member judged admitted (reevaluate)
    verifier = state.verifier
    verifier.signatures_trusted = signatures_trusted
    try:
        change = Change(source=LOCAL, stored=merged.stored)
        if now > state._retire_after:
            merger.authority.retire(now, change)
        rest = _merge_while_in_order(state, merger, records, now, change, merged)
        if not signatures_trusted:  # their signatures checked together (merge_announcements)
            rest = chain(rest, announcements)
            announcements = ()
        _merge_rest(state, merger, rest, now, change, merged, signatures_trusted, first)
        # What is not an announcement among them (a damaged store's): merged after, judged.
        stray = merge_each_announcement(state, merger, announcements, now, merged, source=LOCAL)
        if stray:
            change = Change(source=LOCAL, stored=merged.stored)
            _merge_rest(state, merger, stray, now, change, merged, signatures_trusted, False)
        if first:
            state._ticked = now
    finally:
        verifier.signatures_trusted = False
        if first and not state._ticked:  # cut short: the first tick judges every member
            state._next_due = 0
        # What the load shared between the members of an invite is let go: of invites of
        # one use, an entry a member in each table, held for nothing.
        verifier.forget_shared()
    in_set = state._set
    return Batch(
        stored=tuple(s for s in merged.stored if s.rid in in_set),
        dropped=tuple(rid for rid in dict.fromkeys(merged.dropped) if rid not in in_set),
        events=(),
        new=merged.new,
        rejected=tuple(merged.reasons),
    )


def _merge_rest(
    state: Membership,
    merger: Merger,
    rest: Iterable[Record],
    now: int,
    change: Change,
    merged: Merged,
    checked: bool,
    first: bool,
) -> None:
    """Merge ``rest`` in INGEST_ORDER, judge what ``change`` touched (every member on a
    ``first`` load), then merge its announcements."""
    announcements, others = in_ingest_order(rest)
    # Taken from the list as merged: a decoded certificate is let go once its credential
    # is made (all of them held to the end was ~0.3 KiB a member at the load's peak).
    others.reverse()
    while others:
        _merge_one(state, merger, others.pop(), now, change, merged)
    if change.judgements_changed:
        settle(state, change, now, merger.merge_waiting)
    reevaluate(state, state._standing.nodes() if first else change.touched, now, emit=False)
    merged.dropped += change.dropped  # what it stored is in merged's own list (load_batch)
    merge_announcements(
        state, merger, announcements, now, merged, checked=checked, source=LOCAL, emit=False
    )


# The records merged as they come while they come in INGEST_ORDER (whose admissions are
# ranked by date as well: they are sorted).
_STREAMED = {kind: rank for kind, rank in INGEST_ORDER.items() if rank <= 1}


def _merge_while_in_order(
    state: Membership,
    merger: Merger,
    records: Iterable[Record],
    now: int,
    change: Change,
    merged: Merged,
) -> Iterator[Record]:
    """Merge ``records`` as they come while each is of a kind ranked at most a certificate's
    and not ranked below the one before; the rest (from the first that is not, and the
    announcements met before it) to be sorted."""
    announcements: list[Record] = []
    records = iter(records)
    last = -2
    for record in records:
        kind = type(record)
        if kind is Announcement:
            announcements.append(record)
            continue
        rank = _STREAMED.get(kind)
        if rank is None or rank < last:
            return chain(announcements, (record,), records)
        last = rank
        _merge_one(state, merger, record, now, change, merged)
        del record  # the caller's iterator may be the record's last holder
    return iter(announcements)


def _merge_one(
    state: Membership, merger: Merger, record: Record, now: int, change: Change, merged: Merged
) -> None:
    rid = record_id(record.raw)
    if rid in state._set:
        return
    try:
        merged.new += not merger.merge(record, rid, now, change)
    except VerifyError as exc:
        merged.reasons.append(exc.reason)
