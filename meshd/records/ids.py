"""Record ids: a record's identity, the first 16 bytes of SHA-256 over its encoded bytes."""

from __future__ import annotations

import hashlib
from typing import NewType

from meshd.records.types import RECORD_ID_LEN

RecordId = NewType("RecordId", bytes)
"""A record's identity (:func:`record_id`): 16 bytes; neither a node key nor a WireGuard key."""


# The last record's bytes and id: a merge asks for the id of one record several times in a
# row (the record set, the certificate cache, the credential and its origin), and each id
# it keeps is then one object, not 49 bytes each. Found by equal bytes, not only the same
# object: a credential or an announcement puts its bytes back together (a new object) each
# time they are asked for (meshd.records.elide). One tuple, read and replaced whole, so a
# worker thread computing ids at the same time sees a pair that belongs together.
_last_id: tuple[bytes, RecordId] = (b"", RecordId(b""))


def record_id(raw: bytes) -> RecordId:
    """A record's identity: the first 16 bytes of SHA-256 over its encoded bytes."""
    global _last_id
    last = _last_id
    if last[0] is raw or last[0] == raw:
        return last[1]
    rid = RecordId(hashlib.sha256(raw).digest()[:RECORD_ID_LEN])
    if type(raw) is bytes:  # immutable: the same object always has the same id
        _last_id = (raw, rid)
    return rid
