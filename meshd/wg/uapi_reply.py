"""A WireGuard device's UAPI replies: a ``get`` read as it arrives, and a ``set``'s errno.

Replies are untrusted: :class:`GetReplyParser` and the ``*_untrusted`` functions raise only
:class:`~meshd.wg.errors.UapiError` subclasses (:class:`~meshd.wg.errors.UapiDecodeError`
for bytes that are not a reply, :class:`~meshd.wg.errors.UapiErrnoError` for a ``get``
refused), never ValueError or IndexError. Unknown keys in a reply are skipped, so that a
newer implementation adding a field does not break us. The lines, the dialects and the
values are read as :mod:`meshd.wg.uapi_syntax` reads them; the requests are
:mod:`meshd.wg.uapi_request`.

:func:`encode_get_reply` and :func:`encode_errno_reply` write replies as a device does, for
in-process fake devices and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nacl.bindings import crypto_scalarmult_base

from meshd.trust.keys import WgKey
from meshd.wg.errors import UapiDecodeError, UapiErrnoError
from meshd.wg.model import DeviceState, IPNetwork, PeerConfig, PeerStatus, key_to_hex
from meshd.wg.uapi_syntax import (
    MAX_LINE,
    MAX_REPLY_BYTES,
    Dialect,
    match_errno,
    match_line,
    parse_endpoint,
    parse_hex_key,
    parse_network,
    parse_uint,
    split_reply_untrusted,
)

_CHUNK = 65536  # a whole reply is parsed in pieces of this size, as the client reads it
_WINDOW = 8192  # and each piece decoded and split into lines this much at a time
_U64_MAX = 2**64 - 1
_NSEC_PER_SEC = 1_000_000_000


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
        end = data.rfind(b"\n")
        if end < 0:  # the unfinished line goes on
            self._tail += data
            if len(self._tail) > MAX_LINE:
                raise UapiDecodeError(f"UAPI reply line {self._number + 1} is too long")
            return self._complete
        tail, self._tail = self._tail, data[end + 1 :]
        if len(self._tail) > MAX_LINE:
            raise UapiDecodeError(f"UAPI reply line {self._number + 1} is too long")
        start = 0
        if tail:  # the line the last piece left unfinished, ended here
            start = data.find(b"\n") + 1
            self._decoded(tail + data[: start - 1])
        # The piece itself is read where it is (no copy of it joined to the last one's tail:
        # 64 KiB more while it was parsed), a window of whole lines at a time: a 64 KiB piece
        # split at once held ~230 KB of text and line strings while it was parsed.
        view = memoryview(data)
        while start <= end:
            stop = data.rfind(b"\n", start, start + _WINDOW) if end - start > _WINDOW else end
            if stop < 0:  # a line longer than a window, longer than any line may be
                stop = end  # (refused when read)
            self._decoded(view[start:stop])
            start = stop + 1
        return self._complete

    def _decoded(self, lines: bytes | memoryview) -> None:
        """Read ``lines`` (the newline that ends the last one left out)."""
        try:
            text = str(lines, "ascii")
        except UnicodeDecodeError:
            raise UapiDecodeError("UAPI reply is not ASCII") from None
        for line in text.split("\n"):
            self._line(line)

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
        match = match_line(line)
        if match is None:
            if not line:
                raise UapiDecodeError("UAPI reply does not end with errno=")
            raise UapiDecodeError(f"UAPI reply line {self._number} is not key=value: {line[:80]!r}")
        key, value = match.groups()
        if key == "errno":
            if match_errno(value) is None:
                raise UapiDecodeError(f"UAPI errno {value!r} is not a number")
            self._errno = abs(int(value))
            self._end_peer()
        elif key == "public_key":
            self._end_peer()
            peer_key = parse_hex_key(key, value)
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
            private = parse_hex_key(key, value)
            self._has_private_key = private != bytes(32)
            self._public_key = crypto_scalarmult_base(private) if self._has_private_key else None
        elif key == "own_public_key":
            self._public_key = parse_hex_key(key, value)
            self._has_private_key = True
        elif key == "listen_port":
            self._listen_port = parse_uint(key, value, 65535) or None
        elif key == "fwmark":
            self._fwmark = parse_uint(key, value, 2**32 - 1) or None
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


# -- what a device writes (fake devices, tests) --------------------------------------------


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
