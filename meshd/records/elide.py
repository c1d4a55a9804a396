"""A record's bytes held without the keys its holder keeps anyway (pure).

The membership core holds two records a member for as long as the member is in the set: its
certificate (through its :class:`meshd.trust.credential.Credential`) and its announcement. Both
are kept as bytes, what a sync sends and what their other fields are read from. A member
certificate's 232 bytes carry the network's id (16 bytes) and three keys of 32 (its issuer's,
the member's node key, its WireGuard key) that its credential holds anyway, as objects shared
with the rest of the daemon; an announcement's carry its member's node key. Held without them
(and without the envelope's first byte, always ``0x92``), a certificate takes 152 bytes of the
heap, not 272, and an announcement 184, not 216: ~150 bytes a member. The bytes are put back
together when asked (a slice and a join, well under a microsecond), which the holder does
behind its ``raw``.

:func:`elide_certificate` and :func:`elide_announcement` return the bytes unchanged unless
putting them back gives exactly the bytes given (the keys not where the usual layout has
them: a body over 255 bytes, a certificate with no WireGuard key, another form): held bytes
that start with ``0x92`` are whole. Held bytes that do not are the holder's alone; they are
never sent or stored.

An admission (a member who joined under an invite) is held the same way by
:func:`elide_pieces`: its network id, its sponsor's key, and in the enrollment it nests the
network id again, the invite's bytes (which every member of the invite shares), the member's
node key and WireGuard key: ~215 bytes where its 504 took ~560 of the C heap.
"""

from __future__ import annotations

from meshd.trust.keys import FINGERPRINT_LEN, KEY_LEN

ENVELOPE = 0x92
"""The first byte of every record's bytes (``[body, signature]``): held bytes that start
with another were elided."""

# A certificate whose body is under 256 bytes (bin 8): the envelope's 0x92, the body's bin 8
# header (2), its array 16 header (3), kind and version (2), then its network id, issuer and
# subject, each after a bin 8 header; its WireGuard key is the last item but its chain (an
# empty array, 1 byte) before the signature (bin 8 header and 64 bytes).
_C_NETWORK = 1 + 2 + 3 + 2 + 2
_C_ISSUER = _C_NETWORK + FINGERPRINT_LEN + 2
_C_SUBJECT = _C_ISSUER + KEY_LEN + 2
_C_BODY = _C_SUBJECT + KEY_LEN
_C_TAIL = 1 + 2 + 64  # the chain's empty array and the signature, after the WireGuard key
_C_WG = _C_TAIL + KEY_LEN  # the WireGuard key's start, from the end
# In the elided bytes: where each key was cut out.
_E_NETWORK = _C_NETWORK - 1
_E_ISSUER = _E_NETWORK + 2
_E_SUBJECT = _E_ISSUER + 2

# An announcement whose body is under 256 bytes: the envelope's 0x92, the body's bin 8
# header (2), its fixarray header (1), kind and version (2), its network id after a bin 8
# header, then its node key after another.
_A_NODE = 1 + 2 + 1 + 2 + 2 + FINGERPRINT_LEN + 2
_A_END = _A_NODE + KEY_LEN

# Where the fields read most lie in the elided bytes, so that they are read from them without
# putting the whole back together (meshd.records.body's ``*_at`` readers): a certificate's
# not_before (after its role and its serial, bin 8 of 16), an announcement's sequence number
# (right after its node key) and its network id.
HELD_CERT_DATES = _C_BODY + 1 + 2 + 16 - (1 + FINGERPRINT_LEN + 2 * KEY_LEN)
HELD_ANN_SEQ = _A_END - 1 - KEY_LEN
HELD_ANN_NETWORK = _A_NODE - 2 - FINGERPRINT_LEN - 1


