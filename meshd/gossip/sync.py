"""Anti-entropy sync (pure): find and transfer only the records two nodes do not share.

Gossip is at most once; this repairs what it missed. Two nodes run one :class:`SyncSession`
each over a framed stream and converge to the same record set, in both directions, in a few
round trips. The cost follows the size of the difference, not of the state.

Record ids are SHA-256 output, so they spread evenly over the id space. The space is cut
into *ranges* by id prefix: the whole space (0 bits), the 256 buckets of the membership core
(8 bits: :meth:`Membership.bucket_digests`), then 16 children per range (4 bits more) down to
64 bits. A range's fingerprint is the XOR of its ids and their count; at the root it is the
state digest and the record count.

One message may carry, for any ranges:

* ``fingerprints``: "here is my fingerprint of R". The receiver compares its own. If they
  differ, it answers with its ids of R when it holds few (at most :data:`SPLIT_THRESHOLD`),
  with the fingerprints of R's children when it holds many, with all of its records of R when
  the sender holds none there, or with an empty id list when it holds none itself;
* ``ids``: "these are all my ids in R". The receiver now knows both sides of R: it pushes the
  records the sender lacks and asks for those it lacks;
* ``wants``: record ids the sender asks for; ``records``: raw records pushed.

The sides take turns, one message each. A session ends after both sides have sent, one
after the other, an idle message (nothing of the above): the second idle message is sent and
then the sender stops, and its receiver stops without answering. Each message stays under
:data:`MAX_MESSAGE`; what does not fit waits for the next turn.

What the peer can make a session hold is bounded, whatever it sends: the ids a session asks
for (:data:`MAX_WANTED` in all, asked :data:`WANT_BUDGET` bytes at a time), the range items
waiting to be sent (:data:`MAX_QUEUED`), and the records queued to push (only records this
side holds, each once). Work beyond a budget is dropped and counted in ``dropped``; the
session goes on with what it kept, and a later sync picks up the rest.

So is the work it can make a session do. The ranges a side has still to answer never overlap
(each is a range of the last message, or a child of one), so the ranges of one message do
not either: a message whose ranges overlap is refused as it is decoded (the same range sent
16,384 times made a side go over its whole snapshot for each). And a session goes over at
most :data:`WORK_FACTOR` times its snapshot's ids (and :data:`WORK_FLOOR` more) in all, as
its answers read them: a real conversation reads each id once a level of ranges it differs
in (a few levels: 16 ids to a leaf, 16 children to a range); past that the session ends,
refused (DecodeError).

Each session works on a snapshot of its side's ids taken when it starts; records received
are handed to the owner, which ingests them into the membership core (they may be refused
there: a stale announcement, say, and the other side then adopts the newer one).
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from meshd.encoding import pack, unpack_canonical_untrusted
from meshd.errors import DecodeError
from meshd.membership import BUCKETS, Membership, Outcome
from meshd.records import MAX_RECORD

__all__ = [
    "MAX_MESSAGE",
    "MAX_QUEUED",
    "MAX_WANTED",
    "PROTOCOL_ID",
    "SPLIT_THRESHOLD",
    "Message",
    "Range",
    "Step",
    "SyncSession",
    "decode_message_untrusted",
    "encode_message",
    "net_change",
]

PROTOCOL_ID: Final = "/meshd/sync/1.0.0"
VERSION: Final = 1
ID_LEN: Final = 16
ID_BITS: Final = 8 * ID_LEN
ROOT_SPLIT_BITS: Final = 8  # the root splits into the membership core's 256 buckets
SPLIT_BITS: Final = 4  # every other range splits into 16 children
MAX_BITS: Final = 64  # deeper than this, ranges list their ids whatever their size
SPLIT_THRESHOLD: Final = 16
FINGERPRINT_LEN: Final = 20  # 16 bytes of XOR (or digest) and a 4-byte count

MAX_MESSAGE: Final = 1000 * 1024  # under the default 1 MiB frame limit
RECORD_BUDGET: Final = 640 * 1024
ITEM_BUDGET: Final = 192 * 1024
WANT_BUDGET: Final = 64 * 1024
MAX_ITEMS: Final = 16384
MAX_ROUNDS: Final = 256
MAX_WANTED: Final = 8192  # ids one session may ask for, in all (128 KiB of ids)
MAX_QUEUED: Final = 16384  # range items (fingerprints, id lists) waiting to be sent
WORK_FACTOR: Final = 16  # times the snapshot's ids a session may read in all (see above)
WORK_FLOOR: Final = 65536
# Generous: the encoder stays within the budgets above, whatever the state size.
_ITEM_OVERHEAD: Final = 16


@dataclass(frozen=True, slots=True, order=True)
class Range:
    """The ids whose first ``bits`` bits equal ``prefix``."""

    bits: int
    prefix: int

    def __post_init__(self) -> None:
        valid_bits = self.bits == 0 or (
            ROOT_SPLIT_BITS <= self.bits <= MAX_BITS and self.bits % SPLIT_BITS == 0
        )
        if not valid_bits or not 0 <= self.prefix < (1 << self.bits):
            raise DecodeError(f"sync: not a range: {self.bits} bits, prefix {self.prefix}")

    @property
    def low(self) -> int:
        return self.prefix << (ID_BITS - self.bits)

    @property
    def high(self) -> int:
        return (self.prefix + 1) << (ID_BITS - self.bits)

    def children(self) -> list[Range]:
        step = ROOT_SPLIT_BITS if self.bits == 0 else SPLIT_BITS
        return [Range(self.bits + step, (self.prefix << step) | i) for i in range(1 << step)]


ROOT: Final = Range(0, 0)


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a sync conversation."""

    fingerprints: tuple[tuple[Range, bytes], ...] = ()
    ids: tuple[tuple[Range, tuple[bytes, ...]], ...] = ()
    wants: tuple[bytes, ...] = ()
    records: tuple[bytes, ...] = ()

    @property
    def idle(self) -> bool:
        return not (self.fingerprints or self.ids or self.wants or self.records)


