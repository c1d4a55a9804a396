"""An announcement: a member's signed statement of where it is, the record most members
hold one of and the daemon reads most, kept decoded as little as will do (its other fields
read from its bytes when asked: meshd.records.body)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from meshd.addressing import Prefix
from meshd.records.body import (
    Signed,
    body_item,
    issued_at_at,
    issued_at_of,
    network_id_at,
    network_id_of,
    relays_of,
    seq_at,
    seq_of,
)
from meshd.records.elide import (
    ENVELOPE,
    HELD_ANN_NETWORK,
    HELD_ANN_SEQ,
    elide_announcement,
    restore_announcement,
)
from meshd.trust.keys import NodeKey


@dataclass(frozen=True, init=False)
class Announcement(Signed):
    """A member's signed statement of where it is: endpoints, libp2p addresses, prefixes,
    and whether it relays for other members (``relays``: a 10th body item, exactly true;
    a member that does not relay writes the 9 items of before).

    A decoded one (:func:`decoded_announcement`) keeps its node key, endpoints (the one
    most announce without a tuple), prefixes and bytes; its network id, sequence number,
    date, libp2p addresses and ``relays`` are read from its bytes when asked
    (meshd.records.body): 64 bytes, not 104 and the sequence number's int (a daemon's is
    the time in ns: 36 bytes more), then 72 with a slot for what a constructor is given.
    Its bytes are held without its node key (:mod:`meshd.records.elide`: 184 bytes, not
    216), put back together when ``raw`` is read.
    One made by its constructor (tests, ``dataclasses.replace``) keeps what it was given
    in its endpoints' slot (a :class:`_Given`). Slotted by hand: these fields are
    properties, set after the dataclass is made."""

    __slots__ = ("_endpoints", "_raw", "node_key", "prefixes")

    network_id: bytes
    node_key: NodeKey
    seq: int
    issued_at: int
    endpoints: tuple[str, ...]
    addrs: tuple[str, ...]
    prefixes: tuple[Prefix, ...]
    raw: bytes
    relays: bool

    def __init__(
        self,
        network_id: bytes,
        node_key: NodeKey,
        seq: int,
        issued_at: int,
        endpoints: tuple[str, ...],
        addrs: tuple[str, ...],
        prefixes: tuple[Prefix, ...],
        raw: bytes,
        relays: bool = False,
    ) -> None:
        _put(self, "node_key", node_key)
        given = _Given(_one_or_all(endpoints), network_id, seq, issued_at, addrs, relays)
        _put(self, "_endpoints", given)
        _put(self, "prefixes", prefixes)
        _put(self, "_raw", raw)

    @property
    def signer(self) -> bytes:
        return self.node_key

    # Copies and pickles: what the slots hold (a frozen dataclass's own are the fields').
    def __getstate__(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in Announcement.__slots__)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        for name, value in zip(Announcement.__slots__, state, strict=True):
            _put(self, name, value)


_put = object.__setattr__
_new = object.__new__


class _Given(NamedTuple):
    """What an announcement made by its constructor was given, beside its node key,
    prefixes and bytes (a decoded one reads these from its bytes)."""

    endpoints: str | tuple[str, ...]  # as :func:`_one_or_all` keeps them
    network_id: bytes
    seq: int
    issued_at: int
    addrs: tuple[str, ...]
    relays: bool


def decoded_announcement(
    node_key: NodeKey, endpoints: tuple[str, ...], prefixes: tuple[Prefix, ...], raw: bytes
) -> Announcement:
    """An announcement decoded from ``raw`` (checked): its other fields are read from it."""
    ann: Announcement = _new(Announcement)
    _put(ann, "node_key", node_key)
    _put(ann, "_endpoints", _one_or_all(endpoints))
    _put(ann, "prefixes", prefixes)
    _put(ann, "_raw", elide_announcement(raw, node_key))
    return ann


def _one_or_all(endpoints: tuple[str, ...]) -> str | tuple[str, ...]:
    """What an announcement keeps of its endpoints: the one most announce, without a tuple
    of one (48 bytes a member), else the tuple."""
    return endpoints[0] if len(endpoints) == 1 else tuple(endpoints)


def _endpoints(ann: Announcement) -> tuple[str, ...]:
    """Its WireGuard endpoints (a tuple of one made when asked for the one most announce)."""
    kept = ann._endpoints  # type: ignore[attr-defined]
    if kept.__class__ is _Given:
        kept = kept.endpoints
    return (kept,) if kept.__class__ is str else kept


# Each reads what a constructor was given (a _Given in the endpoints' slot), else the bytes.


def _given(ann: Announcement) -> _Given | None:
    kept = ann._endpoints  # type: ignore[attr-defined]
    return kept if kept.__class__ is _Given else None


def _network_id(ann: Announcement) -> bytes:
    given = _given(ann)
    if given is not None:
        return given.network_id
    held = ann._raw  # type: ignore[attr-defined]
    return network_id_of(held) if held[0] == ENVELOPE else network_id_at(held, HELD_ANN_NETWORK)


# Its sequence number and date are read from its bytes held elided where they lie there (a
# merge reads them at every announcement), not from the whole put back together.


def _seq(ann: Announcement) -> int:
    kept = ann._endpoints  # type: ignore[attr-defined]
    if kept.__class__ is _Given:
        return kept.seq
    held = ann._raw  # type: ignore[attr-defined]
    return seq_of(held) if held[0] == ENVELOPE else seq_at(held, HELD_ANN_SEQ)


def _issued_at(ann: Announcement) -> int:
    """When its member signed it: read as it is merged."""
    kept = ann._endpoints  # type: ignore[attr-defined]
    if kept.__class__ is _Given:
        return kept.issued_at
    held = ann._raw  # type: ignore[attr-defined]
    return issued_at_of(held) if held[0] == ENVELOPE else issued_at_at(held, HELD_ANN_SEQ)


def _addrs(ann: Announcement) -> tuple[str, ...]:
    """Its libp2p addresses: rarely read, they took ~120 bytes a member or more kept."""
    given = _given(ann)
    return tuple(body_item(ann.raw, 7)) if given is None else given.addrs


def _relays(ann: Announcement) -> bool:
    given = _given(ann)
    return relays_of(ann.raw) if given is None else given.relays


def _raw(ann: Announcement) -> bytes:
    """Its bytes: a decoded one holds them without its node key (meshd.records.elide)."""
    return restore_announcement(ann._raw, ann.node_key)  # type: ignore[attr-defined]


# After the dataclass is made: a property in the class body would be taken for a default.
for _name, _read in (
    ("raw", _raw),
    ("endpoints", _endpoints),
    ("network_id", _network_id),
    ("seq", _seq),
    ("issued_at", _issued_at),
    ("addrs", _addrs),
    ("relays", _relays),
):
    setattr(Announcement, _name, property(_read))
del _name, _read
