"""The py-libp2p workarounds still reach what they patch (meshd/gossip/libp2p_workarounds/).

A patch of a function that a new libp2p renamed or stopped calling patches nothing, silently:
these tests read the installed libp2p's source for each place the module names, and fail on
an upgrade until every workaround has been re-checked (the package's docstring says how).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging

import libp2p.pubsub.gossipsub as libp2p_gossipsub
import libp2p.pubsub.pubsub as libp2p_pubsub
import pytest
import trio
from libp2p.network.swarm import Swarm
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from meshd.gossip import libp2p_workarounds as workarounds
from meshd.gossip.libp2p_workarounds import connections, inbound, logs, router, stream_cap


def test_the_installed_libp2p_is_the_one_the_workarounds_were_written_for() -> None:
    assert importlib.metadata.version("libp2p") == workarounds.LIBP2P_VERSION


def test_signed_peer_records_are_checked_through_the_patched_name() -> None:
    # Both modules imported the function by name and call it by that name.
    for module in (libp2p_pubsub, libp2p_gossipsub):
        assert "maybe_consume_signed_record(" in inspect.getsource(module), module.__name__
        patched = module.maybe_consume_signed_record
        assert patched is router._consume_signed_record_once


def test_yamux_calls_the_patched_window_update_and_has_what_it_uses() -> None:
    source = inspect.getsource(YamuxStream)
    assert "self._auto_tune_and_send_window_update(" in source
    for name in ("window_lock", "_pending_recv_release", "target_recv_window", "recv_window"):
        assert f"self.{name}" in source, name
    assert "def send_window_update(" in source
    assert YamuxStream._auto_tune_and_send_window_update is connections._release_window_at_half


def test_what_the_other_workarounds_reach_into_is_there() -> None:
    pubsub = inspect.getsource(Pubsub)
    assert "self.counter" in pubsub  # seed_sequence_number
    assert "self.peer_queues" in pubsub  # wait_for_queue_room
    assert "self.auto_connector" in inspect.getsource(Swarm)  # stop_auto_connector


def test_what_the_inbound_gate_and_the_dial_reset_reach_into_is_there() -> None:
    from libp2p.network.connection.raw_connection import RawConnection
    from libp2p.peer.peerstore import PeerStore

    swarm = inspect.getsource(Swarm)
    # gate_inbound_handshakes: the upgrade is looked up on the instance, after the global
    # inbound slot pool is taken, with the inbound deadline around the handshakes.
    assert "await self.upgrade_inbound_raw_conn(" in swarm
    assert "self._inbound_limiter.acquire_nowait()" in swarm
    assert "with trio.fail_after(inbound_timeout):" in swarm
    assert hasattr(RawConnection, "get_remote_address")
    # forget_failed_dial: the negative cache, and one address per transport class.
    assert "self._negative_peer_cache.is_blocked(" in swarm
    assert "def unblock_peer(" in swarm
    assert "MAX_ADDRS_PER_PEER" in swarm
    assert hasattr(PeerStore, "clear_addrs")
    # The handler of an inbound connection waits for the swarm to end; the listener's
    # conn_handler looks _handle_inbound_connection up on the instance.
    assert "await self._handle_inbound_connection(" in swarm
    assert "await self.manager.wait_finished()" in swarm
    # widen_listen_backlog: the backlog libp2p asks for, on the listeners it keeps.
    from libp2p.transport.tcp import tcp

    source = inspect.getsource(tcp)
    assert "sock.listen(128)" in source
    # The exclusive listeners: looked up by name when listening, SO_REUSEPORT set there.
    assert "await _open_reuseport_listeners(host, port)" in source
    assert "SO_REUSEPORT" in source
    assert tcp._open_reuseport_listeners is connections._open_exclusive_listeners
    assert "self.listeners.extend(" in inspect.getsource(tcp.TCPListener)


def test_handshake_budget_is_per_source_and_total() -> None:
    budget = inbound.HandshakeBudget(per_source=2, total=3)
    first = budget.admit("10.0.0.1")
    assert first is not None
    assert budget.admit("10.0.0.1") is not None
    assert budget.admit("10.0.0.1") is None  # its own budget is spent ...
    assert budget.admit("10.0.0.2") is not None  # ... not anyone else's
    # The total is spent, and 10.0.0.2 would hold as many as the heaviest source.
    assert budget.admit("10.0.0.2") is None
    assert budget.shed == 2
    budget.release(first.ticket)
    assert budget.admit("10.0.0.2") is not None
    assert budget.pending == 3
    assert budget.pending_from("10.0.0.1") == 1


def test_a_full_budget_makes_room_for_a_source_that_holds_fewer() -> None:
    budget = inbound.HandshakeBudget(per_source=4, total=8)
    flood = [budget.admit(source) for source in ("10.0.0.1", "10.0.0.2") for _ in range(4)]
    assert all(a is not None and a.evict is None for a in flood)
    honest = budget.admit("10.0.0.9")
    assert honest is not None
    assert honest.evict == flood[0].ticket  # type: ignore[union-attr]  # the oldest of the heaviest
    assert budget.pending == 8
    assert budget.pending_from("10.0.0.1") == 3
    assert budget.evicted == 1
    budget.release(flood[0].ticket)  # type: ignore[union-attr]  # handed over: no effect
    assert budget.pending == 8
    # Evenly spread, nobody is heavier by two: refused.
    even = inbound.HandshakeBudget(per_source=1, total=2)
    assert even.admit("a") is not None
    assert even.admit("b") is not None
    assert even.admit("c") is None


def test_a_source_is_an_ipv4_address_or_an_ipv6_64() -> None:
    source = inbound.source_of
    assert source("192.0.2.7") == "192.0.2.7"
    assert source("2001:db8:1:2:aaaa::1") == source("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert source("2001:db8:1:3::1") != source("2001:db8:1:2::1")
    assert source("::ffff:192.0.2.7") == "192.0.2.7"


def test_accept_errors_are_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    import errno

    import trio._highlevel_serve_listeners as serve_listeners

    # What the filter sits on: trio's accept loop pauses on these and logs on this logger.
    assert serve_listeners.LOGGER.name == logs.ACCEPT_LOGGER
    assert errno.EMFILE in serve_listeners.ACCEPT_CAPACITY_ERRNOS
    assert logs.ACCEPT_LOG_FILTER in serve_listeners.LOGGER.filters
    quiet = logs.OncePerMinute()
    serve_listeners.LOGGER.addFilter(quiet)
    try:
        with caplog.at_level(logging.ERROR, logger=logs.ACCEPT_LOGGER):
            for _ in range(20):
                try:
                    raise OSError(errno.EMFILE, "Too many open files")
                except OSError:
                    serve_listeners.LOGGER.error("accept returned EMFILE", exc_info=True)
    finally:
        serve_listeners.LOGGER.removeFilter(quiet)
    records = [r for r in caplog.records if r.name == logs.ACCEPT_LOGGER]
    assert len(records) <= 1  # the module's own filter may have let one through already
    assert all(r.exc_info is None for r in records)
    assert quiet.suppressed + logs.ACCEPT_LOG_FILTER.suppressed >= 19


def test_our_own_messages_go_to_every_peer_of_the_topic_and_forwards_to_the_mesh_only() -> None:
    from types import SimpleNamespace

    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11

    from meshd.gossip.config import HostConfig

    me, b, c, d, author = (ID.from_pubkey(create_new_key_pair().public_key) for _ in range(5))
    gossipsub = router.gossipsub_router(HostConfig(identity_seed=bytes(32)))
    topic = "/meshd/test/1"
    gossipsub.pubsub = SimpleNamespace(  # type: ignore[assignment]
        my_id=me, peer_topics={topic: {b, c, d}}
    )
    gossipsub.mesh = {topic: {b, c}}
    gossipsub.peer_protocol = dict.fromkeys((b, c, d), PROTOCOL_ID_V11)
    # Published here: every peer of the topic at once, not only the mesh (one hop less).
    assert set(gossipsub._get_peers_to_send([topic], me, me)) == {b, c, d}
    # Forwarded for someone else: the mesh only, not back to the forwarder.
    assert set(gossipsub._get_peers_to_send([topic], b, author)) == {c}


class _Registering:
    """What ``Pubsub._handle_new_peer`` uses of its pubsub: a stream opens after a wait."""

    def __init__(self) -> None:
        self.peers: dict[object, object] = {}
        self.peer_queues: dict[object, object] = {}
        self._peer_added_events: dict[object, object] = {}
        self.streams = 0
        self.senders: list[object] = []
        self.router = self
        self.host = self
        self.manager = self

    def is_peer_blacklisted(self, peer: object) -> bool:
        return False

    async def new_stream(self, peer: object, protocols: object) -> object:
        self.streams += 1
        await trio.sleep(0.01)  # the protocol's negotiation: another registration runs

        class Stream:
            def get_protocol(self) -> str:
                return "/meshsub/1.1.0"

            async def write(self, data: bytes) -> None:
                pass

        return Stream()

    protocols = ("/meshsub/1.1.0",)

    def get_hello_packet(self) -> object:
        return rpc_pb2.RPC()

    def add_peer(self, peer: object, protocol: object) -> None:
        pass

    async def flush_pending_messages(self, peer: object) -> None:
        pass

    def run_task(self, task: object, *args: object) -> None:
        self.senders.append(args[2])  # the queue the sending task would wait on

    async def handle_sending_messages(self, *args: object) -> None:
        pass  # not run: run_task keeps its queue

    async def _send_recent_messages_to_new_peer(self, peer: object) -> None:
        pass


@pytest.mark.parametrize("patched", [True, False])
def test_two_registrations_of_one_peer_at_once_make_one_sender(patched: bool) -> None:
    """libp2p registers a peer for each connection it reports; two at once (members dialling
    each other) each opened a stream and started a sending task, the second's queue replacing
    the first's, whose task then waited for good. Patched: one stream, one sender."""
    register = Pubsub._handle_new_peer if patched else Pubsub._handle_new_peer.__wrapped__  # type: ignore[attr-defined]
    pubsub = _Registering()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(register, pubsub, "peer")
            nursery.start_soon(register, pubsub, "peer")

    trio.run(main)
    if patched:
        assert (pubsub.streams, len(pubsub.senders)) == (1, 1)
        assert pubsub.peer_queues["peer"] is pubsub.senders[0]
    else:  # py-libp2p 0.8.1 as it is: the race the patch closes
        assert (pubsub.streams, len(pubsub.senders)) == (2, 2)
        assert pubsub.peer_queues["peer"] is not pubsub.senders[0]  # the first: orphaned


