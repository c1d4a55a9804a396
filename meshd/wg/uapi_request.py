"""Requests to a WireGuard device over the UAPI: ``get``, and ``set`` built from operations.

A ``set`` request is made of :mod:`meshd.wg.model` operations (:func:`encode_set_request`),
in the dialect of the device (:class:`~meshd.wg.uapi_syntax.Dialect`). It is read back into
operations by :func:`parse_set_request_untrusted`, what a device does with it: for
in-process fake devices and to check the encoder; like every ``*_untrusted`` function it
raises only :class:`~meshd.wg.errors.UapiDecodeError`. The device's replies are
:mod:`meshd.wg.uapi_reply`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from meshd.wg.errors import UapiDecodeError
from meshd.wg.model import (
    IPNetwork,
    Operation,
    RemovePeer,
    ReplacePeers,
    SetFwmark,
    SetListenPort,
    SetPrivateKey,
    UpdatePeer,
    key_to_hex,
)
from meshd.wg.uapi_syntax import (
    Dialect,
    parse_endpoint,
    parse_hex_key,
    parse_network,
    parse_uint,
    split_reply_untrusted,
)


def encode_get_request() -> bytes:
    return b"get=1\n\n"


def encode_set_request(
    operations: Sequence[Operation], dialect: Dialect = Dialect.WIREGUARD_GO
) -> bytes:
    """Encode operations as one ``set=1`` request.

    Device-wide operations must come before peer operations (the protocol has no way back
    from a peer section); ValueError otherwise. For boringtun ``update_only`` is left out.

    Written into one buffer an operation at a time, not as a list of every line joined: a
    request re-creating 10,000 peers (3 MB) held ~12 MB at its peak as 80,000 line strings,
    their join and its encoding, and the daemon's RSS kept much of that peak.
    """
    out = bytearray(b"set=1\n")
    in_peers = False
    for op in operations:
        if isinstance(op, UpdatePeer | RemovePeer):
            in_peers = True
            out += "\n".join(_peer_lines(op, dialect)).encode("ascii")
        elif in_peers:
            raise ValueError(f"{op!r} must come before the peer operations")
        else:
            out += _device_line(op).encode("ascii")
        out += b"\n"
    out += b"\n"
    return bytes(out)


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
            peer = _RequestPeer(parse_hex_key(key, value))
        elif peer is None:
            ops.append(_device_operation(key, value))
        else:
            peer.add(key, value)
    if peer is not None:
        ops.append(peer.operation())
    return ops


def _device_operation(key: str, value: str) -> Operation:
    if key == "private_key":
        return SetPrivateKey(parse_hex_key(key, value))
    if key == "listen_port":
        return SetListenPort(parse_uint(key, value, 65535))
    if key == "fwmark":
        return SetFwmark(parse_uint(key, value, 2**32 - 1))
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
            self.endpoint = parse_endpoint(value)
        elif key == "persistent_keepalive_interval":
            self.keepalive = parse_uint(key, value, 65535)
        elif key == "allowed_ip":
            self.allowed_ips.append(parse_network(value))
        elif key == "preshared_key":
            parse_hex_key(key, value)
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
