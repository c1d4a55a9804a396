"""Encoder and parser for WireGuard's cross-platform configuration protocol (UAPI).

The protocol (https://www.wireguard.com/xplatform/) is line based: a request is ``get=1`` or
``set=1`` followed by ``key=value`` lines and an empty line; the reply is ``key=value`` lines
ending with ``errno=N`` and an empty line. Keys are hex on the wire.

Two dialects are understood:

* **wireguard-go** (and the Linux ``wg`` tool's view of it): ``private_key=`` in ``get``,
  ``last_handshake_time_sec`` is Unix time (0 for never), ``errno`` is negative, every peer
  carries ``preshared_key``, ``protocol_version`` and ``persistent_keepalive_interval``.
* **boringtun**: ``own_public_key=`` instead of the private key, ``last_handshake_time_sec``
  is the age of the handshake (absent for never), ``errno`` is positive, no ``update_only``
  (an update of a missing peer creates it), lines that have no value are left out.

Requests are built from :mod:`meshd.wg.model` operations. Replies are untrusted: the
``*_untrusted`` functions raise only :class:`~meshd.wg.errors.UapiError` subclasses, never
ValueError or IndexError. Unknown keys in a reply are skipped, so that a newer
implementation adding a field does not break us.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nacl.bindings import crypto_scalarmult_base

from meshd.addressing import held, interned
from meshd.trust.keys import WgKey
from meshd.wg.errors import UapiDecodeError, UapiErrnoError
from meshd.wg.model import (
    DeviceState,
    IPNetwork,
    Operation,
    PeerConfig,
    PeerStatus,
    RemovePeer,
    ReplacePeers,
    SetFwmark,
    SetListenPort,
    SetPrivateKey,
    UpdatePeer,
    canonical_endpoint,
    key_to_hex,
)

#: Replies larger than this are refused (about 40,000 peers with a few prefixes each).
MAX_REPLY_BYTES = 16 * 1024 * 1024

_LINE = re.compile(r"([a-z_]{1,64})=([\x21-\x7e]{0,256})")
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_UINT = re.compile(r"[0-9]{1,20}")
# An IPv6 address as WireGuard implementations write one: lower-case groups of 1-4 digits,
# eight of them or fewer around one "::" (captured: the groups before it, those after it).
_IPV6 = re.compile(
    r"[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}"
    r"|((?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?)::((?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?)"
)
_ERRNO = re.compile(r"-?[0-9]{1,10}")
_CHUNK = 65536  # a whole reply is parsed in pieces of this size, as the client reads it
_WINDOW = 8192  # and each piece decoded and split into lines this much at a time
_MAX_LINE = 64 + 1 + 256  # the longest line _LINE matches
_U64_MAX = 2**64 - 1
_NSEC_PER_SEC = 1_000_000_000


class Dialect(enum.Enum):
    """Which implementation is on the other end of the socket."""

    WIREGUARD_GO = "wireguard-go"
    BORINGTUN = "boringtun"


# -- requests ------------------------------------------------------------------------------


def encode_get_request() -> bytes:
    return b"get=1\n\n"


def encode_set_request(
    operations: Sequence[Operation], dialect: Dialect = Dialect.WIREGUARD_GO
) -> bytes:
    """Encode operations as one ``set=1`` request.

    Device-wide operations must come before peer operations (the protocol has no way back
    from a peer section); ValueError otherwise. For boringtun ``update_only`` is left out.
    """
    lines = ["set=1"]
    in_peers = False
    for op in operations:
        if isinstance(op, UpdatePeer | RemovePeer):
            in_peers = True
            lines.extend(_peer_lines(op, dialect))
            continue
        if in_peers:
            raise ValueError(f"{op!r} must come before the peer operations")
        lines.append(_device_line(op))
    return ("\n".join(lines) + "\n\n").encode("ascii")


def _device_line(op: SetPrivateKey | SetListenPort | SetFwmark | ReplacePeers) -> str:
    if isinstance(op, SetPrivateKey):
        return f"private_key={key_to_hex(op.private_key)}"
    if isinstance(op, SetListenPort):
        return f"listen_port={op.port}"
    if isinstance(op, SetFwmark):
        return f"fwmark={op.fwmark}"
    return "replace_peers=true"


def _peer_lines(op: UpdatePeer | RemovePeer, dialect: Dialect) -> list[str]:
    lines = [f"public_key={key_to_hex(op.public_key)}"]
    if isinstance(op, RemovePeer):
        lines.append("remove=true")
        return lines
    if op.update_only and dialect is Dialect.WIREGUARD_GO:
        lines.append("update_only=true")
    if op.endpoint is not None:
        lines.append(f"endpoint={op.endpoint}")
    if op.persistent_keepalive is not None:
        lines.append(f"persistent_keepalive_interval={op.persistent_keepalive}")
    if op.replace_allowed_ips:
        lines.append("replace_allowed_ips=true")
    lines.extend(f"allowed_ip={net}" for net in op.allowed_ips)
    return lines


def parse_set_request_untrusted(data: bytes) -> list[Operation]:
    """Parse a ``set=1`` request back into operations (what a device does with it).

    Used by in-process fake devices and to check the encoder; ``preshared_key`` and
    ``protocol_version`` are accepted and dropped.
    """
    if not data.startswith(b"set=1\n"):
        raise UapiDecodeError("UAPI request does not start with set=1")
    body = data[len(b"set=1\n") :]
    if body == b"\n":
        return []
    if not body.endswith(b"\n\n"):
        raise UapiDecodeError("UAPI request is truncated (no empty line at the end)")
    pairs, _ = split_reply_untrusted(body[:-1] + b"errno=0\n\n")
    ops: list[Operation] = []
    peer: _RequestPeer | None = None
    for key, value in pairs:
        if key == "public_key":
            if peer is not None:
                ops.append(peer.operation())
            peer = _RequestPeer(_hex_key(key, value))
        elif peer is None:
            ops.append(_device_operation(key, value))
        else:
            peer.add(key, value)
    if peer is not None:
        ops.append(peer.operation())
    return ops


def _device_operation(key: str, value: str) -> Operation:
    if key == "private_key":
        return SetPrivateKey(_hex_key(key, value))
    if key == "listen_port":
        return SetListenPort(_uint(key, value, 65535))
    if key == "fwmark":
        return SetFwmark(_uint(key, value, 2**32 - 1))
    if key == "replace_peers" and value == "true":
        return ReplacePeers()
    raise UapiDecodeError(f"UAPI request has unknown device line {key}={value[:32]}")


@dataclass(slots=True)
class _RequestPeer:
    public_key: bytes
    flags: set[str] = field(default_factory=set)
    endpoint: str | None = None
    keepalive: int | None = None
    allowed_ips: list[IPNetwork] = field(default_factory=list)

    def add(self, key: str, value: str) -> None:
        if key in ("remove", "update_only", "replace_allowed_ips"):
            if value != "true":
                raise UapiDecodeError(f"UAPI request has {key}={value[:16]}")
            self.flags.add(key)
        elif key == "endpoint":
            self.endpoint = _endpoint(value)
        elif key == "persistent_keepalive_interval":
            self.keepalive = _uint(key, value, 65535)
        elif key == "allowed_ip":
            self.allowed_ips.append(_network(value))
        elif key == "preshared_key":
            _hex_key(key, value)
        elif key != "protocol_version":
            raise UapiDecodeError(f"UAPI request has unknown peer line {key}=")

    def operation(self) -> UpdatePeer | RemovePeer:
        if "remove" in self.flags:
            return RemovePeer(self.public_key)
        return UpdatePeer(
            self.public_key,
            update_only="update_only" in self.flags,
            endpoint=self.endpoint,
            persistent_keepalive=self.keepalive,
            replace_allowed_ips="replace_allowed_ips" in self.flags,
            allowed_ips=tuple(self.allowed_ips),
        )


def encode_get_reply(
    state: DeviceState, dialect: Dialect = Dialect.WIREGUARD_GO, *, now: float = 0.0
) -> bytes:
    """A ``get`` reply describing ``state``, as the given implementation writes it.

    The device key is written only for boringtun (``own_public_key``): a state holds no
    private key. ``now`` turns handshake times into boringtun's ages.
    """
    lines: list[str] = []
    if dialect is Dialect.BORINGTUN and state.public_key is not None:
        lines.append(f"own_public_key={key_to_hex(state.public_key)}")
    if state.listen_port:
        lines.append(f"listen_port={state.listen_port}")
    if state.fwmark:
        lines.append(f"fwmark={state.fwmark}")
    for peer in state.peers:
        config = peer.config
        lines.append(f"public_key={key_to_hex(config.public_key)}")
        if dialect is Dialect.WIREGUARD_GO:
            lines.append(f"preshared_key={'0' * 64}")
            lines.append("protocol_version=1")
        if config.endpoint is not None:
            lines.append(f"endpoint={config.endpoint}")
        handshake = peer.last_handshake
        if dialect is Dialect.BORINGTUN and handshake is not None:
            handshake = max(0.0, now - handshake)
        if handshake is not None or dialect is Dialect.WIREGUARD_GO:
            nsec = round((handshake or 0.0) * _NSEC_PER_SEC)
            lines.append(f"last_handshake_time_sec={nsec // _NSEC_PER_SEC}")
            lines.append(f"last_handshake_time_nsec={nsec % _NSEC_PER_SEC}")
        lines.append(f"tx_bytes={peer.tx_bytes}")
        lines.append(f"rx_bytes={peer.rx_bytes}")
        if config.persistent_keepalive or dialect is Dialect.WIREGUARD_GO:
            lines.append(f"persistent_keepalive_interval={config.persistent_keepalive or 0}")
        lines.extend(f"allowed_ip={net}" for net in config.allowed_ips)
    lines.append("errno=0")
    return ("\n".join(lines) + "\n\n").encode("ascii")


def encode_errno_reply(errno: int, dialect: Dialect = Dialect.WIREGUARD_GO) -> bytes:
    """``errno=N`` with the sign the implementation uses (negative for wireguard-go)."""
    sign = "-" if errno and dialect is Dialect.WIREGUARD_GO else ""
    return f"errno={sign}{abs(errno)}\n\n".encode("ascii")


# -- replies -------------------------------------------------------------------------------


def split_reply_untrusted(data: bytes) -> tuple[list[tuple[str, str]], int]:
    """Split a complete reply into its ``key=value`` lines and its (positive) errno.

    The reply must be ASCII lines, end with ``errno=N`` and one empty line, and hold no
    other empty line.
    """
    if len(data) > MAX_REPLY_BYTES:
        raise UapiDecodeError(f"UAPI reply of {len(data)} bytes is too large")
    if not data.endswith(b"\n\n"):
        raise UapiDecodeError("UAPI reply is truncated (no empty line at the end)")
    try:
        text = data[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise UapiDecodeError("UAPI reply is not ASCII") from None
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        match = _LINE.fullmatch(line)
        if match is None:
            raise UapiDecodeError(f"UAPI reply line {number} is not key=value: {line[:80]!r}")
        pairs.append((match[1], match[2]))
    key, value = pairs.pop()
    if key != "errno":
        raise UapiDecodeError("UAPI reply does not end with errno=")
    if _ERRNO.fullmatch(value) is None:
        raise UapiDecodeError(f"UAPI errno {value!r} is not a number")
    return pairs, abs(int(value))


def parse_errno_untrusted(data: bytes) -> int:
    """The errno of a ``set`` reply (positive, 0 for success); the reply must hold nothing else."""
    pairs, errno = split_reply_untrusted(data)
    if pairs:
        raise UapiDecodeError(f"UAPI set reply has unexpected line {pairs[0][0]}=")
    return errno


@dataclass(slots=True)
class _PeerBuilder:
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


class GetReplyParser:
    """A ``get`` reply parsed as it arrives, line by line and peer by peer.

    :meth:`receive_untrusted` takes the reply's bytes as they come (True once its final
    empty line is read); :meth:`finish` returns the :class:`DeviceState` or raises. Between
    two pieces only the one unfinished line is kept, never the whole reply: at 10,000 peers
    a reply is ~4 MB, and split into lines and pairs it held ~4 KiB a peer while parsed.

    ``expected`` is what the caller means the device to hold, peers by key (the desired
    peers, which it keeps anyway): a peer that reads the same is that very
    :class:`PeerConfig`, its key included, not an equal copy. ``known`` is the device as last
    read, peers by key: a peer that reads the same as there, and not as expected, keeps that
    :class:`PeerConfig` (and its :class:`PeerStatus`, if its handshake and counters did not
    move either). Reading an unchanged device again makes next to nothing new, where it made
    ~0.6 KiB of objects a peer, every second, to be thrown away. Allowed-ips held anywhere
    in meshd (:func:`meshd.addressing.held`) are found from their text, not parsed into a
    new network first.
    """

    def __init__(
        self,
        *,
        dialect: Dialect = Dialect.WIREGUARD_GO,
        now: float | None = None,
        known: Mapping[bytes, PeerStatus] | None = None,
        expected: Mapping[WgKey, PeerConfig] | None = None,
    ) -> None:
        self._dialect = dialect
        self._now = now
        self._known: Mapping[bytes, PeerStatus] = known or {}
        self._expected: Mapping[WgKey, PeerConfig] = expected or {}
        self._tail = b""
        self._size = 0
        self._number = 0  # lines read
        self._errno: int | None = None
        self._complete = False
        self._public_key: bytes | None = None
        self._has_private_key = False
        self._listen_port: int | None = None
        self._fwmark: int | None = None
        self._peers: list[PeerStatus] = []
        self._peer: _PeerBuilder | None = None

    def receive_untrusted(self, data: bytes) -> bool:
        """Take the next bytes of the reply; True once its final empty line has been read."""
        if not data:
            return self._complete
        if self._complete:
            raise UapiDecodeError("UAPI reply goes on after its empty line")
        self._size += len(data)
        if self._size > MAX_REPLY_BYTES:
            raise UapiDecodeError(f"UAPI reply of over {MAX_REPLY_BYTES} bytes is too large")
        buffer = self._tail + data if self._tail else data
        end = buffer.rfind(b"\n")
        self._tail = buffer[end + 1 :]
        if len(self._tail) > _MAX_LINE:
            raise UapiDecodeError(f"UAPI reply line {self._number + 1} is too long")
        start = 0
        while start <= end:
            # A window of whole lines at a time: a 64 KiB piece split at once held ~230 KB of
            # text and line strings while it was parsed.
            stop = buffer.rfind(b"\n", start, start + _WINDOW) if end - start > _WINDOW else end
            if stop < 0:  # a line longer than a window, longer than any line may be
                stop = end  # (refused when read)
            try:
                text = buffer[start:stop].decode("ascii")
            except UnicodeDecodeError:
                raise UapiDecodeError("UAPI reply is not ASCII") from None
            for line in text.split("\n"):
                self._line(line)
            start = stop + 1
        return self._complete

    def finish(self) -> DeviceState:
        """The device the reply describes. Raises :class:`UapiErrnoError` for a non-zero
        errno, :class:`UapiDecodeError` for a reply cut short."""
        if not self._complete:
            raise UapiDecodeError("UAPI reply is truncated (no empty line at the end)")
        if self._errno:
            raise UapiErrnoError(self._errno, "get")
        try:
            return DeviceState(
                public_key=self._public_key,
                has_private_key=self._has_private_key,
                listen_port=self._listen_port,
                fwmark=self._fwmark,
                peers=tuple(self._peers),
            )
        except ValueError:  # the one thing a parsed reply can still get wrong
            raise UapiDecodeError("UAPI reply lists a peer twice") from None

    def _line(self, line: str) -> None:
        self._number += 1
        if self._complete:
            raise UapiDecodeError("UAPI reply goes on after its empty line")
        if self._errno is not None:
            if line:
                raise UapiDecodeError("UAPI reply goes on after errno=")
            self._complete = True
            return
        match = _LINE.fullmatch(line)
        if match is None:
            if not line:
                raise UapiDecodeError("UAPI reply does not end with errno=")
            raise UapiDecodeError(f"UAPI reply line {self._number} is not key=value: {line[:80]!r}")
        key, value = match.groups()
        if key == "errno":
            if _ERRNO.fullmatch(value) is None:
                raise UapiDecodeError(f"UAPI errno {value!r} is not a number")
            self._errno = abs(int(value))
            self._end_peer()
        elif key == "public_key":
            self._end_peer()
            peer_key = _hex_key(key, value)
            expected = self._expected.get(WgKey(peer_key))
            known = self._known.get(peer_key)
            if expected is not None:
                peer_key = expected.public_key
            elif known is not None:
                peer_key = known.public_key
            self._peer = _PeerBuilder(peer_key, expected, known)
        elif self._peer is not None:
            _peer_field(self._peer, key, value)
        elif key == "private_key":
            private = _hex_key(key, value)
            self._has_private_key = private != bytes(32)
            self._public_key = crypto_scalarmult_base(private) if self._has_private_key else None
        elif key == "own_public_key":
            self._public_key = _hex_key(key, value)
            self._has_private_key = True
        elif key == "listen_port":
            self._listen_port = _uint(key, value, 65535) or None
        elif key == "fwmark":
            self._fwmark = _uint(key, value, 2**32 - 1) or None
        # Any other device-level key is from a newer implementation: skip it.

    def _end_peer(self) -> None:
        peer, self._peer = self._peer, None
        if peer is None:
            return
        last_handshake: float | None = None
        if peer.handshake_sec is not None:
            seconds = peer.handshake_sec + peer.handshake_nsec / _NSEC_PER_SEC
            if self._dialect is Dialect.BORINGTUN:
                if self._now is None:
                    raise ValueError("parsing a boringtun reply needs now= (handshakes are ages)")
                last_handshake = self._now - seconds
            elif seconds > 0:
                last_handshake = seconds
        expected, known = peer.expected, peer.known
        if expected is not None and _same_config(expected, peer):
            config = expected
        elif known is not None and _same_config(known.config, peer):
            config = known.config
        else:
            config = _new_config(peer, expected, known.config if known is not None else None)
        if known is not None and known.last_handshake == last_handshake:
            if (
                known.config is config
                and known.rx_bytes == peer.rx_bytes
                and known.tx_bytes == peer.tx_bytes
            ):
                self._peers.append(known)
                return
            last_handshake = known.last_handshake  # the same float object
        self._peers.append(PeerStatus(config, last_handshake, peer.rx_bytes, peer.tx_bytes))


def _new_config(peer: _PeerBuilder, *others: PeerConfig | None) -> PeerConfig:
    """The configuration ``peer`` reads as, checked; its allowed-ips the tuple one of
    ``others`` holds if they are the same (a peer whose endpoint alone moved shares them)."""
    endpoint = _endpoint(peer.endpoint) if peer.endpoint is not None else None
    allowed = next(
        (
            c.allowed_ips
            for c in others
            if c is not None and _same_networks(c.allowed_ips, peer.allowed_ips)
        ),
        None,
    )
    # One held already is canonical, and kept as it is (meshd.wg.model.canonical_networks).
    allowed = tuple(peer.allowed_ips) if allowed is None else allowed
    return PeerConfig(peer.public_key, endpoint, allowed, peer.keepalive)


def _same_config(config: PeerConfig, peer: _PeerBuilder) -> bool:
    """Whether ``peer`` as read says what ``config`` does (its endpoint written the
    canonical way, the same allowed-ips in any order)."""
    if config.endpoint != peer.endpoint or config.persistent_keepalive != peer.keepalive:
        return False
    return _same_networks(config.allowed_ips, peer.allowed_ips)


def _same_networks(have: tuple[IPNetwork, ...], found: list[IPNetwork]) -> bool:
    if len(found) != len(have):
        return False
    # Interned networks: the same objects, most often in the same order.
    return all(a is b for a, b in zip(found, have, strict=True)) or set(found) == set(have)


def parse_get_reply_untrusted(
    data: bytes,
    *,
    dialect: Dialect = Dialect.WIREGUARD_GO,
    now: float | None = None,
    known: Mapping[bytes, PeerStatus] | None = None,
    expected: Mapping[WgKey, PeerConfig] | None = None,
) -> DeviceState:
    """Parse a complete ``get`` reply into a :class:`DeviceState` (:class:`GetReplyParser`).

    ``now`` (Unix seconds) is needed for boringtun, whose handshake times are relative; a
    boringtun reply with a handshake and no ``now`` is a programming error (ValueError).
    A non-zero errno raises :class:`UapiErrnoError`; anything malformed
    :class:`UapiDecodeError`.
    """
    parser = GetReplyParser(dialect=dialect, now=now, known=known, expected=expected)
    for start in range(0, len(data), _CHUNK):
        parser.receive_untrusted(data[start : start + _CHUNK])
    return parser.finish()


def _peer_field(peer: _PeerBuilder, key: str, value: str) -> None:
    if key == "endpoint":
        peer.endpoint = value
    elif key == "allowed_ip":
        peer.allowed_ips.append(_network(value))
    elif key == "persistent_keepalive_interval":
        peer.keepalive = _uint(key, value, 65535) or None
    elif key == "last_handshake_time_sec":
        peer.handshake_sec = _uint(key, value, _U64_MAX)
    elif key == "last_handshake_time_nsec":
        peer.handshake_nsec = _uint(key, value, _NSEC_PER_SEC - 1)
    elif key == "rx_bytes":
        peer.rx_bytes = _uint(key, value, _U64_MAX)
    elif key == "tx_bytes":
        peer.tx_bytes = _uint(key, value, _U64_MAX)
    elif key == "preshared_key":
        _hex_key(key, value)
    elif key == "protocol_version":
        if value != "1":
            raise UapiDecodeError(f"UAPI peer has protocol_version={value[:16]}")
    elif key in ("private_key", "own_public_key", "listen_port", "fwmark"):
        raise UapiDecodeError(f"UAPI reply has device key {key}= inside a peer")
    # Unknown peer keys are skipped.


def _endpoint(value: str) -> str:
    try:
        return canonical_endpoint(value)
    except ValueError:
        raise UapiDecodeError(f"UAPI endpoint {value[:64]!r} is malformed") from None


def _network(value: str) -> IPNetwork:
    """The network ``value`` names: the one meshd already holds if any (found from the text
    alone), else a new one, interned."""
    address, _, length = value.partition("/")
    if length.isdigit() and len(length) <= 3 and int(length) <= 128:
        # An address is 56 bytes, a network with its address and dict ~500. Most allowed-ips
        # are IPv6 and read the way _ipv6_packed reads quickly (ipaddress: ~14 us each).
        packed = _ipv6_packed(address)
        try:
            if packed is None:
                kind = ipaddress.IPv6Address if ":" in address else ipaddress.IPv4Address
                packed = kind(address).packed
            found = held(packed, int(length))
        except ValueError:
            found = None
        if found is not None:
            return found
    try:
        return interned(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise UapiDecodeError(f"UAPI allowed_ip {value[:64]!r} is malformed") from None


def _ipv6_packed(text: str) -> bytes | None:
    """The 16 bytes of the IPv6 address ``text`` if it is written as WireGuard
    implementations write one (lower-case, at most one ``::``), else None: any other form,
    and anything that is no address, is left to :mod:`ipaddress`."""
    match = _IPV6.fullmatch(text)
    if match is None:
        return None
    before, after = match.groups()
    if before is None:  # eight groups
        groups = text.split(":")
    else:
        head = before.split(":") if before else []
        tail = after.split(":") if after else []
        missing = 8 - len(head) - len(tail)
        if missing < 1:
            return None
        groups = [*head, *("0" * missing), *tail]
    return bytes.fromhex("".join([group.zfill(4) for group in groups]))


def _hex_key(key: str, value: str) -> bytes:
    if _HEX_KEY.fullmatch(value) is None:
        raise UapiDecodeError(f"UAPI {key} is not 64 hex digits")
    return bytes.fromhex(value)


def _uint(key: str, value: str, maximum: int) -> int:
    if _UINT.fullmatch(value) is None or int(value) > maximum:
        raise UapiDecodeError(f"UAPI {key}={value[:24]} is not a number up to {maximum}")
    return int(value)
