"""What the membership core tells the rest of meshd: member views, events, merge outcomes."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from meshd.addressing import host_prefix
from meshd.membership.recordset import KeptBytes, raw_of
from meshd.records import Announcement, Kind, Record
from meshd.trust.keys import NodeKey, WgKey, fingerprint, fingerprints


class MemberState(StrEnum):
    ADMITTED = "admitted"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Held(Protocol):
    """What a member's view reads from the credential that decides its state (a
    :class:`~meshd.trust.credential.Credential`: the tables' own, shared)."""

    @property
    def node_key(self) -> bytes: ...

    @property
    def name(self) -> str: ...

    @property
    def admitted_at(self) -> int: ...

    @property
    def not_after(self) -> int: ...

    @property
    def wg_key(self) -> bytes: ...


class Rotated(Protocol):
    """What a member's view reads from its newest WireGuard key rotation (a
    :class:`~meshd.records.WgRotation`: the one the tables keep, shared)."""

    @property
    def wg_key(self) -> bytes: ...

    @property
    def counter(self) -> int: ...

    @property
    def issued_at(self) -> int: ...


class _Given:
    """The fields of a view made by its constructor (tests, ``dataclasses.replace``) that
    the membership's views read from a credential and a rotation."""

    __slots__ = (
        "admitted_at",
        "counter",
        "issued_at",
        "name",
        "node_id",
        "node_key",
        "not_after",
        "wg_key",
    )

    def __init__(
        self,
        node_key: bytes,
        node_id: str | None,
        name: str,
        admitted_at: int,
        not_after: int,
        wg_key: bytes,
        counter: int,
        issued_at: int,
    ) -> None:
        self.node_key = node_key
        self.node_id = node_id
        self.name = name
        self.admitted_at = admitted_at
        self.not_after = not_after
        self.wg_key = wg_key
        self.counter = counter
        self.issued_at = issued_at


# (state, reason) pairs, one object each, shared by every view that says it; the reasons
# are a handful of constants (meshd.membership.standing), the table bounded all the same.
_STATUSES: dict[tuple[MemberState, str], tuple[MemberState, str]] = {}
_MAX_STATUSES = 64


def status(state: MemberState, reason: str) -> tuple[MemberState, str]:
    """The shared (state, reason) pair."""
    pair = (state, reason)
    found = _STATUSES.get(pair)
    if found is None:
        if len(_STATUSES) >= _MAX_STATUSES:
            return pair
        found = _STATUSES[pair] = pair
    return found


_ADMITTED = status(MemberState.ADMITTED, "")


class _More(NamedTuple):
    """The ``_more`` of a view of a member not admitted, or rotated: its (state, reason)
    pair (shared), its newest rotation (None: none), its interned /128."""

    status: tuple[MemberState, str]
    rotated: Rotated | None
    own: ipaddress.IPv6Network


def _more(
    status: tuple[MemberState, str], rotated: Rotated | None, own: ipaddress.IPv6Network
) -> object:
    """A view's ``_more``: its interned /128 itself (admitted, its enrolled key: most), else
    a :class:`_More` of its own."""
    if rotated is None and status is _ADMITTED:
        return own
    return _More(status, rotated, own)


@dataclass(frozen=True, init=False)
class Member:
    """What this node knows of one member, at one instant.

    Slotted by hand, four slots for thirteen fields (64 bytes a view, not 136): what its
    credential says (``node_key``, ``name``, ``admitted_at``, ``not_after``, the enrolled
    ``wg_key``) is read from the credential that decides its state, which the tables keep
    (slot ``_held``: its end moved by renewals, as judged); its overlay address from its
    interned /128 (:attr:`overlay_prefix`), which keeps the address's int alone; ``state``
    and ``reason``, and its rotated WireGuard key, counter and date, from slot ``_more``,
    which holds the /128 itself for an admitted member with its enrolled key (counter 0,
    date 0: most), else a :class:`_More` of the view's own: the (state, reason) pair shared
    by every view that says it, the rotation the tables keep, the /128 (64 bytes more for a
    member not admitted, whose peer, path and routes are not kept either). Its node id (the
    text form of its key's fingerprint) is derived from its key when asked, unless one was
    given: the membership's views hold none."""

    __slots__ = ("_held", "_more", "announcement", "last_seen")

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
        given = _Given(
            node_key, node_id, name, admitted_at, not_after, wg_key, wg_counter, wg_since
        )
        put = object.__setattr__
        put(self, "_held", given)
        rotated = None if wg_counter == wg_since == 0 else given
        put(self, "_more", _more(status(state, reason), rotated, host_prefix(overlay)))
        put(self, "announcement", announcement)
        put(self, "last_seen", last_seen)

    @property
    def overlay_prefix(self) -> ipaddress.IPv6Network:
        """The /128 of ``overlay``: the interned one the view holds (its address is made
        when ``overlay`` is read)."""
        more = self._more  # type: ignore[attr-defined]
        return more.own if more.__class__ is _More else more

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Member:
            return NotImplemented
        # Every field but node_id, as a dataclass compares them; what the slots hold first,
        # the shared objects found by identity (the feed compares each member with its last
        # view at every change, and most are the same).
        return self._slots() == other._slots() or self._fields() == other._fields()

    def _slots(self) -> tuple[object, ...]:
        return (
            self._held,  # type: ignore[attr-defined]
            self._more,  # type: ignore[attr-defined]
            self.announcement,
            self.last_seen,
        )

    def _fields(self) -> tuple[object, ...]:
        return (
            self.node_key,
            self.name,
            self.wg_key,
            self.overlay,
            self.state,
            self.reason,
            self.admitted_at,
            self.not_after,
            self.announcement,
            self.last_seen,
            self.wg_counter,
            self.wg_since,
        )


