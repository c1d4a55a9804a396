"""Who is sponsored: distances from the certificates through countersignatures (pure).

The steps of :class:`~meshd.membership.sponsor_graph.SponsorGraph` that work out, from its
indexes, how far each admission (or hand-over) stands from a certificate: where a credential
starts from its sponsor's credentials (:func:`starts`), lowering distances from there on
(:func:`spread`), and what that comes to for a new admission that leads nowhere yet
(:func:`place`: the common case of a store's load, a member admitted under an invite with
uses left). Each works on one graph's own tables, read and written in place; the rules are
the graph's (its module's docstring).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshd.membership.sponsor_graph import SponsorGraph
    from meshd.trust.credential import Credential

MAX_SPONSOR_DEPTH = 256  # an admission further than this from a certificate does not stand


def starts(
    graph: SponsorGraph, rids: list[bytes], distance: dict[bytes, int], *, uses: bool
) -> list[tuple[bytes, int]]:
    """Where ``rids`` stand in ``distance`` from what their sponsors' credentials hold."""
    found: list[tuple[bytes, int]] = []
    for rid in rids:
        credential = graph._credential(rid)
        if credential.sponsor is None:
            found.append((rid, 0))
            continue
        if uses and not graph._within_uses(credential):
            continue
        best = None
        for sponsor in graph._held(credential.sponsor):
            steps = 0 if sponsor.sponsor is None else distance.get(sponsor.record_id)
            if (
                steps is not None
                and (best is None or steps < best)
                and graph._edge(sponsor, credential)
            ):
                best = steps
        if best is not None and best < MAX_SPONSOR_DEPTH:
            found.append((rid, best + 1))
    return found


def spread(
    graph: SponsorGraph,
    starts: list[tuple[bytes, int]],
    *,
    uses: bool,
    before: dict[bytes, frozenset[bytes]] | None = None,
) -> list[bytes]:
    """Lower distances from ``starts`` on, through countersignatures; returns the record
    ids that were not reached before.

    ``uses``: the valid distances (admissions within their invite's uses); otherwise the
    candidates, where uses are not counted. A new candidate changes its invite's ranking:
    ``before`` then gets the invite's members within its uses as they were, when the
    invite has more members than uses (otherwise nobody can be pushed out)."""
    distance = graph._distance if uses else graph._candidate
    by_rid = graph._by_rid
    new: list[bytes] = []
    queue: deque[bytes] = deque()

    def reached(rid: bytes, steps: int) -> None:
        if rid not in by_rid:  # a certificate, started (at 0) as it comes
            new.append(rid)
            queue.append(rid)
            return
        old = distance.get(rid)
        if old is not None and old <= steps:
            return
        if old is None:
            new.append(rid)
            invite = by_rid[rid].invite
            if not uses and invite is not None:
                if before is not None and invite not in before and graph._crowded(invite):
                    before[invite] = graph._within_set(invite)
                graph._within.pop(invite, None)
        distance[rid] = steps
        queue.append(rid)

    for rid, steps in starts:
        reached(rid, steps)
    while queue:
        rid = queue.popleft()
        sponsor = graph._credential(rid)
        steps = (0 if sponsor.sponsor is None else distance[rid]) + 1
        if steps > MAX_SPONSOR_DEPTH:
            continue
        for rid in graph._sponsored.get(sponsor.node_key):
            old = distance.get(rid)
            if old is not None and old <= steps:
                continue
            admission = by_rid[rid]
            if (not uses or graph._within_uses(admission)) and graph._edge(sponsor, admission):
                reached(rid, steps)
    return new


def place(graph: SponsorGraph, credential: Credential, sponsor_key: bytes, rid: bytes) -> None:
    """What :func:`starts` and :func:`spread` come to, both ways (candidates, then within
    uses), for a new admission ``rid`` whose member countersigned no one and whose invite
    has no more members than uses (so no one is pushed out, and it is within them): its two
    distances, one step past its sponsor's best credential that carries it (each edge judged
    once, for both), and nothing further."""
    best: int | None = None
    within: int | None = None
    for sponsor in graph._held(sponsor_key):
        if sponsor.sponsor is None:
            steps: int | None = 0
            counted: int | None = 0
        else:
            steps = graph._candidate.get(sponsor.record_id)
            counted = graph._distance.get(sponsor.record_id)
        lower = steps is not None and (best is None or steps < best)
        lower_within = counted is not None and (within is None or counted < within)
        if not (lower or lower_within) or not graph._edge(sponsor, credential):
            continue
        if lower:
            best = steps
        if lower_within:
            within = counted
    if best is None or best >= MAX_SPONSOR_DEPTH:
        return
    graph._candidate[rid] = best + 1
    if credential.invite is not None:
        graph._within.pop(credential.invite, None)
    if within is not None and within < MAX_SPONSOR_DEPTH:
        graph._distance[rid] = within + 1
