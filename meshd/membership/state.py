"""The membership CRDT of one network, seen from one node: merging records, singly and in batches.

``Membership`` is the one object the rest of meshd holds. Its tables are
meshd.membership.tables; merging a record is meshd.membership.merge (credentials and
announcements) and meshd.membership.authority (revocations, renewals, leaves, hand-overs of
admin keys, root rollovers); re-judging and events meshd.membership.settle; when members were
last heard from and this node's own silence meshd.membership.silence; the read side
meshd.membership.queries; sponsoring meshd.membership.sponsoring; loading a store at start
meshd.membership.loading. Judging who stands is meshd.membership.standing; what the state
emits is meshd.membership.views.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from meshd.errors import DecodeError, VerifyError
from meshd.membership.batch import Merged, in_ingest_order, merge_announcements
from meshd.membership.loading import load_batch
from meshd.membership.merge import Merger
from meshd.membership.pending import LOCAL
from meshd.membership.queries import MemberQueries, RecordQueries
from meshd.membership.settle import due_nodes, reevaluate, settle
from meshd.membership.sponsoring import check_enrollment
from meshd.membership.tables import Change
from meshd.membership.views import Batch, Event, MemberState, Outcome, Stored, Updated
from meshd.records import (
    Admission,
    Announcement,
    Enrollment,
    Kind,
    Record,
    decode_record_untrusted,
    make_admission,
    record_id,
)
from meshd.trust.chain import Anchor
from meshd.trust.credential import Credential
from meshd.trust.keys import SigningKey


class Membership(MemberQueries, RecordQueries):
    """The membership CRDT of one network, seen from one node."""

    def __init__(
        self,
        anchor: Anchor,
        *,
        announce_ttl: int | None = None,
        clock_skew: int = 300,
        max_pending: int = 4096,
    ) -> None:
        super().__init__(
            anchor, announce_ttl=announce_ttl, clock_skew=clock_skew, max_pending=max_pending
        )
        self._merger = Merger(self)

    # --- merging ------------------------------------------------------------------------

    def ingest_untrusted(self, data: bytes, now: int, *, source: str = LOCAL) -> Outcome:
        """Decode, verify and merge one record. Raises DecodeError or VerifyError only."""
        return self.ingest(decode_record_untrusted(data), now, source=source)

    def ingest(
        self, record: Record, now: int, *, signature_checked: bool = False, source: str = LOCAL
    ) -> Outcome:
        """Verify and merge one decoded record.

        ``signature_checked``: the caller has already checked this announcement's signature
        with trust.check_announcement_signatures (e.g. in a worker thread). Every other check
        still runs, and other kinds of record are always verified in full. ``source``: the
        authenticated peer that delivered the record; a record that has to wait counts
        against that peer's share of the pending pool.
        """
        rid = record_id(record.raw)
        if rid in self._set:
            return Outcome(record, new=False)
        if self._pending.holds(rid):
            # Waiting already: not checked again (a record parked in the pending pool, sent
            # again and again, cost its signatures every time).
            return Outcome(record, new=False, pending=True)
        retiring = None
        if now > self._retire_after:
            retiring = Change(source=source)
            self._merger.authority.retire(now, retiring)
        if type(record) is Announcement and retiring is None:
            refreshed = self._merger.refresh(record, rid, now, signature_checked)
            if refreshed is not None:
                return self._refreshed_outcome(record, rid, *refreshed)
        change = Change(
            signature_checked=signature_checked and type(record) is Announcement, source=source
        )
        if retiring is not None:
            change.dropped, change.touched = retiring.dropped, retiring.touched
            change.judgements_changed = retiring.judgements_changed
        pending = self._merger.merge(record, rid, now, change)
        if change.judgements_changed:
            settle(self, change, now, self._merger.merge_waiting)
        events = reevaluate(self, change.touched, now, change.announced)
        return Outcome(
            record,
            new=not pending,
            pending=pending,
            stored=tuple(change.stored),
            dropped=tuple(change.dropped),
            events=events,
        )

    def _refreshed_outcome(
        self, ann: Announcement, rid: bytes, credential: Credential, changed: bool
    ) -> Outcome:
        node = ann.node_key
        events: tuple[Event, ...] = ()
        if changed:
            events = (Updated(self._member(node, MemberState.ADMITTED, "", credential)),)
        stored = (Stored(rid, Kind.ANNOUNCEMENT, ann, node),)
        return Outcome(ann, True, False, stored, (), events)

    def ingest_batch(self, raws: Iterable[bytes], now: int, *, source: str = LOCAL) -> Batch:
        """Decode, verify and merge records that arrived together (what a sync brings)."""
        records, rejected = decode_batch_untrusted(raws)
        return self.merge_batch(records, now, rejected=rejected, source=source)

    def merge_batch(
        self,
        records: Iterable[Record],
        now: int,
        *,
        announcements_checked: bool = False,
        rejected: Iterable[str] = (),
        source: str = LOCAL,
    ) -> Batch:
        """Verify and merge records that arrived together; refusals are counted, not raised.

        Credentials go first (admissions by admission time, so that a sponsor's own admission
        comes before those it countersigned), then revocations, then announcements: the order
        that parks the fewest. ``announcements_checked``: the caller has checked the signature
        of every announcement in ``records`` (trust.check_announcement_signatures, e.g. in a
        worker thread); every other check still runs. ``rejected``: reasons of records the
        caller already refused, carried into the result. ``source``: as for :meth:`ingest`.
        """
        reasons = list(rejected)
        announcements, others = in_ingest_order(records)
        merged = Merged(reasons=reasons)
        for record in others:
            try:
                outcome = self.ingest(record, now, source=source)
            except VerifyError as exc:
                merged.reasons.append(exc.reason)
                continue
            merged.new += outcome.new
            merged.stored += outcome.stored
            merged.dropped += outcome.dropped
            merged.events += outcome.events
        merge_announcements(
            self,
            self._merger,
            announcements,
            now,
            merged,
            checked=announcements_checked,
            source=source,
        )
        in_set = self._set
        return Batch(
            stored=tuple(s for s in merged.stored if s.rid in in_set),
            dropped=tuple(rid for rid in dict.fromkeys(merged.dropped) if rid not in in_set),
            events=tuple(merged.events),
            new=merged.new,
            rejected=tuple(merged.reasons),
        )

    def load(
        self,
        records: Iterable[Record],
        now: int,
        *,
        signatures_trusted: bool = False,
        rejected: Iterable[str] = (),
        announcements: Iterable[Record] = (),
        stored_already: bool = False,
    ) -> Batch:
        """Merge this node's own store at start, judged once at the end; with
        ``signatures_trusted`` (rows sealed by this node, meshd.node.store) no signature is
        checked again, every other check is (meshd.membership.loading). ``announcements``:
        the store's announcements, merged once the rest is judged, each as it comes.
        ``stored_already``: the records are the store's own rows under their own ids, so
        the batch hands back none of them to be written (its ``stored`` is empty)."""
        return load_batch(
            self,
            self._merger,
            records,
            now,
            signatures_trusted=signatures_trusted,
            rejected=rejected,
            announcements=announcements,
            stored_already=stored_already,
        )

    def set_announce_ttl(self, ttl: int | None) -> None:
        """Judge silence by ``ttl`` from now on (a SIGHUP's ``announce_ttl``): the next
        :meth:`tick` judges every member, so a member silent for longer than a shorter limit
        expires then, and one within a longer limit is admitted again."""
        if ttl != self.announce_ttl:
            self.announce_ttl = ttl
            self._next_due = 0

    def tick(self, now: int, *, every: bool = False) -> tuple[Event, ...]:
        """Re-judge members at ``now``: emits Expired, and Admitted for returns. Every member
        once the first moment one may stop being admitted by time alone has come (its
        credential's end, its silence limit), else only those heard from while not admitted
        (meshd.membership.settle, ``due_nodes``): the same events as judging every member
        at each tick (``every``), without the pass over all of them at each. What a root
        whose acceptance ended signed (revocations, renewals) leaves the set first (a store
        forgets it on its next load, when it is refused; merging reports it dropped when a
        record comes first)."""
        if now > self._retire_after:
            change = Change()
            self._merger.authority.retire(now, change)
            if change.judgements_changed:
                settle(self, change, now, self._merger.merge_waiting)
        return reevaluate(self, due_nodes(self, now, every), now)

    # --- our own reachability (meshd.membership.silence) --------------------------------

    def cut_off(self, now: int) -> None:
        """No member reaches this node since ``now``: members' silence stops counting, so a
        node whose own link is down does not expire everyone (and drop them from WireGuard)
        because *it* cannot hear them. Credentials still end on their dates."""
        self._silence.cut_off(now)

    def reconnected(self, now: int) -> None:
        """A member reaches us again: silence counts from here on, with the time we were cut
        off left out of every member's. The next tick judges every member: no one's state
        can change by it (their silence only moves later), but it is rare and the pass cheap
        beside a wrong guess."""
        self._silence.reconnected(now)
        self._next_due = 0

    def heard(self, node_key: bytes, at: int, now: int) -> None:
        """This node itself heard from member ``node_key`` at ``at`` (a libp2p connection
        with it, a WireGuard handshake with its key: meshd.daemon.liveness_policy): its
        silence ends there (never after ``now``). A local sighting only: it is never flooded
        nor taken from another node's word; a key that is no member's is ignored."""
        if self._standing.knows(node_key):
            self._silence.heard(node_key, min(at, now))
            entry = self._members.get(node_key)
            if entry is not None and entry.state is not MemberState.ADMITTED:
                self._recheck.add(node_key)  # silent until now: it may be back

    # --- sponsoring ---------------------------------------------------------------------

    def check_enrollment(self, enrollment: Enrollment, now: int) -> None:
        """Decide on this node's clock whether an enrollment may be admitted now."""
        check_enrollment(self.verifier, self._standing, enrollment, now, self.clock_skew)

    def sponsor(self, sponsor_key: SigningKey, enrollment: Enrollment, now: int) -> Admission:
        """Countersign an enrollment with this node's key and clock, if the rules allow it."""
        if self._standing.standing(sponsor_key.public) is None:
            raise VerifyError("sponsor-not-member", "this node is not an admitted member")
        if self._standing.standing(enrollment.node_key) is not None:
            raise VerifyError("already-member", "this node key is already a member")
        self.check_enrollment(enrollment, now)
        return make_admission(sponsor_key, enrollment=enrollment, admitted_at=now)


def decode_batch_untrusted(raws: Iterable[bytes]) -> tuple[list[Record], list[str]]:
    """Decode records that arrived together: those that decode, and a reason per refusal."""
    rejected: list[str] = []
    return list(decode_each_untrusted(raws, rejected)), rejected


def decode_each_untrusted(raws: Iterable[bytes], rejected: list[str]) -> Iterator[Record]:
    """Each of ``raws`` decoded as it is taken (a store's load: no list of them all); a
    reason in ``rejected`` for each that does not decode."""
    for raw in raws:
        try:
            record = decode_record_untrusted(raw)
        except DecodeError:
            rejected.append("decode")
            continue
        yield record
        del record  # held by the taker alone
