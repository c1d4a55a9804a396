"""What libp2p keeps of the peers it met: never the host's own entry lost, the gone forgotten.

py-libp2p 0.8.1's peerstore keeps an entry for every peer id the host ever met (its key, its
protocols, its addresses and signed peer record: ~2.7 KB), and nothing prunes it but a cap,
``PeerStore.max_peers`` (1,000), which evicts entries without addresses first. The host's own
entry (its key pair, no address) is such an entry: past 1,000 peer ids met, identify raised
``PeerStoreError("peer ID not found")`` out of the swarm and the host stopped. A stranger
reconnecting with fresh keys (any key completes Noise) took the daemon down after 1,000
connections; a long-lived daemon of a large mesh would have met that many members too.

* :func:`lift_peer_cap`: the cap is lifted, so that nothing evicts the host's own entry; what
  the peerstore holds is bounded by :func:`forget_gone_peers` instead.
* :func:`forget_gone_peers`: the peers that are neither connected, nor the host, nor kept
  (the daemon keeps its members, for :data:`KEPT_GONE_FOR` after their last connection:
  their addresses serve its dials) lose their entry and what
  libp2p and meshd keep beside it: the disconnection time the stopped auto-connector keeps
  (``AutoConnector._recent_disconnects``, pruned only when it dials) and the signed record
  verified last (:mod:`.router`). The gossipsub router's delivery times
  (``recent_message_deliveries``, read only by its adaptive gossip, which meshd leaves off,
  and never trimmed) are cleared. ``GossipHost`` runs it every
  :data:`FORGET_INTERVAL` seconds once it bounds strangers (``bound_strangers``). Measured on
  loopback (a server met 220 to 620 peer ids that came and went): 6.4 KiB of RSS a peer id
  before, 3.0 after (what is left: libp2p's own bounded caches, flat after ~1,500 peers).

To re-check on an upgrade of py-libp2p (tests: tests/gossip/test_peerstore.py):
``PeerStore.max_peers``, ``_enforce_peer_limit``, ``peer_ids``, ``clear_peerdata``;
``Swarm.auto_connector._recent_disconnects``; ``GossipSub.recent_message_deliveries``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Final

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError

from meshd.gossip.libp2p_workarounds.router import _verified_records

__all__ = ["FORGET_INTERVAL", "forget_gone_peers", "lift_peer_cap"]

FORGET_INTERVAL: Final = 30.0
"""Seconds between two sweeps of the peers that are gone."""
KEPT_GONE_FOR: Final = 600.0
"""Seconds a kept peer (a member) stays known after its last connection closed: long enough
for what the daemon asks of a member it was just connected to, short enough that a node of
a large mesh does not keep every member it ever met (~2.7 KB each)."""


def lift_peer_cap(host: IHost) -> None:
    """Let the peerstore hold any number of peers: its cap evicted the host's own entry."""
    host.get_peerstore().max_peers = sys.maxsize  # type: ignore[attr-defined]


def forget_gone_peers(
    host: IHost, keep: Callable[[str], bool], router: object = None, now: float | None = None
) -> int:
    """Forget every peer that is not connected and not the host, unless ``keep`` (by base58
    id) says to keep it and it was connected within :data:`KEPT_GONE_FOR` seconds (or was
    never seen to disconnect); clear ``router``'s delivery times. ``now``: ``time.time()``,
    the clock libp2p dates disconnections by. Returns how many peers were forgotten."""
    store = host.get_peerstore()
    network = host.get_network()
    own = host.get_id()
    connections = network.connections
    recent: dict[ID, float] | None = getattr(
        getattr(network, "auto_connector", None), "_recent_disconnects", None
    )
    verified = _verified_records.get(host)
    forgotten = 0
    now = time.time() if now is None else now
    for peer in store.peer_ids():
        if peer == own or connections.get(peer):
            continue
        if keep(peer.to_base58()):
            gone_at = None if recent is None else recent.get(peer)
            if gone_at is None or now - gone_at < KEPT_GONE_FOR:
                continue
        try:
            store.clear_peerdata(peer)
        except PeerStoreError:
            continue
        forgotten += 1
        if recent is not None:
            recent.pop(peer, None)
        if verified is not None:
            verified.pop(peer.to_bytes(), None)
    deliveries = getattr(router, "recent_message_deliveries", None)
    if deliveries is not None:
        deliveries.clear()
    return forgotten
