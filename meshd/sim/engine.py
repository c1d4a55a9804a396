"""The simulated mesh: a meshsub 1.1 router per node, and the connections between them.

One :class:`Sim` holds every node, on the event loop, links and CPUs of
:mod:`meshd.sim.loop`. All randomness comes from one ``random.Random(seed)``; nodes, peers
and message ids are ints, and no set is iterated without sorting, so a run does not depend
on hash randomisation: the same seed gives the same trace, whose SHA-256 (:attr:`Sim.digest`)
the tests compare.

The gossip router is what py-libp2p 0.8.1's GossipSub does with the daemon's settings
(meshsub 1.1, no scoring, no adaptive gossip, no spam protection):

* a mesh per node, kept between D_low and D_high at each heartbeat (GRAFT to D when below
  D_low, PRUNE to D when above D_high), GRAFT accepted from any connected peer, PRUNE obeyed;
* a published or first-seen valid message goes to every mesh peer but its forwarder and its
  author; duplicates are dropped by the seen set;
* at each heartbeat the ids of the last ``gossip_window`` heartbeats go as IHAVE to
  max(6, 25 %) of the connected peers outside the mesh; an IHAVE of unseen ids is answered
  with IWANT, an IWANT with the messages still in the cache (``gossip_history`` heartbeats);
* the validator (the membership layer, :mod:`meshd.sim.nodes`) runs once per message, after
  the per-forwarder and per-author token buckets of meshd/daemon/state.py.

Each node is one CPU (or they share ``Costs.cores``): an RPC is handled when the node is
free and what it sends leaves when the handling ends. The state change of handling an RPC
happens when it arrives (so a duplicate that arrives while the first copy waits for the CPU
is dropped as seen, as libp2p marks ids seen before validating). The connection layer keeps
``connect_degree`` members connected and runs anti-entropy sync with a random connected
peer every ``sync_interval`` and with every new connection.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from functools import partial
from typing import Any

from meshd.sim.loop import CALL, CONNECT, DONE, HEARTBEAT, Loop, Message, Node, allow
from meshd.sim.params import Costs, Gossip, Links, Sizes

# RPC kinds
MSG = 0
IHAVE = 1
IWANT = 2
GRAFT = 3
PRUNE = 4
SYNC = 5


class Sim(Loop):
    """A simulated mesh of ``size`` nodes (the membership layers are attached after)."""

    def __init__(
        self,
        size: int,
        seed: int,
        *,
        links: Links | None = None,
        costs: Costs | None = None,
        gossip: Gossip | None = None,
        sizes: Sizes | None = None,
        trace: bool = True,
    ) -> None:
        super().__init__(size, seed, links, costs, trace)
        self.gossip = gossip or Gossip()
        self.sizes = sizes or Sizes()
        self.messages: dict[int, Message] = {}
        self.delivered: dict[int, dict[int, float]] = {}  # mid -> node -> time validated
        self.on_heartbeat: Callable[[Node], None] | None = None

    # --- the loop --------------------------------------------------------------------------

    def run(self, until: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= until:
            at, _, node, kind, src, data = heapq.heappop(queue)
            self.now = at
            self.events += 1
            if self._hash is not None:
                self._hash.update(f"{at:.9f} {node} {kind} {src}\n".encode())
            if kind == CALL:
                self._calls.pop(src)()
            elif kind == HEARTBEAT:
                self._heartbeat(self.nodes[node])
            elif kind == CONNECT:
                self._connected(node, src)
            elif kind == DONE:
                self._done(self.nodes[node], src)
            else:
                self._receive(self.nodes[node], kind, src, data)
        self.now = max(self.now, until)

    # --- connections -----------------------------------------------------------------------

    def connect_all(self) -> None:
        """The daemon's connection pass run to the end: each node, in random order, dials
        random members until it holds ``connect_degree`` connections (inbound count)."""
        order = list(range(len(self.nodes)))
        self.rng.shuffle(order)
        peers = [set(n.peers) for n in self.nodes]
        want = self.gossip.connect_degree
        for i in order:
            while len(peers[i]) < min(want, len(self.nodes) - 1):
                j = self.rng.randrange(len(self.nodes))
                if j != i and j not in peers[i]:
                    peers[i].add(j)
                    peers[j].add(i)
        for node, mine in zip(self.nodes, peers, strict=True):
            node.peers = sorted(mine)

    def start(self, heartbeat_phase: bool = True) -> None:
        """Start every node's heartbeat (at a random phase within the first interval)."""
        for node in self.nodes:
            phase = self.rng.random() * self.gossip.heartbeat if heartbeat_phase else 0.0
            self._push(self.now + phase, node.index, HEARTBEAT, node.index, None)
            node.next_sync = self.now + self.rng.random() * self.gossip.sync_interval

    def stop_node(self, i: int) -> None:
        """``i`` goes down: its peers see the connections close; it keeps its state."""
        node = self.nodes[i]
        node.up = False
        for j in node.peers:
            other = self.nodes[j]
            other.peers.remove(i)
            other.mesh.discard(i)
        node.peers = []
        node.mesh.clear()

    def start_node(self, i: int) -> None:
        """``i`` comes back: it dials members at its next heartbeats."""
        self.nodes[i].up = True

    def _dial(self, node: Node) -> None:
        wanted = self.gossip.connect_degree - len(node.peers) - node.dialling
        if wanted <= 0:
            return
        mine = set(node.peers)
        candidates = [n.index for n in self.nodes if n.up and n.index != node.index]
        candidates = [j for j in candidates if j not in mine]
        for j in self.rng.sample(candidates, min(wanted, len(candidates))):
            node.dialling += 1
            rtt = 2 * self.links.latency
            self._push(self.now + self.gossip.dial_time + 2 * rtt, node.index, CONNECT, j, None)

    def _connected(self, i: int, j: int) -> None:
        node, other = self.nodes[i], self.nodes[j]
        node.dialling -= 1
        if not (node.up and other.up) or j in node.peers or self._cut(i, j, self.now) is not None:
            return
        node.peers.append(j)
        node.peers.sort()
        other.peers.append(i)
        other.peers.sort()
        if node.membership is not None:
            node.membership.sync_start(self, j, self.now)

    # --- publishing and receiving ----------------------------------------------------------

    def publish(self, author: int, payload: bytes, key: Any = None, extra: float = 0.0) -> Message:
        """``author`` publishes ``payload`` now; returns the message (its id is new)."""
        message = Message(len(self.messages), author, payload, key, extra)
        self.messages[message.mid] = message
        node = self.nodes[author]
        assert node.membership is not None
        node.membership.validate(message, self.now)
        self._accept(node, message, author, self.now)
        self.job(author, len(node.mesh) * self.costs.rpc_out)
        return message

    def _accept(self, node: Node, message: Message, forwarder: int | float, done: float) -> None:
        mid = message.mid
        node.seen.add(mid)
        self.delivered.setdefault(mid, {})[node.index] = done
        if not node.history:
            node.history.append([])
        node.history[0].append(mid)
        node.cache[mid] = message
        size = len(message.payload) + self.sizes.rpc_overhead
        for peer in sorted(node.mesh):
            if peer != forwarder and peer != message.author:
                self.send(node.index, peer, MSG, message, size, done)

    def _validated(self, node: Node, message: Message, src: int) -> None:
        """The validator's verdict on a first copy, once the node has handled it."""
        now = self.now
        g = self.gossip
        accept = allow(node.forwarders, src, g.forwarder_rate, g.forwarder_burst, now)
        accept = accept and allow(node.authors, message.author, g.author_rate, g.author_burst, now)
        assert node.membership is not None
        if accept and node.membership.validate(message, now):
            self._accept(node, message, src, now)

    def _iwant(self, node: Node, src: int, ids: list[int]) -> None:
        wanted = [mid for mid in ids if mid not in node.seen]
        if wanted:
            size = self.sizes.rpc_overhead + len(wanted) * self.sizes.message_id
            self.send(node.index, src, IWANT, wanted, size, self.now)

    def _serve(self, node: Node, src: int, ids: list[int]) -> None:
        for mid in ids:
            cached = node.cache.get(mid)
            if cached is not None:
                size = len(cached.payload) + self.sizes.rpc_overhead
                self.send(node.index, src, MSG, cached, size, self.now)

    def _receive(self, node: Node, kind: int, src: int, data: Any) -> None:
        if not node.up or src not in node.peers:
            return  # the connection is gone
        payload, size = data
        node.rpcs_in += 1
        node.bytes_in += size
        costs = self.costs
        i = node.index
        if kind == MSG:
            message: Message = payload
            if message.mid in node.seen:
                self.job(i, costs.rpc_in)
                return
            node.seen.add(message.mid)  # libp2p marks it seen before validating
            forwards = len(node.mesh) * costs.rpc_out
            cost = costs.rpc_in + costs.validate + message.extra + forwards
            self.job(i, cost, partial(self._validated, node, message, src))
        elif kind == IHAVE:
            self.job(i, costs.rpc_in + costs.rpc_out, partial(self._iwant, node, src, payload))
        elif kind == IWANT:
            cost = costs.rpc_in + len(payload) * costs.rpc_out
            self.job(i, cost, partial(self._serve, node, src, payload))
        elif kind == GRAFT:
            node.mesh.add(src)
            self.job(i, costs.rpc_in)
        elif kind == PRUNE:
            node.mesh.discard(src)
            self.job(i, costs.rpc_in)
        elif kind == SYNC:
            layer = node.membership
            assert layer is not None
            cost = costs.rpc_in + costs.sync_message + costs.rpc_out
            self.job(i, cost, lambda: layer.sync_receive(self, src, payload, self.now))

    # --- heartbeat -------------------------------------------------------------------------

    def _heartbeat(self, node: Node) -> None:
        g = self.gossip
        self._push(self.now + g.heartbeat, node.index, HEARTBEAT, node.index, None)
        if not node.up:
            return
        now = self.now
        sent_before = node.rpcs_out
        control = self.sizes.rpc_overhead + self.sizes.control
        if len(node.mesh) < g.degree_low:
            pool = [p for p in node.peers if p not in node.mesh]
            for peer in self.rng.sample(pool, min(g.degree - len(node.mesh), len(pool))):
                node.mesh.add(peer)
                self.send(node.index, peer, GRAFT, None, control, now)
        if len(node.mesh) > g.degree_high:
            for peer in self.rng.sample(sorted(node.mesh), len(node.mesh) - g.degree):
                node.mesh.discard(peer)
                self.send(node.index, peer, PRUNE, None, control, now)
        low, high = node.mesh_after_heartbeat
        node.mesh_after_heartbeat = (min(low, len(node.mesh)), max(high, len(node.mesh)))
        ids = [mid for window in node.history[: g.gossip_window] for mid in window]
        if ids:
            pool = [p for p in node.peers if p not in node.mesh]
            count = max(g.gossip_lazy, int(len(pool) * g.gossip_factor))
            size = self.sizes.rpc_overhead + len(ids) * self.sizes.message_id
            for peer in self.rng.sample(pool, min(count, len(pool))):
                self.send(node.index, peer, IHAVE, ids, size, now)
        node.history.insert(0, [])
        if len(node.history) > g.gossip_history:
            for mid in node.history.pop():
                node.cache.pop(mid, None)
        if len(node.peers) < g.connect_degree:
            self._dial(node)
        if now >= node.next_sync:
            node.next_sync += g.sync_interval
            if node.peers and node.membership is not None:
                node.membership.sync_start(self, self.rng.choice(node.peers), now)
        sent = node.rpcs_out - sent_before
        if sent:
            self.job(node.index, sent * self.costs.rpc_out)
        if self.on_heartbeat is not None:
            self.on_heartbeat(node)
