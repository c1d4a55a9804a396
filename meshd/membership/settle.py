"""After a merge: re-judging whom it concerns, and the events that come of it.

:func:`settle` runs once a credential or a revocation joined the set (or left it): members
that no longer stand lose their announcement and key rotation from the set, members that
stand now take the records that waited for them, so the set is the same whatever order the
records came in. :func:`reevaluate` judges members at ``now`` and turns what changed into
events (meshd.membership.views); it also notes, of each member it finds admitted, the first
moment time alone can end that (``_next_due``: a credential's end, a silence limit), so that
a tick judges everyone only once that moment comes (:func:`due_nodes`).
"""

from __future__ import annotations

from collections.abc import Iterable

from meshd.membership.authority import MergeWaiting
from meshd.membership.tables import Change, MembershipTables
from meshd.membership.views import Admitted, Event, Expired, MemberState, Revoked, Updated
from meshd.records import U64, record_id


def settle(t: MembershipTables, change: Change, now: int, merge_waiting: MergeWaiting) -> None:
    """Re-judge what a change of credentials or revocations can affect.

    Standing can change for the members touched directly and, through sponsorship, for
    every member they (transitively) countersigned.
    """
    change.touched = t._standing.with_sponsored(change.touched)
    for node in sorted(change.touched):
        if t._standing.standing(node) is None:
            entry = t._members.get(node)
            if entry is not None and entry.announcement is not None:
                ann, entry.announcement = entry.announcement, None
                rid = record_id(ann.raw)
                t._remove(rid, change)
                if _may_stand(t, node):
                    # It may stand again (another admission of it may still arrive): its
                    # announcement waits for that, outside the set.
                    t._pending.park(node, rid, ann.raw, own=True, source=change.source)
            _drop_wg_rotation(t, node, change)
            continue
        merge_waiting(node, now, change)


def due_nodes(t: MembershipTables, now: int, every: bool = False) -> Iterable[bytes]:
    """Whom a tick at ``now`` judges: every member once the earliest moment a member judged
    admitted may stop being so has come (or with ``every``, or when the clock was set back
    since the last tick: a member silent then may be within its limit now); before it, only
    those heard from while not admitted. Every other change of state comes with a record,
    judged as it is merged, or with our own link coming back (``reconnected``: every
    member, next)."""
    recheck, t._recheck = t._recheck, set()
    stepped_back, t._ticked = now < t._ticked, now  # the clock set back: all judged again
    if every or now >= t._next_due or stepped_back:
        t._next_due = U64  # worked out again by the judging that follows
        return list(t._standing.nodes())
    return recheck


def _drop_wg_rotation(t: MembershipTables, node: bytes, change: Change) -> None:
    """A member that no longer stands loses its rotation from the set (as its
    announcement); it waits outside the set if the member may stand again."""
    dropped = t._wg.pop(node)
    if dropped is not None:
        t._remove(dropped[0], change)
        if _may_stand(t, node):
            t._pending.park(node, dropped[0], dropped[1].raw, own=True, source=change.source)


def _may_stand(t: MembershipTables, node: bytes) -> bool:
    """Whether a member that no longer stands may stand again: it fails only for want of a
    sponsor, or it holds no credential now (the hand-over that gave it one was replaced by
    an earlier one of its key): its own records wait for that outside the set, as they
    would have had it never held one."""
    return t._standing.unsponsored(node) or not t._standing.knows(node)


def reevaluate(
    t: MembershipTables,
    nodes: Iterable[bytes],
    now: int,
    announced: set[bytes] | None = None,
    *,
    emit: bool = True,
) -> tuple[Event, ...]:
    """Judge ``nodes`` at ``now``; an event for each whose state changed, and Updated for
    admitted members in ``announced`` (they announced something new). A member's view is
    built only for an event; with ``emit=False`` none is (the states are recorded)."""
    events: list[Event] = []
    for node in sorted(nodes):
        if not t._standing.knows(node):
            continue
        state, reason, credential = t._judge(node, now)
        entry = t._entry(node)
        before, entry.state = entry.state, state
        if state is MemberState.ADMITTED and t._standing.due < t._next_due:
            t._next_due = t._standing.due
        if not emit:
            continue
        if state is before:
            if announced and node in announced and state is MemberState.ADMITTED:
                events.append(Updated(t._member(node, state, reason, credential)))
        elif state is MemberState.ADMITTED:
            events.append(Admitted(t._member(node, state, reason, credential)))
        elif state is MemberState.EXPIRED:
            events.append(Expired(t._member(node, state, reason, credential)))
        else:
            events.append(Revoked(t._member(node, state, reason, credential)))
    return tuple(events)