@dataclass(frozen=True, slots=True)
class Step:
    """What receiving one message gives: the reply to send (None: stop), records to ingest."""

    reply: Message | None
    records: tuple[bytes, ...]


def encode_message(message: Message) -> bytes:
    return pack(
        [
            VERSION,
            [[r.bits, r.prefix, fp] for r, fp in message.fingerprints],
            [[r.bits, r.prefix, b"".join(ids)] for r, ids in message.ids],
            b"".join(message.wants),
            list(message.records),
        ]
    )


def _split_ids(blob: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(blob, bytes) or len(blob) % ID_LEN:
        raise DecodeError(f"sync: {what} must be a whole number of {ID_LEN}-byte ids")
    return tuple(blob[i : i + ID_LEN] for i in range(0, len(blob), ID_LEN))


def _range_item(item: Any) -> tuple[Range, Any]:
    if not isinstance(item, list) or len(item) != 3:
        raise DecodeError("sync: a range item is [bits, prefix, value]")
    bits, prefix, value = item
    if not isinstance(bits, int) or not isinstance(prefix, int):
        raise DecodeError("sync: range bits and prefix must be integers")
    return Range(bits, prefix), value


def decode_message_untrusted(data: bytes) -> Message:
    """Parse one sync message. Raises DecodeError only."""
    value = unpack_canonical_untrusted(data, max_size=MAX_MESSAGE, what="sync message")
    if not isinstance(value, list) or len(value) != 5 or value[0] != VERSION:
        raise DecodeError(f"sync: expected [{VERSION}, fingerprints, ids, wants, records]")
    _, fps_raw, ids_raw, wants_raw, records_raw = value
    if not all(isinstance(x, list) for x in (fps_raw, ids_raw, records_raw)):
        raise DecodeError("sync: fingerprints, ids and records must be arrays")
    if len(fps_raw) + len(ids_raw) > MAX_ITEMS:
        raise DecodeError(f"sync: more than {MAX_ITEMS} range items")
    fingerprints = []
    for item in fps_raw:
        rng, fp = _range_item(item)
        if not isinstance(fp, bytes) or len(fp) != FINGERPRINT_LEN:
            raise DecodeError(f"sync: a fingerprint is {FINGERPRINT_LEN} bytes")
        fingerprints.append((rng, fp))
    id_lists = []
    for item in ids_raw:
        rng, blob = _range_item(item)
        ids = _split_ids(blob, "an id list")
        if rng.bits and ids:
            # Ids are 16 bytes, big-endian: as bytes they compare as their numbers do.
            low = rng.low.to_bytes(ID_LEN, "big")
            high = rng.high.to_bytes(ID_LEN, "big") if rng.high < 1 << ID_BITS else None
            if min(ids) < low or (high is not None and max(ids) >= high):
                raise DecodeError("sync: an id lies outside the range it is listed under")
        id_lists.append((rng, ids))
    _check_apart([r for r, _ in fingerprints] + [r for r, _ in id_lists])
    wants = _split_ids(wants_raw, "wants")
    if not all(isinstance(r, bytes) and 0 < len(r) <= MAX_RECORD for r in records_raw):
        raise DecodeError(f"sync: a record must be 1 to {MAX_RECORD} bytes")
    return Message(tuple(fingerprints), tuple(id_lists), wants, tuple(records_raw))


def _check_apart(ranges: list[Range]) -> None:
    """Refuse ranges that overlap (the same one twice, or one within another)."""
    spans = sorted((r.low, r.high) for r in ranges)
    for (_, high), (low, _) in itertools.pairwise(spans):
        if low < high:
            raise DecodeError("sync: the ranges of a message overlap")


def _fold(ids: Sequence[int]) -> bytes:
    acc = 0
    for rid in ids:
        acc ^= rid
    return acc.to_bytes(ID_LEN, "big") + len(ids).to_bytes(4, "big")


def _count_of(fp: bytes) -> int:
    return int.from_bytes(fp[ID_LEN:], "big")


@dataclass(slots=True)
class _Outbox:
    fingerprints: deque[tuple[Range, bytes]] = field(default_factory=deque)
    ids: deque[tuple[Range, tuple[bytes, ...]]] = field(default_factory=deque)
    wants: deque[bytes] = field(default_factory=deque)
    pushes: deque[bytes] = field(default_factory=deque)


class SyncSession:
    """One side of one sync conversation, over a snapshot of a membership's record ids.

    ``start()`` gives the initiator's first message; each message received goes to
    ``receive()``, which returns the reply to send (or None: the conversation is over) and
    the records the peer pushed, for the owner to ingest. ``done`` tells when to stop.
    """

    def __init__(
        self,
        state: Membership,
        *,
        split_threshold: int = SPLIT_THRESHOLD,
        max_wanted: int = MAX_WANTED,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._state = state
        self._split_threshold = split_threshold
        self._max_wanted = max_wanted
        self._max_queued = max_queued
        self._ids = sorted(int.from_bytes(rid, "big") for rid in state.record_ids())
        self._root = state.digest() + len(self._ids).to_bytes(4, "big")
        self._buckets = state.bucket_digests()
        self._out = _Outbox()
        self._pushed: set[bytes] = set()
        self._wanted: set[bytes] = set()
        self._last_sent_idle = False
        self._rounds = 0
        self.done = False
        self.records_sent = 0
        self.records_received = 0
        self.dropped = 0  # ids and range items left out because a budget was spent
        # Ids the peer's messages may still make this session read (see the module's text).
        self._work = WORK_FACTOR * len(self._ids) + WORK_FLOOR

    # --- the snapshot ---------------------------------------------------------------------

    def _slice(self, rng: Range) -> list[int]:
        lo = bisect.bisect_left(self._ids, rng.low)
        hi = bisect.bisect_left(self._ids, rng.high, lo)
        self._work -= hi - lo
        if self._work < 0:
            raise DecodeError("sync: the peer asked for more work than a sync needs")
        return self._ids[lo:hi]

    def _fingerprint(self, rng: Range) -> bytes:
        if rng.bits == 0:
            return self._root
        if rng.bits == ROOT_SPLIT_BITS and len(self._buckets) == BUCKETS:
            return self._buckets[rng.prefix]
        return _fold(self._slice(rng))

    def _count(self, rng: Range) -> int:
        if rng.bits == 0:
            return len(self._ids)
        lo = bisect.bisect_left(self._ids, rng.low)
        return bisect.bisect_left(self._ids, rng.high, lo) - lo

    @property
    def held(self) -> int:
        """Ids and range items this session holds because of what the peer sent: the ids it
        asked for (and those still to ask), the range items waiting to be sent."""
        return len(self._wanted) + len(self._out.wants) + self._queued()

    def _queued(self) -> int:
        return len(self._out.fingerprints) + len(self._out.ids)

    # --- the conversation -------------------------------------------------------------------

    def start(self) -> Message:
        """The initiator's first message: the fingerprint of everything."""
        self._last_sent_idle = False
        return Message(fingerprints=((ROOT, self._root),))

    def receive(self, message: Message) -> Step:
        """Handle the peer's message; return the reply and the records it pushed."""
        if self.done:
            raise DecodeError("sync: message after the end of the conversation")
        self._rounds += 1
        if self._rounds > MAX_ROUNDS:
            raise DecodeError(f"sync: no agreement after {MAX_ROUNDS} rounds")
        self.records_received += len(message.records)
        if message.idle and self._last_sent_idle:
            self.done = True
            return Step(None, ())
        for rng, fp in message.fingerprints:
            self._on_fingerprint(rng, fp)
        for rng, ids in message.ids:
            self._on_ids(rng, ids)
        self._queue_pushes(rid for rid in message.wants if self._state.holds(rid))
        reply = self._build()
        if message.idle and reply.idle:
            self.done = True
        self._last_sent_idle = reply.idle
        return Step(reply, message.records)

    def _on_fingerprint(self, rng: Range, theirs: bytes) -> None:
        mine = self._fingerprint(rng)
        if mine == theirs:
            return
        my_count = self._count(rng)
        if _count_of(theirs) == 0:
            self._queue_pushes(i.to_bytes(ID_LEN, "big") for i in self._slice(rng))
            return
        leaf = my_count <= self._split_threshold or rng.bits >= MAX_BITS
        items = 1 if leaf else 1 << (ROOT_SPLIT_BITS if rng.bits == 0 else SPLIT_BITS)
        if self._queued() + items > self._max_queued:
            self.dropped += items
        elif leaf:
            ids = tuple(i.to_bytes(ID_LEN, "big") for i in self._slice(rng))
            self._out.ids.append((rng, ids))
        else:
            self._out.fingerprints.extend((c, self._fingerprint(c)) for c in rng.children())

    def _on_ids(self, rng: Range, theirs: tuple[bytes, ...]) -> None:
        their_set = set(theirs)
        mine = [i.to_bytes(ID_LEN, "big") for i in self._slice(rng)]
        self._queue_pushes(rid for rid in mine if rid not in their_set)
        mine_set = set(mine)
        wanted = self._wanted
        for n, rid in enumerate(theirs):
            if len(wanted) >= self._max_wanted:
                self.dropped += len(theirs) - n  # not looked at: the budget is spent
                break
            if rid not in mine_set and rid not in wanted and not self._state.holds(rid):
                wanted.add(rid)
                self._out.wants.append(rid)

    def _queue_pushes(self, rids: Iterable[bytes]) -> None:
        for rid in rids:
            if rid not in self._pushed:
                self._pushed.add(rid)
                self._out.pushes.append(rid)

    def _build(self) -> Message:
        out = self._out
        fingerprints: list[tuple[Range, bytes]] = []
        ids: list[tuple[Range, tuple[bytes, ...]]] = []
        budget = ITEM_BUDGET
        while out.fingerprints and budget > 0 and len(fingerprints) + len(ids) < MAX_ITEMS:
            fingerprints.append(out.fingerprints.popleft())
            budget -= FINGERPRINT_LEN + _ITEM_OVERHEAD
        while out.ids and budget > 0 and len(fingerprints) + len(ids) < MAX_ITEMS:
            item = out.ids[0]
            size = len(item[1]) * ID_LEN + _ITEM_OVERHEAD
            if ids and size > budget:
                break
            ids.append(out.ids.popleft())
            budget -= size
        wants: list[bytes] = []
        while out.wants and len(wants) * ID_LEN < WANT_BUDGET:
            wants.append(out.wants.popleft())
        records: list[bytes] = []
        room = RECORD_BUDGET
        while out.pushes:
            raw = self._state.record(out.pushes[0])
            if raw is None:  # dropped since the snapshot (a replaced announcement, say)
                out.pushes.popleft()
                continue
            if len(raw) + 5 > room:
                break
            out.pushes.popleft()
            records.append(raw)
            room -= len(raw) + 5
        self.records_sent += len(records)
        return Message(tuple(fingerprints), tuple(ids), tuple(wants), tuple(records))


# --- ingesting what a sync brings -----------------------------------------------------------


def net_change(state: Membership, outcomes: Sequence[Outcome]) -> Outcome | None:
    """Fold several outcomes into one that the store can apply in a single transaction.

    A record stored and then dropped again within the batch (an announcement replaced by a
    newer one) is neither inserted nor kept; every drop is applied.
    """
    if not outcomes:
        return None
    stored = {s.rid: s for o in outcomes for s in o.stored if state.holds(s.rid)}
    dropped = {d for o in outcomes for d in o.dropped if not state.holds(d)}
    events = tuple(e for o in outcomes for e in o.events)
    return Outcome(
        outcomes[0].record,
        new=any(o.new for o in outcomes),
        stored=tuple(stored.values()),
        dropped=tuple(sorted(dropped)),
        events=events,
    )
