"""A decoded record's fields read again from its bytes (checked as it was decoded), for the
fields that are not kept decoded (meshd.records.announcement.Announcement; the dates of a
meshd.trust.credential.Credential, from its certificate or admission).

A record's bytes are ``[body, signature]`` in their one canonical form
(:func:`meshd.records.types.split_envelope_untrusted`): the body starts 3 bytes in (bin 8)
or 4 (bin 16) and ends 2 + 64 bytes before the end. These read bytes that decoded and were
checked already: not untrusted input. An announcement's body is ``[kind, version,
network_id, node_key, seq, issued_at, endpoints, addrs, prefixes, relays?, ...]``: its
network id and node key have fixed lengths, so its sequence number and date lie at known
offsets, each the shortest msgpack form of an unsigned integer; so do a certificate's
dates (after its network id, issuer, subject, role and serial) and an admission's date
(after its network id and sponsor).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack

from meshd.trust.keys import FINGERPRINT_LEN, KEY_LEN, SIG_LEN

# msgpack's unsigned integers after their first byte (a positive fixint is the byte itself):
# the reader of each, and its width.
_UINT: dict[int, tuple[Callable[[bytes, int], tuple[int]], int]] = {
    0xCC: (struct.Struct(">B").unpack_from, 1),
    0xCD: (struct.Struct(">H").unpack_from, 2),
    0xCE: (struct.Struct(">I").unpack_from, 4),
    0xCF: (struct.Struct(">Q").unpack_from, 8),
}
_U32 = struct.Struct(">I").unpack_from
# An announcement's sequence number (an admission's admitted_at), from the first byte of its
# body's items: after the kind, the version, its network id and a key, each bin 8.
_KEYED_UINT_OFFSET = 1 + 1 + 2 + FINGERPRINT_LEN + 2 + KEY_LEN
# A certificate's not_before, the same way (after the kind, the version, its network id,
# issuer and subject, its role, a positive fixint, and its serial of 16 bytes).
_NOT_BEFORE_OFFSET = 1 + 1 + 2 + FINGERPRINT_LEN + 2 + KEY_LEN + 2 + KEY_LEN + 1 + 2 + 16


def _body_start(raw: bytes) -> int:
    return 3 if raw[1] == 0xC4 else 4


def body_item(raw: bytes, index: int) -> Any:
    """Item ``index`` of the record's body (the whole body decoded)."""
    return msgpack.unpackb(raw[_body_start(raw) : -2 - SIG_LEN])[index]


def _items_start(raw: bytes) -> int:
    """Where a record's body items start: after the array's header, a fixarray (up to 15
    items: an announcement's) or an array 16 (a certificate's 16)."""
    start = 3 if raw[1] == 0xC4 else 4
    return start + 3 if raw[start] == 0xDC else start + 1


def network_id_of(raw: bytes) -> bytes:
    """An announcement's network id (its body's item 2)."""
    return network_id_at(raw, _items_start(raw) + 4)  # the kind, the version, its header


def network_id_at(raw: bytes, pos: int) -> bytes:
    """:func:`network_id_of` where it lies at ``pos``."""
    global _last_network_id
    value = raw[pos : pos + FINGERPRINT_LEN]
    last = _last_network_id
    if value == last:
        return last
    _last_network_id = value
    return value


# The network id read last: every announcement of one network reads the same object. One
# reference, read and replaced whole (threads may read ids at the same time).
_last_network_id = b""


def _uint_at(raw: bytes, pos: int) -> int:
    """The unsigned integer at ``pos``."""
    head = raw[pos]
    if head < 0x80:
        return head
    return _UINT[head][0](raw, pos + 1)[0]


def _second_uint(raw: bytes, pos: int) -> int:
    """The unsigned integer after the one at ``pos``."""
    head = raw[pos]
    return _uint_at(raw, pos + (1 if head < 0x80 else 1 + _UINT[head][1]))


def seq_of(raw: bytes) -> int:
    """An announcement's sequence number (its body's item 4), read where it lies."""
    return _uint_at(raw, _items_start(raw) + _KEYED_UINT_OFFSET)


def issued_at_of(raw: bytes) -> int:
    """An announcement's ``issued_at`` (its body's item 5), read where it lies."""
    return _second_uint(raw, _items_start(raw) + _KEYED_UINT_OFFSET)


def seq_at(raw: bytes, pos: int) -> int:
    """:func:`seq_of` from bytes where it lies at ``pos`` (an announcement held elided:
    meshd.records.elide)."""
    return _uint_at(raw, pos)


def issued_at_at(raw: bytes, pos: int) -> int:
    """:func:`issued_at_of` where the sequence number before it lies at ``pos``."""
    return _second_uint(raw, pos)


def said_of(raw: bytes) -> bytes:
    """What an announcement says beyond its seq and date, as its bytes: its body's items
    after ``issued_at`` (endpoints, addrs, prefixes, and ``relays`` if written). Two
    announcements whose said bytes are equal say the same (their items decode alike)."""
    return said_at(raw, _items_start(raw) + _KEYED_UINT_OFFSET)


def said_at(raw: bytes, pos: int) -> bytes:
    """:func:`said_of` where the sequence number lies at ``pos``."""
    for _ in range(2):  # seq, issued_at
        head = raw[pos]
        pos += 1 if head < 0x80 else 1 + _UINT[head][1]
    return raw[pos : len(raw) - 2 - SIG_LEN]


