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

import re
from collections.abc import Mapping

from nacl.bindings import crypto_scalarmult_base

from meshd.trust.keys import WgKey
from meshd.wg.errors import UapiDecodeError, UapiErrnoError
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus, key_to_hex
from meshd.wg.uapi_peers import (
    AFTER_PEER,
    PeerBuilder,
    ReadMemo,
    counters,
    fingerprint,
    match_peer,
    new_config,
    peer_field,
    same_config,
)
from meshd.wg.uapi_syntax import (
    MAX_LINE,
    MAX_REPLY_BYTES,
    Dialect,
    match_errno,
    match_line,
    parse_hex_key,
    parse_network,
    parse_uint,
    split_reply_untrusted,
)

_CHUNK = 65536  # a whole reply is parsed in pieces of this size, as the client reads it
_WINDOW = 8192  # and each piece decoded and split into lines this much at a time
_CARRY = 4096  # at most this much of a peer begun at the end of a piece kept for the next
_U64_MAX = 2**64 - 1
_NSEC_PER_SEC = 1_000_000_000


def parse_errno_untrusted(data: bytes) -> int:
    """The errno of a ``set`` reply (positive, 0 for success); the reply must hold nothing else."""
    pairs, errno = split_reply_untrusted(data)
    if pairs:
        raise UapiDecodeError(f"UAPI set reply has unexpected line {pairs[0][0]}=")
    return errno


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

    A wireguard-go peer is read whole where it can be (:mod:`meshd.wg.uapi_peers`), and
    ``memo`` is what the last read kept (:meth:`memo`, the next read's): a peer whose
    configuration's text is as it was then, with the same object expected, is that object,
    its text not read again.
    """

    def __init__(
        self,
        *,
        dialect: Dialect = Dialect.WIREGUARD_GO,
        now: float | None = None,
        known: Mapping[bytes, PeerStatus] | None = None,
        expected: Mapping[WgKey, PeerConfig] | None = None,
        memo: ReadMemo | None = None,
    ) -> None:
        self._dialect = dialect
        self._whole = dialect is Dialect.WIREGUARD_GO  # peers read whole where they can be
        self._memo = memo if memo is not None else _NO_MEMO
        self._memo_configs: list[PeerConfig] = []  # the next read's memo
        self._memo_prints: list[int] = []
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
        self._peer: PeerBuilder | None = None

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
            if len(self._tail) - self._tail.rfind(b"\n") - 1 > MAX_LINE:
                raise UapiDecodeError(f"UAPI reply line {self._number + 1} is too long")
            return self._complete
        if len(data) - end - 1 > MAX_LINE:
            raise UapiDecodeError(f"UAPI reply line {self._number + 1} is too long")
        tail = self._tail
        if self._whole and not data.endswith(b"\n\n"):
            # The last peer begun is kept for the next piece (a few lines), to be read whole.
            cut = data.rfind(b"\npublic_key=", max(0, end - _CARRY), end + 1)
            end = cut if cut >= 0 else end
        self._tail = data[end + 1 :]
        start = 0
        if tail:  # the lines the last piece left unfinished, ended here
            start = data.find(b"\npublic_key=", 0, _CARRY) if self._whole else -1
            start = (data.find(b"\n") if start < 0 else start) + 1
            self._decoded(tail + data[: start - 1], data.startswith(AFTER_PEER, start))
        # The piece itself is read where it is (no copy of it joined to the last one's tail:
        # 64 KiB more while it was parsed), a window of whole lines at a time: a 64 KiB piece
        # split at once held ~230 KB of text and line strings while it was parsed. A window
        # ends before a peer where it can, so that its last peer is read whole too.
        view = memoryview(data)
        while start <= end:
            stop = end
            if end - start > _WINDOW:
                stop = data.rfind(b"\npublic_key=", start, start + _WINDOW)
                if stop <= start:
                    stop = data.rfind(b"\n", start, start + _WINDOW)
            if stop < 0:  # a line longer than a window, longer than any line may be
                stop = end  # (refused when read)
            self._decoded(view[start:stop], data.startswith(AFTER_PEER, stop + 1))
            start = stop + 1
        return self._complete

    def _decoded(self, lines: bytes | memoryview, peer_next: bool) -> None:
        """Read ``lines`` (the newline that ends the last one left out); ``peer_next``:
        the line after them starts a peer or the errno."""
        try:
            text = str(lines, "ascii")
        except UnicodeDecodeError:
            raise UapiDecodeError("UAPI reply is not ASCII") from None
        if not self._whole:
            for line in text.split("\n"):
                self._line(line)
            return
        pos, size = 0, len(text)
        while True:
            if text.startswith("public_key=", pos) and self._errno is None:
                match = match_peer(text, pos)
                if match is not None and (peer_next or match.end() < size):
                    self._number += text.count("\n", pos, match.end()) + 1
                    self._whole_peer(match)
                    pos = match.end() + 1
                    if pos > size:
                        return
                    continue
            stop = text.find("\n", pos)
            if stop < 0:
                self._line(text[pos:])
                return
            self._line(text[pos:stop])
            pos = stop + 1

    def _whole_peer(self, match: re.Match[str]) -> None:
        """A wireguard-go peer matched whole (:data:`meshd.wg.uapi_peers.match_peer`):
        read as :meth:`_line` reads its lines, its configuration's text only if the memo
        does not know it."""
        self._end_peer()
        key_hex, endpoint, sec, nsec, tx, rx, keepalive, allowed = match.groups()
        peer_key = bytes.fromhex(key_hex)
        expected = self._expected.get(WgKey(peer_key))
        known = self._known.get(peer_key)
        handshake, rx_bytes, tx_bytes = counters(sec, nsec, tx, rx)
        config = print_ = None
        if expected is not None:
            print_ = fingerprint(endpoint, keepalive, allowed, expected)
            if self._memo.has(print_):  # read as it was, and as expected, at the last read
                config = expected
        if config is None:
            if expected is not None:
                peer_key = expected.public_key
            elif known is not None:
                peer_key = known.public_key
            peer = PeerBuilder(peer_key, expected, known, endpoint)
            peer.keepalive = parse_uint("persistent_keepalive_interval", keepalive, 65535) or None
            peer.allowed_ips = [parse_network(a) for a in allowed.split("\nallowed_ip=")[1:]]
            config = self._config(peer)
        if config is expected and print_ is not None:
            self._memo_configs.append(config)
            self._memo_prints.append(print_)
        self._append(config, known, handshake, rx_bytes, tx_bytes)

    def memo(self) -> ReadMemo:
        """What this read keeps for the next (its ``memo``), once finished."""
        return ReadMemo.of(self._memo_configs, self._memo_prints)

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
            self._peer = PeerBuilder(peer_key, expected, known)
        elif self._peer is not None:
            peer_field(self._peer, key, value)
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
        if peer is not None:
            self._status(peer, self._config(peer))

    def _config(self, peer: PeerBuilder) -> PeerConfig:
        expected, known = peer.expected, peer.known
        if expected is not None and same_config(expected, peer):
            return expected
        if known is not None and same_config(known.config, peer):
            return known.config
        return new_config(peer, expected, known.config if known is not None else None)

    def _status(self, peer: PeerBuilder, config: PeerConfig) -> None:
        """The peer's status appended, its configuration ``config``."""
        last_handshake: float | None = None
        if peer.handshake_sec is not None:
            seconds = peer.handshake_sec + peer.handshake_nsec / _NSEC_PER_SEC
            if self._dialect is Dialect.BORINGTUN:
                if self._now is None:
                    raise ValueError("parsing a boringtun reply needs now= (handshakes are ages)")
                last_handshake = self._now - seconds
            elif seconds > 0:
                last_handshake = seconds
        self._append(config, peer.known, last_handshake, peer.rx_bytes, peer.tx_bytes)

    def _append(
        self,
        config: PeerConfig,
        known: PeerStatus | None,
        last_handshake: float | None,
        rx_bytes: int,
        tx_bytes: int,
    ) -> None:
        if known is not None and known.last_handshake == last_handshake:
            if known.config is config and known.rx_bytes == rx_bytes and known.tx_bytes == tx_bytes:
                self._peers.append(known)
                return
            last_handshake = known.last_handshake  # the same float object
        self._peers.append(PeerStatus(config, last_handshake, rx_bytes, tx_bytes))


_NO_MEMO = ReadMemo()


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
