"""A member's certificate and announcement held without the keys their holders keep
(meshd.records.elide): put back together, they are the bytes given, whatever the fields; and
bytes not in the usual layout are held whole."""

from __future__ import annotations

import ipaddress
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.addressing import Prefix
from meshd.records import Role, make_announcement, make_certificate
from meshd.records.body import (
    issued_at_at,
    issued_at_of,
    name_at,
    name_of,
    network_id_at,
    not_after_at,
    not_after_of,
    not_before_at,
    not_before_of,
    role_of,
    seq_at,
    seq_of,
)
from meshd.records.elide import (
    ENVELOPE,
    HELD_ANN_NETWORK,
    HELD_ANN_SEQ,
    HELD_CERT_DATES,
    PIECES,
    elide_announcement,
    elide_certificate,
    elide_pieces,
    restore_announcement,
    restore_certificate,
    restore_pieces,
)
from meshd.trust.keys import SigningKey, WgKey

ROOT = SigningKey(bytes([7]) * 32)
NETWORK_ID = bytes(range(16))
U64 = 2**64 - 1
_TEXT = st.characters(min_codepoint=33, max_codepoint=0x24F, categories=("L", "N", "P"))
_INTS = st.sampled_from([0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, U64])


def _cert(
    not_before: int,
    not_after: int,
    name: str,
    ttl: int,
    uses: int,
    wg: bytes,
    prefixes: tuple[Prefix, ...] = (),
) -> tuple[bytes, bytes, bytes]:
    subject = SigningKey(bytes([3]) * 32).public
    raw = make_certificate(
        ROOT,
        network_id=NETWORK_ID,
        subject=subject,
        role=Role.MEMBER,
        serial=bytes([9]) * 16,
        not_before=not_before,
        not_after=not_after,
        name=name,
        prefixes=prefixes,
        max_uses=uses,
        member_ttl=ttl,
        wg_key=WgKey(wg) if wg else b"",
    ).raw
    return raw, subject, wg


@settings(max_examples=300, deadline=None)
@given(
    not_before=_INTS,
    not_after=_INTS,
    name=st.text(_TEXT, max_size=64).filter(lambda s: len(s.encode()) <= 64),
    ttl=_INTS,
    uses=st.integers(0, 1_000_000),
    wg=st.sampled_from([b"", bytes([5]) * 32]),
)
def test_a_certificate_put_back_together_is_the_bytes_given(
    not_before: int, not_after: int, name: str, ttl: int, uses: int, wg: bytes
) -> None:
    raw, subject, wg = _cert(not_before, not_after, name, ttl, uses, wg)
    held = elide_certificate(raw, NETWORK_ID, ROOT.public, subject, wg)
    assert restore_certificate(held, NETWORK_ID, ROOT.public, subject, wg) == raw
    if held is raw:
        # Held whole only where the layout is not the usual one: no WireGuard key, or a
        # body of 256 bytes or more (its bin 16 header).
        assert not wg or raw[1] != 0xC4
    else:
        assert held[0] != ENVELOPE
        assert len(held) == len(raw) - 1 - 16 - 3 * 32
        # What a credential reads often is read from the held bytes where it lies there.
        assert not_before_at(held, HELD_CERT_DATES) == not_before_of(raw) == not_before
        assert not_after_at(held, HELD_CERT_DATES) == not_after_of(raw) == not_after
        assert name_at(held, HELD_CERT_DATES) in (None, name_of(raw))
        assert name_of(raw) == name


@settings(max_examples=200, deadline=None)
@given(
    role=st.sampled_from(list(Role)),
    not_before=_INTS,
    not_after=_INTS,
    name=st.text(_TEXT, max_size=64).filter(lambda s: len(s.encode()) <= 64),
    uses=st.integers(0, 1_000_000),
    prefixes=st.lists(st.sampled_from(["10.0.0.0/8", "fd00::/64"]), max_size=2, unique=True),
)
def test_a_certificates_role_and_dates_are_read_where_they_lie(
    role: Role, not_before: int, not_after: int, name: str, uses: int, prefixes: list[str]
) -> None:
    """What chooses the invite and admin certificates a look at what ends soon decodes
    (``Membership.issuing_certificates``), read from their bytes: whatever the fields."""
    raw = make_certificate(
        ROOT,
        network_id=NETWORK_ID,
        subject=SigningKey(bytes([3]) * 32).public,
        role=role,
        serial=bytes([9]) * 16,
        not_before=not_before,
        not_after=not_after,
        name=name,
        prefixes=tuple(ipaddress.ip_network(p) for p in prefixes),
        max_uses=uses,
    ).raw
    assert role_of(raw) == role
    assert (not_before_of(raw), not_after_of(raw)) == (not_before, not_after)


def test_the_usual_member_certificate_is_held_in_152_bytes() -> None:
    raw, subject, wg = _cert(1_700_000_000, 1_800_000_000, "m1", 0, 0, bytes([5]) * 32)
    held = elide_certificate(raw, NETWORK_ID, ROOT.public, subject, wg)
    # 113 bytes fewer: the allocator's 152-byte blocks, not its 272-byte ones.
    assert sys.getsizeof(raw) - sys.getsizeof(held) == 113
    assert sys.getsizeof(held) <= 152 < 264 <= sys.getsizeof(raw)


