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
from collections.abc import Sequence
from dataclasses import dataclass, field

from nacl.bindings import crypto_scalarmult_base

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
_ERRNO = re.compile(r"-?[0-9]{1,10}")
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
    endpoint: str | None = None
    allowed_ips: list[IPNetwork] = field(default_factory=list)
    keepalive: int | None = None
    handshake_sec: int | None = None
    handshake_nsec: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0


def parse_get_reply_untrusted(
    data: bytes, *, dialect: Dialect = Dialect.WIREGUARD_GO, now: float | None = None
) -> DeviceState:
    """Parse a complete ``get`` reply into a :class:`DeviceState`.

    ``now`` (Unix seconds) is needed for boringtun, whose handshake times are relative; a
    boringtun reply with a handshake and no ``now`` is a programming error (ValueError).
    A non-zero errno raises :class:`UapiErrnoError`; anything malformed
    :class:`UapiDecodeError`.
    """
    pairs, errno = split_reply_untrusted(data)
    if errno:
        raise UapiErrnoError(errno, "get")
    public_key: bytes | None = None
    has_private_key = False
    listen_port: int | None = None
    fwmark: int | None = None
    peers: list[_PeerBuilder] = []
    seen: set[bytes] = set()

    for key, value in pairs:
        if key == "public_key":
            peer_key = _hex_key(key, value)
            if peer_key in seen:
                raise UapiDecodeError("UAPI reply lists a peer twice")
            seen.add(peer_key)
            peers.append(_PeerBuilder(peer_key))
        elif peers:
            _peer_field(peers[-1], key, value)
        elif key == "private_key":
            private = _hex_key(key, value)
            has_private_key = private != bytes(32)
            public_key = crypto_scalarmult_base(private) if has_private_key else None
        elif key == "own_public_key":
            public_key = _hex_key(key, value)
            has_private_key = True
        elif key == "listen_port":
            listen_port = _uint(key, value, 65535) or None
        elif key == "fwmark":
            fwmark = _uint(key, value, 2**32 - 1) or None
        # Any other device-level key is from a newer implementation: skip it.

    return DeviceState(
        public_key=public_key,
        has_private_key=has_private_key,
        listen_port=listen_port,
        fwmark=fwmark,
        peers=tuple(_finish_peer(p, dialect, now) for p in peers),
    )


def _peer_field(peer: _PeerBuilder, key: str, value: str) -> None:
    if key == "endpoint":
        peer.endpoint = _endpoint(value)
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


def _finish_peer(peer: _PeerBuilder, dialect: Dialect, now: float | None) -> PeerStatus:
    last_handshake: float | None = None
    if peer.handshake_sec is not None:
        seconds = peer.handshake_sec + peer.handshake_nsec / _NSEC_PER_SEC
        if dialect is Dialect.BORINGTUN:
            if now is None:
                raise ValueError("parsing a boringtun reply needs now= (handshakes are ages)")
            last_handshake = now - seconds
        elif seconds > 0:
            last_handshake = seconds
    config = PeerConfig(
        public_key=peer.public_key,
        endpoint=peer.endpoint,
        allowed_ips=tuple(peer.allowed_ips),
        persistent_keepalive=peer.keepalive,
    )
    return PeerStatus(config, last_handshake, peer.rx_bytes, peer.tx_bytes)


def _endpoint(value: str) -> str:
    try:
        return canonical_endpoint(value)
    except ValueError:
        raise UapiDecodeError(f"UAPI endpoint {value[:64]!r} is malformed") from None


def _network(value: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise UapiDecodeError(f"UAPI allowed_ip {value[:64]!r} is malformed") from None


def _hex_key(key: str, value: str) -> bytes:
    if _HEX_KEY.fullmatch(value) is None:
        raise UapiDecodeError(f"UAPI {key} is not 64 hex digits")
    return bytes.fromhex(value)


def _uint(key: str, value: str, maximum: int) -> int:
    if _UINT.fullmatch(value) is None or int(value) > maximum:
        raise UapiDecodeError(f"UAPI {key}={value[:24]} is not a number up to {maximum}")
    return int(value)
