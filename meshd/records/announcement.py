"""An announcement: a member's signed statement of where it is, the record most members
hold one of and the daemon reads most, kept decoded as little as will do (its other fields
read from its bytes when asked: meshd.records.body)."""

from __future__ import annotations

from dataclasses import dataclass

from meshd.addressing import Prefix
from meshd.records.body import Signed, body_item, issued_at_of, network_id_of, relays_of, seq_of
from meshd.trust.keys import NodeKey


@dataclass(frozen=True, init=False)
class Announcement(Signed):
    """A member's signed statement of where it is: endpoints, libp2p addresses, prefixes,
    and whether it relays for other members (``relays``: a 10th body item, exactly true;
    a member that does not relay writes the 9 items of before).

    A decoded one (:func:`decoded_announcement`) keeps its node key, endpoints (the one
    most announce without a tuple), prefixes and bytes; its network id, sequence number,
    date, libp2p addresses and ``relays`` are read from its bytes when asked
    (meshd.records.body): 72 bytes, not 104 and the sequence number's int (a daemon's is
    the time in ns: 36 bytes more). One made by its
    constructor (tests, ``dataclasses.replace``) keeps what it was given (slot ``_given``).
    Slotted by hand: these fields are properties, set after the dataclass is made."""

    __slots__ = ("_endpoints", "_given", "node_key", "prefixes", "raw")

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
        _put(self, "_endpoints", _one_or_all(endpoints))
        _put(self, "prefixes", prefixes)
        _put(self, "raw", raw)
        _put(self, "_given", (network_id, seq, issued_at, addrs, relays))

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


def decoded_announcement(
    node_key: NodeKey, endpoints: tuple[str, ...], prefixes: tuple[Prefix, ...], raw: bytes
) -> Announcement:
    """An announcement decoded from ``raw`` (checked): its other fields are read from it."""
    ann: Announcement = _new(Announcement)
    _put(ann, "node_key", node_key)
    _put(ann, "_endpoints", _one_or_all(endpoints))
    _put(ann, "prefixes", prefixes)
    _put(ann, "raw", raw)
    _put(ann, "_given", None)
    return ann


def _one_or_all(endpoints: tuple[str, ...]) -> str | tuple[str, ...]:
    """What an announcement keeps of its endpoints: the one most announce, without a tuple
    of one (48 bytes a member), else the tuple."""
    return endpoints[0] if len(endpoints) == 1 else tuple(endpoints)


def _endpoints(ann: Announcement) -> tuple[str, ...]:
    """Its WireGuard endpoints (a tuple of one made when asked for the one most announce)."""
    kept = ann._endpoints  # type: ignore[attr-defined]
    return (kept,) if kept.__class__ is str else kept


# Each reads the value a constructor was given (``_given``: network id, seq, date, libp2p
# addresses, relays), else reads the bytes.


def _network_id(ann: Announcement) -> bytes:
    given = ann._given  # type: ignore[attr-defined]
    return network_id_of(ann.raw) if given is None else given[0]


def _seq(ann: Announcement) -> int:
    given = ann._given  # type: ignore[attr-defined]
    return seq_of(ann.raw) if given is None else given[1]


def _issued_at(ann: Announcement) -> int:
    """When its member signed it: read as it is merged."""
    given = ann._given  # type: ignore[attr-defined]
    return issued_at_of(ann.raw) if given is None else given[2]


def _addrs(ann: Announcement) -> tuple[str, ...]:
    """Its libp2p addresses: rarely read, they took ~120 bytes a member or more kept."""
    given = ann._given  # type: ignore[attr-defined]
    return tuple(body_item(ann.raw, 7)) if given is None else given[3]


def _relays(ann: Announcement) -> bool:
    given = ann._given  # type: ignore[attr-defined]
    return relays_of(ann.raw) if given is None else given[4]


# After the dataclass is made: a property in the class body would be taken for a default.
for _name, _read in (
    ("endpoints", _endpoints),
    ("network_id", _network_id),
    ("seq", _seq),
    ("issued_at", _issued_at),
    ("addrs", _addrs),
    ("relays", _relays),
):
    setattr(Announcement, _name, property(_read))
del _name, _read
