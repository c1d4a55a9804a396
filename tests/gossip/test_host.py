"""The libp2p transport on loopback: gossip, validation, streams, security, restart, shutdown."""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
import tracemalloc

import pytest
import trio
from libp2p import new_host
from libp2p.abc import ISecureTransport
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.security.secio.transport import ID as SECIO_PROTOCOL_ID
from libp2p.security.secio.transport import Transport as SecioTransport
from multiaddr import Multiaddr

from meshd.errors import DecodeError
from meshd.gossip.framing import FrameTooLarge
from meshd.gossip.host import (
    FORWARDED_LOGGER,
    DialBackoff,
    FramedStream,
    GossipHost,
    GossipMessage,
    MessageTooLarge,
    PeerConnected,
    PeerDisconnected,
    TransportError,
    UndialableAddress,
    peer_id_of,
    public_key_of,
)
from tests.gossip.support import accept_all, config, link, run_trio, running_hosts, wait_until

ECHO = "/meshd/test/echo/1"


async def _receive(host: GossipHost) -> GossipMessage:
    with trio.fail_after(3.0):
        return await host.messages.receive()


def _assert_nothing_pending(host: GossipHost) -> None:
    with pytest.raises(trio.WouldBlock):
        host.messages.receive_nowait()


def test_publish_reaches_all_and_rejected_message_is_not_forwarded() -> None:
    seen_by_relay: list[bytes] = []
    seen_by_c: list[tuple[str, str]] = []

    def relay_validator(data: bytes, author: str, forwarder: str) -> bool:
        seen_by_relay.append(data)
        return not data.startswith(b"bad")

    def last_validator(data: bytes, author: str, forwarder: str) -> bool:
        seen_by_c.append((author, forwarder))
        return True

    async def body() -> None:
        # a - b - c in a line: c can only hear a through b's forwarding.
        async with running_hosts(
            config(), config(), config(), validators=[accept_all, relay_validator, last_validator]
        ) as (a, b, c):
            await link(b, a)
            await link(c, b)
            assert a.peer_id not in c.connected_peers()

            started = time.perf_counter()
            await a.publish(b"hello")
            got_b = await _receive(b)
            got_c = await _receive(c)
            elapsed = time.perf_counter() - started
            assert got_b == GossipMessage(b"hello", a.peer_id)
            assert got_c == GossipMessage(b"hello", a.peer_id)
            print(f"publish -> delivered 2 hops away: {elapsed * 1000:.1f} ms")

            await a.publish(b"bad news")
            await a.publish(b"good news")
            assert (await _receive(b)).data == b"good news"
            assert (await _receive(c)).data == b"good news"
            await trio.sleep(0.3)
            _assert_nothing_pending(b)
            _assert_nothing_pending(c)
            assert b"bad news" in seen_by_relay
            assert b.rejected_messages == 1
            # c's validator hears who signed a message and which neighbour delivered it.
            assert (a.peer_id, b.peer_id) in seen_by_c
            _assert_nothing_pending(a)  # our own messages are not delivered back

    run_trio(body)


def test_oversized_messages_are_refused_before_the_validator() -> None:
    validated: list[bytes] = []

    def recording(data: bytes, author: str, forwarder: str) -> bool:
        validated.append(data)
        return True

    async def body() -> None:
        async with running_hosts(
            config(max_message_size=4096),
            config(max_message_size=1024),
            validators=[accept_all, recording],
        ) as (big, small):
            await link(small, big)
            with pytest.raises(MessageTooLarge, match="max_message_size"):
                await small.publish(b"x" * 1025)
            await big.publish(b"y" * 2000)  # within big's limit, above small's
            await big.publish(b"fits")
            assert (await _receive(small)).data == b"fits"
            await trio.sleep(0.2)
            _assert_nothing_pending(small)
            assert validated == [b"fits"]
            assert small.rejected_messages == 1

    run_trio(body)


