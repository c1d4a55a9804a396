"""Wire records: frozen dataclasses and their canonical encoding.

Every record travels as ``[body, signature]`` where ``body`` is the canonical msgpack array
``[kind, version, field...]`` and ``signature`` is Ed25519 over ``context(kind) || body``. The
bytes signed are the bytes sent. Records that need their issuer chain carry it as the raw bytes
of the issuing certificates, decoded (and checked) recursively. docs/wire-format.md describes
every field.

- ``types``: kinds, roles, capabilities, limits and the dataclasses;
- ``ids``: a record's id (``record_id``);
- ``decode``: untrusted bytes to records (structure only): the entry points, the envelope and
  the records that nest records, over ``fields`` (the field cursor and the item parsers)
  and ``flat`` (the records that nest none, the announcement's hot path among them);
- ``build``: records this node makes and signs;
- ``elide``: a member's certificate and announcement held without the keys their holders
  keep anyway (the membership core's two records a member), put back together when asked.

This package only parses and builds. Whether a record is to be trusted (signatures, chains,
validity, revocation) is decided by meshd.trust.chain and meshd.membership.
"""

from meshd.records.announcement import Announcement
from meshd.records.build import (
    encode_prefix,
    make_admin_handover,
    make_admission,
    make_announcement,
    make_certificate,
    make_enrollment,
    make_handover,
    make_invite,
    make_leave,
    make_network,
    make_renewal,
    make_revocation,
    make_rollover,
    make_wg_rotation,
    seal_unsigned,
)
from meshd.records.decode import decode_record_untrusted, decode_untrusted
from meshd.records.ids import RecordId, record_id
from meshd.records.types import (
    ALL_CAPS,
    CONTEXTS,
    HANDOVER_ACCEPT_CONTEXT,
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
    AdminHandover,
    Admission,
    Cap,
    Certificate,
    Enrollment,
    Handover,
    Invite,
    Kind,
    Leave,
    Network,
    Record,
    Renewal,
    Revocation,
    Role,
    Rollover,
    SignedRecord,
    WgRotation,
    handover_acceptance,
    kind_of,
    signed_body,
    split_envelope_untrusted,
)

__all__ = [
    "ALL_CAPS",
    "CONTEXTS",
    "HANDOVER_ACCEPT_CONTEXT",
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
    "AdminHandover",
    "Admission",
    "Announcement",
    "Cap",
    "Certificate",
    "Enrollment",
    "Handover",
    "Invite",
    "Kind",
    "Leave",
    "Network",
    "Record",
    "RecordId",
    "Renewal",
    "Revocation",
    "Role",
    "Rollover",
    "SignedRecord",
    "WgRotation",
    "decode_record_untrusted",
    "decode_untrusted",
    "encode_prefix",
    "handover_acceptance",
    "kind_of",
    "make_admin_handover",
    "make_admission",
    "make_announcement",
    "make_certificate",
    "make_enrollment",
    "make_handover",
    "make_invite",
    "make_leave",
    "make_network",
    "make_renewal",
    "make_revocation",
    "make_rollover",
    "make_wg_rotation",
    "record_id",
    "seal_unsigned",
    "signed_body",
    "split_envelope_untrusted",
]
