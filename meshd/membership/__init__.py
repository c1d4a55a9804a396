"""The membership state core: a CRDT of signed records (pure: no I/O, time is an argument).

The state is a set of verified records: member credentials (certificates and admissions),
revocations, and the latest announcement of each member in good standing. Merging is
commutative, associative and idempotent: any order or repetition of the same records gives the
same set, the same member states and the same digest.

- Revocations only grow, and cascade: revoking an invite or admin key excludes every member
  whose credential depends on it. A revoked member's announcement is dropped from the set.
- Announcements are last-writer-wins by the member's sequence number (ties by record id): an
  older or replayed announcement never overwrites a newer one.
- An invite for N uses admits at most N members network-wide. All admissions under it are kept
  (one per enrollment and sponsor); its members are ranked by their earliest (later of the
  sponsor's and the enrollment's time, enrollment id) and only the first N stand. Every node
  holding the same records ranks them the same way.
- Sponsorship is judged without dates: an admission stands while a credential of its sponsor
  does and, once the sponsor (or its invite or admin) is revoked, only if a revocation lists
  its enrollment. A member stands while any of its admissions does: no record a member or a
  former member signs takes another member's standing away, and a revoked key admits no one.
- Records that name something not yet known (an announcement from a member whose credential has
  not arrived, an admission whose sponsor is unknown) wait in a bounded pending pool, outside the
  set, and are merged when what they wait for arrives.

Member states seen from here (``admitted``, ``expired``, ``revoked``) also depend on the time:
a credential past its end, or a member whose announcements stopped for longer than the TTL, is
``expired``; it returns when it refreshes.

- ``state``: Membership: merging one record or a batch, ticks, sponsoring;
- ``tables``: the tables Membership keeps, shared by the modules below;
- ``merge``: merging credentials, announcements and key rotations;
- ``authority``: merging revocations, renewals, leaves, admin hand-overs and root rollovers;
- ``settle``: re-judging after a merge, and the events that come of it;
- ``silence``: when members were last heard from, and this node's own silence (cut-off);
- ``queries``: the read side (members, grants, records and digests);
- ``sponsoring``: whether an enrollment may be countersigned now;
- ``recordset``: the set of verified records and its digests;
- ``pending``: the bounded pool of records that wait for a credential;
- ``sponsor_graph``: the indexes of the set, and which credentials are sponsored (within
  their invites' uses);
- ``standing``: who stands, judged from the set alone (on top of the sponsor graph);
- ``lifecycle``: renewals (how long a member stands) and leaves (members that left);
- ``views``: member views, events and merge outcomes.
"""

from meshd.membership.recordset import BUCKETS
from meshd.membership.spreading import MAX_SPONSOR_DEPTH
from meshd.membership.state import Membership, decode_batch_untrusted, decode_each_untrusted
from meshd.membership.views import (
    Admitted,
    Batch,
    Change,
    Event,
    Expired,
    Member,
    MemberState,
    Outcome,
    Revoked,
    Stored,
    Updated,
    node_ids,
)

__all__ = [
    "BUCKETS",
    "MAX_SPONSOR_DEPTH",
    "Admitted",
    "Batch",
    "Change",
    "Event",
    "Expired",
    "Member",
    "MemberState",
    "Membership",
    "Outcome",
    "Revoked",
    "Stored",
    "Updated",
    "decode_batch_untrusted",
    "decode_each_untrusted",
    "node_ids",
]
