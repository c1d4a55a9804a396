"""Anti-entropy sync (pure core): convergence, both directions, cost, hostile messages."""

from __future__ import annotations

import functools
import random
import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.errors import DecodeError
from meshd.gossip import sync as sync_core
from meshd.gossip.sync import (
    MAX_MESSAGE,
    Message,
    Range,
    SyncSession,
    decode_message_untrusted,
    encode_message,
)
from meshd.membership import Membership
from meshd.records import record_id
from tests.factory import DAY, T0, Net

NOW = T0 + 100


@dataclass(frozen=True)
class Pool:
    net: Net
    records: tuple[bytes, ...]


@functools.cache
def pool() -> Pool:
    """Certificates, admissions (chained), announcements (several per member), revocations."""
    net = Net()
    founders = [net.founder(f"f{i}") for i in range(6)]
    state = net.state()
    records = [f.credential.raw for f in founders]
    for f in founders:
        state.ingest(f.credential, NOW)
    invite = net.invite(uses=20, lifetime=30 * DAY)
    sponsor = founders[0]
    joined = []
    for i in range(10):
        node = net.join(state, sponsor, invite, f"j{i}", at=T0 + 10 + i)
        state.ingest(node.credential, NOW)
        records.append(node.credential.raw)
        joined.append(node)
        sponsor = node  # a chain: each admission's sponsor is the previous member
    for node in founders + joined:
        for k in range(2):
            records.append(node.announce(net, T0 + 30 + k, addrs=(f"/ip4/10.0.0.{k}/tcp/1",)).raw)
    records.append(net.revoke(founders[5].key.public).raw)
    records.append(net.revoke(joined[7].key.public).raw)
    return Pool(net, tuple(records))


def _state_of(records: list[bytes]) -> Membership:
    state = pool().net.state()
    # Several passes, as a node that received these over time would have merged them.
    for _ in range(2):
        state.ingest_batch(records, NOW)
    return state


def converse(a: Membership, b: Membership, *, split: int = 16) -> tuple[int, int]:
    """Run one sync from ``a`` to ``b``; return (bytes moved, messages)."""
    first, second = SyncSession(a, split_threshold=split), SyncSession(b, split_threshold=split)
    wire = encode_message(first.start())
    moved, messages = len(wire), 1
    sides = [(second, b), (first, a)]
    turn = 0
    while True:
        session, state = sides[turn % 2]
        step = session.receive(decode_message_untrusted(wire))
        state.ingest_batch(step.records, NOW)
        if step.reply is None:
            break
        wire = encode_message(step.reply)
        assert len(wire) <= MAX_MESSAGE
        moved += len(wire)
        messages += 1
        if session.done:
            other, _ = sides[(turn + 1) % 2]
            assert other.receive(decode_message_untrusted(wire)).reply is None
            break
        turn += 1
    assert first.done
    assert second.done
    return moved, messages


subsets = st.lists(st.booleans(), min_size=60, max_size=60)


@given(subsets, subsets, st.sampled_from([1, 2, 16]))
def test_two_overlapping_states_converge_in_one_sync(
    left: list[bool], right: list[bool], split: int
) -> None:
    records = pool().records
    a = _state_of([r for r, keep in zip(records, left, strict=False) if keep])
    b = _state_of([r for r, keep in zip(records, right, strict=False) if keep])
    parked = a.pending_count + b.pending_count
    converse(a, b, split=split)
    # A record that waits in one side's pending pool is not in its set, so that side does not
    # offer it; merged during a sync, it travels in the next one. The daemon syncs again
    # while a sync brought something new.
    for _ in range(parked):
        if a.digest() == b.digest():
            break
        converse(a, b, split=split)
    assert a.digest() == b.digest()
    assert a.record_ids() == b.record_ids()
    # Nothing is left to do: the next sync is one fingerprint and two idle messages.
    moved, messages = converse(a, b, split=split)
    assert messages == 3
    assert moved < 100


def test_empty_states_and_one_empty_side() -> None:
    records = list(pool().records)
    empty, full = _state_of([]), _state_of(records)
    converse(empty, _state_of([]))
    converse(empty, full)
    assert empty.digest() == full.digest()
    late = _state_of([])
    converse(full, late, split=1)
    assert late.digest() == full.digest()


