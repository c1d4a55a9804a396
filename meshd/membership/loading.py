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
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from meshd.errors import VerifyError
from meshd.membership.batch import Merged, in_ingest_order, merge_announcements
from meshd.membership.merge import Merger
from meshd.membership.pending import LOCAL
from meshd.membership.settle import reevaluate, settle
from meshd.membership.tables import Change
from meshd.membership.views import Batch
from meshd.records import Record, record_id

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
) -> Batch:
    """Merge a store's records into ``state`` (see the module's docstring). No events: the
    caller reads the state that results."""
    merged = Merged(reasons=list(rejected))
    announcements, others = in_ingest_order(records)
    verifier = state.verifier
    verifier.signatures_trusted = signatures_trusted
    try:
        change = Change(source=LOCAL)
        if now > state._retire_after:
            merger.authority.retire(now, change)
        # Taken from the list as merged: a decoded certificate is let go once its credential
        # is made (all of them held to the end was ~0.3 KiB a member at the load's peak).
        others.reverse()
        while others:
            record = others.pop()
            rid = record_id(record.raw)
            if rid in state._set:
                continue
            try:
                merged.new += not merger.merge(record, rid, now, change)
            except VerifyError as exc:
                merged.reasons.append(exc.reason)
        if change.judgements_changed:
            settle(state, change, now, merger.merge_waiting)
        reevaluate(state, change.touched, now, emit=False)
        merged.stored += change.stored
        merged.dropped += change.dropped
        merge_announcements(
            state,
            merger,
            announcements,
            now,
            merged,
            checked=signatures_trusted,
            source=LOCAL,
            emit=False,
        )
    finally:
        verifier.signatures_trusted = False
    in_set = state._set
    return Batch(
        stored=tuple(s for s in merged.stored if s.rid in in_set),
        dropped=tuple(rid for rid in dict.fromkeys(merged.dropped) if rid not in in_set),
        events=(),
        new=merged.new,
        rejected=tuple(merged.reasons),
    )
