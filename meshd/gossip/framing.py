"""Length-prefixed frames for meshd's stream protocols.

A frame is a 4-byte big-endian unsigned length followed by that many payload bytes. The
length is fixed-width, so every frame has exactly one encoding; an empty payload is a valid
frame. Every decoder is built with a maximum frame size and refuses a larger frame as soon
as its header arrives, before buffering any of its body.

This module is pure: no sockets, no clocks. The libp2p shell (``meshd.gossip.host``) feeds
it the bytes a stream delivers. Bad input raises :class:`meshd.errors.DecodeError` and
nothing else.
"""

from __future__ import annotations

import struct
from typing import Final

from meshd.errors import DecodeError, MeshdError

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "HEADER_SIZE",
    "FrameDecoder",
    "FrameTooLarge",
    "encode_frame",
]

_HEADER: Final = struct.Struct(">I")

HEADER_SIZE: Final = _HEADER.size
"""Bytes of length prefix in front of every payload."""

DEFAULT_MAX_FRAME_SIZE: Final = 1024 * 1024
"""Largest payload a decoder accepts unless told otherwise (1 MiB)."""

_LENGTH_LIMIT: Final = 2**32 - 1


class FrameTooLarge(MeshdError):
    """A payload we were asked to send is larger than the frame limit the peer enforces."""


def _check_max_frame_size(max_frame_size: int) -> None:
    if not 0 <= max_frame_size <= _LENGTH_LIMIT:
        raise ValueError(f"max_frame_size must be in [0, {_LENGTH_LIMIT}], got {max_frame_size}")


def encode_frame(payload: bytes, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Return ``payload`` with its length prefix.

    Raises :class:`FrameTooLarge` if the payload is larger than ``max_frame_size``: the peer
    would refuse it, so it is not sent.
    """
    _check_max_frame_size(max_frame_size)
    if len(payload) > max_frame_size:
        raise FrameTooLarge(f"frame payload of {len(payload)} bytes exceeds {max_frame_size}")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get back complete payloads.

    After it has raised :class:`DecodeError` once, the decoder stays failed: the stream is
    out of sync and must be dropped.
    """

    __slots__ = ("_buffer", "_failed", "_max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        _check_max_frame_size(max_frame_size)
        self._max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._failed = False

    @property
    def max_frame_size(self) -> int:
        """Largest payload this decoder accepts."""
        return self._max_frame_size

    def lower_limit(self, max_frame_size: int) -> None:
        """Accept no payload over ``max_frame_size`` from the next header read on (a limit
        is only ever lowered)."""
        _check_max_frame_size(max_frame_size)
        self._max_frame_size = min(self._max_frame_size, max_frame_size)

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet make a complete frame."""
        return len(self._buffer)

    def feed_untrusted(self, data: bytes) -> list[bytes]:
        """Take the next bytes of the stream; return the payloads they complete, in order.

        Raises :class:`DecodeError` if a frame header announces more than
        :attr:`max_frame_size` bytes.
        """
        if self._failed:
            raise DecodeError("frame decoder already failed; drop the stream")
        self._buffer += data
        frames: list[bytes] = []
        view = memoryview(self._buffer)
        offset = 0
        try:
            while len(view) - offset >= HEADER_SIZE:
                (length,) = _HEADER.unpack_from(view, offset)
                if length > self._max_frame_size:
                    self._failed = True
                    raise DecodeError(
                        f"frame of {length} bytes exceeds the limit of {self._max_frame_size}"
                    )
                end = offset + HEADER_SIZE + length
                if end > len(view):
                    break
                frames.append(bytes(view[offset + HEADER_SIZE : end]))
                offset = end
        finally:
            view.release()
        del self._buffer[:offset]
        return frames

    def end_untrusted(self) -> None:
        """Declare the end of the stream: raise :class:`DecodeError` if a frame is cut short."""
        if self._failed:
            raise DecodeError("frame decoder already failed; drop the stream")
        if self._buffer:
            self._failed = True
            raise DecodeError(f"stream ended inside a frame ({len(self._buffer)} bytes pending)")
