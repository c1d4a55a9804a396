"""Record types: kinds, roles, capabilities, limits, and the frozen wire dataclasses.

Every record travels as ``[body, signature]`` where ``body`` is the canonical msgpack array
``[kind, version, field...]`` and ``signature`` is Ed25519 over ``context(kind) || body``.
docs/wire-format.md describes every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any

from meshd.addressing import Prefix
from meshd.errors import DecodeError
from meshd.records.announcement import Announcement
from meshd.records.body import Signed
from meshd.trust.keys import SIG_LEN, NodeKey, WgKey

VERSION = 1
MAX_RECORD = 8192
MAX_NAME = 64
MAX_REASON = 256
MAX_PREFIXES = 32
MAX_ENDPOINTS = 16
MAX_EXTENSIONS = 8
"""An announcement may carry this many items after ``relays`` that this release does not
know and ignores (docs/wire-format.md §6.5): the next field needs no flag day."""
MAX_ENDPOINT_LEN = 64
MAX_ADDR_LEN = 256
MAX_CHAIN = 1  # an admin certificate is the only link between the root and an issued record
# Enrollment ids a revocation may name as its subject's sponsorships that still stand (a
# subject that sponsored more is revoked with several revocations; their lists add up).
MAX_SPONSORED = 320
U64 = 2**64 - 1


class Kind(IntEnum):
    NETWORK = 1
    CERTIFICATE = 2
    ENROLLMENT = 3
    ADMISSION = 4
    ANNOUNCEMENT = 5
    REVOCATION = 6
    INVITE = 7
    WG_ROTATION = 8
    RENEWAL = 9
    LEAVE = 10
    ROLLOVER = 11
    HANDOVER = 12
    ADMIN_HANDOVER = 13


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


RECORD_ID_LEN = 16


# --- the records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Network(Signed):
    """The network's definition, signed by its root key: the anchor every member holds."""

    root_key: bytes
    name: str
    created_at: int
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.root_key


@dataclass(frozen=True, slots=True)
class Certificate(Signed):
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
    wg_key: WgKey
    chain: tuple[Certificate, ...]
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.issuer


@dataclass(frozen=True, slots=True)
class Enrollment(Signed):
    """A joiner's request, signed with the invite's secret key."""

    network_id: bytes
    invite: Certificate
    node_key: NodeKey
    wg_key: WgKey
    name: str
    created_at: int
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.invite.subject


@dataclass(frozen=True, slots=True)
class Admission(Signed):
    """A member's countersignature of an enrollment, with the time on the sponsor's clock."""

    network_id: bytes
    sponsor: bytes
    admitted_at: int
    enrollment: Enrollment
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.sponsor


@dataclass(frozen=True, slots=True)
class Revocation(Signed):
    """The permanent exclusion of a member, invite or admin key, signed by root or an admin."""

    network_id: bytes
    issuer: bytes
    target: bytes
    target_role: Role
    issued_at: int
    expires_at: int
    reason: str
    chain: tuple[Certificate, ...]
    # Record ids of the enrollments whose admissions, countersigned by the target (or, for an
    # invite or admin key, by a member under it), still stand; the target's other
    # countersignatures do not, whatever date they bear. Sorted, no repeats. None for a
    # *legacy* revocation, written before the list existed (9 body items instead of 10): while
    # every revocation of a key is legacy, the key's countersignatures dated before the
    # earliest of them stand (meshd.membership.standing).
    sponsored: tuple[bytes, ...] | None
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.issuer

    @property
    def legacy(self) -> bool:
        """Written before revocations listed what their subject sponsored."""
        return self.sponsored is None


@dataclass(frozen=True, slots=True)
class Invite(Signed):
    """The payload of an invite token: everything a joiner needs, signed by the invite key."""

    network: Network
    certificate: Certificate
    secret: bytes = field(repr=False)
    bootstrap: tuple[str, ...]
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.certificate.subject


@dataclass(frozen=True, slots=True)
class WgRotation(Signed):
    """A member's new WireGuard key, signed by its node key; the highest ``counter`` wins."""

    network_id: bytes
    node_key: NodeKey
    counter: int
    issued_at: int
    wg_key: WgKey
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.node_key


