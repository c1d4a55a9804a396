"""Wire records: frozen dataclasses and their canonical encoding.

Every record travels as ``[body, signature]`` where ``body`` is the canonical msgpack array
``[kind, version, field...]`` and ``signature`` is Ed25519 over ``context(kind) || body``. The
bytes signed are the bytes sent. Records that need their issuer chain carry it as the raw bytes
of the issuing certificates, decoded (and checked) recursively. docs/wire-format.md describes
every field.

This module only parses and builds. Whether a record is to be trusted (signatures, chains,
validity, revocation) is decided by meshd.trust and meshd.membership.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any, TypeVar

from meshd.addressing import Prefix
from meshd.encoding import pack, unpack_canonical_untrusted
from meshd.errors import DecodeError
from meshd.keys import FINGERPRINT_LEN, KEY_LEN, SIG_LEN, SigningKey

VERSION = 1
MAX_RECORD = 8192
MAX_NAME = 64
MAX_REASON = 256
MAX_PREFIXES = 32
MAX_ENDPOINTS = 16
MAX_ENDPOINT_LEN = 64
MAX_ADDR_LEN = 256
MAX_CHAIN = 1  # an admin certificate is the only link between the root and an issued record
U64 = 2**64 - 1


class Kind(IntEnum):
    NETWORK = 1
    CERTIFICATE = 2
    ENROLLMENT = 3
    ADMISSION = 4
    ANNOUNCEMENT = 5
    REVOCATION = 6
    INVITE = 7


CONTEXTS: dict[Kind, bytes] = {kind: f"meshd/v1/{kind.name.lower()}\x00".encode() for kind in Kind}


class Role(IntEnum):
    ADMIN = 1
    INVITE = 2
    MEMBER = 3


class Cap(IntFlag):
    NONE = 0
    INVITE = 1
    REVOKE = 2


ALL_CAPS = Cap.INVITE | Cap.REVOKE


def record_id(raw: bytes) -> bytes:
    """A record's identity: the first 16 bytes of SHA-256 over its encoded bytes."""
    return hashlib.sha256(raw).digest()[:16]


# --- the records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Network:
    """The network's definition, signed by its root key: the anchor every member holds."""

    root_key: bytes
    name: str
    created_at: int
    signature: bytes
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.root_key


@dataclass(frozen=True, slots=True)
class Certificate:
    """A key certified by the root or an admin: an admin, an invite, or a member."""

    network_id: bytes
    issuer: bytes
    subject: bytes
    role: Role
    serial: bytes
    not_before: int
    not_after: int
    caps: Cap
    name: str
    prefixes: tuple[Prefix, ...]
    max_uses: int
    member_ttl: int
    wg_key: bytes
    chain: tuple[Certificate, ...]
    signature: bytes
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.issuer


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A joiner's request, signed with the invite's secret key."""

    network_id: bytes
    invite: Certificate
    node_key: bytes
    wg_key: bytes
    name: str
    created_at: int
    signature: bytes
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.invite.subject


@dataclass(frozen=True, slots=True)
class Admission:
    """A member's countersignature of an enrollment, with the time on the sponsor's clock."""

    network_id: bytes
    sponsor: bytes
    admitted_at: int
    enrollment: Enrollment
    signature: bytes
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.sponsor


@dataclass(frozen=True, slots=True)
class Announcement:
    """A member's signed statement of where it is: endpoints, libp2p addresses, prefixes."""

    network_id: bytes
    node_key: bytes
    seq: int
    issued_at: int
    endpoints: tuple[str, ...]
    addrs: tuple[str, ...]
    prefixes: tuple[Prefix, ...]
    signature: bytes
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.node_key


@dataclass(frozen=True, slots=True)
class Revocation:
    """The permanent exclusion of a member, invite or admin key, signed by root or an admin."""

    network_id: bytes
    issuer: bytes
    target: bytes
    target_role: Role
    issued_at: int
    expires_at: int
    reason: str
    chain: tuple[Certificate, ...]
    signature: bytes
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.issuer