def test_stream_request_response_and_oversize_frame() -> None:
    failures: list[Exception] = []

    async def echo(stream: FramedStream) -> None:
        try:
            while True:
                request = await stream.receive_frame()
                await stream.send_frame(request[::-1])
        except DecodeError as exc:
            failures.append(exc)
            raise

    async def body() -> None:
        async with running_hosts(config(max_frame_size=64 * 1024), config(max_frame_size=1024)) as (
            client,
            server,
        ):
            server.set_stream_handler(ECHO, echo)
            await client.connect(server.listen_addrs()[0])

            stream = await client.open_stream(server.peer_id, ECHO)
            assert stream.remote_peer_id == server.peer_id
            for request in (b"ping", b"", b"z" * 1024):
                await stream.send_frame(request)
                assert await stream.receive_frame() == request[::-1]
            await stream.close()

            stream = await client.open_stream(server.peer_id, ECHO)
            await stream.send_frame(b"o" * 1025)  # the server's limit is 1024
            with pytest.raises(TransportError):
                await stream.receive_frame()
            # The server resets the stream as it reads the frame, before its handler hears
            # of it: the client may see the reset first.
            await wait_until(lambda: len(failures) == 1)
            assert "exceeds" in str(failures[0])

            stream = await client.open_stream(server.peer_id, ECHO)
            with pytest.raises(FrameTooLarge, match="exceeds"):
                await stream.send_frame(b"o" * (64 * 1024 + 1))
            await stream.close()

            # Addresses that cannot be dialled are typed transport errors, not ValueError.
            with pytest.raises(UndialableAddress, match="not a dialable"):
                await client.connect("/ip4/127.0.0.1/tcp/1")
            with pytest.raises(UndialableAddress, match="ourselves"):
                await client.connect(client.listen_addrs()[0])

    run_trio(body)


@pytest.mark.parametrize("weak", ["plaintext", "secio"])
def test_peer_without_noise_cannot_connect(weak: str) -> None:
    async def body() -> None:
        async with running_hosts(config()) as (ours,):
            key_pair = create_new_key_pair()
            sec_opt: dict[TProtocol, ISecureTransport] = (
                {PLAINTEXT_PROTOCOL_ID: InsecureTransport(key_pair)}
                if weak == "plaintext"
                else {TProtocol(SECIO_PROTOCOL_ID): SecioTransport(key_pair)}
            )
            listen = [Multiaddr("/ip4/127.0.0.1/tcp/0")]
            other = new_host(key_pair=key_pair, sec_opt=sec_opt, listen_addrs=listen)
            async with other.run(listen_addrs=listen):
                try:
                    with pytest.raises(BaseLibp2pError):
                        await other.connect(info_from_p2p_addr(Multiaddr(ours.listen_addrs()[0])))
                    weak_addr = str(other.get_addrs()[0])
                    with pytest.raises(TransportError):
                        await ours.connect(weak_addr)
                finally:
                    await other.close()
            assert ours.connected_peers() == []

    run_trio(body)


def test_restarted_host_is_heard_again() -> None:
    seed = os.urandom(32)

    async def body() -> None:
        async with running_hosts(config()) as (listener,):
            async with running_hosts(config(seed)) as (first,):
                await link(first, listener)
                for n in range(3):
                    await first.publish(b"before %d" % n)
                    assert (await _receive(listener)).data == b"before %d" % n
            await wait_until(lambda: first.peer_id not in listener.connected_peers())

            async with running_hosts(config(seed)) as (second,):
                assert second.peer_id == first.peer_id
                await link(second, listener)
                await second.publish(b"after restart")
                got = await _receive(listener)
                assert got == GossipMessage(b"after restart", second.peer_id)

    run_trio(body)


def _task_count() -> int:
    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    return count(trio.lowlevel.current_root_task())


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_shutdown_is_prompt_and_leaves_nothing_behind() -> None:
    async def body() -> None:
        tasks_before, fds_before = _task_count(), _open_fds()
        async with running_hosts(config(), config()) as (a, b):
            events = b.events
            await link(a, b)
            port = int(a.listen_addrs()[0].split("/tcp/")[1].split("/")[0])
            for n in range(40):
                await a.publish(b"backlog %d" % n)
            assert await events.receive() == PeerConnected(a.peer_id)
            started = time.perf_counter()
        took = time.perf_counter() - started
        print(f"shutdown of two connected hosts: {took * 1000:.0f} ms")
        assert took < a.config.shutdown_timeout
        assert not a.shutdown_timed_out
        assert not b.shutdown_timed_out
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", port), 1),
        ):
            pass
        await trio.sleep(0.2)  # let trio reap the tasks cancelled last
        assert _task_count() == tasks_before
        assert _open_fds() == fds_before

    run_trio(body)


