"""What libp2p keeps of the peers a host met (meshd/gossip/libp2p_workarounds/peerstore.py).

The attack: py-libp2p's peerstore keeps every peer id the host met and, past 1,000, evicts
entries without an address first, the host's own among them; identify then raised out of the
swarm and the host stopped. Any key completes Noise, so a stranger reconnecting with fresh
keys took the daemon down after 1,000 connections. Now nothing evicts the host's own entry,
and the peers that are gone and are no members are forgotten.
"""

from __future__ import annotations

import os
import time

import pytest
from libp2p.abc import IHost
from libp2p.peer.id import ID
from multiaddr import Multiaddr

import meshd.gossip.host as gossip_host
from meshd.gossip.admission import StrangerBudget
from meshd.gossip.host import GossipHost
from meshd.gossip.libp2p_workarounds.peerstore import KEPT_GONE_FOR, forget_gone_peers
from tests.gossip.support import config, link, run_trio, running_hosts, wait_until


def _libp2p(host: GossipHost) -> IHost:
    return host._require_host()


def _known(host: GossipHost) -> set[str]:
    return {peer.to_base58() for peer in _libp2p(host).get_peerstore().peer_ids()}


def test_the_hosts_own_entry_outlives_more_peers_than_libp2p_kept() -> None:
    async def body() -> None:
        async with running_hosts(config()) as (host,):
            inner = _libp2p(host)
            store = inner.get_peerstore()
            for n in range(1_100):  # more than libp2p's cap of 1,000
                peer = ID(b"\x00\x22" + os.urandom(34))
                store.add_addrs(peer, [Multiaddr(f"/ip4/127.0.0.1/tcp/{1000 + n}")], 3600)
            assert store.has_peer(inner.get_id())  # before: evicted, identify then raised
            assert inner.get_public_key() is not None

    run_trio(body)


def test_peers_that_are_gone_and_no_members_are_forgotten() -> None:
    async def body() -> None:
        async with running_hosts(*(config() for _ in range(6))) as (server, *clients):
            for client in clients:
                await link(client, server)
            member, stays = clients[0].peer_id, clients[1].peer_id
            for client in clients[2:]:
                await server.disconnect(client.peer_id)
            await server.disconnect(member)
            await wait_until(lambda: len(server.connected_peers()) == 1)
            known = _known(server)
            assert {c.peer_id for c in clients} <= known, (known, server.connected_peers())
            forgotten = forget_gone_peers(_libp2p(server), lambda peer: peer == member)
            assert forgotten == 3, (known, server.connected_peers())
            # The member and the peer still connected are kept, and the host itself.
            assert _known(server) == {server.peer_id, member, stays}
            # A member is kept for KEPT_GONE_FOR after its last connection, not for good.
            later = time.time() + KEPT_GONE_FOR + 1
            assert forget_gone_peers(_libp2p(server), lambda peer: peer == member, now=later) == 1
            assert _known(server) == {server.peer_id, stays}

    run_trio(body, timeout=30)


def test_the_host_forgets_gone_strangers_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gossip_host, "FORGET_INTERVAL", 0.2)

    async def body() -> None:
        async with running_hosts(config(), config()) as (server, client):
            server.bound_strangers(StrangerBudget(), lambda peer: False)
            await link(client, server)
            await server.disconnect(client.peer_id)
            await wait_until(lambda: client.peer_id not in _known(server))
            assert _known(server) == {server.peer_id}

    run_trio(body, timeout=20)