@dataclass(frozen=True, slots=True)
class Invite:
    """The payload of an invite token: everything a joiner needs, signed by the invite key."""

    network: Network
    certificate: Certificate
    secret: bytes = field(repr=False)
    bootstrap: tuple[str, ...]
    signature: bytes
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.certificate.subject


Record = Network | Certificate | Enrollment | Admission | Announcement | Revocation | Invite
SignedRecord = Record

KIND_OF: dict[type[Any], Kind] = {
    Network: Kind.NETWORK,
    Certificate: Kind.CERTIFICATE,
    Enrollment: Kind.ENROLLMENT,
    Admission: Kind.ADMISSION,
    Announcement: Kind.ANNOUNCEMENT,
    Revocation: Kind.REVOCATION,
    Invite: Kind.INVITE,
}


def kind_of(record: Record) -> Kind:
    return KIND_OF[type(record)]


def split_envelope_untrusted(data: bytes) -> tuple[bytes, bytes]:
    """Split a record's canonical ``[body, signature]`` encoding without a general decoder.

    The envelope has exactly one canonical form: the fixarray header 0x92, the body as msgpack
    bin 8 (up to 255 bytes) or bin 16 (256 bytes and more), then the 64-byte signature as bin 8.
    Anything else is refused.
    """
    size = len(data)
    if size > MAX_RECORD:
        raise DecodeError(f"record: {size} bytes is over the limit of {MAX_RECORD}")
    if size < 3 + 2 + SIG_LEN or data[0] != 0x92:
        raise DecodeError("record: not a [body, signature] pair")
    if data[1] == 0xC4:
        start, length = 3, data[2]
    elif data[1] == 0xC5:
        start, length = 4, int.from_bytes(data[2:4], "big")
        if length < 256:
            raise DecodeError("record: not in canonical encoding")
    else:
        raise DecodeError("record: the body must be bytes")
    end = start + length
    if end + 2 + SIG_LEN != size or data[end] != 0xC4 or data[end + 1] != SIG_LEN:
        raise DecodeError("record: truncated, or the signature is not 64 bytes")
    return bytes(data[start:end]), bytes(data[end + 2 :])


def signed_body(record: Record) -> bytes:
    """The bytes a record's signature covers, after the context string."""
    return split_envelope_untrusted(record.raw)[0]


# --- decoding -----------------------------------------------------------------------------

T = TypeVar("T")


class _Fields:
    """A cursor over the fields of a decoded body; every accessor checks type and bounds."""

    __slots__ = ("_items", "_kind", "_pos")

    def __init__(self, items: list[Any], kind: Kind) -> None:
        self._items = items
        self._pos = 0
        self._kind = kind

    @property
    def _what(self) -> str:
        return f"record ({self._kind.name.lower()})"

    def _next(self) -> Any:
        if self._pos >= len(self._items):
            raise DecodeError(f"{self._what}: too few fields")
        item = self._items[self._pos]
        self._pos += 1
        return item

    def end(self) -> None:
        if self._pos != len(self._items):
            raise DecodeError(f"{self._what}: too many fields")

    def uint(self, name: str, maximum: int = U64) -> int:
        value = self._next()
        if type(value) is not int or not 0 <= value <= maximum:
            raise DecodeError(f"{self._what}: {name} must be an integer up to {maximum}")
        return value

    def blob(self, name: str, length: int | None = None, maximum: int = MAX_RECORD) -> bytes:
        value = self._next()
        if not isinstance(value, bytes):
            raise DecodeError(f"{self._what}: {name} must be bytes")
        if length is not None and len(value) != length:
            raise DecodeError(f"{self._what}: {name} must be {length} bytes")
        if len(value) > maximum:
            raise DecodeError(f"{self._what}: {name} is over {maximum} bytes")
        return value

    def text(self, name: str, maximum: int) -> str:
        value = self._next()
        if not isinstance(value, str):
            raise DecodeError(f"{self._what}: {name} must be text")
        if len(value.encode()) > maximum:
            raise DecodeError(f"{self._what}: {name} is over {maximum} bytes")
        if not value.isprintable():
            # Also refuses C1 controls and bidi overrides, which would mislead a terminal.
            raise DecodeError(f"{self._what}: {name} holds unprintable characters")
        return value

    def array(self, name: str, maximum: int, item: Callable[[Any], T]) -> tuple[T, ...]:
        value = self._next()
        if not isinstance(value, list):
            raise DecodeError(f"{self._what}: {name} must be an array")
        if len(value) > maximum:
            raise DecodeError(f"{self._what}: {name} has more than {maximum} entries")
        return tuple(item(v) for v in value)


