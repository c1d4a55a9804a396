"""The certificate decoder's fast path (meshd.records.decode._certificate_fast) takes and
refuses exactly what the general decoder does, with the same error: each field of a valid
certificate's body replaced by values of the wrong type, size or range."""

from __future__ import annotations

import ipaddress

import pytest

from meshd.encoding import unpack_canonical_untrusted
from meshd.errors import DecodeError
from meshd.records import Cap, Certificate, Role, decode_untrusted, make_certificate
from meshd.records.decode import _certificate, _certificate_fast
from meshd.records.fields import _Fields
from meshd.records.types import MAX_RECORD, U64, Kind, split_envelope_untrusted
from meshd.trust.keys import SigningKey, WgKey

ROOT = SigningKey(bytes([7]) * 32)
NETWORK_ID = bytes(range(16))


def certificate(**changes: object) -> Certificate:
    fields: dict[str, object] = {
        "network_id": NETWORK_ID,
        "subject": SigningKey(bytes([1]) * 32).public,
        "role": Role.MEMBER,
        "serial": bytes([1]) * 16,
        "not_before": 1000,
        "not_after": 2000,
        "name": "m1",
        "wg_key": WgKey(bytes([1]) * 32),
    }
    fields.update(changes)
    return make_certificate(ROOT, **fields)  # type: ignore[arg-type]


def items_of(raw: bytes) -> tuple[list[object], bytes]:
    body, sig = split_envelope_untrusted(raw)
    items = unpack_canonical_untrusted(body, max_size=MAX_RECORD, what="record")
    assert isinstance(items, list)
    return items, sig


def outcome(decode: object) -> object:
    try:
        return decode()  # type: ignore[operator]
    except DecodeError as exc:
        return ("DecodeError", str(exc))


def both(items: list[object], raw: bytes) -> tuple[object, object]:
    fast = outcome(lambda: _certificate_fast(list(items), raw, 0))
    general = outcome(lambda: _certificate(_Fields(list(items[2:]), Kind.CERTIFICATE), raw, 0))
    return fast, general


BAD_VALUES: list[object] = [
    None, True, -1, 0, 256, U64 + 1, 1_000_001, b"", bytes(15), bytes(16), bytes(31), bytes(32),
    bytes(33), "", "x" * 65, "é", "a\x07", "ok", [], [b"x"], [[bytes(16), 64]], 1.5,
]  # fmt: skip


@pytest.mark.parametrize("field", range(2, 16))
def test_each_field_wrong_gives_what_the_general_decoder_gives(field: int) -> None:
    raw = certificate().raw
    items, _ = items_of(raw)
    for bad in BAD_VALUES:
        changed = list(items)
        changed[field] = bad
        fast, general = both(changed, raw)
        assert fast == general, (field, bad)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"name": "störung"},
        {"name": ""},
        {"wg_key": b""},
        {"caps": Cap.INVITE, "role": Role.ADMIN},
        {"prefixes": (ipaddress.ip_network("10.1.0.0/16"),)},
        {"max_uses": 1_000_000, "member_ttl": U64, "not_after": U64},
    ],
)
def test_valid_certificates_decode_alike(changes: dict[str, object]) -> None:
    raw = certificate(**changes).raw
    items, _ = items_of(raw)
    fast, general = both(items, raw)
    assert isinstance(fast, Certificate)
    assert fast == general
    assert decode_untrusted(raw, Certificate) == general


def test_a_chain_and_too_few_or_many_fields_go_to_the_general_decoder() -> None:
    admin = certificate(role=Role.ADMIN, caps=Cap.INVITE)
    raw = certificate(chain=(admin,)).raw
    items, _ = items_of(raw)
    fast, general = both(items, raw)
    assert isinstance(fast, Certificate)
    assert fast == general
    assert fast.chain == (admin,)
    for changed in (items[:-1], [*items, 0]):
        assert both(changed, raw)[0] == both(changed, raw)[1]
        assert isinstance(both(changed, raw)[0], tuple)  # refused
