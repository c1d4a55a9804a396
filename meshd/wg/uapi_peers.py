"""A peer of a ``get`` reply: read line by line (:class:`PeerBuilder`, :func:`peer_field`),
or whole as wireguard-go writes it (:data:`match_peer`); the configuration it reads as
(:func:`same_config`, :func:`new_config`); and what one read keeps for the next
(:class:`ReadMemo`). The reply around its peers is :mod:`meshd.wg.uapi_reply`'s.

wireguard-go writes every peer the same way, its lines in one order: ``public_key``,
``preshared_key``, ``protocol_version``, ``endpoint`` (if any), the handshake's seconds
and nanoseconds, ``tx_bytes``, ``rx_bytes``, ``persistent_keepalive_interval`` and its
``allowed_ip`` lines. :data:`match_peer` matches such a peer whole, each line as
:mod:`meshd.wg.uapi_syntax` reads lines, and only when the line after it starts another
peer or the ``errno``: one regular expression a peer instead of ~11 lines read one by one
(:class:`meshd.wg.uapi_reply.GetReplyParser` reads any other peer, and any other dialect,
line by line).

Most of a read is what the last read said: the handshakes and counters of a peer move,
its configuration seldom does, and reading it (its allowed-ips above all) was most of the
cost of a read: ~0.16 s of the ~0.25 s of a read of 10,000 peers. :class:`ReadMemo` is what
a read keeps for the next: for each peer that read as the configuration the caller expected,
a fingerprint of its configuration's text (endpoint, keepalive, allowed-ips) and of that
very object. A peer of the next read whose text has the same fingerprint, with the same
object expected again, is that object without its text being read again (its handshake
and counters are read every time). The memo holds the objects it fingerprinted, so that
an object's ``id`` is its own while it is kept, and its fingerprints in one sorted array
(8 bytes a peer). A fingerprint is a 64-bit hash of strings whose hashes are keyed anew
in each process (Python's SipHash): two texts are taken for one at odds of 2**-64.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field

from meshd.wg.errors import UapiDecodeError
from meshd.wg.model import IPNetwork, PeerConfig, PeerStatus
from meshd.wg.uapi_syntax import parse_endpoint, parse_hex_key, parse_network, parse_uint

_U64_MAX = 2**64 - 1
_NSEC_PER_SEC = 1_000_000_000

_PEER = re.compile(
    r"public_key=([0-9a-f]{64})"
    r"\npreshared_key=0{64}"
    r"\nprotocol_version=1"
    r"(?:\nendpoint=([\x21-\x7e]{0,256}))?"
    r"\nlast_handshake_time_sec=([0-9]{1,20})"
    r"\nlast_handshake_time_nsec=([0-9]{1,20})"
    r"\ntx_bytes=([0-9]{1,20})"
    r"\nrx_bytes=([0-9]{1,20})"
    r"\npersistent_keepalive_interval=([0-9]{1,20})"
    r"((?:\nallowed_ip=[\x21-\x7e]{0,256})*)"
    r"(?=\n(?:public_key|errno)=|\Z)"
)
#: ``match_peer(text, pos)``: a whole wireguard-go peer at ``pos`` (groups: the key's hex,
#: the endpoint or None, the handshake's seconds and nanoseconds, tx, rx, the keepalive,
#: the allowed-ips' lines each with its newline before it). One that ends at the end of
#: ``text`` is whole only if the text that follows starts a peer or the ``errno``.
match_peer = _PEER.match
#: What starts the line after a whole peer.
AFTER_PEER = (b"public_key=", b"errno=")


def counters(sec: str, nsec: str, tx: str, rx: str) -> tuple[float | None, int, int]:
    """The last handshake (Unix time, None for never), received and sent bytes of a peer
    matched whole (digits only, checked here as :func:`meshd.wg.uapi_syntax.parse_uint`
    checks them)."""
    seconds, nanoseconds, tx_bytes, rx_bytes = int(sec), int(nsec), int(tx), int(rx)
    if max(seconds, tx_bytes, rx_bytes) > _U64_MAX or nanoseconds >= _NSEC_PER_SEC:
        parse_uint("last_handshake_time_sec", sec, _U64_MAX)
        parse_uint("last_handshake_time_nsec", nsec, _NSEC_PER_SEC - 1)
        parse_uint("tx_bytes", tx, _U64_MAX)
        parse_uint("rx_bytes", rx, _U64_MAX)
    handshake = seconds + nanoseconds / _NSEC_PER_SEC
    return (handshake if handshake > 0 else None), rx_bytes, tx_bytes


def fingerprint(endpoint: str | None, keepalive: str, allowed: str, config: PeerConfig) -> int:
    """The fingerprint of a peer's configuration text read as ``config``."""
    return hash((endpoint, keepalive, allowed, id(config)))


