"""RFC 8967 on one link: packet counters, challenges and MACs around the routing core.

The core makes and takes packets without MACs. On an interface with keys, the shell passes
every datagram through one :class:`LinkAuth`:

- going out, :meth:`LinkAuth.seal` puts a PC TLV (our index, the next counter) first in the
  body and one MAC per key in the trailer;
- coming in, :meth:`LinkAuth.open_untrusted` decodes the datagram and checks its MACs over
  the bytes as received (RFC 8967 4.3), answers its Challenge Requests, then accepts it only
  if it carries a reply to our own challenge, or the sender's known index with a counter
  larger than the last one. A packet from a sender whose index we do not know (it restarted,
  or we never heard it) is dropped and a Challenge Request goes back to it; its reply
  teaches us its index and counter.

No clock and no socket here: ``now`` comes in, datagrams to send go out, the nonces come
from the ``nonce`` function (``secrets.token_bytes`` by default).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from meshd.babel.codec import decode_packet_untrusted, encode_packet
from meshd.babel.mac import Endpoints, MacKey, decode_verified_untrusted, sign_packet
from meshd.babel.packet import ChallengeReply, ChallengeRequest, Packet, Pc, Tlv
from meshd.babel.prefix import IPAddress

NONCE_SIZE: Final = 16
INDEX_SIZE: Final = 8
MAX_PC: Final = 0xFFFFFFFF
CHALLENGE_TIMEOUT: Final = 30.0
"""RFC 8967 4.3: a Challenge Reply is accepted within this many seconds of the request."""
CHALLENGE_INTERVAL: Final = 0.3
"""At most one Challenge Request per sender in this many seconds."""
MAX_SENDERS: Final = 1024
"""Senders remembered per link; the oldest is forgotten first (it will be challenged again)."""


def random_nonce() -> bytes:
    return secrets.token_bytes(NONCE_SIZE)


@dataclass(slots=True)
class _Sender:
    """What we know of one sender on the link (RFC 8967 3.2, per-neighbour state)."""

    index: bytes | None = None
    pc: int = 0
    nonce: bytes | None = None
    nonce_until: float = 0.0
    challenged_at: float = float("-inf")


@dataclass(frozen=True, slots=True)
class Opened:
    """A datagram whose MAC is good: the packet for the core (None when dropped as a
    replay or for an unknown index), and TLVs to send back to the sender at once."""

    packet: Packet | None
    reply: tuple[Tlv, ...]
    dropped: str = ""
    """Why ``packet`` is None: ``no-pc``, ``unknown-index`` or ``replay``."""


class LinkAuth:
    """RFC 8967 for one interface: our counter, and what we know of each sender."""

    def __init__(
        self,
        keys: Sequence[MacKey],
        *,
        nonce: Callable[[], bytes] = random_nonce,
        index: bytes | None = None,
    ) -> None:
        if not keys:
            raise ValueError("an authenticated link needs at least one key")
        self.keys = tuple(keys)
        self._nonce = nonce
        self.index = index if index is not None else nonce()[:INDEX_SIZE]
        self.pc = 0
        self._senders: dict[IPAddress, _Sender] = {}

    def _next_pc(self) -> Pc:
        if self.pc >= MAX_PC:
            # The counter would wrap: a new index makes every receiver challenge us again.
            self.index, self.pc = self._nonce()[:INDEX_SIZE], 0
        self.pc += 1
        return Pc(self.pc, self.index)

    def seal(self, payload: bytes | Packet, ends: Endpoints) -> bytes:
        """Our datagram with a PC TLV first and a MAC per key (``payload`` is the core's)."""
        packet = payload if isinstance(payload, Packet) else decode_packet_untrusted(payload)
        body = (self._next_pc(), *(t for t in packet.tlvs if not isinstance(t, Pc)))
        return encode_packet(sign_packet(Packet(body, ()), self.keys, ends))

    def open_untrusted(self, data: bytes, ends: Endpoints, now: float) -> Opened:
        """Check a received datagram. Raises DecodeError, or VerifyError("bad-mac")."""
        packet = decode_verified_untrusted(data, self.keys, ends)
        sender = self._sender(ends.src)
        reply: list[Tlv] = [
            ChallengeReply(t.nonce) for t in packet.tlvs if isinstance(t, ChallengeRequest)
        ]
        pc = next((t for t in packet.tlvs if isinstance(t, Pc)), None)
        if pc is None:
            return Opened(None, tuple(reply), "no-pc")
        answered = sender.nonce is not None and any(
            isinstance(t, ChallengeReply) and t.nonce == sender.nonce for t in packet.tlvs
        )
        if answered and now <= sender.nonce_until:
            sender.index, sender.pc, sender.nonce = pc.index, pc.pc, None
            return Opened(packet, tuple(reply))
        if sender.index != pc.index:
            if now - sender.challenged_at >= CHALLENGE_INTERVAL:
                sender.challenged_at = now
                sender.nonce = self._nonce()
                sender.nonce_until = now + CHALLENGE_TIMEOUT
                reply.append(ChallengeRequest(sender.nonce))
            return Opened(None, tuple(reply), "unknown-index")
        if pc.pc <= sender.pc:
            return Opened(None, tuple(reply), "replay")
        sender.pc = pc.pc
        return Opened(packet, tuple(reply))

    def forget(self, address: IPAddress) -> None:
        self._senders.pop(address, None)

    def _sender(self, address: IPAddress) -> _Sender:
        sender = self._senders.get(address)
        if sender is None:
            if len(self._senders) >= MAX_SENDERS:
                del self._senders[next(iter(self._senders))]
            sender = self._senders[address] = _Sender()
        return sender