def test_peer_events_and_disconnect() -> None:
    async def body() -> None:
        async with running_hosts(config(), config()) as (a, b):
            await link(a, b)
            assert await a.events.receive() == PeerConnected(b.peer_id)
            await a.disconnect(b.peer_id)
            with trio.fail_after(3):
                assert await a.events.receive() == PeerDisconnected(b.peer_id)
            await wait_until(lambda: a.peer_id not in b.connected_peers())
            assert a.connected_peers() == []

    run_trio(body)


def test_public_key_round_trips_through_the_peer_id() -> None:
    key = create_new_key_pair(b"k" * 32).public_key.to_bytes()
    peer = peer_id_of(key)
    assert public_key_of(peer) == key
    assert GossipHost.public_key_of(peer) == key
    with pytest.raises(DecodeError):
        public_key_of("not-base58-0OIl")
    with pytest.raises(DecodeError):
        public_key_of("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")  # sha256 multihash


def test_connect_reports_each_address() -> None:
    async def body() -> None:
        async with running_hosts(config(), config()) as (a, b):
            bogus = "/ip4/127.0.0.1/tcp/1/p2p/" + peer_id_of(bytes(32))
            started = time.perf_counter()
            results = await a.connect_any([b.listen_addrs()[0], bogus, "nonsense"])
            print(f"connect_any of 3 addresses: {(time.perf_counter() - started) * 1000:.0f} ms")
            assert [r.ok for r in results] == [True, False, False]
            assert results[0].peer_id == b.peer_id

    run_trio(body)


def test_a_burst_of_publishes_is_paced_not_dropped() -> None:
    count = 60  # well past the 32 slots of libp2p's per-peer and subscription queues

    async def body() -> None:
        async with running_hosts(config(), config(), config()) as (a, b, c):
            await link(b, a)
            await link(c, b)
            started = time.perf_counter()
            for n in range(count):
                await a.publish(b"burst %d" % n)
            for host in (b, c):
                got = [(await _receive(host)).data for _ in range(count)]
                assert sorted(got) == sorted(b"burst %d" % n for n in range(count))
            elapsed = time.perf_counter() - started
            print(f"{count} publishes delivered 1 and 2 hops away in {elapsed * 1000:.0f} ms")
            assert b.dropped_messages == c.dropped_messages == 0

    run_trio(body)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_libp2p_warnings_reach_our_logger() -> None:
    source = logging.getLogger("libp2p.pubsub.pubsub")

    async def body() -> None:
        async with running_hosts(config()):
            source.warning("queue trouble %d", 7)
            source.info("chatter")
        source.warning("after shutdown")

    collect = _Collect()
    target = logging.getLogger(FORWARDED_LOGGER)
    target.addHandler(collect)
    try:
        run_trio(body)
    finally:
        target.removeHandler(collect)
    messages = [(r.name, r.levelno, r.getMessage()) for r in collect.records]
    assert ("libp2p.pubsub.pubsub", logging.WARNING, "queue trouble 7") in messages
    assert not [m for m in messages if m[2] in ("chatter", "after shutdown")]


def test_a_validator_that_raises_rejects_the_message() -> None:
    def broken(data: bytes, author: str, forwarder: str) -> bool:
        if data == b"boom":
            raise KeyError(data)
        return True

    async def body() -> None:
        async with running_hosts(config(), config(), validators=[accept_all, broken]) as (a, b):
            await link(a, b)
            await a.publish(b"boom")
            await a.publish(b"fine")
            assert (await _receive(b)).data == b"fine"
            assert b.rejected_messages == 1
            with pytest.raises(TransportError, match="validator"):
                await b.publish(b"boom")

    run_trio(body)


def test_an_error_in_the_body_propagates_unwrapped() -> None:
    async def fail() -> None:
        async with running_hosts(config(), config()) as (a, b):
            await link(a, b)
            raise LookupError("from the body")

    async def body() -> None:
        with pytest.raises(LookupError, match="from the body"):
            await fail()

    run_trio(body)


# -- hostile connections and stale addresses ------------------------------------------------


