"""The streams a remote may hold open on one connection (libp2p_workarounds/stream_cap.py).

The attack: opening a Yamux stream costs the remote a 12-byte frame, and py-libp2p gave each
one a task and kept it, on any connection, member or not: one connection on loopback made
the host hold 3,139 streams in 11 s. Now a connection holds at most 64 that its remote
opened; the others are reset as they come and counted, a reset stream is forgotten at once
(with what it had sent), a stream names its protocol within the handshake timeout, and the
host serves everyone else as before.
"""

from __future__ import annotations

import trio
from libp2p.abc import INetConn
from libp2p.peer.id import ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from meshd.gossip.host import FramedStream, GossipHost
from meshd.gossip.libp2p_workarounds.stream_cap import MAX_INBOUND_STREAMS
from tests.gossip.support import config, link, run_trio, running_hosts, wait_until

ECHO = "/meshd-test/echo/1"
SLOW = "/meshd-test/slow/1"
SLACK = 12
"""Streams in flight past the cap: libp2p's queue of accepted streams (10) and the one
being looked at."""


def _muxer(host: GossipHost, peer_id: str) -> Yamux:
    network = host._require_host().get_network()
    conns: list[INetConn] | INetConn = network.connections[ID.from_base58(peer_id)]
    conn = conns[0] if isinstance(conns, list) else conns
    muxed = conn.muxed_conn
    assert isinstance(muxed, Yamux)
    return muxed


def _held(muxed: Yamux) -> int:
    """Streams the remote opened that the muxer still keeps (live, or closed and unread)."""
    return sum(1 for s in muxed.streams.values() if not s.is_initiator)


def _opening(muxed: Yamux) -> Yamux:
    """The attacker's side: libp2p's own limit of 256 streams it opens, lifted."""
    muxed.stream_backlog_semaphore = trio.Semaphore(1 << 20)
    return muxed


async def _echo(stream: FramedStream) -> None:
    await stream.send_frame(await stream.receive_frame())


async def _slow(stream: FramedStream) -> None:
    await trio.sleep(30)


def _hello(protocol: str) -> bytes:
    """Multistream-select's header and a protocol's name, as a dialler sends them."""
    header = b"/multistream/1.0.0\n"
    name = protocol.encode() + b"\n"
    return bytes([len(header)]) + header + bytes([len(name)]) + name


def test_one_connection_holds_at_most_the_cap_and_others_are_served() -> None:
    async def body() -> None:
        async with running_hosts(config(), config(), config()) as (attacker, server, honest):
            server.set_stream_handler(ECHO, _echo)
            await attacker.connect(server.listen_addrs()[0])
            await honest.connect(server.listen_addrs()[0])
            opener = _opening(_muxer(attacker, server.peer_id))
            for _ in range(600):
                await opener.open_stream()  # never names a protocol
            served = _muxer(server, attacker.peer_id)
            await trio.sleep(1.0)
            assert _held(served) <= MAX_INBOUND_STREAMS + SLACK  # before: ~600
            assert server.streams.refused >= 600 - MAX_INBOUND_STREAMS - SLACK
            # Another peer is served as before, and so is the attacker's next connection
            # once its streams are gone.
            stream = await honest.open_stream(server.peer_id, ECHO)
            await stream.send_frame(b"ping")
            assert await stream.receive_frame() == b"ping"
            await stream.close()

    run_trio(body, timeout=30)


def test_a_refused_stream_that_named_a_protocol_and_sent_more_leaves_nothing() -> None:
    """Streams that name a served protocol and send a frame: those over the cap are reset
    and forgotten at once, with their bytes (libp2p kept a reset stream with unread bytes
    for a minute, and each counted against the cap)."""

    async def body() -> None:
        async with running_hosts(config(), config()) as (attacker, server):
            server.set_stream_handler(SLOW, _slow)
            await attacker.connect(server.listen_addrs()[0])
            opener = _opening(_muxer(attacker, server.peer_id))
            for _ in range(300):
                stream = await opener.open_stream()
                await stream.write(_hello(SLOW) + b"\x00\x00\x10\x00" + b"x" * 4096)
            served = _muxer(server, attacker.peer_id)
            await trio.sleep(1.0)
            assert _held(served) <= MAX_INBOUND_STREAMS + SLACK  # before: ~300
            assert server.streams.refused >= 300 - MAX_INBOUND_STREAMS - SLACK
            unread = sum(len(served.stream_buffers.get(sid, b"")) for sid in served.streams)
            assert unread <= (MAX_INBOUND_STREAMS + SLACK) * 4200

    run_trio(body, timeout=30)


def test_a_stream_that_names_no_protocol_is_reset_at_the_handshake_timeout() -> None:
    async def body() -> None:
        async with running_hosts(config(), config(handshake_timeout=1.0)) as (client, server):
            await link(client, server)
            served = _muxer(server, client.peer_id)
            gossip = _held(served)  # the client's gossipsub stream
            opener = _muxer(client, server.peer_id)
            for _ in range(8):
                await opener.open_stream()
            await wait_until(lambda: _held(served) == gossip + 8)
            # Reset within 5 s (wait_until's bound); libp2p's own timeout was 10 s.
            await wait_until(lambda: _held(served) == gossip)

    run_trio(body, timeout=20)


def test_a_stream_our_handler_resets_is_forgotten_with_what_it_sent() -> None:
    async def refuse(stream: FramedStream) -> None:
        raise RuntimeError("refused")  # serve_framed resets the stream

    async def body() -> None:
        async with running_hosts(config(), config()) as (client, server):
            server.set_stream_handler(ECHO, refuse)
            await link(client, server)
            served = _muxer(server, client.peer_id)
            gossip = _held(served)  # the client's gossipsub stream
            opener = _muxer(client, server.peer_id)
            for _ in range(20):
                stream = await opener.open_stream()
                await stream.write(_hello(ECHO) + b"y" * 2000)
            await trio.sleep(1.0)
            assert _held(served) == gossip
            assert sum(len(b) for b in served.stream_buffers.values()) < 2000

    run_trio(body, timeout=20)