@functools.cache
def big_pair(size: int, differ: int) -> tuple[Net, list[bytes], list[bytes], list[bytes]]:
    net = Net()
    members = [net.founder(f"m{i}").credential.raw for i in range(size + differ)]
    random.Random(size).shuffle(members)
    common, only_a, only_b = (
        members[: size - differ // 2],
        members[size - differ // 2 : size],
        members[size : size + differ // 2],
    )
    return net, common, only_a, only_b


def test_cost_follows_the_difference_not_the_state() -> None:
    net, common, only_a, only_b = big_pair(2000, 20)
    a, b = net.state(), net.state()
    a.ingest_batch(common + only_a, NOW)
    b.ingest_batch(common + only_b, NOW)
    differing = sum(len(r) for r in only_a + only_b)
    full = sum(len(r) for r in common + only_a)
    moved, _ = converse(a, b)
    assert a.digest() == b.digest()
    assert len(a) == 2000 + 10
    assert moved < 5 * differing, (moved, differing)
    assert moved < full / 10


def test_a_new_node_receives_everything_in_bounded_messages() -> None:
    net, common, only_a, _ = big_pair(2000, 20)
    a, fresh = net.state(), net.state()
    a.ingest_batch(common + only_a, NOW)
    _moved, messages = converse(fresh, a)
    assert fresh.digest() == a.digest()
    assert messages >= 3


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x90",
        encode_message(Message())[:-1],
        b"\x95\x02\x90\x90\xc4\x00\x90",  # version 2
        b"\x95\x01\x91\x93\x03\x00\xc4\x14" + bytes(20) + b"\x90\xc4\x00\x90",  # 3 bits
        b"\x95\x01\x91\x93\x08\xcd\x01\x00\xc4\x14" + bytes(20) + b"\x90\xc4\x00\x90",  # 256
        b"\x95\x01\x90\x90\xc4\x0f" + bytes(15) + b"\x90",  # a partial id
        b"\x95\x01\x90\x91\x93\x08\x01\xc4\x10" + bytes(16) + b"\xc4\x00\x90",  # id outside
    ],
)
def test_hostile_messages_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_message_untrusted(data)


@given(st.binary(max_size=200))
def test_any_bytes_give_a_message_or_a_decode_error(data: bytes) -> None:
    try:
        message = decode_message_untrusted(data)
    except DecodeError:
        return
    assert decode_message_untrusted(encode_message(message)) == message


def test_round_trip_and_ranges() -> None:
    rid = record_id(b"x")
    message = Message(
        fingerprints=((Range(8, (rid[0] + 1) % 255), bytes(20)), (Range(12, 4095), bytes(20))),
        ids=((Range(8, rid[0]), (rid,)),),
        wants=(rid,),
        records=(b"raw",),
    )
    assert decode_message_untrusted(encode_message(message)) == message
    assert len(Range(0, 0).children()) == 256
    assert Range(8, 1).children()[3] == Range(12, 0x13)


def test_a_session_that_never_agrees_stops() -> None:
    session = SyncSession(_state_of([]))
    for _ in range(256):
        session.receive(Message(wants=(bytes(16),)))
    with pytest.raises(DecodeError):
        session.receive(Message(wants=(bytes(16),)))


# --- hostile peers: what a session holds stays bounded ------------------------------------


def _random_ids(count: int, rng: random.Random) -> tuple[bytes, ...]:
    return tuple(sorted(rng.randbytes(16) for _ in range(count)))


def _flood(kind: str, rounds: int, rng: random.Random) -> list[bytes]:
    """Sync messages as attack 4 sent them, each close to the 1 MB message limit."""
    messages = []
    for _ in range(rounds):
        if kind == "ids":  # ~62,000 random record ids "held" in the whole id space
            message = Message(ids=((Range(0, 0), _random_ids(62_000, rng)),))
        elif kind == "wants":  # the same number of ids asked for
            message = Message(wants=_random_ids(62_000, rng))
        else:  # 16,384 ranges side by side, each answered with its ids
            message = Message(
                fingerprints=tuple((Range(16, i), rng.randbytes(20)) for i in range(16384))
            )
        wire = encode_message(message)
        assert len(wire) <= MAX_MESSAGE
        messages.append(wire)
    return messages


@pytest.mark.parametrize("kind", ["ids", "wants", "fingerprints"])
def test_a_flood_of_random_ids_leaves_a_session_within_its_budget(kind: str) -> None:
    """Attack 4: a peer sends sync messages of ~62,000 random ids, round after round. The
    session keeps at most its budget of wanted ids and queued items, whatever the peer sends
    (before: every unknown id stayed in the wanted set and the outgoing queue, ~100 bytes
    each, until the session ended after up to 256 rounds)."""
    state = _state_of(list(pool().records))
    flood = _flood(kind, 12, random.Random(kind))
    session = SyncSession(state)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        asked = 0
        for wire in flood:
            step = session.receive(decode_message_untrusted(wire))
            assert step.reply is not None
            asked += len(step.reply.wants)
            del step
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 16 * 2**20, f"the session holds {held / 2**20:.0f} MiB after the flood"
    assert session.held <= sync_core.MAX_WANTED + sync_core.MAX_QUEUED
    assert asked <= sync_core.MAX_WANTED
    if kind != "wants":
        assert session.dropped > 0
    # The session goes on, and ends cleanly once the peer falls silent.
    for _ in range(sync_core.MAX_ROUNDS):
        step = session.receive(Message())
        if step.reply is None or session.done:
            break
    assert session.done


def test_wants_beyond_the_budget_come_in_a_later_sync() -> None:
    """An honest difference larger than one session's budget still converges: each sync
    asks for at most its budget, and the daemon syncs again while a sync brings something."""
    net, common, only_a, only_b = big_pair(400, 200)
    a, b = net.state(), net.state()
    a.ingest_batch(common + only_a, NOW)
    b.ingest_batch(common + only_b, NOW)
    rounds = 0
    while a.digest() != b.digest():
        rounds += 1
        assert rounds <= 10
        first = SyncSession(a, split_threshold=64, max_wanted=40)
        second = SyncSession(b, split_threshold=64, max_wanted=40)
        wire = encode_message(first.start())
        sides = [(second, b), (first, a)]
        for turn in range(sync_core.MAX_ROUNDS):
            session, state = sides[turn % 2]
            step = session.receive(decode_message_untrusted(wire))
            state.ingest_batch(step.records, NOW)
            if step.reply is None or session.done:
                break
            wire = encode_message(step.reply)
    assert rounds >= 2  # it took more than one session
    assert a.record_ids() == b.record_ids()


# --- hostile peers: what a session does stays bounded --------------------------------------


def _same_range_flood() -> bytes:
    """The root range's (empty) id list 16,384 times: each made a side read its whole
    snapshot (4.9 s of CPU for one 80 KB message at 2,000 records)."""
    return bytes.fromhex("950190dc4000" + "930000c400" * 16384 + "c40090")


@pytest.mark.parametrize(
    "message",
    [
        Message(ids=((Range(0, 0), ()),) * 2),
        Message(fingerprints=((Range(0, 0), bytes(20)), (Range(8, 3), bytes(20)))),
        Message(fingerprints=((Range(8, 3), bytes(20)),), ids=((Range(12, 0x35), ()),)),
        Message(fingerprints=((Range(12, 0x35), bytes(20)), (Range(12, 0x35), bytes(20)))),
    ],
)
def test_a_message_whose_ranges_overlap_is_refused(message: Message) -> None:
    with pytest.raises(DecodeError, match="overlap"):
        decode_message_untrusted(encode_message(message))


def test_the_same_range_sent_many_times_is_refused_as_it_is_decoded() -> None:
    with pytest.raises(DecodeError, match="overlap"):
        decode_message_untrusted(_same_range_flood())
    # Ranges side by side, and one within a range of the other side's list, are fine.
    apart = Message(
        fingerprints=((Range(8, 3), bytes(20)), (Range(12, 0x40), bytes(20))),
        ids=((Range(8, 2), ()), (Range(12, 0x41), ())),
    )
    assert decode_message_untrusted(encode_message(apart)) == apart


def test_a_session_ends_once_the_peer_made_it_read_more_than_a_sync_needs() -> None:
    """Every message asks the most work a message may (each bucket as held by none: every
    record of ours to be pushed, read again), round after round. The session reads at most
    its budget, then refuses the peer (before: 256 rounds of it)."""
    net, common, only_a, _ = big_pair(2000, 20)
    state = net.state()
    state.ingest_batch(common + only_a, NOW)
    held = len(state.record_ids())
    empty = (0).to_bytes(20, "big")
    wire = encode_message(Message(fingerprints=tuple((Range(8, i), empty) for i in range(256))))
    rounds, why = _until_refused(SyncSession(state), wire)
    assert "more work" in why
    # 16 times the snapshot and 65,536 ids more: 48 messages of this one at 2,010 records.
    assert rounds <= 16 + 65536 // held + 1, rounds


def _until_refused(session: SyncSession, wire: bytes) -> tuple[int, str]:
    """Send ``wire`` again and again: the rounds until the session refuses it, and why."""
    for rounds in range(1, sync_core.MAX_ROUNDS + 2):
        try:
            session.receive(decode_message_untrusted(wire))
        except DecodeError as exc:
            return rounds, str(exc)
    return sync_core.MAX_ROUNDS + 2, "never refused"


def test_states_that_differ_in_half_their_records_still_converge() -> None:
    """The work budget leaves room for a sync whose every range differs (a partition that
    healed after each side took in a thousand members)."""
    net, common, only_a, only_b = big_pair(2000, 2000)
    a, b = net.state(), net.state()
    a.ingest_batch(common + only_a, NOW)
    b.ingest_batch(common + only_b, NOW)
    converse(a, b)
    assert a.digest() == b.digest()
    assert len(a) == 3000