def admitted_at_of(raw: bytes) -> int:
    """An admission's ``admitted_at`` (its body's item 4: after its network id and its
    sponsor's key, where an announcement's sequence number lies)."""
    return _uint_at(raw, _items_start(raw) + _KEYED_UINT_OFFSET)


def _dates_of(raw: bytes) -> int:
    """Where a certificate's ``not_before`` lies."""
    start = 3 if raw[1] == 0xC4 else 4
    return start + (3 if raw[start] == 0xDC else 1) + _NOT_BEFORE_OFFSET


def admitted_at_at(raw: bytes, pos: int) -> int:
    """:func:`admitted_at_of` where it lies at ``pos`` (an admission held elided)."""
    return _uint_at(raw, pos)


def not_before_of(raw: bytes) -> int:
    """A certificate's ``not_before`` (its body's item 7), read where it lies."""
    return not_before_at(raw, _dates_of(raw))


def not_before_at(raw: bytes, pos: int) -> int:
    """:func:`not_before_of` where it lies at ``pos`` (a certificate held elided)."""
    if raw[pos] == 0xCE:  # the usual: a date before 2106 and after 1970's first 18 hours
        return _U32(raw, pos + 1)[0]  # type: ignore[no-any-return]
    return _uint_at(raw, pos)


def not_after_of(raw: bytes) -> int:
    """A certificate's ``not_after`` (its body's item 8), read where it lies."""
    return not_after_at(raw, _dates_of(raw))


def not_after_at(raw: bytes, pos: int) -> int:
    """:func:`not_after_of` where ``not_before`` lies at ``pos``."""
    if raw[pos] == 0xCE and raw[pos + 5] == 0xCE:  # the usual: two such dates
        return _U32(raw, pos + 6)[0]  # type: ignore[no-any-return]
    return _second_uint(raw, pos)


def subject_of(raw: bytes) -> bytes | None:
    """A certificate's ``subject`` (its body's item 4: after its network id and issuer),
    read where it lies; None for a record of another kind."""
    pos = _items_start(raw)
    if raw[pos] != _CERTIFICATE:
        return None
    pos += _SUBJECT_OFFSET
    return raw[pos : pos + KEY_LEN]


_CERTIFICATE = 2  # meshd.records.types.Kind.CERTIFICATE (a positive fixint)
# A certificate's subject, from the first byte of its body's items: after the kind, the
# version, its network id and its issuer, each bin 8, and its own bin 8 header.
_SUBJECT_OFFSET = 1 + 1 + 2 + FINGERPRINT_LEN + 2 + KEY_LEN + 2


def role_of(raw: bytes) -> int:
    """A certificate's ``role`` (its body's item 5: right after its subject, a positive
    fixint), read where it lies in a certificate decoded before."""
    return raw[_items_start(raw) + _SUBJECT_OFFSET + KEY_LEN]


def name_of(raw: bytes) -> str:
    """A certificate's ``name`` (its body's item 10), read where it lies: after its dates
    and its capabilities (three unsigned integers)."""
    name = name_at(raw, _dates_of(raw))
    return body_item(raw, 10) if name is None else name


def name_at(raw: bytes, pos: int) -> str | None:
    """:func:`name_of` where ``not_before`` lies at ``pos``; None where it is not written as
    names usually are (a fixstr or a str 8)."""
    for _ in range(3):
        head = raw[pos]
        pos += 1 if head < 0x80 else 1 + _UINT[head][1]
    return enrolled_name_at(raw, pos)


def _str_at(raw: bytes, pos: int) -> tuple[int, int] | None:
    """Where the text of the str at ``pos`` starts and ends; None where it is not written
    as names usually are (a fixstr, up to 31 bytes, or a str 8)."""
    head = raw[pos]
    if 0xA0 <= head <= 0xBF:
        return pos + 1, pos + 1 + (head & 0x1F)
    if head == 0xD9:
        return pos + 2, pos + 2 + raw[pos + 1]
    return None


def enrolled_name_at(raw: bytes, pos: int) -> str | None:
    """An enrollment's ``name`` where it lies at ``pos`` (right after its WireGuard key, in
    an admission held elided), or any name written as usual there (:func:`_str_at`)."""
    text = _str_at(raw, pos)
    return None if text is None else raw[text[0] : text[1]].decode()


def enrolled_at_at(raw: bytes, pos: int) -> int | None:
    """An enrollment's ``created_at``, after its name at ``pos`` (as
    :func:`enrolled_name_at`); None where the name is not written as usual."""
    text = _str_at(raw, pos)
    if text is None:
        return None
    head = raw[text[1]]
    if head >= 0x80 and head not in _UINT:
        return None
    return _uint_at(raw, text[1])


def relays_of(raw: bytes) -> bool:
    """Whether an announcement says its member relays (a 10th body item, exactly true): 9
    items say no, 10 say yes (``false`` is written only where later items follow)."""
    head = raw[_body_start(raw)]
    if head == 0x99:
        return False
    if head == 0x9A:
        return True
    return body_item(raw, 9) is True


class Signed:
    """What every record has (the base of meshd.records.types' dataclasses): its canonical
    bytes ``raw``, whose last 64 bytes are its signature (the envelope has one form:
    :func:`meshd.records.types.split_envelope_untrusted`). The signature is read from
    there, not kept a second time (97 bytes a record, two a member)."""

    __slots__ = ()
    raw: bytes

    @property
    def signature(self) -> bytes:
        return self.raw[-SIG_LEN:]
