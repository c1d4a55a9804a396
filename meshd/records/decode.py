"""Decoding of untrusted record bytes: structure only, no signature is checked here.

Every function that takes untrusted bytes ends in ``_untrusted`` and raises DecodeError, never
anything else. Every field's type and bounds are checked as it is read.

This module holds the entry points (``decode_record_untrusted``, ``decode_untrusted``), the
envelope, the dispatch by kind (``_DECODERS``) and the decoders of the records that nest other
records (certificates with their chain, enrollments, admissions, revocations, invites,
renewals, hand-overs, admin hand-overs), which decode them by calling back into
``decode_untrusted``: the recursion stays in one module. Beside it:

- meshd.records.fields: the field cursor ``_Fields`` and the item parsers (prefixes, texts,
  record ids) and the shared keys and ids;
- meshd.records.flat: the decoders of the records that nest none, the announcement's hot
  path among them.

The hot paths: an announcement is recognised by its first three bytes and goes to
``_announcement_fast``; a certificate goes to ``_certificate_fast``. Each checks what the
general decoder checks without the cursor, and hands anything unusual to it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, TypeVar

from meshd.encoding import unpack_body_untrusted, unpack_canonical_untrusted
from meshd.errors import DecodeError
from meshd.records.fields import _Fields, _prefix_untrusted, _record_id_item, _share, _text_item
from meshd.records.flat import (
    _announcement,
    _announcement_fast,
    _leave,
    _network,
    _rollover,
    _wg_rotation,
)
from meshd.records.types import (
    ALL_CAPS,
    MAX_ADDR_LEN,
    MAX_CHAIN,
    MAX_ENDPOINTS,
    MAX_NAME,
    MAX_PREFIXES,
    MAX_REASON,
    MAX_RECORD,
    MAX_SPONSORED,
    RECORD_ID_LEN,
    U64,
    VERSION,
    AdminHandover,
    Admission,
    Cap,
    Certificate,
    Enrollment,
    Handover,
    Invite,
    Kind,
    Network,
    Record,
    Renewal,
    Revocation,
    Role,
    split_envelope_untrusted,
)
from meshd.trust.keys import FINGERPRINT_LEN, KEY_LEN, SIG_LEN, NodeKey, WgKey

T = TypeVar("T")

_KINDS = {int(kind): kind for kind in Kind}
# An announcement's body starts with its array header (9 items; a relay's 10), its kind,
# then the version.
_ANNOUNCEMENT_HEADS = (
    bytes([0x99, Kind.ANNOUNCEMENT, VERSION]),
    bytes([0x9A, Kind.ANNOUNCEMENT, VERSION]),
)
_CREDENTIAL_KINDS = (Kind.CERTIFICATE, Kind.ADMISSION, Kind.HANDOVER)


def _envelope_untrusted(data: bytes) -> tuple[Kind, list[Any], bytes]:
    body, signature = split_envelope_untrusted(data)
    return _body_untrusted(body, signature)


def _body_untrusted(body: bytes, signature: bytes) -> tuple[Kind, list[Any], bytes]:
    # Every field's type is checked by _Fields and the item parsers (meshd.records.fields).
    items = unpack_canonical_untrusted(body, max_size=MAX_RECORD, what="record", check_types=False)
    if type(items) is not list or len(items) < 2:
        raise DecodeError("record: body must be [kind, version, ...]")
    kind_value, version = items[0], items[1]
    kind = _KINDS.get(kind_value) if type(kind_value) is int else None
    if kind is None:
        raise DecodeError(f"record: unknown record kind {kind_value!r}")
    if type(version) is not int or version != VERSION:
        raise DecodeError(f"record: unsupported version {version!r} (this meshd speaks {VERSION})")
    return kind, items, signature


def decode_record_untrusted(data: bytes, *, depth: int = 0) -> Record:
    """Parse any record. Raises DecodeError, never anything else; checks no signature."""
    if depth > 3:
        raise DecodeError("record: nested too deeply")
    if type(data) is not bytes:
        if not isinstance(data, bytearray | memoryview):
            raise DecodeError("record: expected bytes")
        data = bytes(data)
    body, sig = split_envelope_untrusted(data)
    if body[:3] in _ANNOUNCEMENT_HEADS:
        # The hot path (most records are announcements): 9 or 10 items, kind and version known.
        return _announcement_fast(unpack_body_untrusted(body), data)
    kind, items, _ = _body_untrusted(body, sig)
    if kind is Kind.CERTIFICATE:
        return _certificate_fast(items, data, depth)  # a member's credential
    return _DECODERS[kind](_Fields(items[2:], kind), data, depth)


def decode_untrusted(data: bytes, expected: type[T], *, depth: int = 0) -> T:
    """Parse a record that must be of type ``expected``."""
    record = decode_record_untrusted(data, depth=depth)
    if not isinstance(record, expected):
        raise DecodeError(
            f"expected a {expected.__name__.lower()} record, got a {type(record).__name__.lower()}"
        )
    return record


def _certificate(f: _Fields, raw: bytes, depth: int) -> Certificate:
    network_id = _share(f.blob("network_id", FINGERPRINT_LEN))
    issuer = _share(f.blob("issuer", KEY_LEN))
    subject = f.blob("subject", KEY_LEN)
    role_value = f.uint("role", 255)
    if role_value not in Role._value2member_map_:
        raise DecodeError(f"certificate: unknown role {role_value}")
    serial = f.blob("serial", 16)
    not_before = f.uint("not_before")
    not_after = f.uint("not_after")
    caps = f.uint("caps", int(ALL_CAPS))
    name = f.text("name", MAX_NAME)
    prefixes = f.array("prefixes", MAX_PREFIXES, _prefix_untrusted)
    max_uses = f.uint("max_uses", 1_000_000)
    member_ttl = f.uint("member_ttl")
    wg_key = f.blob("wg_key", maximum=KEY_LEN)
    if wg_key and len(wg_key) != KEY_LEN:
        raise DecodeError("certificate: wg_key must be empty or 32 bytes")
    chain = f.array("chain", MAX_CHAIN, lambda b: _nested(b, Certificate, depth))
    f.end()
    return Certificate(
        network_id,
        issuer,
        subject,
        Role(role_value),
        serial,
        not_before,
        not_after,
        Cap(caps),
        name,
        prefixes,
        max_uses,
        member_ttl,
        WgKey(wg_key),
        chain,
        raw,
    )


_ALL_CAPS = int(ALL_CAPS)
_ROLES = Role._value2member_map_


def _certificate_fast(items: list[Any], raw: bytes, depth: int) -> Certificate:
    """The usual certificate (no prefixes, no chain, an ASCII name) with the same checks as
    :func:`_certificate`, without the cursor: 10,000 members' certificates are decoded at
    every start. Anything else goes to :func:`_certificate`, which names what is wrong."""
    if len(items) != 16:
        return _certificate(_Fields(items[2:], Kind.CERTIFICATE), raw, depth)
    (_, _, network_id, issuer, subject, role, serial, not_before, not_after, caps, name,
     prefixes, max_uses, member_ttl, wg_key, chain) = items  # fmt: skip
    if (
        type(network_id) is not bytes
        or len(network_id) != FINGERPRINT_LEN
        or type(issuer) is not bytes
        or len(issuer) != KEY_LEN
        or type(subject) is not bytes
        or len(subject) != KEY_LEN
        or type(role) is not int
        or role not in _ROLES
        or type(serial) is not bytes
        or len(serial) != 16
        or type(not_before) is not int
        or not 0 <= not_before <= U64
        or type(not_after) is not int
        or not 0 <= not_after <= U64
        or type(caps) is not int
        or not 0 <= caps <= _ALL_CAPS
        or type(name) is not str
        or not name.isascii()  # then its length in bytes is len()
        or len(name) > MAX_NAME
        or not name.isprintable()
        or type(prefixes) is not list
        or prefixes
        or type(max_uses) is not int
        or not 0 <= max_uses <= 1_000_000
        or type(member_ttl) is not int
        or not 0 <= member_ttl <= U64
        or type(wg_key) is not bytes
        or len(wg_key) not in (0, KEY_LEN)
        or type(chain) is not list
        or chain
    ):
        return _certificate(_Fields(items[2:], Kind.CERTIFICATE), raw, depth)
    return Certificate(
        _share(network_id),
        _share(issuer),
        subject,
        Role(role),
        serial,
        not_before,
        not_after,
        Cap(caps),
        name,
        (),
        max_uses,
        member_ttl,
        WgKey(wg_key),
        (),
        raw,
    )


# The invites that enrollments nest, decoded: the members of one invite (up to its uses, a
# hundred in a team's) each nest its same bytes, so one decoded certificate serves them all,
# at the depth it was decoded at (its chain's depth depends on it). Bounded: when full it
# starts again.
_INVITES: dict[tuple[bytes, int], Certificate] = {}
MAX_INVITES = 256


def forget_invites() -> None:
    """Let go of the invites decoded so far (:func:`_invite_of`): a batch that shared them
    ended (a store's load, where members of invites of one use each left one here)."""
    _INVITES.clear()


def _invite_of(value: Any, depth: int) -> Certificate:
    """An enrollment's invite, decoded once for every enrollment that nests the same bytes
    (the same checks: a refused one is not kept, and is refused again)."""
    if type(value) is not bytes:
        return _nested(value, Certificate, depth)
    key = (value, depth)
    invite = _INVITES.get(key)
    if invite is None:
        invite = _nested(value, Certificate, depth)
        if len(_INVITES) >= MAX_INVITES:
            _INVITES.clear()
        _INVITES[key] = invite
    return invite


def _enrollment(f: _Fields, raw: bytes, depth: int) -> Enrollment:
    network_id = _share(f.blob("network_id", FINGERPRINT_LEN))
    invite = _invite_of(f.blob("invite"), depth)
    node_key = f.blob("node_key", KEY_LEN)
    wg_key = f.blob("wg_key", KEY_LEN)
    name = f.text("name", MAX_NAME)
    created_at = f.uint("created_at")
    f.end()
    return Enrollment(network_id, invite, NodeKey(node_key), WgKey(wg_key), name, created_at, raw)


def _admission(f: _Fields, raw: bytes, depth: int) -> Admission:
    network_id = _share(f.blob("network_id", FINGERPRINT_LEN))
    sponsor = _share(f.blob("sponsor", KEY_LEN))
    admitted_at = f.uint("admitted_at")
    enrollment = _nested(f.blob("enrollment"), Enrollment, depth)
    f.end()
    return Admission(network_id, sponsor, admitted_at, enrollment, raw)


def _revocation(f: _Fields, raw: bytes, depth: int) -> Revocation:
    network_id = _share(f.blob("network_id", FINGERPRINT_LEN))
    issuer = _share(f.blob("issuer", KEY_LEN))
    target = f.blob("target", KEY_LEN)
    role_value = f.uint("target_role", 255)
    if role_value not in Role._value2member_map_:
        raise DecodeError(f"revocation: unknown target role {role_value}")
    issued_at = f.uint("issued_at")
    expires_at = f.uint("expires_at")
    reason = f.text("reason", MAX_REASON)
    chain = f.array("chain", MAX_CHAIN, lambda b: _nested(b, Certificate, depth))
    # 9 items: a legacy revocation, written before the list existed (no list: None).
    sponsored = f.array("sponsored", MAX_SPONSORED, _record_id_item) if f.more() else None
    f.end()
    if sponsored is not None and any(a >= b for a, b in itertools.pairwise(sponsored)):
        raise DecodeError("revocation: sponsored must be sorted, without repeats")
    return Revocation(
        network_id,
        issuer,
        target,
        Role(role_value),
        issued_at,
        expires_at,
        reason,
        chain,
        sponsored,
        raw,
    )


def _invite(f: _Fields, raw: bytes, depth: int) -> Invite:
    network = _nested(f.blob("network"), Network, depth)
    certificate = _nested(f.blob("certificate"), Certificate, depth)
    secret = f.blob("secret", KEY_LEN)
    bootstrap = f.array("bootstrap", MAX_ENDPOINTS, _text_item(MAX_ADDR_LEN))
    f.end()
    return Invite(network, certificate, secret, bootstrap, raw)


def _renewal(f: _Fields, raw: bytes, depth: int) -> Renewal:
    network_id = _share(f.blob("network_id", FINGERPRINT_LEN))
    issuer = _share(f.blob("issuer", KEY_LEN))
    subject = f.blob("subject", KEY_LEN)
    role_value = f.uint("role", 255)
    if role_value not in Role._value2member_map_:
        raise DecodeError(f"renewal: unknown role {role_value}")
    issued_at = f.uint("issued_at")
    not_after = f.uint("not_after")
    chain = f.array("chain", MAX_CHAIN, lambda b: _nested(b, Certificate, depth))
    f.end()
    return Renewal(network_id, issuer, subject, Role(role_value), issued_at, not_after, chain, raw)


def _handover(f: _Fields, raw: bytes, depth: int) -> Handover:
    network_id = _share(f.blob("network_id", FINGERPRINT_LEN))
    old_key = f.blob("old_key", KEY_LEN)
    new_key = f.blob("new_key", KEY_LEN)
    issued_at = f.uint("issued_at")
    wg_key = f.blob("wg_key", KEY_LEN)
    nested = f.blob("credential")
    if _body_untrusted(*split_envelope_untrusted(nested))[0] not in _CREDENTIAL_KINDS:
        raise DecodeError("handover: credential must be a certificate, admission or hand-over")
    # Decoded at the hand-over's own depth, so that an admission under an admin's invite
    # fits; a legacy chain of hand-overs is bounded by the record size.
    credential = decode_record_untrusted(nested, depth=depth)
    if not isinstance(credential, Certificate | Admission | Handover):
        raise DecodeError("handover: credential must be a certificate, admission or hand-over")
    sponsored = f.array("sponsored", MAX_SPONSORED, _record_id_item)
    new_signature = f.blob("new_signature", SIG_LEN)
    # 8 items: a legacy hand-over, written before hand-overs were linked by id (None).
    previous = f.blob("previous", maximum=RECORD_ID_LEN) if f.more() else None
    f.end()
    if previous is not None:
        if previous and len(previous) != RECORD_ID_LEN:
            raise DecodeError(f"handover: previous must be empty or {RECORD_ID_LEN} bytes")
        if isinstance(credential, Handover):
            raise DecodeError("handover: names its predecessor by id, it does not nest it")
    elif isinstance(credential, Handover) and not credential.legacy:
        # A nested link is checked by nobody: a legacy hand-over nests legacy ones only.
        raise DecodeError("handover: a legacy hand-over nests only legacy hand-overs")
    if any(a >= b for a, b in itertools.pairwise(sponsored)):
        raise DecodeError("handover: sponsored must be sorted, without repeats")
    return Handover(
        network_id,
        old_key,
        new_key,
        issued_at,
        WgKey(wg_key),
        credential,
        sponsored,
        new_signature,
        previous,
        raw,
    )


def _admin_handover(f: _Fields, raw: bytes, depth: int) -> AdminHandover:
    network_id = _share(f.blob("network_id", FINGERPRINT_LEN))
    root = f.blob("root", KEY_LEN)
    old_cert = _nested(f.blob("old_cert"), Certificate, depth)
    new_cert = _nested(f.blob("new_cert"), Certificate, depth)
    issued_at = f.uint("issued_at")
    f.end()
    return AdminHandover(network_id, root, old_cert, new_cert, issued_at, raw)


def _nested(value: Any, expected: type[T], depth: int) -> T:
    if not isinstance(value, bytes):
        raise DecodeError("nested record must be bytes")
    return decode_untrusted(value, expected, depth=depth + 1)


_DECODERS: dict[Kind, Callable[[_Fields, bytes, int], Record]] = {
    Kind.NETWORK: _network,
    Kind.CERTIFICATE: _certificate,
    Kind.ENROLLMENT: _enrollment,
    Kind.ADMISSION: _admission,
    Kind.ANNOUNCEMENT: _announcement,
    Kind.REVOCATION: _revocation,
    Kind.INVITE: _invite,
    Kind.WG_ROTATION: _wg_rotation,
    Kind.RENEWAL: _renewal,
    Kind.LEAVE: _leave,
    Kind.ROLLOVER: _rollover,
    Kind.HANDOVER: _handover,
    Kind.ADMIN_HANDOVER: _admin_handover,
}