def _prefix_untrusted(value: Any) -> Prefix:
    if not (isinstance(value, list) and len(value) == 2):
        raise DecodeError("prefix: must be [address, length]")
    address, length = value
    if not isinstance(address, bytes) or len(address) not in (4, 16):
        raise DecodeError("prefix: address must be 4 or 16 bytes")
    if type(length) is not int or not 0 <= length <= len(address) * 8:
        raise DecodeError("prefix: length out of range")
    try:
        if len(address) == 4:
            return ipaddress.IPv4Network((address, length), strict=True)
        return ipaddress.IPv6Network((address, length), strict=True)
    except ValueError:
        raise DecodeError("prefix: host bits set") from None


def _text_item(maximum: int) -> Callable[[Any], str]:
    def item(value: Any) -> str:
        if not isinstance(value, str) or len(value.encode()) > maximum or not value.isprintable():
            raise DecodeError(f"text entry must be printable and at most {maximum} bytes")
        return value

    return item


_KINDS = {int(kind): kind for kind in Kind}


_ENDPOINT_ITEM = _text_item(MAX_ENDPOINT_LEN)
_ADDR_ITEM = _text_item(MAX_ADDR_LEN)


def _envelope_untrusted(data: bytes) -> tuple[Kind, list[Any], bytes]:
    body, signature = split_envelope_untrusted(data)
    # Every field's type is checked by _Fields and the item parsers below.
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
    kind, items, sig = _envelope_untrusted(data)
    if kind is Kind.ANNOUNCEMENT:
        return _announcement_fast(items, sig, data)
    return _DECODERS[kind](_Fields(items[2:], kind), sig, data, depth)


def decode_untrusted(data: bytes, expected: type[T], *, depth: int = 0) -> T:
    """Parse a record that must be of type ``expected``."""
    record = decode_record_untrusted(data, depth=depth)
    if not isinstance(record, expected):
        raise DecodeError(
            f"expected a {expected.__name__.lower()} record, got a {type(record).__name__.lower()}"
        )
    return record


def _network(f: _Fields, sig: bytes, raw: bytes, depth: int) -> Network:
    root = f.blob("root_key", KEY_LEN)
    name = f.text("name", MAX_NAME)
    created = f.uint("created_at")
    f.end()
    return Network(root, name, created, sig, raw)


def _certificate(f: _Fields, sig: bytes, raw: bytes, depth: int) -> Certificate:
    network_id = f.blob("network_id", FINGERPRINT_LEN)
    issuer = f.blob("issuer", KEY_LEN)
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
        wg_key,
        chain,
        sig,
        raw,
    )


def _enrollment(f: _Fields, sig: bytes, raw: bytes, depth: int) -> Enrollment:
    network_id = f.blob("network_id", FINGERPRINT_LEN)
    invite = _nested(f.blob("invite"), Certificate, depth)
    node_key = f.blob("node_key", KEY_LEN)
    wg_key = f.blob("wg_key", KEY_LEN)
    name = f.text("name", MAX_NAME)
    created_at = f.uint("created_at")
    f.end()
    return Enrollment(network_id, invite, node_key, wg_key, name, created_at, sig, raw)


def _admission(f: _Fields, sig: bytes, raw: bytes, depth: int) -> Admission:
    network_id = f.blob("network_id", FINGERPRINT_LEN)
    sponsor = f.blob("sponsor", KEY_LEN)
    admitted_at = f.uint("admitted_at")
    enrollment = _nested(f.blob("enrollment"), Enrollment, depth)
    f.end()
    return Admission(network_id, sponsor, admitted_at, enrollment, sig, raw)