def view(
    held: Held,
    rotated: Rotated | None,
    own: ipaddress.IPv6Network,
    state: MemberState,
    reason: str,
    announcement: Announcement | None,
    last_seen: int | None,
) -> Member:
    """The membership's view of a member: what it reads from ``held`` (its credential) and
    ``rotated`` (its newest WireGuard key rotation, None: none) shared with the tables, and
    ``own``, its overlay address's interned /128."""
    member = _new(Member)
    put = object.__setattr__
    put(member, "_held", held)
    if rotated is None and state is _ADMITTED[0] and not reason:
        put(member, "_more", own)
    else:
        put(member, "_more", _More(status(state, reason), rotated, own))
    put(member, "announcement", announcement)
    put(member, "last_seen", last_seen)
    return member


_new = object.__new__


def _node_id(member: Member) -> str:
    """The member's node id: the text form of its key's fingerprint (unless one was given)."""
    held = member._held  # type: ignore[attr-defined]
    given: str | None = held.node_id if held.__class__ is _Given else None
    return fingerprint(held.node_key) if given is None else given


def node_ids(members: Iterable[Member]) -> list[str]:
    """``[m.node_id for m in members]``, the fingerprints of those derived from their keys
    written together (:func:`meshd.trust.keys.fingerprints`: 10,000 rows of ``meshd
    peers``)."""
    helds = [member._held for member in members]  # type: ignore[attr-defined]
    given: list[str | None] = [h.node_id if h.__class__ is _Given else None for h in helds]
    derived = iter(fingerprints(h.node_key for h, g in zip(helds, given, strict=True) if g is None))
    return [next(derived) if g is None else g for g in given]


def _node_key(member: Member) -> NodeKey:
    key: NodeKey = member._held.node_key  # type: ignore[attr-defined]
    return key


def _name(member: Member) -> str:
    name: str = member._held.name  # type: ignore[attr-defined]
    return name


def _admitted_at(member: Member) -> int:
    at: int = member._held.admitted_at  # type: ignore[attr-defined]
    return at


def _not_after(member: Member) -> int:
    at: int = member._held.not_after  # type: ignore[attr-defined]
    return at


def _rotated(member: Member) -> Rotated | None:
    more: object = member._more  # type: ignore[attr-defined]
    return more.rotated if type(more) is _More else None


def _wg_key(member: Member) -> WgKey:
    held = _rotated(member)
    if held is None:
        held = member._held  # type: ignore[attr-defined]
    key: WgKey = held.wg_key  # type: ignore[assignment]
    return key


def _wg_counter(member: Member) -> int:
    return 0 if (rotated := _rotated(member)) is None else rotated.counter


def _wg_since(member: Member) -> int:
    return 0 if (rotated := _rotated(member)) is None else rotated.issued_at


def _overlay(member: Member) -> ipaddress.IPv6Address:
    return member.overlay_prefix.network_address


def _status(member: Member) -> tuple[MemberState, str]:
    more: object = member._more  # type: ignore[attr-defined]
    return more.status if type(more) is _More else _ADMITTED


def _state(member: Member) -> MemberState:
    more: object = member._more  # type: ignore[attr-defined]
    return more.status[0] if type(more) is _More else _ADMITTED[0]


def _reason(member: Member) -> str:
    more: object = member._more  # type: ignore[attr-defined]
    return more.status[1] if type(more) is _More else ""


# After the dataclass is made: a property in the class body would be taken for the default.
for _field, _read in (
    ("node_id", _node_id),
    ("node_key", _node_key),
    ("name", _name),
    ("admitted_at", _admitted_at),
    ("not_after", _not_after),
    ("wg_key", _wg_key),
    ("wg_counter", _wg_counter),
    ("wg_since", _wg_since),
    ("overlay", _overlay),
    ("state", _state),
    ("reason", _reason),
):
    setattr(Member, _field, property(_read))


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
    dataclass: one is made per record on the ingest hot path, at a third of the cost.)

    ``held``: its bytes, or what holds them elided (a credential, an announcement:
    meshd.records.elide), asked for them by ``raw`` when they are written: a store's load
    makes one per record, kept to its end, which held every row's bytes a second time."""

    rid: bytes
    kind: Kind
    held: KeptBytes
    node_key: bytes | None  # the member an announcement belongs to

    @property
    def raw(self) -> bytes:
        return raw_of(self.held)


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
