"""Decoded records and their ids share what repeats, without changing a value."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.records import (
    Announcement,
    Certificate,
    Role,
    decode_untrusted,
    make_announcement,
    make_certificate,
    record_id,
)
from meshd.records.body import body_item
from meshd.records.types import split_envelope_untrusted
from meshd.trust.keys import FINGERPRINT_LEN, SigningKey, WgKey

ROOT = SigningKey(bytes([7]) * 32)
NETWORK_ID = bytes(range(FINGERPRINT_LEN))


def certificate(i: int) -> bytes:
    return make_certificate(
        ROOT,
        network_id=NETWORK_ID,
        subject=SigningKey(bytes([i]) * 32).public,
        role=Role.MEMBER,
        serial=bytes([i]) * 16,
        not_before=1000,
        not_after=2000,
        name=f"m{i}",
        wg_key=WgKey(bytes([i]) * 32),
    ).raw


def test_the_id_of_one_record_asked_for_again_is_the_same_object() -> None:
    raw = certificate(1)
    first = record_id(raw)
    assert record_id(raw) is first
    # Equal bytes in another object, or another record in between: equal ids, still right.
    copy = bytes(bytearray(raw))
    assert copy is not raw
    assert record_id(copy) == first
    other = certificate(2)
    assert record_id(other) != first
    assert record_id(raw) == first
    assert record_id(bytearray(raw)) == first  # type: ignore[arg-type]


def test_decoded_certificates_share_the_network_id_and_the_issuer() -> None:
    one, two = (decode_untrusted(certificate(i), Certificate) for i in (3, 4))
    assert one.network_id == NETWORK_ID
    assert one.network_id is two.network_id
    assert one.issuer == ROOT.public
    assert one.issuer is two.issuer
    assert one.subject != two.subject


def test_a_records_signature_is_read_from_its_bytes_not_kept_twice() -> None:
    key = SigningKey(bytes([5]) * 32)
    ann = make_announcement(
        key, network_id=NETWORK_ID, seq=1, issued_at=1000, endpoints=("192.0.2.1:51820",)
    )
    cert = decode_untrusted(certificate(5), Certificate)
    for record in (ann, cert):
        _, signature = split_envelope_untrusted(record.raw)
        assert record.signature == signature
        assert len(record.signature) == 64
        # No field holds it a second time (97 bytes a record, two a member).
        held = [getattr(record, name) for name in type(record).__slots__]
        assert not any(type(value) is bytes and value == signature for value in held)


def test_an_announcements_addresses_and_date_are_read_from_its_bytes_not_kept() -> None:
    key = SigningKey(bytes([6]) * 32)
    one = ("/ip4/192.0.2.1/tcp/7100",)
    # Enough addresses for a body of 256 bytes and more (its envelope's other form).
    many = tuple(f"/ip6/2001:db8::{i}/tcp/7100/p2p/{'x' * 40}" for i in range(8))
    for addrs in ((), one, many):
        for relays in (False, True):
            ann = make_announcement(
                key,
                network_id=NETWORK_ID,
                seq=1,
                issued_at=1000,
                endpoints=("192.0.2.1:51820",),
                addrs=addrs,
                relays=relays,
            )
            assert ann.addrs == addrs
            assert type(ann.addrs) is tuple
            assert ann.issued_at == 1000
            assert ann == decode_untrusted(ann.raw, Announcement)
            assert ann.relays is relays
            assert ann.network_id == NETWORK_ID
            # None of them is kept: a decoded one holds its node key, endpoints, prefixes
            # and bytes, and reads the rest from its bytes.
            assert type(ann._endpoints) is str  # type: ignore[attr-defined]
            assert set(type(ann).__slots__) == {"_endpoints", "_raw", "node_key", "prefixes"}
    assert len(split_envelope_untrusted(ann.raw)[0]) >= 256


U64 = 2**64 - 1
_EDGES = st.sampled_from([0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, U64])


@settings(max_examples=200, deadline=None)
@given(
    seq=st.one_of(_EDGES, st.integers(0, U64)),
    issued_at=st.one_of(_EDGES, st.integers(0, U64)),
    many=st.booleans(),
)
def test_an_announcements_date_read_from_its_bytes_is_the_one_it_was_made_with(
    seq: int, issued_at: int, many: bool
) -> None:
    # Every width of msgpack uint for both, and both forms of the envelope (bin 8, bin 16).
    addrs = tuple(f"/ip4/192.0.2.{i}/tcp/7100/p2p/{'x' * 40}" for i in range(8 if many else 1))
    ann = make_announcement(
        SigningKey(bytes([9]) * 32),
        network_id=NETWORK_ID,
        seq=seq,
        issued_at=issued_at,
        endpoints=("192.0.2.1:51820",),
        addrs=addrs,
    )
    decoded = decode_untrusted(ann.raw, Announcement)
    assert decoded.issued_at == issued_at == body_item(ann.raw, 5)
    assert decoded.seq == seq == body_item(ann.raw, 4)
    assert decoded.network_id == NETWORK_ID
