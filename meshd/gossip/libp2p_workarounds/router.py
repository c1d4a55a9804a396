"""The gossipsub router and pubsub, as meshd runs them on py-libp2p 0.8.1.

What is here, and why:

* :func:`gossipsub_router` builds the router with its settings: meshsub 1.1 only, no spam
  protection, no gossipsub 2.0 extras, no scoring (each costs CPU or drops our traffic;
  the comments in it say how). Our own messages go to every peer of the topic
  (:class:`FloodPublishGossipSub`), as go-libp2p's ``FloodPublish`` does.
* :func:`seed_sequence_number`: libp2p's publish sequence number starts at the second, so
  a host restarted within seconds was not heard again.
* :func:`wait_for_queue_room`: libp2p's per-peer outbound queues drop silently when full,
  so a publish waits for room.
* ``_consume_signed_record_once``: the signed peer record riding on every gossip RPC is
  verified once per change, not twice per RPC. :mod:`meshd.gossip.libp2p_workarounds`
  puts it in place of libp2p's when the package is imported.
* ``_register_peer_once``: pubsub registers a peer once at a time. libp2p starts a
  registration for every connection it reports (two at once when two members dial each
  other, as members that start together or come back do); each checks that the peer is not
  registered, opens a stream (and waits), then registers it with a new outbound queue and a
  task that sends from it. The second overwrote the first's queue, whose task then waited
  on it for good, holding its stream: a task and a stream a time, for the daemon's life
  (the churn soak saw its tasks grow by ~2 a minute). Put in place of
  ``Pubsub._handle_new_peer`` when the package is imported.

To re-check on an upgrade of py-libp2p (the tests are in tests/gossip/test_host.py):

- Signed peer records verified once per change (patch; CPU).
  ``pubsub/utils.py: maybe_consume_signed_record`` and its imports by name in
  ``pubsub/pubsub.py`` and ``pubsub/gossipsub.py``.
- The router's settings (:func:`gossipsub_router`; CPU, spam protection).
  ``GossipSub.__init__``'s options and defaults, the meshsub protocol ids, and that
  ``GossipSub.scorer`` may be ``None``. Tests: the burst test below (spam protection).
- The publish sequence number (:func:`seed_sequence_number`).
  ``Pubsub.counter``, ``int(time.time())`` in 0.8.1. Test: test_restarted_host_is_heard_again.
- Publish pacing (:func:`wait_for_queue_room`). ``Pubsub.peer_queues`` and
  ``rpc_queue.OutBoundQueueSize`` (32). Test: test_a_burst_of_publishes_is_paced_not_dropped.
- One registration of a peer at a time (patch; a task and a stream leaked a time).
  ``Pubsub._handle_new_peer``: its check of ``self.peers`` before ``new_stream``, and
  ``self.peer_queues[peer_id] = queue`` after. Test: tests/gossip/test_workarounds.py.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any, Final

import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.utils import maybe_consume_signed_record

from meshd.gossip.config import HostConfig

__all__ = [
    "FloodPublishGossipSub",
    "gossipsub_router",
    "seed_sequence_number",
    "wait_for_queue_room",
]

# The workarounds log on their package's logger, whichever module they live in.
logger = logging.getLogger("meshd.gossip.libp2p_workarounds")

# Per-peer outbound queues in py-libp2p hold 32 RPCs and drop silently when full. A publish
# waits until every queue is at most this full, which leaves room for the control traffic
# and forwarded messages that share the queue.
_QUEUE_HEADROOM: Final = 16
_QUEUE_POLL: Final = 0.005


# -- building the router ---------------------------------------------------------------------


class FloodPublishGossipSub(GossipSub):
    """GossipSub that sends our own messages to every peer of the topic, not only the mesh.

    go-libp2p's ``FloodPublish`` (on there by default; py-libp2p 0.8.1 has no such option):
    a revocation made here reaches every connected member at the first hop instead of the
    ``degree`` mesh peers, one hop less across the network. What we forward for others still
    goes to the mesh only. Our own records are rare (a revocation, an admission, an
    announcement on change), and the peers are the connections we hold, which are bounded.
    """

    def _get_peers_to_send(
        self,
        topic_ids: Any,
        msg_forwarder: ID,
        origin: ID,
        msg_id: bytes | None = None,
    ) -> Any:
        peers = super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id)
        pubsub = self.pubsub
        if pubsub is None or origin != pubsub.my_id:
            return peers
        everyone = set(peers)
        for topic in topic_ids:
            everyone.update(p for p in pubsub.peer_topics.get(topic, ()) if p in self.peer_protocol)
        everyone.difference_update((msg_forwarder, origin))
        return everyone


def gossipsub_router(config: HostConfig) -> GossipSub:
    """The gossipsub router: meshsub 1.1 only, no spam protection, no scoring, no extras;
    our own messages flooded to every peer of the topic (:class:`FloodPublishGossipSub`)."""
    gossipsub = FloodPublishGossipSub(
        # meshsub 1.1 only: 1.2 adds IDONTWANT, which py-libp2p sends to every mesh peer
        # for every message it forwards, whatever its size. Our records are a few hundred
        # bytes: that doubled the RPCs per message and saved no bandwidth.
        protocols=[PROTOCOL_ID_V11],
        degree=config.degree,
        degree_low=config.degree_low,
        degree_high=config.degree_high,
        heartbeat_interval=config.heartbeat_interval,
        # On by default: 10 msg/s per peer per topic, our own publishes included, the excess
        # dropped with only a log line. Volume is limited by the membership protocol.
        spam_protection_enabled=False,
        # The gossipsub 2.0 extras of py-libp2p cost CPU on every heartbeat and churn
        # the mesh: adaptive degrees; IP diversity, meaningless when every member may sit
        # behind one address (loopback, NAT); and peer scoring, which swaps the worst
        # mesh peer for a better one each heartbeat and marks a forwarder down whenever
        # our validator refuses a record it already had from sync. Each swap is a PRUNE
        # and a GRAFT, refused as a "GRAFT flood" when it comes back within 10 s. The
        # membership layer validates, rate-limits and drops peers itself.
        adaptive_gossip_enabled=False,
        eclipse_protection_enabled=False,
    )
    gossipsub.scorer = None
    return gossipsub


def seed_sequence_number(pubsub: Pubsub) -> None:
    """Start the publish sequence number at ``time.time_ns()``.

    libp2p seeds the sequence number with int(time.time()) and counts up by one per
    message: a host restarted within seconds reuses numbers its peers have already seen and
    its messages are dropped as duplicates (or as equivocation). Nanoseconds move on faster
    than any host can publish.
    """
    pubsub.counter = time.time_ns()


# -- publishing ------------------------------------------------------------------------------


async def wait_for_queue_room(pubsub: Pubsub, wait: float) -> None:
    """Wait, up to ``wait`` seconds, until every peer's outbound queue has room to spare.

    Past the deadline, log which peers are slow and return anyway: one stuck peer must not
    stop gossip for everyone, and anti-entropy repairs what it misses.
    """
    with trio.move_on_after(wait):
        # Polling: libp2p's RpcQueue signals pushes but not pops.
        while any(len(q) > _QUEUE_HEADROOM for q in pubsub.peer_queues.values()):  # noqa: ASYNC110
            await trio.sleep(_QUEUE_POLL)
        return
    slow = [str(p) for p, q in pubsub.peer_queues.items() if len(q) > _QUEUE_HEADROOM]
    logger.warning("publishing despite a gossip backlog towards %s", ", ".join(slow))


# -- a patch (put in place when the package is imported) -------------------------------------

# A signed peer record rides on every gossip RPC and libp2p verifies it twice per RPC (pubsub,
# then gossipsub). A record byte-identical to the last one a peer sent was verified already;
# it is verified again (and its peerstore TTL refreshed) after this many seconds.
_SIGNED_RECORD_RECHECK: Final = 600.0
_MAX_VERIFIED_PEERS: Final = 4096

_verified_records: weakref.WeakKeyDictionary[IHost, dict[bytes, tuple[bytes, float]]] = (
    weakref.WeakKeyDictionary()
)


def _consume_signed_record_once(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
    """libp2p's ``maybe_consume_signed_record``, skipped for a record this host has just
    verified from the same peer, byte for byte."""
    if not msg.HasField("senderRecord"):
        return True
    record = msg.senderRecord
    seen = _verified_records.setdefault(host, {})
    peer = peer_id.to_bytes()
    now = time.monotonic()
    last = seen.get(peer)
    if last is not None and last[0] == record and last[1] > now:
        return True
    if not maybe_consume_signed_record(msg, host, peer_id):
        return False
    if len(seen) >= _MAX_VERIFIED_PEERS:
        seen.clear()
    seen[peer] = (bytes(record), now + _SIGNED_RECORD_RECHECK)
    return True


# Pubsub -> peer -> the lock its registrations take in turn (:func:`_register_peer_once`).
_registering: weakref.WeakKeyDictionary[Pubsub, dict[ID, trio.Lock]] = weakref.WeakKeyDictionary()


def _register_peer_once(register: Any) -> Any:
    """libp2p's ``Pubsub._handle_new_peer`` run for one peer at a time: a registration that
    waited finds the peer registered by the one before it, and does nothing (see the
    module's text)."""

    async def _handle_new_peer(self: Pubsub, peer_id: ID) -> None:
        locks = _registering.setdefault(self, {})
        lock = locks.get(peer_id)
        if lock is None:
            lock = locks[peer_id] = trio.Lock()
        try:
            async with lock:
                await register(self, peer_id)
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                locks.pop(peer_id, None)  # the last one out: nothing kept per peer

    _handle_new_peer.__wrapped__ = register  # type: ignore[attr-defined]
    return _handle_new_peer
