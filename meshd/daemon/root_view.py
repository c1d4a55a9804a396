"""The chain of roots as ``meshd status`` shows it (pure: the membership and ``now`` given)."""

from __future__ import annotations

from typing import Any

from meshd.membership import Membership, MemberState
from meshd.records import U64
from meshd.trust.keys import fingerprint


def root_view(membership: Membership, created_at: int, now: int) -> dict[str, Any]:
    """The current root (its key's fingerprint, since when: the rollover naming it, or the
    network's creation for the first root), the roots being retired (each until the end of
    its overlap), and the members still anchored only to one of them (they end with it unless
    renewed or certified under the current root)."""
    chain = membership.roots.chain()
    current, since, _ = chain[-1]
    retiring = [
        {"root": fingerprint(root), "overlap_until": end}
        for root, _, end in chain[:-1]
        if now <= end < U64
    ]
    # Looked for only while a root is retiring (every member viewed: ~80 ms at 10,000).
    anchored = [
        m.name or m.node_id
        for m in (membership.members(now) if retiring else ())
        if m.state is MemberState.ADMITTED and membership.root_bound(m.node_key)
    ]
    return {
        "current": fingerprint(current),
        "since": created_at if since is None else since,
        "retiring": retiring,
        "anchored_to_retiring": anchored,
    }