@dataclass(frozen=True, slots=True)
class ReadMemo:
    """What a read keeps for the next (see the module documentation)."""

    configs: tuple[PeerConfig, ...] = ()  # held: their ids are theirs while kept
    prints: array[int] = field(default_factory=lambda: array("q"))  # sorted

    def has(self, print_: int) -> bool:
        prints = self.prints
        i = bisect_left(prints, print_)
        return i < len(prints) and prints[i] == print_

    @classmethod
    def of(cls, configs: list[PeerConfig], prints: list[int]) -> ReadMemo:
        prints.sort()
        return cls(tuple(configs), array("q", prints))


@dataclass(slots=True)
class PeerBuilder:
    """A peer of a reply as read so far."""

    public_key: bytes
    expected: PeerConfig | None  # what the caller expects of this peer, if anything
    known: PeerStatus | None  # the peer as last read, if given
    endpoint: str | None = None  # as the device wrote it: checked when the peer ends
    allowed_ips: list[IPNetwork] = field(default_factory=list)
    keepalive: int | None = None
    handshake_sec: int | None = None
    handshake_nsec: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0


def peer_field(peer: PeerBuilder, key: str, value: str) -> None:
    if key == "endpoint":
        peer.endpoint = value
    elif key == "allowed_ip":
        peer.allowed_ips.append(parse_network(value))
    elif key == "persistent_keepalive_interval":
        peer.keepalive = parse_uint(key, value, 65535) or None
    elif key == "last_handshake_time_sec":
        peer.handshake_sec = parse_uint(key, value, _U64_MAX)
    elif key == "last_handshake_time_nsec":
        peer.handshake_nsec = parse_uint(key, value, _NSEC_PER_SEC - 1)
    elif key == "rx_bytes":
        peer.rx_bytes = parse_uint(key, value, _U64_MAX)
    elif key == "tx_bytes":
        peer.tx_bytes = parse_uint(key, value, _U64_MAX)
    elif key == "preshared_key":
        parse_hex_key(key, value)
    elif key == "protocol_version":
        if value != "1":
            raise UapiDecodeError(f"UAPI peer has protocol_version={value[:16]}")
    elif key in ("private_key", "own_public_key", "listen_port", "fwmark"):
        raise UapiDecodeError(f"UAPI reply has device key {key}= inside a peer")
    # Unknown peer keys are skipped.


def new_config(peer: PeerBuilder, *others: PeerConfig | None) -> PeerConfig:
    """The configuration ``peer`` reads as, checked; its allowed-ips the networks one of
    ``others`` holds if they are the same (a peer whose endpoint alone moved shares them),
    and its endpoint the string one of them holds if it reads the same (one whose keepalive
    alone differs, as every peer of a first round does until its keepalive is set: not ~60
    bytes of text more a peer)."""
    endpoint = peer.endpoint
    if endpoint is not None:
        endpoint = next(
            (c.endpoint for c in others if c is not None and c.endpoint == endpoint), None
        ) or parse_endpoint(endpoint)
    allowed = next(
        (
            c.allowed_ips
            for c in others
            if c is not None and same_networks(c.allowed_ips, peer.allowed_ips)
        ),
        None,
    )
    # One held already is canonical, and kept as it is (meshd.wg.model.canonical_networks).
    allowed = tuple(peer.allowed_ips) if allowed is None else allowed
    return PeerConfig(peer.public_key, endpoint, allowed, peer.keepalive)


def same_config(config: PeerConfig, peer: PeerBuilder) -> bool:
    """Whether ``peer`` as read says what ``config`` does (its endpoint written the
    canonical way, the same allowed-ips in any order)."""
    if config.endpoint != peer.endpoint or config.persistent_keepalive != peer.keepalive:
        return False
    return same_networks(config.allowed_ips, peer.allowed_ips)


def same_networks(have: tuple[IPNetwork, ...], found: list[IPNetwork]) -> bool:
    if len(found) != len(have):
        return False
    # Interned networks: the same objects, most often in the same order.
    return all(a is b for a, b in zip(found, have, strict=True)) or set(found) == set(have)