def elide_certificate(
    raw: bytes, network_id: bytes, issuer: bytes, subject: bytes, wg_key: bytes
) -> bytes:
    """A member certificate's bytes without its network id, issuer, subject and WireGuard
    key (the credential's), or ``raw`` itself where that would not give ``raw`` back."""
    if (
        len(network_id) != FINGERPRINT_LEN
        or len(issuer) != KEY_LEN
        or len(subject) != KEY_LEN
        or len(wg_key) != KEY_LEN
        or len(raw) < _C_BODY + _C_WG
        or raw[0] != ENVELOPE
    ):
        return raw
    held = (
        raw[1:_C_NETWORK]
        + raw[_C_NETWORK + FINGERPRINT_LEN : _C_ISSUER]
        + raw[_C_ISSUER + KEY_LEN : _C_SUBJECT]
        + raw[_C_BODY:-_C_WG]
        + raw[-_C_TAIL:]
    )
    if restore_certificate(held, network_id, issuer, subject, wg_key) != raw:
        return raw
    return held


def restore_certificate(
    held: bytes, network_id: bytes, issuer: bytes, subject: bytes, wg_key: bytes
) -> bytes:
    """The certificate's bytes from what :func:`elide_certificate` kept (whole: as they are)."""
    if not held or held[0] == ENVELOPE:
        return held
    return b"".join(
        (
            b"\x92",
            held[:_E_NETWORK],
            network_id,
            held[_E_NETWORK:_E_ISSUER],
            issuer,
            held[_E_ISSUER:_E_SUBJECT],
            subject,
            held[_E_SUBJECT:-_C_TAIL],
            wg_key,
            held[-_C_TAIL:],
        )
    )


def elide_announcement(raw: bytes, node_key: bytes) -> bytes:
    """An announcement's bytes without its node key, or ``raw`` itself where that would not
    give ``raw`` back."""
    if len(node_key) != KEY_LEN or len(raw) < _A_END + 66 or raw[0] != ENVELOPE:
        return raw
    held = raw[1:_A_NODE] + raw[_A_END:]
    if restore_announcement(held, node_key) != raw:
        return raw
    return held


def restore_announcement(held: bytes, node_key: bytes) -> bytes:
    """The announcement's bytes from what :func:`elide_announcement` kept."""
    if not held or held[0] == ENVELOPE:
        return held
    return b"".join((b"\x92", held[: _A_NODE - 1], node_key, held[_A_NODE - 1 :]))


# Records whose pieces lie at offsets that vary (an admission: its date, its enrollment's
# length) are held with where each piece was cut: one byte a piece, the gap from the end of
# the piece before (within 255 bytes), after this first byte.
PIECES = 0x01


def elide_pieces(raw: bytes, pieces: tuple[bytes, ...]) -> bytes:
    """``raw`` without ``pieces``, each found after the one before and within 255 bytes of
    it, with where each was cut; ``raw`` itself where one is empty or not found so."""
    if not raw or raw[0] != ENVELOPE:
        return raw
    gaps = bytearray((PIECES,))
    kept = []
    at = 0
    for piece in pieces:
        found = raw.find(piece, at) if piece else -1
        if found < 0 or found - at > 255:
            return raw
        gaps.append(found - at)
        kept.append(raw[at:found])
        at = found + len(piece)
    kept.append(raw[at:])
    return bytes(gaps) + b"".join(kept)


def after_piece(held: bytes, count: int, index: int) -> int:
    """Where the bytes that followed piece ``index`` (of ``count`` cut) lie in ``held``: a
    field read there without putting the whole back together."""
    return 1 + count + sum(held[1 : 2 + index])


def restore_pieces(held: bytes, pieces: tuple[bytes, ...]) -> bytes:
    """The bytes from what :func:`elide_pieces` kept, given the same pieces (whole: as they
    are)."""
    if not held or held[0] == ENVELOPE:
        return held
    parts = []
    at = 1 + len(pieces)
    for gap, piece in zip(held[1 : 1 + len(pieces)], pieces, strict=True):
        parts.append(held[at : at + gap])
        parts.append(piece)
        at += gap
    parts.append(held[at:])
    return b"".join(parts)
