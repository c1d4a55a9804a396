"""Properties of the stream framing: round trips under any chunking, typed failure only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.errors import DecodeError
from meshd.gossip.framing import HEADER_SIZE, FrameDecoder, FrameTooLarge, encode_frame

MAX = 512

payloads = st.lists(st.binary(max_size=MAX), max_size=8)


def _chunk(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces: list[bytes] = []
    start = 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


@given(payloads, st.lists(st.integers(min_value=0, max_value=8 * (MAX + HEADER_SIZE))))
def test_round_trip_under_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode_frame(f, max_frame_size=MAX) for f in frames)
    decoder = FrameDecoder(MAX)
    out: list[bytes] = []
    for piece in _chunk(wire, cuts):
        out.extend(decoder.feed_untrusted(piece))
    decoder.end_untrusted()
    assert out == frames
    assert decoder.buffered == 0


@given(st.binary(max_size=2048), st.lists(st.integers(min_value=0, max_value=2048)))
def test_any_bytes_give_frames_or_decode_error(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(MAX)
    try:
        for piece in _chunk(data, cuts):
            for frame in decoder.feed_untrusted(piece):
                assert len(frame) <= MAX
        decoder.end_untrusted()
    except DecodeError:
        pass


@given(st.binary(max_size=64))
def test_failed_decoder_stays_failed(tail: bytes) -> None:
    decoder = FrameDecoder(8)
    with pytest.raises(DecodeError, match="exceeds"):
        decoder.feed_untrusted((9).to_bytes(4, "big"))
    with pytest.raises(DecodeError, match="already failed"):
        decoder.feed_untrusted(tail)
    with pytest.raises(DecodeError, match="already failed"):
        decoder.end_untrusted()


def test_oversize_header_refused_before_its_body_arrives() -> None:
    decoder = FrameDecoder(16)
    with pytest.raises(DecodeError):
        decoder.feed_untrusted(b"\xff\xff\xff\xff")


def test_frame_at_the_limit_and_empty_frame_pass() -> None:
    decoder = FrameDecoder(4)
    wire = encode_frame(b"abcd", max_frame_size=4) + encode_frame(b"", max_frame_size=4)
    assert wire[:HEADER_SIZE] == b"\x00\x00\x00\x04"
    assert decoder.feed_untrusted(wire) == [b"abcd", b""]


def test_truncated_stream_is_a_decode_error() -> None:
    decoder = FrameDecoder(16)
    assert decoder.feed_untrusted(encode_frame(b"hello")[:-1]) == []
    with pytest.raises(DecodeError, match="inside a frame"):
        decoder.end_untrusted()


def test_encoding_an_oversize_payload_is_a_caller_bug() -> None:
    with pytest.raises(FrameTooLarge, match="exceeds"):
        encode_frame(b"x" * 5, max_frame_size=4)
    with pytest.raises(ValueError, match="max_frame_size"):
        FrameDecoder(-1)


def test_a_lowered_limit_refuses_a_header_over_it_and_is_never_raised() -> None:
    decoder = FrameDecoder(1 << 20)
    decoder.lower_limit(256)
    decoder.lower_limit(4096)  # not raised again
    assert decoder.max_frame_size == 256
    assert decoder.feed_untrusted(encode_frame(b"x" * 256)) == [b"x" * 256]
    with pytest.raises(DecodeError, match="exceeds the limit of 256"):
        decoder.feed_untrusted(encode_frame(b"x" * 257)[:4])  # the header alone
