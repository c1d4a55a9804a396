"""Framed streams over libp2p, and the errors of the libp2p transport.

:class:`FramedStream` carries our length-prefixed frames (:mod:`meshd.gossip.framing`, the
pure codec) over one libp2p stream, with a frame size limit and a timeout on every
operation. The exceptions libp2p raises are turned into :class:`TransportError` here and in
:mod:`meshd.gossip.host`; they never reach the caller as themselves.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import INetStream
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.stream.exceptions import StreamEOF

from meshd.errors import DecodeError, MeshdError
from meshd.gossip.bug_log import BugLog, QuietLog
from meshd.gossip.framing import FrameDecoder, encode_frame

__all__ = [
    "LIBP2P_ERRORS",
    "FrameTimeout",
    "FramedStream",
    "StreamEnded",
    "StreamHandler",
    "TransportError",
    "serve_framed",
]

logger = logging.getLogger(__name__)

_READ_CHUNK: Final = 64 * 1024

LIBP2P_ERRORS: Final = (
    BaseLibp2pError,
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)
"""What a libp2p call may raise when the network or the peer fails."""


class TransportError(MeshdError):
    """A dial, stream or publish failed in the libp2p transport."""


class MessageTooLarge(TransportError):
    """A message to publish is larger than the gossip topic's limit; it is not sent."""


class UndialableAddress(TransportError):
    """An address that cannot be dialled as written (not a /p2p multiaddr, or our own)."""


class FrameTimeout(TransportError):
    """A frame was not sent or received within the stream's timeout."""


class StreamEnded(TransportError):
    """The remote closed the stream cleanly, between two frames."""


class FramedStream:
    """One libp2p stream carrying length-prefixed frames, with a size limit and a timeout."""

    def __init__(self, stream: INetStream, *, max_frame_size: int, timeout: float) -> None:
        self._stream = stream
        self._max_frame_size = max_frame_size
        self._timeout = timeout
        self._decoder = FrameDecoder(max_frame_size)
        self._ready: deque[bytes] = deque()
        self._eof = False

    @property
    def remote_peer_id(self) -> str:
        """The peer at the other end, authenticated by the Noise handshake."""
        return str(self._stream.muxed_conn.peer_id)

    @property
    def protocol_id(self) -> str:
        return str(self._stream.get_protocol())

    async def send_frame(self, payload: bytes) -> None:
        """Send one frame. :class:`FrameTooLarge` if it is larger than the frame limit."""
        frame = encode_frame(payload, max_frame_size=self._max_frame_size)
        with trio.move_on_after(self._timeout) as scope:
            try:
                await self._stream.write(frame)
            except LIBP2P_ERRORS as exc:
                raise TransportError(f"stream write failed: {exc}") from exc
        if scope.cancelled_caught:
            raise FrameTimeout(f"sending a frame took longer than {self._timeout} s")

    async def receive_frame(self, max_size: int | None = None) -> bytes:
        """Receive one frame.

        ``max_size``: this frame and any after it are at most that large (a protocol whose
        messages are small reads no more of a peer than one: the host's frame limit is for
        its largest protocol, sync). Raises :class:`DecodeError` for an oversized or
        truncated frame (the stream is then reset), :class:`StreamEnded` if the remote
        closed between frames, :class:`FrameTimeout` if no whole frame arrives within the
        timeout and :class:`TransportError` if the stream fails.
        """
        if max_size is not None:
            self._decoder.lower_limit(max_size)
        with trio.move_on_after(self._timeout):
            return await self._receive_frame()
        raise FrameTimeout(f"no frame within {self._timeout} s")

    async def _receive_frame(self) -> bytes:
        while not self._ready:
            if self._eof:
                raise StreamEnded("stream closed by the remote")
            try:
                data = await self._stream.read(_READ_CHUNK)
            except StreamEOF:
                data = b""
            except LIBP2P_ERRORS as exc:
                raise TransportError(f"stream read failed: {exc}") from exc
            try:
                if data:
                    self._ready.extend(self._decoder.feed_untrusted(data))
                else:
                    self._eof = True
                    self._decoder.end_untrusted()
            except DecodeError:
                await self.reset()
                raise
        return self._ready.popleft()

    async def close(self) -> None:
        """Close our side; the remote reads end of stream after our last frame."""
        with trio.move_on_after(self._timeout):
            try:
                await self._stream.close()
            except LIBP2P_ERRORS as exc:
                logger.debug("closing stream to %s: %s", self.remote_peer_id, exc)

    async def reset(self) -> None:
        """Abort the stream in both directions."""
        with trio.move_on_after(self._timeout):
            try:
                await self._stream.reset()
            except LIBP2P_ERRORS as exc:
                logger.debug("resetting stream to %s: %s", self.remote_peer_id, exc)


StreamHandler = Callable[[FramedStream], Awaitable[None]]


def serve_framed(
    protocol_id: str, handler: StreamHandler, *, max_frame_size: int, timeout: float
) -> Callable[[INetStream], Awaitable[None]]:
    """Wrap ``handler`` as a libp2p stream handler for ``protocol_id``.

    The stream is closed when the handler returns and reset if it raises; an exception
    from the handler is logged, never propagated into libp2p.
    """

    bugs = BugLog(logger, f"the {protocol_id} handler", clock=time.monotonic)
    failed = QuietLog(logger, clock=time.monotonic)  # any peer may open streams that fail

    async def serve(stream: INetStream) -> None:
        framed = FramedStream(stream, max_frame_size=max_frame_size, timeout=timeout)
        try:
            await handler(framed)
        except MeshdError as exc:
            failed.log(
                logging.INFO, "%s stream from %s failed: %s", protocol_id,
                framed.remote_peer_id, exc,
            )  # fmt: skip
            await framed.reset()
        except Exception as exc:  # noqa: BLE001 (a handler's bug resets its stream alone)
            bugs.report(exc, f"(stream from {framed.remote_peer_id} reset)")
            await framed.reset()
        else:
            await framed.close()

    return serve