def _announcement(f: _Fields, sig: bytes, raw: bytes, depth: int) -> Announcement:
    network_id = f.blob("network_id", FINGERPRINT_LEN)
    node_key = f.blob("node_key", KEY_LEN)
    seq = f.uint("seq")
    issued_at = f.uint("issued_at")
    endpoints = f.array("endpoints", MAX_ENDPOINTS, _text_item(MAX_ENDPOINT_LEN))
    addrs = f.array("addrs", MAX_ENDPOINTS, _text_item(MAX_ADDR_LEN))
    prefixes = f.array("prefixes", MAX_PREFIXES, _prefix_untrusted)
    f.end()
    return Announcement(network_id, node_key, seq, issued_at, endpoints, addrs, prefixes, sig, raw)


def _announcement_fast(items: list[Any], sig: bytes, raw: bytes) -> Announcement:
    """The hot path of ingest: the same checks as _announcement, without the cursor."""
    if len(items) != 9:
        return _announcement(_Fields(items[2:], Kind.ANNOUNCEMENT), sig, raw, 0)
    _, _, network_id, node_key, seq, issued_at, endpoints, addrs, prefixes = items
    if (
        type(network_id) is not bytes
        or len(network_id) != FINGERPRINT_LEN
        or type(node_key) is not bytes
        or len(node_key) != KEY_LEN
        or type(seq) is not int
        or not 0 <= seq <= U64
        or type(issued_at) is not int
        or not 0 <= issued_at <= U64
        or type(endpoints) is not list
        or type(addrs) is not list
        or type(prefixes) is not list
    ):
        # Let the general decoder name the offending field.
        return _announcement(_Fields(items[2:], Kind.ANNOUNCEMENT), sig, raw, 0)
    if len(endpoints) > MAX_ENDPOINTS or len(addrs) > MAX_ENDPOINTS:
        raise DecodeError("announcement: too many endpoints or addresses")
    if len(prefixes) > MAX_PREFIXES:
        raise DecodeError("announcement: too many prefixes")
    return Announcement(
        network_id,
        node_key,
        seq,
        issued_at,
        tuple(map(_ENDPOINT_ITEM, endpoints)) if endpoints else (),
        tuple(map(_ADDR_ITEM, addrs)) if addrs else (),
        tuple(map(_prefix_untrusted, prefixes)) if prefixes else (),
        sig,
        raw,
    )


def _revocation(f: _Fields, sig: bytes, raw: bytes, depth: int) -> Revocation:
    network_id = f.blob("network_id", FINGERPRINT_LEN)
    issuer = f.blob("issuer", KEY_LEN)
    target = f.blob("target", KEY_LEN)
    role_value = f.uint("target_role", 255)
    if role_value not in Role._value2member_map_:
        raise DecodeError(f"revocation: unknown target role {role_value}")
    issued_at = f.uint("issued_at")
    expires_at = f.uint("expires_at")
    reason = f.text("reason", MAX_REASON)
    chain = f.array("chain", MAX_CHAIN, lambda b: _nested(b, Certificate, depth))
    f.end()
    return Revocation(
        network_id, issuer, target, Role(role_value), issued_at, expires_at, reason, chain, sig, raw
    )


def _invite(f: _Fields, sig: bytes, raw: bytes, depth: int) -> Invite:
    network = _nested(f.blob("network"), Network, depth)
    certificate = _nested(f.blob("certificate"), Certificate, depth)
    secret = f.blob("secret", KEY_LEN)
    bootstrap = f.array("bootstrap", MAX_ENDPOINTS, _text_item(MAX_ADDR_LEN))
    f.end()
    return Invite(network, certificate, secret, bootstrap, sig, raw)


def _nested(value: Any, expected: type[T], depth: int) -> T:
    if not isinstance(value, bytes):
        raise DecodeError("nested record must be bytes")
    return decode_untrusted(value, expected, depth=depth + 1)