def test_a_certificate_is_held_whole_when_a_key_given_is_not_the_one_it_holds() -> None:
    raw, subject, wg = _cert(1, 2, "m", 0, 0, bytes([5]) * 32)
    other = bytes([8]) * 32
    assert elide_certificate(raw, NETWORK_ID, other, subject, wg) is raw  # another issuer
    assert elide_certificate(raw, bytes(16), ROOT.public, subject, wg) is raw
    assert elide_certificate(raw, NETWORK_ID, ROOT.public, other, wg) is raw
    assert elide_certificate(raw, NETWORK_ID, ROOT.public, subject, other) is raw
    assert elide_certificate(raw, NETWORK_ID, ROOT.public, subject, b"") is raw
    assert elide_certificate(raw[:50], NETWORK_ID, ROOT.public, subject, wg) == raw[:50]
    # Whole bytes come back as they are; so do none (a record made without bytes).
    assert restore_certificate(raw, NETWORK_ID, other, other, other) is raw
    assert restore_certificate(b"", NETWORK_ID, other, other, other) == b""


def test_a_certificate_with_prefixes_is_put_back_together_too() -> None:
    prefixes = (ipaddress.ip_network("10.1.0.0/24"), ipaddress.ip_network("fd00::/64"))
    raw, subject, wg = _cert(1, 2, "gw", 0, 0, bytes([5]) * 32, prefixes)
    held = elide_certificate(raw, NETWORK_ID, ROOT.public, subject, wg)
    assert held is not raw
    assert restore_certificate(held, NETWORK_ID, ROOT.public, subject, wg) == raw


@settings(max_examples=200, deadline=None)
@given(
    seq=_INTS,
    issued_at=_INTS,
    endpoints=st.lists(st.sampled_from(["192.0.2.1:51820", "[2001:db8::1]:7"]), max_size=4),
    addrs=st.lists(st.text(_TEXT, min_size=1, max_size=60), max_size=6),
    relays=st.booleans(),
)
def test_an_announcement_put_back_together_is_the_bytes_given(
    seq: int, issued_at: int, endpoints: list[str], addrs: list[str], relays: bool
) -> None:
    key = SigningKey(bytes([6]) * 32)
    raw = make_announcement(
        key,
        network_id=NETWORK_ID,
        seq=seq,
        issued_at=issued_at,
        endpoints=tuple(endpoints),
        addrs=tuple(addrs),
        relays=relays,
    ).raw
    held = elide_announcement(raw, key.public)
    assert restore_announcement(held, key.public) == raw
    if raw[1] == 0xC4:  # a body under 256 bytes: held without the node key
        assert held[0] != ENVELOPE
        assert len(held) == len(raw) - 33
        assert seq_at(held, HELD_ANN_SEQ) == seq_of(raw) == seq
        assert issued_at_at(held, HELD_ANN_SEQ) == issued_at_of(raw) == issued_at
        assert network_id_at(held, HELD_ANN_NETWORK) == NETWORK_ID
    else:
        assert held is raw
    assert elide_announcement(raw, bytes([8]) * 32) is raw  # not its node key


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    pieces=st.lists(st.binary(min_size=1, max_size=240), min_size=6, max_size=6),
    tail=st.binary(max_size=100),
)
def test_pieces_put_back_together_are_the_bytes_given(
    gaps: list[bytes], pieces: list[bytes], tail: bytes
) -> None:
    """Whatever lies between them, bytes held without pieces found in order come back as
    they were; where a piece is not found within 255 bytes of the one before (or at all),
    they are held whole."""
    used = tuple(pieces[: len(gaps)])
    raw = b"\x92" + b"".join(gap + piece for gap, piece in zip(gaps, used, strict=True)) + tail
    held = elide_pieces(raw, used)
    assert restore_pieces(held, used) == raw
    if held is raw:
        return
    assert held[0] == PIECES
    assert len(held) == len(raw) - sum(map(len, used)) + 1 + len(used)


def test_pieces_not_found_in_order_or_near_enough_leave_the_bytes_whole() -> None:
    a, b = bytes([1]) * 32, bytes([2]) * 32
    raw = b"\x92" + bytes(10) + a + bytes(10) + b + bytes(5)
    held = elide_pieces(raw, (a, b))
    assert held == bytes([PIECES, 11, 10]) + b"\x92" + bytes(10) + bytes(10) + bytes(5)
    assert restore_pieces(held, (a, b)) == raw
    assert elide_pieces(raw, (b, a)) is raw  # not in that order
    assert elide_pieces(raw, (a, b"")) is raw  # a piece not known: whole
    far = b"\x92" + bytes(256) + a
    assert elide_pieces(far, (a,)) is far
    assert elide_pieces(raw[1:], (a, b)) == raw[1:]  # not a record's bytes
    assert restore_pieces(raw, (b, b)) is raw
