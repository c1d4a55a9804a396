"""Chains of node key hand-overs (wire-format §6.12): linked by id, not nested, so that a key
rotated any number of times still hands over in a record of bounded size."""

from __future__ import annotations

import random

import pytest

from meshd.addressing import overlay_address
from meshd.errors import VerifyError
from meshd.membership import Membership, MemberState
from meshd.records import (
    Handover,
    Record,
    decode_record_untrusted,
    make_handover,
    record_id,
)
from meshd.trust.keys import SigningKey
from tests.factory import T0
from tests.trust.test_hostile import World, body_items, sign_items

NOW = T0 + 10_000
ROTATIONS = 100
# A flat hand-over is its enrolled credential plus this much, and 17 bytes per enrollment id
# it lists (§6.12): the same for the first rotation of a key and its hundredth.
OVERHEAD = 300


def rotate(
    w: World, keys: list[SigningKey], held: Record, at: int, *, legacy: bool = False
) -> Handover:
    new = SigningKey.generate()
    record = make_handover(
        keys[-1],
        new,
        network_id=w.nid,
        issued_at=at,
        wg_key=bytes(32),
        credential=held,  # type: ignore[arg-type]
        legacy=legacy,
    )
    keys.append(new)
    return record


def chain(w: World, length: int) -> tuple[list[SigningKey], list[Handover]]:
    member = w.join(w.net.invite())
    keys = [member.key]
    records: list[Handover] = []
    held: Record = member.credential
    for step in range(length):
        held = rotate(w, keys, held, T0 + 100 + step)
        records.append(held)
    return keys, records


def state_of(w: World, records: list[Handover]) -> Membership:
    state = w.net.state()
    state.ingest(w.founder.credential, NOW)
    first = records[0].credential
    state.ingest(first, NOW)
    return state


def test_a_hundred_rotations_each_in_a_record_of_bounded_size() -> None:
    w = World()
    keys, records = chain(w, ROTATIONS)
    enrolled = records[0].credential
    sizes = {len(r.raw) for r in records}
    assert max(sizes) <= len(enrolled.raw) + OVERHEAD
    assert max(sizes) - min(sizes) <= 16 + 4  # the first names no predecessor
    for record in records:
        assert record.credential.raw == enrolled.raw  # never a nested hand-over
        assert decode_record_untrusted(record.raw) == record
    state = state_of(w, records)
    for record in records:
        assert state.ingest(record, NOW).new
    first = state.member(keys[0].public, NOW)
    last = state.member(keys[-1].public, NOW)
    assert first is not None
    assert last is not None
    assert last.state is MemberState.ADMITTED
    assert (last.name, last.not_after) == (first.name, first.not_after)
    assert last.overlay == overlay_address(w.net.anchor.root_key, keys[0].public)
    for key in keys[:-1]:
        member = state.member(key.public, NOW)
        assert member is not None
        assert (member.state, member.reason) == (MemberState.REVOKED, "handed-over")


def test_a_node_that_missed_the_middle_waits_then_resolves_the_current_key() -> None:
    w = World()
    keys, records = chain(w, ROTATIONS)
    state = state_of(w, records)
    assert not state.ingest(records[-1], NOW).new  # waits for the one it names
    assert state.member(keys[-1].public, NOW) is None
    for record in reversed(records[1:-1]):
        assert state.ingest(record, NOW).pending
    assert state.pending_count == ROTATIONS - 1
    state.ingest(records[0], NOW)
    assert state.pending_count == 0
    last = state.member(keys[-1].public, NOW)
    assert last is not None
    assert last.state is MemberState.ADMITTED
    assert last.overlay == overlay_address(w.net.anchor.root_key, keys[0].public)


def test_any_order_of_a_chain_gives_one_state() -> None:
    w = World()
    keys, records = chain(w, 30)
    digests = set()
    for seed in range(5):
        shuffled = list(records)
        random.Random(seed).shuffle(shuffled)
        state = state_of(w, records)
        for record in shuffled:
            state.ingest(record, NOW)
        member = state.member(keys[-1].public, NOW)
        assert member is not None
        assert member.state is MemberState.ADMITTED
        digests.add(state.digest())
    assert len(digests) == 1


