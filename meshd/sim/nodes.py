"""The membership layer of a simulated node: the real cores, or their model.

:class:`RealNode` runs meshd's own :class:`~meshd.membership.Membership` on the records'
bytes (decoding, signature checks, the CRDT merge) and anti-entropy with
:class:`~meshd.gossip.sync.SyncSession` pairs whose messages cross the simulated links as
encoded bytes. The validator is the daemon's: a record is forwarded when it is new to the
set (meshd/daemon/state.py ``NodeState.validate``; the store write is a CPU cost here).

:class:`ModelNode` is what runs at 1,000 and 10,000 nodes, where N cores of N members each
do not fit (a Membership holds every member's records: N^2 records, and ~0.5 ms of CPU to
verify each certificate). It keeps, per node, only what the simulated traffic touches:

* a set of record keys (ints), a revoked-member set and each member's highest announcement
  sequence number: a record is new, and forwarded, when its key is not in the set, its
  member is not revoked and (for an announcement) its sequence number is higher; this is the
  decision the real validator makes for the records the scenarios publish;
* sync as the real session's message sequence for two sets that differ: the root
  fingerprint; if the sets differ, the 256 bucket fingerprints, the ids of the differing
  buckets, then the records each side lacks (each side learns them when that message
  arrives), then the two idle messages; sizes from the real encoding's per-item sizes.

tests/sim checks the model against RealNode on the same scenarios (revocation spread, and
the partition heal), and benchmarks/sim.py prints both side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from meshd.errors import DecodeError, VerifyError
from meshd.gossip.sync import Step, SyncSession, decode_message_untrusted, encode_message
from meshd.membership import Membership
from meshd.records import record_id
from meshd.sim.engine import SYNC, Sim
from meshd.sim.loop import Message
from meshd.sim.records import T0

FRAME: Final = 4  # the sync stream's length prefix
_FINGERPRINT: Final = 24  # a range and its 20-byte fingerprint, msgpack-encoded
_ID: Final = 16


def _key_kind(key: int) -> int:
    return key >> 48


def _key_member(key: int) -> int:
    return (key >> 24) & 0xFFFFFF


def _key_seq(key: int) -> int:
    return key & 0xFFFFFF


def record_key(kind: int, member: int, seq: int = 0) -> int:
    """The int a scenario names a record by: kind 0 certificate, 1 announcement, 2 revocation."""
    return (kind << 48) | (member << 24) | seq


CERTIFICATE: Final = 0
ANNOUNCEMENT: Final = 1
REVOCATION: Final = 2


@dataclass
class RealNode:
    """The real membership core and sync sessions of one node."""

    index: int
    state: Membership
    keys: dict[bytes, int]  # record id -> record key, shared by all nodes of a run
    applied: dict[int, float] = field(default_factory=dict)  # record key -> when it joined
    _sessions: dict[tuple[int, int], SyncSession] = field(default_factory=dict)
    _opened: int = 0

    def validate(self, message: Message, now: float) -> bool:
        try:
            outcome = self.state.ingest_untrusted(message.payload, T0 + int(now))
        except (DecodeError, VerifyError):
            return False
        if outcome.new:
            self.applied.setdefault(self.keys[record_id(message.payload)], now)
        return outcome.new

    def sync_start(self, sim: Sim, peer: int, now: float) -> None:
        self._opened += 1
        sid = (self.index, self._opened)
        session = self._sessions[sid] = SyncSession(self.state)
        self._send(sim, peer, sid, session.start(), now)

    def _send(self, sim: Sim, peer: int, sid: tuple[int, int], message: Any, now: float) -> None:
        data = encode_message(message)
        sim.send(self.index, peer, SYNC, (sid, data), len(data) + FRAME, now)

    def sync_receive(self, sim: Sim, peer: int, data: Any, now: float) -> None:
        sid, raw = data
        session = self._sessions.get(sid)
        if session is None:
            if sid[0] == self.index:
                return  # our session already ended
            session = self._sessions[sid] = SyncSession(self.state)
        step = session.receive(decode_message_untrusted(raw))
        if session.done or step.reply is None:
            del self._sessions[sid]
        if step.records:
            cost = sim.costs.validate * len(step.records)
            sim.job(self.index, cost, partial(self._merged, sim, peer, sid, step))
        elif step.reply is not None:
            self._send(sim, peer, sid, step.reply, now)

    def _merged(self, sim: Sim, peer: int, sid: tuple[int, int], step: Step) -> None:
        batch = self.state.ingest_batch(step.records, T0 + int(sim.now))
        for stored in batch.stored:
            key = self.keys.get(stored.rid)
            if key is not None:
                self.applied.setdefault(key, sim.now)
        if step.reply is not None:
            self._send(sim, peer, sid, step.reply, sim.now)


@dataclass
class ModelNode:
    """The model of one node's membership core and sync (module docstring)."""

    index: int
    sizes: dict[int, int]  # record kind -> bytes
    records: set[int] = field(default_factory=set)
    revoked: set[int] = field(default_factory=set)
    seqs: dict[int, int] = field(default_factory=dict)
    applied: dict[int, float] = field(default_factory=dict)
    _opened: int = 0

    def admit(self, key: int, now: float) -> bool:
        if key in self.records:
            return False
        kind, member = _key_kind(key), _key_member(key)
        if kind == ANNOUNCEMENT:
            if member in self.revoked or _key_seq(key) <= self.seqs.get(member, 0):
                return False
            old = self.seqs.get(member)
            if old is not None:
                self.records.discard(record_key(ANNOUNCEMENT, member, old))
            self.seqs[member] = _key_seq(key)
        elif kind == REVOCATION:
            self.revoked.add(member)
            seq = self.seqs.pop(member, None)
            if seq is not None:
                self.records.discard(record_key(ANNOUNCEMENT, member, seq))
        self.records.add(key)
        self.applied.setdefault(key, now)
        return True

    def validate(self, message: Message, now: float) -> bool:
        return self.admit(int(message.key), now)

    def _record_bytes(self, keys: list[int]) -> int:
        return sum(self.sizes[_key_kind(k)] + 3 for k in keys)

    def sync_start(self, sim: Sim, peer: int, now: float) -> None:
        self._opened += 1
        sid = (self.index, self._opened)
        snapshot = frozenset(self.records)
        self._send(sim, peer, (sid, 1, snapshot), _FINGERPRINT + 8, now)

    def _send(self, sim: Sim, peer: int, data: Any, size: int, now: float) -> None:
        sim.send(self.index, peer, SYNC, data, size + FRAME, now)

    def sync_receive(self, sim: Sim, peer: int, data: Any, now: float) -> None:
        sid, turn, theirs = data[0], data[1], data[2]
        if turn == 1:  # the root fingerprint
            mine = frozenset(self.records)
            if mine == theirs:
                self._send(sim, peer, (sid, 6, None), 8, now)
            else:
                self._send(sim, peer, (sid, 2, mine, theirs), 256 * _FINGERPRINT + 8, now)
        elif turn == 2:  # the bucket fingerprints: answer with the ids of differing buckets
            mine, snapshot = data[2], data[3]
            differing = len(mine ^ snapshot)
            self._send(sim, peer, (sid, 3, mine, snapshot), differing * _ID + 8, now)
        elif turn == 3:  # their ids: push what they lack, ask for what we lack
            mine, snapshot = data[2], data[3]  # ours when we answered, theirs at the start
            lack = sorted(snapshot - mine)
            push = sorted(mine - snapshot)
            size = self._record_bytes(push) + len(lack) * _ID + 8
            self._send(sim, peer, (sid, 4, push, lack), size, now)
        elif turn == 4:  # records pushed to us; push what was asked
            asked = [k for k in data[3] if k in self.records]
            reply = (sid, 5, asked)
            self._merge(sim, data[2], peer, reply, self._record_bytes(asked) + 8)
        elif turn == 5:
            self._merge(sim, data[2], peer, (sid, 6, None), 8)
        elif turn == 6:  # idle, answered by idle, and the conversation ends
            self._send(sim, peer, (sid, 7, None), 8, now)

    def _merge(self, sim: Sim, keys: list[int], peer: int, reply: Any, size: int) -> None:
        def merged() -> None:
            for key in keys:
                self.admit(key, sim.now)
            self._send(sim, peer, reply, size, sim.now)

        sim.job(self.index, sim.costs.validate * len(keys), merged)