def test_what_the_stream_cap_reaches_into_is_there() -> None:
    from libp2p.network.connection.swarm_connection import SwarmConn
    from libp2p.stream_muxer.muxer_multistream import MuxerMultistream
    from libp2p.stream_muxer.yamux.yamux import Yamux
    from libp2p.transport.upgrader import TransportUpgrader

    assert "self.muxer_multistream.new_conn(" in inspect.getsource(TransportUpgrader)
    assert "Yamux(" in inspect.getsource(MuxerMultistream.new_conn)
    assert "self.muxed_conn.accept_stream()" in inspect.getsource(SwarmConn)
    yamux = inspect.getsource(Yamux)
    for name in ("streams", "stream_buffers", "stream_events", "streams_lock"):
        assert f"self.{name}" in yamux, name
    assert "def _finalize_stream_locked(" in yamux
    assert "self.is_initiator" in inspect.getsource(YamuxStream)
    assert YamuxStream.reset is stream_cap._reset_and_forget


def test_what_the_peerstore_sweep_reaches_into_is_there() -> None:
    from libp2p.network.auto_connector import AutoConnector
    from libp2p.peer.peerstore import PeerStore
    from libp2p.pubsub.gossipsub import GossipSub

    store = inspect.getsource(PeerStore)
    assert "self.max_peers" in store
    assert "def _enforce_peer_limit(" in store
    assert "def clear_peerdata(" in store
    assert "self._recent_disconnects" in inspect.getsource(AutoConnector)
    assert "self.recent_message_deliveries" in inspect.getsource(GossipSub)