def test_a_legacy_nested_hand_over_is_read_and_continued_flat() -> None:
    """A hand-over from a release before links (8 items, nesting its predecessor) is accepted
    with the same id; the next rotation names it by id and carries the enrolled credential."""
    w = World()
    member = w.join(w.net.invite())
    keys = [member.key]
    h1 = rotate(w, keys, member.credential, T0 + 100, legacy=True)
    h2 = rotate(w, keys, h1, T0 + 101, legacy=True)
    assert h2.legacy
    assert isinstance(h2.credential, Handover)
    assert len(body_items(h2)) == 10  # kind, version and 8 fields
    h3 = rotate(w, keys, h2, T0 + 102)
    assert not h3.legacy
    assert h3.previous == record_id(h2.raw)
    assert h3.credential.raw == member.credential.raw
    for order in ((h1, h2, h3), (h3, h2, h1)):
        state = w.elsewhere(member)
        for record in order:
            state.ingest(record, NOW)
        last = state.member(keys[-1].public, NOW)
        assert last is not None
        assert last.state is MemberState.ADMITTED
        assert last.overlay == overlay_address(w.net.anchor.root_key, member.key.public)


# --- hostile links ------------------------------------------------------------------------


def test_hostile_link_to_another_members_hand_over() -> None:
    """A member signs a hand-over carrying another member's enrolled credential and naming that
    member's hand-over, to take its name and grants: the named hand-over is not its key's."""
    w = World()
    _, theirs = chain(w, 2)
    thief = w.join(w.net.invite())
    state = w.elsewhere(thief)
    state.ingest(theirs[0].credential, NOW)
    for record in theirs:
        state.ingest(record, NOW)
    forged = make_handover(
        thief.key,
        SigningKey.generate(),
        network_id=w.nid,
        issued_at=T0 + 200,
        wg_key=bytes(32),
        credential=theirs[-1],
    )
    with pytest.raises(VerifyError) as caught:
        state.ingest(forged, NOW)
    assert caught.value.reason == "bad-chain"


def test_hostile_link_with_another_enrolled_credential() -> None:
    """The old key's own hand-over is named, but the credential carried is another member's
    (larger grants, another name): the link's enrolled credential differs."""
    w = World()
    keys, records = chain(w, 1)
    other = w.join(w.net.invite())
    state = state_of(w, records)
    state.ingest(other.credential, NOW)
    state.ingest(records[0], NOW)
    items = body_items(
        make_handover(
            keys[-1],
            SigningKey.generate(),
            network_id=w.nid,
            issued_at=T0 + 300,
            wg_key=bytes(32),
            credential=records[0],
        )
    )
    items[7] = other.credential.raw  # credential: another member's enrolment
    with pytest.raises(VerifyError) as caught:
        state.ingest_untrusted(sign_items(keys[-1], items), NOW)
    assert caught.value.reason == "bad-chain"


def test_hostile_flat_hand_over_nesting_a_hand_over_is_refused() -> None:
    from meshd.errors import DecodeError

    w = World()
    _, records = chain(w, 2)
    items = body_items(records[1])
    items[7] = records[0].raw  # a flat record (with ``previous``) must not nest
    with pytest.raises(DecodeError):
        decode_record_untrusted(sign_items(SigningKey.generate(), items))


def test_hostile_legacy_hand_over_nesting_a_flat_one_is_refused() -> None:
    """A member nests, in a legacy hand-over, a flat one it forged (to its own key, carrying a
    victim's credential, naming a made-up predecessor): the nested link would be checked by
    nobody, so a legacy hand-over may nest only legacy ones."""
    from meshd.errors import DecodeError

    w = World()
    victim = w.join(w.net.invite())
    member = w.join(w.net.invite())
    throwaway = SigningKey.generate()
    inner_items = body_items(
        make_handover(
            throwaway,
            member.key,
            network_id=w.nid,
            issued_at=T0 + 100,
            wg_key=bytes(32),
            credential=victim.credential,
        )
    )
    inner_items[10] = bytes(16)  # previous: made up
    inner = decode_record_untrusted(sign_items(throwaway, inner_items))
    assert isinstance(inner, Handover)
    with pytest.raises(DecodeError):
        make_handover(
            member.key,
            SigningKey.generate(),
            network_id=w.nid,
            issued_at=T0 + 101,
            wg_key=bytes(32),
            credential=inner,
            legacy=True,
        )