def _port_of(host: GossipHost) -> int:
    return int(host.listen_addrs()[0].split("/tcp/")[1].split("/")[0])


async def _silent_connections(port: int, source: str, count: int) -> list[trio.socket.SocketType]:
    """``count`` plain TCP connections from ``source`` that never say anything."""
    held = []
    for _ in range(count):
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        await sock.bind((source, 0))
        await sock.connect(("127.0.0.1", port))
        held.append(sock)
    return held


def test_one_source_cannot_take_every_handshake_slot() -> None:
    # py-libp2p holds every accepted connection in one global pool of 300 slots until its
    # handshake ends or times out: 400 silent connections from one address turned away
    # every other dialler until they timed out.
    async def body() -> None:
        async with running_hosts(config(), config()) as (ours, honest):
            silent = await _silent_connections(_port_of(ours), "127.0.0.2", 400)
            try:
                await trio.sleep(0.5)  # let the host accept (and shed) them all
                result = await honest.connect_any(ours.listen_addrs())
                assert result[0].ok, result
                budget = ours.handshakes
                assert budget.pending_from("127.0.0.2") <= ours.config.handshakes_per_source
                assert budget.shed >= 400 - ours.config.handshakes_per_source
            finally:
                for sock in silent:
                    sock.close()

    run_trio(body)


def test_sources_at_their_limit_do_not_fill_the_total_for_another() -> None:
    # Two sources at their own limit fill the total; a third source still gets in, and what
    # libp2p counted for the handshakes aborted to make room is given back.
    async def body() -> None:
        tight = config(handshakes_per_source=4, handshakes_total=8)
        async with running_hosts(tight, config()) as (ours, honest):
            manager = ours._host.get_network()._resource_manager  # type: ignore[union-attr]
            before = manager._current_connections
            silent = []
            for source in ("127.0.0.2", "127.0.0.3"):
                silent += await _silent_connections(_port_of(ours), source, 4)
            await wait_until(lambda: ours.handshakes.pending == 8)
            result = await honest.connect_any(ours.listen_addrs())
            assert result[0].ok, result
            assert ours.handshakes.evicted >= 1
            for sock in silent:
                sock.close()
            await wait_until(lambda: ours.handshakes.pending == 0)
            await wait_until(lambda: manager._current_connections == before + 1)

    run_trio(body)


def test_the_listen_queue_is_wide() -> None:
    # py-libp2p listens with a backlog of 128: under a connect flood the kernel dropped an
    # honest dialler's SYN, which TCP retries only after 1, 3, 7 s.
    async def body() -> None:
        async with running_hosts(config()) as (ours,):
            port = _port_of(ours)
            shown = await trio.run_process(
                ["ss", "-ltnH", f"sport = :{port}"], capture_stdout=True, check=True
            )
            backlog = int(shown.stdout.split()[2])  # a listening socket's Send-Q
            somaxconn = int(await trio.Path("/proc/sys/net/core/somaxconn").read_text())
            assert backlog == min(4096, somaxconn), shown.stdout

    run_trio(body)


def test_the_handler_of_a_closed_inbound_connection_ends() -> None:
    # py-libp2p kept the handler task of every inbound connection, and its slot of a global
    # pool of 300, until the host stopped: after 300 connections since the start, every new
    # one was refused.
    async def body() -> None:
        async with running_hosts(config()) as (ours,):
            limiter = ours._host.get_network()._inbound_limiter  # type: ignore[union-attr]
            tasks_before = _task_count()
            for _ in range(5):
                async with running_hosts(config()) as (client,):
                    result = await client.connect_any(ours.listen_addrs())
                    assert result[0].ok, result
                    await wait_until(lambda: client.peer_id in ours.connected_peers())
                await wait_until(lambda: ours.connected_peers() == [])
            await wait_until(lambda: limiter.borrowed_tokens == 0)
            await trio.sleep(0.2)  # let trio reap the handlers
            assert _task_count() <= tasks_before + 1, (_task_count(), tasks_before)

    run_trio(body, timeout=30.0)


