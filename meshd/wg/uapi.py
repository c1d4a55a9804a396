"""Async UAPI client: ``get`` and ``set`` over a WireGuard implementation's unix socket.

One command per connection: wireguard-go would accept more, boringtun answers one and then
ignores the rest, and a connection is cheap (``get`` about 0.3 ms on wireguard-go). Every
exchange has a deadline. A failed ``set`` is not rolled back by the device: after
:class:`~meshd.wg.errors.UapiErrnoError` (or any other error of a ``set``) read the device
again and plan from what it says.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence

import trio

from meshd.trust.keys import WgKey
from meshd.wg.errors import UapiConnectionError, UapiDecodeError, UapiErrnoError
from meshd.wg.model import (
    DeviceState,
    Operation,
    PeerConfig,
    PeerStatus,
    RemovePeer,
    UpdatePeer,
)
from meshd.wg.uapi_peers import ReadMemo
from meshd.wg.uapi_reply import GetReplyParser, parse_errno_untrusted
from meshd.wg.uapi_request import encode_get_request, encode_set_request
from meshd.wg.uapi_syntax import MAX_REPLY_BYTES, Dialect

#: Where wireguard-go and boringtun put their sockets (shared by all network namespaces).
DEFAULT_SOCKET_DIR = "/var/run/wireguard"
DEFAULT_TIMEOUT = 5.0
#: A ``set``'s deadline grows by this much per peer operation it carries: wireguard-go takes
#: ~0.1-0.5 ms to create a peer and ~0.5-0.7 ms to give one a keepalive (a handshake
#: initiation), more on a loaded machine; a set of 1,000 has 7 s, not 5.
SET_TIMEOUT_PER_PEER = 0.002
#: The most of a reply read at once. A piece read waits for the event loop in hand (trio
#: yields once after each read) while other work runs, and two reads run at a time (the
#: punching service's and the reconcile loop's): pieces of 64 KiB held ~130 bytes a member
#: in a trace of 1,000 members.
PIECE = 16384


def socket_path(ifname: str, socket_dir: str = DEFAULT_SOCKET_DIR) -> str:
    return os.path.join(socket_dir, f"{ifname}.sock")


class UapiClient:
    """Talks to one device. Holds no connection between calls, so it is safe to share.

    A ``get`` returns, for a peer that reads as :meth:`expect` was last told, that very
    :class:`PeerConfig`; for any other peer that reads as at the last ``get``, the objects it
    returned then. So the client keeps only the peers that read otherwise than expected (a
    roamed endpoint, a peer set by someone else): an unchanged device read again makes no
    copy of what the caller holds already."""

    def __init__(
        self,
        path: str,
        *,
        dialect: Dialect = Dialect.WIREGUARD_GO,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        set_timeout_per_peer: float = SET_TIMEOUT_PER_PEER,
    ) -> None:
        self.path = path
        self.dialect = dialect
        self.timeout = timeout
        self.set_timeout_per_peer = set_timeout_per_peer
        self._clock = clock
        self._expected: Mapping[WgKey, PeerConfig] = {}
        # The peers the last get read otherwise than expected, as it read them.
        self._known: dict[bytes, PeerStatus] = {}
        # And the text of those it read as expected (meshd.wg.uapi_peers).
        self._memo = ReadMemo()

    @classmethod
    def for_interface(
        cls,
        ifname: str,
        *,
        socket_dir: str = DEFAULT_SOCKET_DIR,
        dialect: Dialect = Dialect.WIREGUARD_GO,
    ) -> UapiClient:
        return cls(socket_path(ifname, socket_dir), dialect=dialect)

    async def get(self) -> DeviceState:
        """Read the device. Raises a :class:`~meshd.wg.errors.UapiError` subclass.

        The reply is parsed as it arrives (:class:`~meshd.wg.uapi_reply.GetReplyParser`).
        A peer that reads as expected (:meth:`expect`) is that configuration; any other that
        reads the same as at the last ``get`` is the objects it returned.
        """
        expected = self._expected
        parser = GetReplyParser(
            dialect=self.dialect,
            now=self._clock(),
            known=self._known,
            expected=expected,
            memo=self._memo,
        )
        await self._exchange(encode_get_request(), "get", parser.receive_untrusted, self.timeout)
        state = parser.finish()
        self._memo = parser.memo()
        self._known = {
            peer.public_key: peer
            for peer in state.peers
            if peer.config is not expected.get(WgKey(peer.public_key))
        }
        return state

    def expect(self, peers: Mapping[WgKey, PeerConfig]) -> None:
        """What the device should hold, peers by key (kept by reference, not copied: the
        caller's desired peers, not to be changed afterwards). A later ``get`` returns these
        objects for the peers that read the same."""
        self._expected = peers

    async def set(self, operations: Sequence[Operation]) -> None:
        """Apply operations in one request; nothing is sent for an empty list. The deadline
        is ``timeout`` plus ``set_timeout_per_peer`` for each peer operation."""
        if not operations:
            return
        reply = _Reply()
        peers = sum(isinstance(op, UpdatePeer | RemovePeer) for op in operations)
        timeout = self.timeout + self.set_timeout_per_peer * peers
        request = encode_set_request(operations, self.dialect)
        await self._exchange(request, "set", reply.feed, timeout)
        code = parse_errno_untrusted(bytes(reply.data))
        if code:
            raise UapiErrnoError(code, "set")

    def prepared_set(self, operations: Sequence[Operation]) -> Callable[[], None]:
        """:meth:`set`, its request encoded now, sent when the function returned is called:
        from a worker thread, over a blocking socket (which lets other threads run while it
        waits). The one use is a start, where the event loop's own thread loads the store
        meanwhile (:mod:`meshd.daemon.kept_peers`): nothing of the request is left to make
        there, where it would wait for that thread at each step."""
        peers = sum(isinstance(op, UpdatePeer | RemovePeer) for op in operations)
        request = encode_set_request(operations, self.dialect) if operations else b""
        timeout = self.timeout + self.set_timeout_per_peer * peers
        return lambda: self._set_blocking(request, timeout) if request else None

    def _set_blocking(self, request: bytes, timeout: float) -> None:
        reply = _Reply()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(self.path)
            except OSError as exc:
                raise UapiConnectionError(
                    f"cannot connect to WireGuard UAPI socket {self.path}: {exc.strerror or exc}"
                ) from None
            try:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(request)
                while not reply.feed(chunk := sock.recv(PIECE)) and chunk:
                    pass
            except TimeoutError:
                raise UapiConnectionError(
                    f"WireGuard UAPI set on {self.path} got no reply in time"
                ) from None
            except OSError as exc:
                raise UapiConnectionError(
                    f"WireGuard UAPI set on {self.path}: {exc.strerror or exc}"
                ) from None
        if not reply.data:
            raise UapiConnectionError(
                f"WireGuard UAPI socket {self.path} closed without answering set"
            )
        code = parse_errno_untrusted(bytes(reply.data))
        if code:
            raise UapiErrnoError(code, "set")

    async def _exchange(
        self, request: bytes, what: str, feed: Callable[[bytes], bool], seconds: float
    ) -> None:
        complete = False

        def noted(chunk: bytes) -> bool:
            nonlocal complete
            complete = feed(chunk)
            return complete

        with trio.move_on_after(seconds):
            await self._exchange_unbounded(request, what, noted)
            return
        if complete:
            # The device answered; this process only read it late (its event loop busy
            # elsewhere past the deadline, e.g. a long pass over 10,000 members).
            return
        raise UapiConnectionError(
            f"WireGuard UAPI {what} on {self.path} got no reply within {seconds:g} s"
        )

    async def _exchange_unbounded(
        self, request: bytes, what: str, feed: Callable[[bytes], bool]
    ) -> None:
        """Send ``request`` and give ``feed`` the reply as it comes, until ``feed`` says it
        is complete or the device closes the connection."""
        try:
            stream = await trio.open_unix_socket(self.path)
        except OSError as exc:
            hint = "is the WireGuard interface up?" if exc.errno in _NOT_THERE else ""
            raise UapiConnectionError(
                f"cannot connect to WireGuard UAPI socket {self.path}: {exc.strerror or exc}",
                hint=hint,
            ) from None
        async with stream:
            # The device may have answered and closed already (an error early in a set):
            # read whatever it said before giving up.
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(request)
            received = 0
            while True:
                try:
                    chunk = await stream.receive_some(PIECE)
                except trio.BrokenResourceError:
                    chunk = b""
                if not chunk:
                    break
                received += len(chunk)
                complete = feed(chunk)
                # Not kept while the next piece is awaited: a read of 10,000 peers is ~4 MB
                # in pieces, awaited one by one.
                del chunk
                if complete:
                    break
        if not received:
            raise UapiConnectionError(
                f"WireGuard UAPI socket {self.path} closed without answering {what}"
            )


class _Reply:
    """A short reply (a ``set``'s errno) collected whole; it ends at its first empty line."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, chunk: bytes) -> bool:
        scanned = len(self.data)
        self.data += chunk
        if len(self.data) > MAX_REPLY_BYTES:
            raise UapiDecodeError(f"UAPI set reply exceeds {MAX_REPLY_BYTES} bytes")
        return self.data.find(b"\n\n", max(0, scanned - 1)) >= 0


_NOT_THERE = frozenset({errno.ENOENT, errno.ECONNREFUSED})