_DECODERS: dict[Kind, Callable[[_Fields, bytes, bytes, int], Record]] = {
    Kind.NETWORK: _network,
    Kind.CERTIFICATE: _certificate,
    Kind.ENROLLMENT: _enrollment,
    Kind.ADMISSION: _admission,
    Kind.ANNOUNCEMENT: _announcement,
    Kind.REVOCATION: _revocation,
    Kind.INVITE: _invite,
}


# --- building -----------------------------------------------------------------------------


def encode_prefix(prefix: Prefix) -> list[Any]:
    return [prefix.network_address.packed, prefix.prefixlen]


def _seal(kind: Kind, fields: Sequence[Any], key: SigningKey) -> bytes:
    body = pack([int(kind), VERSION, *fields])
    return pack([body, key.sign(CONTEXTS[kind], body)])


def seal_unsigned(kind: Kind, fields: Sequence[Any], signature: bytes) -> bytes:
    """Encode a record with a given signature (tests use it to build hostile records)."""
    return pack([pack([int(kind), VERSION, *fields]), signature])


def make_network(root: SigningKey, name: str, created_at: int) -> Network:
    return decode_untrusted(_seal(Kind.NETWORK, [root.public, name, created_at], root), Network)


def make_certificate(
    issuer: SigningKey,
    *,
    network_id: bytes,
    subject: bytes,
    role: Role,
    serial: bytes,
    not_before: int,
    not_after: int,
    caps: Cap = Cap.NONE,
    name: str = "",
    prefixes: Sequence[Prefix] = (),
    max_uses: int = 0,
    member_ttl: int = 0,
    wg_key: bytes = b"",
    chain: Sequence[Certificate] = (),
) -> Certificate:
    fields = [
        network_id,
        issuer.public,
        subject,
        int(role),
        serial,
        not_before,
        not_after,
        int(caps),
        name,
        [encode_prefix(p) for p in prefixes],
        max_uses,
        member_ttl,
        wg_key,
        [c.raw for c in chain],
    ]
    return decode_untrusted(_seal(Kind.CERTIFICATE, fields, issuer), Certificate)


def make_enrollment(
    invite_key: SigningKey,
    *,
    invite: Certificate,
    node_key: bytes,
    wg_key: bytes,
    name: str,
    created_at: int,
) -> Enrollment:
    fields = [invite.network_id, invite.raw, node_key, wg_key, name, created_at]
    return decode_untrusted(_seal(Kind.ENROLLMENT, fields, invite_key), Enrollment)


def make_admission(sponsor: SigningKey, *, enrollment: Enrollment, admitted_at: int) -> Admission:
    fields = [enrollment.network_id, sponsor.public, admitted_at, enrollment.raw]
    return decode_untrusted(_seal(Kind.ADMISSION, fields, sponsor), Admission)


def make_announcement(
    node: SigningKey,
    *,
    network_id: bytes,
    seq: int,
    issued_at: int,
    endpoints: Sequence[str] = (),
    addrs: Sequence[str] = (),
    prefixes: Sequence[Prefix] = (),
) -> Announcement:
    fields = [
        network_id,
        node.public,
        seq,
        issued_at,
        list(endpoints),
        list(addrs),
        [encode_prefix(p) for p in prefixes],
    ]
    return decode_untrusted(_seal(Kind.ANNOUNCEMENT, fields, node), Announcement)


def make_revocation(
    issuer: SigningKey,
    *,
    network_id: bytes,
    target: bytes,
    target_role: Role,
    issued_at: int,
    expires_at: int,
    reason: str = "",
    chain: Sequence[Certificate] = (),
) -> Revocation:
    fields = [
        network_id,
        issuer.public,
        target,
        int(target_role),
        issued_at,
        expires_at,
        reason,
        [c.raw for c in chain],
    ]
    return decode_untrusted(_seal(Kind.REVOCATION, fields, issuer), Revocation)


def make_invite(
    invite_key: SigningKey,
    *,
    network: Network,
    certificate: Certificate,
    bootstrap: Sequence[str],
) -> Invite:
    fields = [network.raw, certificate.raw, invite_key.seed, list(bootstrap)]
    return decode_untrusted(_seal(Kind.INVITE, fields, invite_key), Invite)