def test_a_silent_connection_is_closed_at_the_deadline() -> None:
    async def body() -> None:
        async with running_hosts(config(handshake_timeout=0.5)) as (ours,):
            (sock,) = await _silent_connections(_port_of(ours), "127.0.0.3", 1)
            started = time.perf_counter()
            with trio.fail_after(3.0):
                while await sock.recv(4096):  # multistream's greeting, then the end
                    pass
            took = time.perf_counter() - started
            sock.close()
            assert 0.4 < took < 2.0, took
            await wait_until(lambda: ours.handshakes.pending == 0)

    run_trio(body)


def test_a_dial_to_a_new_address_ignores_an_earlier_failure() -> None:
    # A member moves: a dial to its old address fails, and py-libp2p's negative cache then
    # refused a dial to its new address for 60 s ("recently failed all addresses").
    seed = os.urandom(32)
    stale_port = _free_port()

    async def body() -> None:
        async with running_hosts(config()) as (ours,):
            moved = peer_id_of(create_new_key_pair(seed).public_key.to_bytes())
            stale = f"/ip4/127.0.0.1/tcp/{stale_port}/p2p/{moved}"
            with pytest.raises(TransportError):
                await ours.connect(stale)
            async with running_hosts(config(seed)) as (member,):
                assert await ours.connect(member.listen_addrs()[0]) == member.peer_id

    run_trio(body)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_dial_backoff_doubles_is_capped_and_restarts_when_the_addresses_change() -> None:
    backoff = DialBackoff(cap=60.0)
    peer, addrs, moved = b"k" * 32, ("/ip4/192.0.2.1/tcp/7100",), ("/ip4/192.0.2.9/tcp/7100",)
    assert backoff.due(peer, addrs, 0.0)
    delays = [backoff.failed(peer, addrs, 0.0, 1.0) for _ in range(8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert not backoff.due(peer, addrs, 59.0)
    assert backoff.due(peer, addrs, 60.0)
    # The member announced new addresses: due at once, and its next failure starts over.
    assert backoff.due(peer, moved, 1.0)
    assert backoff.failed(peer, moved, 1.0, 1.0) == 2.0
    backoff.forget(peer)
    assert len(backoff) == 0


def _failed_once_each(backoff: DialBackoff, now: float, jitter: float) -> tuple[list[bytes], float]:
    """1,000 peers each failed once at ``now``: the peers, and the bytes kept a peer."""
    peers = [i.to_bytes(4, "big") * 8 for i in range(1_000)]
    gc.collect()
    tracemalloc.start()
    try:
        for i, peer in enumerate(peers):
            # Decoded afresh for each call, as an announcement's addresses are.
            addrs = (f"/ip4/198.18.{i >> 8}.{i & 255}/tcp/7100",)
            backoff.failed(peer, addrs, now, jitter)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peers, kept / len(peers)


def test_dial_backoff_keeps_no_addresses_of_the_peers_that_failed() -> None:
    """A node that tried every member (isolated, or members nobody can dial) keeps each
    one's failures and next try, not its decoded addresses: under 170 bytes a peer at
    1,000, where the addresses' tuple and strings took ~280."""
    backoff = DialBackoff(cap=60.0)
    peers, per_peer = _failed_once_each(backoff, 0.0, 1.0)
    assert len(backoff) == len(peers)
    assert per_peer < 170, per_peer
    assert not backoff.due(peers[7], ("/ip4/198.18.0.7/tcp/7100",), 1.0)
    assert backoff.due(peers[7], ("/ip4/198.18.0.8/tcp/7100",), 1.0)


def test_dial_backoff_keeps_one_int_a_peer_that_failed() -> None:
    """Each peer's failures, next try and the hash of its addresses in one int: under 100
    bytes a peer at 1,000 with the table's slot (an object, an int and a float: ~150)."""
    backoff = DialBackoff(cap=60.0)
    peers, per_peer = _failed_once_each(backoff, 12_345.678, 0.75)
    assert per_peer < 100, per_peer
    # The next try is kept exactly (its float's bits), and the failures go on counting.
    addrs = ("/ip4/198.18.0.7/tcp/7100",)
    assert not backoff.due(peers[7], addrs, 12_345.678 + 1.5 - 1e-9)
    assert backoff.due(peers[7], addrs, 12_345.678 + 1.5)
    delays = [backoff.failed(peers[7], addrs, 0.0, 1.0) for _ in range(20)]
    assert delays[:6] == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert set(delays[6:]) == {60.0}
