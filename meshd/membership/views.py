"""What the membership core tells the rest of meshd: member views, events, merge outcomes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from meshd.records import Announcement, Kind, Record
from meshd.trust.keys import NodeKey, WgKey, fingerprint


class MemberState(StrEnum):
    ADMITTED = "admitted"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, init=False)
class Member:
    """What this node knows of one member, at one instant.

    Its node id (the text form of its key's fingerprint) is derived from its key when asked,
    unless one was given: the membership's views hold none (75 bytes a member). Slotted by
    hand: the field ``node_id`` is kept in the slot ``_node_id`` (None: derived)."""

    __slots__ = (
        "_node_id",
        "admitted_at",
        "announcement",
        "last_seen",
        "name",
        "node_key",
        "not_after",
        "overlay",
        "reason",
        "state",
        "wg_counter",
        "wg_key",
        "wg_since",
    )

    node_key: NodeKey
    node_id: str = field(compare=False)  # a function of node_key, unless given
    name: str
    wg_key: WgKey
    overlay: ipaddress.IPv6Address
    state: MemberState
    reason: str
    admitted_at: int
    not_after: int
    announcement: Announcement | None
    last_seen: int | None
    # The WireGuard key's rotation counter (0: the key the member enrolled with) and the
    # rotation's issued_at (0 for the enrolled key); meshd.mesh.desired ranks claims by them.
    wg_counter: int
    wg_since: int

    def __init__(
        self,
        node_key: NodeKey,
        node_id: str | None,
        name: str,
        wg_key: WgKey,
        overlay: ipaddress.IPv6Address,
        state: MemberState,
        reason: str,
        admitted_at: int,
        not_after: int,
        announcement: Announcement | None,
        last_seen: int | None,
        wg_counter: int = 0,
        wg_since: int = 0,
    ) -> None:
        put = object.__setattr__
        put(self, "node_key", node_key)
        put(self, "_node_id", node_id)
        put(self, "name", name)
        put(self, "wg_key", wg_key)
        put(self, "overlay", overlay)
        put(self, "state", state)
        put(self, "reason", reason)
        put(self, "admitted_at", admitted_at)
        put(self, "not_after", not_after)
        put(self, "announcement", announcement)
        put(self, "last_seen", last_seen)
        put(self, "wg_counter", wg_counter)
        put(self, "wg_since", wg_since)


def _member_node_id(member: Member) -> str:
    """The member's node id: the text form of its key's fingerprint (unless one was given)."""
    given: str | None = member._node_id  # type: ignore[attr-defined]
    return fingerprint(member.node_key) if given is None else given


# After the dataclass is made: a property in the class body would be taken for the default.
setattr(Member, "node_id", property(_member_node_id))  # noqa: B010


@dataclass(frozen=True, slots=True)
class Admitted:
    member: Member


@dataclass(frozen=True, slots=True)
class Updated:
    """The member announced something new: endpoints, libp2p addresses, prefixes or whether
    it relays. A refresh that only advances the sequence number (a member saying it is
    still there) is no event."""

    member: Member


@dataclass(frozen=True, slots=True)
class Expired:
    member: Member


@dataclass(frozen=True, slots=True)
class Revoked:
    member: Member


Event = Admitted | Updated | Expired | Revoked


class Stored(NamedTuple):
    """A record that joined the set; the store persists it. (A named tuple rather than a
    dataclass: one is made per record on the ingest hot path, at a third of the cost.)"""

    rid: bytes
    kind: Kind
    raw: bytes
    node_key: bytes | None  # the member an announcement belongs to


@dataclass(frozen=True, slots=True)
class Outcome:
    """What merging one record did."""

    record: Record
    new: bool  # the record joined the set (gossip forwards only new records)
    pending: bool = False  # it waits for a record it depends on
    stored: tuple[Stored, ...] = ()  # records added to the set (this one, adopted ones)
    # Record ids removed from the set, except announcements replaced by a newer one from the same
    # member (the newer one is in ``stored`` and replaces it by node).
    dropped: tuple[bytes, ...] = ()
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class Batch:
    """What merging records that arrived together did, netted over the batch.

    ``stored`` and ``dropped`` are what the store must write and delete (a member's
    announcement replaced by a newer one within the batch is neither); ``events`` come in the
    order things happened, with at most one Updated per member, emitted last.
    """

    stored: tuple[Stored, ...] = ()
    dropped: tuple[bytes, ...] = ()
    events: tuple[Event, ...] = ()
    new: int = 0  # records that joined the set
    rejected: tuple[str, ...] = ()  # the reason each refused record was refused


class Change(Protocol):
    """What the store persists: an Outcome or a Batch."""

    @property
    def stored(self) -> tuple[Stored, ...]: ...

    @property
    def dropped(self) -> tuple[bytes, ...]: ...
