"""The stream protocols over libp2p: anti-entropy sync and enrollment (the I/O halves).

The protocol logic is pure and lives in :mod:`meshd.gossip.sync` and
:mod:`meshd.gossip.enroll`; this module only moves their frames.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from meshd.errors import DecodeError
from meshd.gossip import enroll
from meshd.gossip.host import FramedStream
from meshd.gossip.sync import MAX_MESSAGE, SyncSession, decode_message_untrusted, encode_message
from meshd.records import MAX_RECORD, Admission, Enrollment

Ingest = Callable[[Sequence[bytes]], Awaitable[int]]
"""Merge records a peer pushed; return how many were new."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    messages: int
    bytes_sent: int
    bytes_received: int
    records_sent: int
    records_received: int
    new: int


async def converse(
    stream: FramedStream, session: SyncSession, ingest: Ingest, *, initiator: bool
) -> SyncResult:
    """Run one sync conversation to its end on ``stream``."""
    sent = received = messages = new = 0
    if initiator:
        first = encode_message(session.start())
        await stream.send_frame(first)
        sent, messages = len(first), 1
    while True:
        data = await stream.receive_frame(max_size=MAX_MESSAGE)
        received += len(data)
        messages += 1
        step = session.receive(decode_message_untrusted(data))
        if step.records:
            new += await ingest(step.records)
        if step.reply is None:
            break
        reply = encode_message(step.reply)
        await stream.send_frame(reply)
        sent += len(reply)
        messages += 1
        if session.done:
            break
    return SyncResult(messages, sent, received, session.records_sent, session.records_received, new)


async def request_admission(stream: FramedStream, enrollment: Enrollment) -> Admission:
    """The joiner's side: send the enrollment, return the admission or raise the refusal."""
    await stream.send_frame(enroll.encode_request(enrollment))
    reply = await stream.receive_frame(max_size=enroll.MAX_REPLY)
    return enroll.decode_reply_untrusted(reply, enrollment)


async def read_enrollment(stream: FramedStream) -> Enrollment:
    data = await stream.receive_frame(max_size=MAX_RECORD)  # an enrollment is one record
    try:
        return enroll.decode_request_untrusted(data)
    except DecodeError:
        raise
