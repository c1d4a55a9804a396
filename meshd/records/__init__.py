"""Wire records: frozen dataclasses and their canonical encoding.

Every record travels as ``[body, signature]`` where ``body`` is the canonical msgpack array
``[kind, version, field...]`` and ``signature`` is Ed25519 over ``context(kind) || body``. The
bytes signed are the bytes sent. Records that need their issuer chain carry it as the raw bytes
of the issuing certificates, decoded (and checked) recursively. docs/wire-format.md describes
every field.

- ``types``: kinds, roles, capabilities, limits and the dataclasses;
- ``decode``: untrusted bytes to records (structure only);
- ``build``: records this node makes and signs.

This package only parses and builds. Whether a record is to be trusted (signatures, chains,
validity, revocation) is decided by meshd.trust and meshd.membership.
"""

from meshd.records.build import (
    encode_prefix,
    make_admission,
    make_announcement,
    make_certificate,
    make_enrollment,
    make_invite,
    make_leave,
    make_network,
    make_renewal,
    make_revocation,
    make_wg_rotation,
    seal_unsigned,
)
from meshd.records.decode import decode_record_untrusted, decode_untrusted
from meshd.records.types import (
    ALL_CAPS,
    CONTEXTS,
    KIND_OF,
    MAX_ADDR_LEN,
    MAX_CHAIN,
    MAX_ENDPOINT_LEN,
    MAX_ENDPOINTS,
    MAX_NAME,
    MAX_PREFIXES,
    MAX_REASON,
    MAX_RECORD,
    MAX_SPONSORED,
    RECORD_ID_LEN,
    U64,
    VERSION,
    Admission,
    Announcement,
    Cap,
    Certificate,
    Enrollment,
    Invite,
    Kind,
    Leave,
    Network,
    Record,
    Renewal,
    Revocation,
    Role,
    SignedRecord,
    WgRotation,
    kind_of,
    record_id,
    signed_body,
    split_envelope_untrusted,
)

__all__ = [
    "ALL_CAPS",
    "CONTEXTS",
    "KIND_OF",
    "MAX_ADDR_LEN",
    "MAX_CHAIN",
    "MAX_ENDPOINTS",
    "MAX_ENDPOINT_LEN",
    "MAX_NAME",
    "MAX_PREFIXES",
    "MAX_REASON",
    "MAX_RECORD",
    "MAX_SPONSORED",
    "RECORD_ID_LEN",
    "U64",
    "VERSION",
    "Admission",
    "Announcement",
    "Cap",
    "Certificate",
    "Enrollment",
    "Invite",
    "Kind",
    "Leave",
    "Network",
    "Record",
    "Renewal",
    "Revocation",
    "Role",
    "SignedRecord",
    "WgRotation",
    "decode_record_untrusted",
    "decode_untrusted",
    "encode_prefix",
    "kind_of",
    "make_admission",
    "make_announcement",
    "make_certificate",
    "make_enrollment",
    "make_invite",
    "make_leave",
    "make_network",
    "make_renewal",
    "make_revocation",
    "make_wg_rotation",
    "record_id",
    "seal_unsigned",
    "signed_body",
    "split_envelope_untrusted",
]
