"""The enrollment protocol (pure): a joiner asks a member to countersign its enrollment.

Over one stream of ``/meshd/enroll/1.0.0``, the joiner sends one frame, its Enrollment
record (made with :func:`meshd.trust.invites.enroll`), and the sponsor answers with one frame:

    [1, 1, admission]                      admitted: the Admission record
    [1, 0, reason, message, hint]          refused: a VerifyError's reason, message and hint

The sponsor decides on its own clock and membership state (:meth:`Membership.sponsor`), and
only for the peer that holds the enrolled node key: libp2p's Noise handshake proves the
remote's key, and it must equal ``enrollment.node_key``, so an enrollment seen in transit
cannot be redeemed by someone else.

A peer that is not a member may stay connected only for a grace period, to enroll and fetch
the membership: :class:`GracePolicy` decides how long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from meshd.encoding import pack, unpack_canonical_untrusted
from meshd.errors import DecodeError, VerifyError
from meshd.membership import Membership
from meshd.records import MAX_RECORD, Admission, Enrollment, decode_untrusted
from meshd.trust.keys import SigningKey

__all__ = [
    "PROTOCOL_ID",
    "GracePolicy",
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


# --- how long a peer that is not a member may stay ------------------------------------------

RETRY_WINDOW: Final = 2.0
"""Seconds an enrollment attempt keeps a connection open after the grace has run out (a
joiner retrying with the same key hears the answer and fetches the membership)."""


@dataclass(slots=True)
class _Grace:
    start: float  # the first connection in this window
    until: float  # may stay connected until then
    forget_at: float  # a connection after this starts a new window
    attempts: int = 0  # enrollment streams opened in this window


class GracePolicy:
    """How long a peer that is not a member may stay connected (pure: times are arguments).

    A peer's grace is granted once per window, which starts at its first connection and lasts
    ``enroll + cooldown`` seconds, across its reconnects: ``connect`` seconds from that first
    connection, extended once to ``enroll`` seconds from it when it opens an enrollment
    stream. Re-opening the stream does not extend it further, and a reconnect within the
    window keeps the deadline it had. Each window allows ``attempts`` enrollment streams; one
    opened after the grace has run out keeps the connection RETRY_WINDOW seconds (a joiner
    retrying with the same key), so a peer stays at most ``enroll + attempts * RETRY_WINDOW``
    seconds per window. At most ``max_peers`` peers are tracked; beyond, the windows that
    ended go first, then the oldest.
    """

    def __init__(
        self,
        *,
        connect: float,
        enroll: float,
        attempts: int = 3,
        cooldown: float = 300.0,
        max_peers: int = 4096,
    ) -> None:
        self.connect = connect
        self.enroll = max(enroll, connect)
        self.attempts = attempts
        self.cooldown = cooldown
        self.max_peers = max_peers
        self.refused_attempts = 0  # enrollment streams beyond the budget, since the start
        self._peers: dict[str, _Grace] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def _entry(self, peer: str, now: float) -> _Grace:
        grace = self._peers.get(peer)
        if grace is None or now >= grace.forget_at:
            self._peers.pop(peer, None)
            if len(self._peers) >= self.max_peers:
                self._prune(now)
            grace = self._peers[peer] = _Grace(
                now, now + self.connect, now + self.enroll + self.cooldown
            )
        return grace

    def connected(self, peer: str, now: float) -> float:
        """``peer`` connected; return until when it may stay."""
        return self._entry(peer, now).until

    def enrolling(self, peer: str, now: float) -> bool:
        """``peer`` opened an enrollment stream: False if its attempts are spent."""
        grace = self._entry(peer, now)
        if grace.attempts >= self.attempts:
            self.refused_attempts += 1
            return False
        grace.attempts += 1
        grace.until = max(grace.until, grace.start + self.enroll, now + RETRY_WINDOW)
        if grace.until > grace.start + self.enroll:  # a retry after the grace ran out
            grace.until = min(grace.until, now + RETRY_WINDOW)
        return True

    def expired(self, peer: str, now: float) -> bool:
        """Whether ``peer``'s grace has run out (a peer never seen gets one now)."""
        return now >= self._entry(peer, now).until

    def forget(self, peer: str) -> None:
        """``peer`` became a member: it needs no grace."""
        self._peers.pop(peer, None)

    def _prune(self, now: float) -> None:
        ended = [p for p, g in self._peers.items() if now >= g.forget_at]
        for peer in ended or list(self._peers)[: max(1, len(self._peers) // 8)]:
            del self._peers[peer]