@dataclass(frozen=True, slots=True)
class Renewal(Signed):
    """A member's standing extended to ``not_after``, signed by the root or an admin with the
    invite capability; no new enrollment."""

    network_id: bytes
    issuer: bytes
    subject: bytes
    role: Role
    issued_at: int
    not_after: int
    chain: tuple[Certificate, ...]
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.issuer


@dataclass(frozen=True, slots=True)
class Leave(Signed):
    """A member's own departure, signed by its node key: its membership ends for good."""

    network_id: bytes
    node_key: NodeKey
    issued_at: int
    reason: str
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.node_key


@dataclass(frozen=True, slots=True)
class Rollover(Signed):
    """The root hands the network over to a new root key: certificates under either are
    accepted until ``overlap_until``, afterwards only those under the new one."""

    network_id: bytes
    old_root: bytes
    new_root: bytes
    issued_at: int
    overlap_until: int
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.old_root


@dataclass(frozen=True, slots=True)
class Handover(Signed):
    """A member's node key hands its membership over to a new node key (``meshd rotate
    node``): signed by the old key, accepted by the new one (``new_signature``)."""

    network_id: bytes
    old_key: bytes
    new_key: bytes
    issued_at: int
    wg_key: WgKey
    # The credential handed over: the member's enrolled credential (a certificate or an
    # admission). A *legacy* hand-over (8 body items, ``previous`` None) nests instead the old
    # key's own credential, which may be a hand-over.
    credential: Certificate | Admission | Handover
    sponsored: tuple[bytes, ...]  # enrollment ids the old key countersigned that keep standing
    new_signature: bytes
    # The record id of the hand-over that gave ``old_key`` its membership, or b"" when
    # ``old_key`` is the enrolled key: a chain of hand-overs is linked by id, not nested.
    previous: bytes | None
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.old_key

    @property
    def legacy(self) -> bool:
        """Written before hand-overs were linked by id (its credential may nest a chain)."""
        return self.previous is None


HANDOVER_ACCEPT_CONTEXT = b"meshd/v1/handover-accept\x00"


def handover_acceptance(network_id: bytes, old_key: bytes, new_key: bytes) -> bytes:
    """What the new key signs (under HANDOVER_ACCEPT_CONTEXT) to accept a hand-over."""
    return network_id + old_key + new_key


@dataclass(frozen=True, slots=True)
class AdminHandover(Signed):
    """The root replaces an admin key (``meshd admin rotate``): ``new_cert`` certifies the
    successor with the old key's grants; what the old key signed up to ``issued_at`` keeps
    standing, nothing it signs dated later counts."""

    network_id: bytes
    root: bytes
    old_cert: Certificate  # a certificate of the admin key handed over
    new_cert: Certificate  # the successor's admin certificate, signed by ``root``
    issued_at: int  # the cut-off
    raw: bytes

    @property
    def signer(self) -> bytes:
        return self.root

    @property
    def old_key(self) -> bytes:
        return self.old_cert.subject

    @property
    def new_key(self) -> bytes:
        return self.new_cert.subject


Record = (
    Network
    | Certificate
    | Enrollment
    | Admission
    | Announcement
    | Revocation
    | Invite
    | WgRotation
    | Renewal
    | Leave
    | Rollover
    | Handover
    | AdminHandover
)
SignedRecord = Record

KIND_OF: dict[type[Any], Kind] = {
    Network: Kind.NETWORK,
    Certificate: Kind.CERTIFICATE,
    Enrollment: Kind.ENROLLMENT,
    Admission: Kind.ADMISSION,
    Announcement: Kind.ANNOUNCEMENT,
    Revocation: Kind.REVOCATION,
    Invite: Kind.INVITE,
    WgRotation: Kind.WG_ROTATION,
    Renewal: Kind.RENEWAL,
    Leave: Kind.LEAVE,
    Rollover: Kind.ROLLOVER,
    Handover: Kind.HANDOVER,
    AdminHandover: Kind.ADMIN_HANDOVER,
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
