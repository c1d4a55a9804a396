"""The inbound stream cap: how many streams a remote may hold open on one connection.

py-libp2p 0.8.1's Yamux accepts every stream the remote opens, and the host gives each one a
task that negotiates its protocol (up to ``inbound_stream_protocol_negotiation_timeout``,
10 s by default) and then runs its handler. Opening a stream costs the remote a 12-byte
frame; one connection on loopback opened 5,000 in 11 s and the host held 3,139 of them at
once, each with its task (~41 MB between both ends), whether or not its peer was a member.

:func:`cap_inbound_streams` bounds each connection the host makes: at most
``per_connection`` streams that the remote opened may be alive at once (negotiating, served,
or closed with bytes not yet read); one more is reset as it is accepted and counted
(:attr:`StreamCap.refused`). py-libp2p keeps at most 3 connections per peer
(``ConnectionConfig.max_connections_per_peer``), and non-members' connections are bounded
per source (:mod:`meshd.gossip.strangers`), so what one peer can make us hold is bounded.
An honest peer holds a handful: one gossipsub stream, and a sync, an enrollment or a NAT
exchange at a time. The host also negotiates inbound streams within its handshake timeout,
not libp2p's 10 s (:func:`meshd.gossip.stack.build_stack`).

A stream reset (by us, or by the remote) was kept while data the remote sent on it was
unread, up to a minute (libp2p's stale sweeper), counting against the cap: the remote sent
a request and more, the handler refused it and reset the stream, and the request's bytes
stayed. ``_reset_and_forget`` (a patch of ``YamuxStream.reset``) drops a reset stream's
bookkeeping and unread bytes at once: nobody reads a reset stream.

py-libp2p builds every Yamux connection with its own class, whatever ``muxer_opt`` names
(``MuxerMultistream.new_conn``), so the cap wraps that method of the host's upgrader and
gives each new connection its own ``accept_stream``.

To re-check on an upgrade of py-libp2p (the tests are in tests/gossip/test_stream_cap.py):
``Swarm.upgrader.muxer_multistream.new_conn`` (where each connection's muxer is made),
``Yamux.accept_stream`` (what ``SwarmConn._handle_new_streams`` awaits for each stream),
``Yamux.streams`` (every stream by id, dropped once closed both ways and drained, or
reset, or a minute after), ``YamuxStream.is_initiator``, ``YamuxStream.reset`` and
``Yamux.stream_buffers``/``stream_events``/``streams_lock``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import IHost, IMuxedConn, IMuxedStream, ISecureConn
from libp2p.peer.id import ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from meshd.gossip.bug_log import QuietLog

__all__ = ["MAX_INBOUND_STREAMS", "StreamCap", "cap_inbound_streams"]

logger = logging.getLogger("meshd.gossip.libp2p_workarounds")

MAX_INBOUND_STREAMS: Final = 64
"""Streams the remote opened that may be alive at once on one connection."""


@dataclass
class StreamCap:
    """The cap of one host, and what it refused."""

    per_connection: int = MAX_INBOUND_STREAMS
    refused: int = 0
    """Inbound streams reset as they were accepted: their connection held the cap."""
    log: QuietLog = field(default_factory=lambda: QuietLog(logger, clock=time.monotonic))


def cap_inbound_streams(host: IHost, cap: StreamCap) -> None:
    """Bound the streams a remote holds open on each connection ``host`` makes from now on."""
    muxers = host.get_network().upgrader.muxer_multistream  # type: ignore[attr-defined]
    new_conn = muxers.new_conn

    async def new_capped_conn(conn: ISecureConn, peer_id: ID) -> IMuxedConn:
        muxed: IMuxedConn = await new_conn(conn, peer_id)
        if isinstance(muxed, Yamux):
            muxed.accept_stream = functools.partial(  # type: ignore[method-assign]
                _accept_within, muxed, muxed.accept_stream, cap
            )
        return muxed

    muxers.new_conn = new_capped_conn


async def _accept_within(
    muxed: Yamux, accept: Callable[[], Awaitable[IMuxedStream]], cap: StreamCap
) -> IMuxedStream:
    """The next stream the remote opened that its connection may hold; the others reset."""
    while True:
        stream = await accept()
        held = sum(1 for s in muxed.streams.values() if not s.is_initiator)
        if held <= cap.per_connection:
            return stream
        cap.refused += 1
        cap.log.log(
            logging.INFO,
            "peer %s holds %d streams on one connection: a new one was reset",
            muxed.peer_id, cap.per_connection,
        )  # fmt: skip
        await stream.reset()


async def _reset_and_forget(self: YamuxStream) -> None:
    """``YamuxStream.reset``, then the stream's bookkeeping and unread bytes dropped."""
    await _libp2p_reset(self)
    conn = self.conn
    async with conn.streams_lock:
        if conn.streams.get(self.stream_id) is self:
            conn.stream_buffers.pop(self.stream_id, None)
            conn._finalize_stream_locked(self, fully_closed=True)


_libp2p_reset = YamuxStream.reset
