"""The NAT protocol (``/meshd/nat/1.0.0``): observations and punch messages between members.

One message per stream, a canonical msgpack array (docs/wire-format.md, "NAT messages"):

* ``[1, wg_endpoint, tcp_address]``, a **report**: where the sender sees us; the endpoint its
  WireGuard shows for us (``ip:port``, or ``""``) and the address our libp2p connection to it
  comes from (an IP, or ``""``: what libp2p identify's observed address carries);
* ``[2, target]``, a **punch request**: the sender has no direct path to the member with node
  key ``target`` and asks us, a member connected to both, to tell it;
* ``[3, peer, hints]``, a **punch notice**: the member ``peer`` is trying to reach us now;
  ``hints`` (at most 2) are where the sending member sees its WireGuard.

Everything in a message is untrusted and, apart from its shape, checked by its receiver
(:mod:`meshd.mesh.candidates`). :func:`decode_nat_message_untrusted` raises only DecodeError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from meshd.encoding import pack, unpack_canonical_untrusted
from meshd.errors import DecodeError

PROTOCOL_ID: Final = "/meshd/nat/1.0.0"
MAX_MESSAGE: Final = 256
MAX_TEXT: Final = 47  # "[" + IPv6 + "]:" + port, as meshd.mesh.candidates.MAX_ENDPOINT_TEXT
MAX_HINTS: Final = 2
KEY_LEN: Final = 32

REPORT, REQUEST, NOTICE = 1, 2, 3


@dataclass(frozen=True, slots=True)
class Report:
    wg_endpoint: str
    tcp_address: str


@dataclass(frozen=True, slots=True)
class PunchRequest:
    target: bytes


@dataclass(frozen=True, slots=True)
class PunchNotice:
    peer: bytes
    hints: tuple[str, ...]


Message = Report | PunchRequest | PunchNotice


def encode_message(message: Message) -> bytes:
    if isinstance(message, Report):
        return pack([REPORT, message.wg_endpoint, message.tcp_address])
    if isinstance(message, PunchRequest):
        return pack([REQUEST, message.target])
    return pack([NOTICE, message.peer, list(message.hints)])


def _text(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or not value.isprintable():
        raise DecodeError(f"nat message: text must be printable, at most {MAX_TEXT} characters")
    return value


def _key(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != KEY_LEN:
        raise DecodeError(f"nat message: a node key is {KEY_LEN} bytes")
    return value


def decode_nat_message_untrusted(data: bytes) -> Message:
    """One NAT message; DecodeError for anything else."""
    items = unpack_canonical_untrusted(data, max_size=MAX_MESSAGE, what="nat message")
    if not isinstance(items, list) or not items or type(items[0]) is not int:
        raise DecodeError("nat message: must be [type, ...]")
    kind, rest = items[0], items[1:]
    if kind == REPORT and len(rest) == 2:
        return Report(_text(rest[0]), _text(rest[1]))
    if kind == REQUEST and len(rest) == 1:
        return PunchRequest(_key(rest[0]))
    if kind == NOTICE and len(rest) == 2:
        hints = rest[1]
        if not isinstance(hints, list) or len(hints) > MAX_HINTS:
            raise DecodeError(f"nat message: hints must be a list of at most {MAX_HINTS}")
        return PunchNotice(_key(rest[0]), tuple(_text(h) for h in hints))
    raise DecodeError(f"nat message: unknown type {kind} or wrong length")
