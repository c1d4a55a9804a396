"""The enrollment protocol (pure): a joiner asks a member to countersign its enrollment.

Over one stream of ``/meshd/enroll/1.0.0``, the joiner sends one frame, its Enrollment
record (made with :func:`meshd.invites.enroll`), and the sponsor answers with one frame:

    [1, 1, admission]                      admitted: the Admission record
    [1, 0, reason, message, hint]          refused: a VerifyError's reason, message and hint

The sponsor decides on its own clock and membership state (:meth:`Membership.sponsor`), and
only for the peer that holds the enrolled node key: libp2p's Noise handshake proves the
remote's key, and it must equal ``enrollment.node_key``, so an enrollment seen in transit
cannot be redeemed by someone else.
"""

from __future__ import annotations

from typing import Final

from meshd.encoding import pack, unpack_canonical_untrusted
from meshd.errors import DecodeError, VerifyError
from meshd.keys import SigningKey
from meshd.membership import Membership
from meshd.records import MAX_RECORD, Admission, Enrollment, decode_untrusted

__all__ = [
    "PROTOCOL_ID",
    "decode_reply_untrusted",
    "decode_request_untrusted",
    "encode_refusal",
    "encode_reply",
    "encode_request",
    "sponsor",
]

PROTOCOL_ID: Final = "/meshd/enroll/1.0.0"
VERSION: Final = 1
MAX_REPLY: Final = MAX_RECORD + 1024
_MAX_TEXT: Final = 512


def encode_request(enrollment: Enrollment) -> bytes:
    return enrollment.raw


def decode_request_untrusted(data: bytes) -> Enrollment:
    """The joiner's enrollment, parsed (not yet verified). Raises DecodeError only."""
    return decode_untrusted(data, Enrollment)


def sponsor(
    state: Membership,
    sponsor_key: SigningKey,
    enrollment: Enrollment,
    remote_key: bytes,
    now: int,
) -> Admission:
    """Countersign ``enrollment`` for the peer holding ``remote_key``, if the rules allow it.

    Raises VerifyError with a stable reason: ``wrong-network``, ``wrong-peer``, and those of
    :meth:`Membership.sponsor` (``invite-expired``, ``invite-used-up``, ``invite-revoked``,
    ``revoked``, ``already-member``, ``bad-signature``...).
    """
    if enrollment.network_id != state.anchor.network_id:
        raise VerifyError(
            "wrong-network",
            "the invite is for another network than this bootstrap node's",
            hint="check the token, or the bootstrap addresses it names",
        )
    if remote_key != enrollment.node_key:
        raise VerifyError(
            "wrong-peer", "the enrollment names another node key than the connecting peer's"
        )
    return state.sponsor(sponsor_key, enrollment, now)


def encode_reply(admission: Admission) -> bytes:
    return pack([VERSION, 1, admission.raw])


def encode_refusal(error: VerifyError) -> bytes:
    texts = [error.reason, str(error), error.hint]
    return pack([VERSION, 0, *(t.encode()[:_MAX_TEXT].decode(errors="ignore") for t in texts)])


def decode_reply_untrusted(data: bytes, enrollment: Enrollment) -> Admission:
    """The sponsor's answer to ``enrollment``.

    Returns the Admission (parsed; the membership core verifies it when it merges it) and
    raises VerifyError with the sponsor's reason if it refused, DecodeError if the answer is
    malformed or is not an admission of this very enrollment.
    """
    value = unpack_canonical_untrusted(data, max_size=MAX_REPLY, what="enrollment reply")
    if not isinstance(value, list) or len(value) < 3 or value[0] != VERSION:
        raise DecodeError(f"enrollment reply: expected [{VERSION}, ok, ...]")
    if value[1] == 1 and len(value) == 3 and isinstance(value[2], bytes):
        admission = decode_untrusted(value[2], Admission)
        if admission.enrollment.raw != enrollment.raw:
            raise DecodeError("enrollment reply: the admission is for another enrollment")
        return admission
    if value[1] == 0 and len(value) == 5 and all(isinstance(v, str) for v in value[2:]):
        reason, message, hint = (v[:_MAX_TEXT] for v in value[2:])
        raise VerifyError(reason or "refused", message or "the sponsor refused", hint=hint)
    raise DecodeError("enrollment reply: neither an admission nor a refusal")
