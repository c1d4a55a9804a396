"""The event loop, the links, and a meshsub 1.1 router per node.

One :class:`Sim` holds every node. Time jumps from event to event (a heap ordered by time,
then by a counter, so ties break the same way every run). All randomness comes from one
``random.Random(seed)``; nodes, peers and message ids are ints, and no set is iterated
without sorting, so a run does not depend on hash randomisation: the same seed gives the
same trace, whose SHA-256 (:attr:`Sim.digest`) the tests compare.

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

import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from meshd.sim.params import Costs, Gossip, Links, Sizes

# RPC kinds
MSG = 0
IHAVE = 1
IWANT = 2
GRAFT = 3
PRUNE = 4
SYNC = 5
# timer kinds
_HEARTBEAT = 10
_CALL = 11
_CONNECT = 12
_DONE = 13


@dataclass(frozen=True, slots=True)
class Message:
    """One gossiped record: ``mid`` is its gossip id, ``author`` the node that published it."""

    mid: int
    author: int
    payload: bytes
    key: Any = None  # what the membership model needs to know about the record
    extra: float = 0.0  # CPU its validator spends beyond Costs.validate (Costs.revocation)


class Membership(Protocol):
    """A node's membership layer, as the router sees it."""

    def validate(self, message: Message, now: float) -> bool: ...

    def sync_start(self, sim: Sim, peer: int, now: float) -> None: ...

    def sync_receive(self, sim: Sim, peer: int, data: Any, now: float) -> None: ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass
class Node:
    index: int
    peers: list[int] = field(default_factory=list)  # connected, sorted
    mesh: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)
    history: list[list[int]] = field(default_factory=list)  # newest first
    cache: dict[int, Message] = field(default_factory=dict)
    up: bool = True
    busy: float = 0.0  # with a core of its own: when it is free again
    jobs: deque[tuple[float, Callable[[], None] | None]] = field(default_factory=deque)
    running: bool = False
    waiting: bool = False
    membership: Membership | None = None
    authors: dict[int, _Bucket] = field(default_factory=dict)
    forwarders: dict[int, _Bucket] = field(default_factory=dict)
    # what it costs (for the steady-state figures)
    rpcs_in: int = 0
    rpcs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    cpu: float = 0.0
    mesh_after_heartbeat: tuple[int, int] = (1 << 30, 0)  # min, max
    dialling: int = 0
    next_sync: float = 0.0


def _allow(buckets: dict[int, _Bucket], key: int, rate: float, burst: float, now: float) -> bool:
    bucket = buckets.get(key)
    if bucket is None:
        bucket = buckets[key] = _Bucket(burst, now)
    bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
    bucket.at = now
    if bucket.tokens < 1:
        return False
    bucket.tokens -= 1
    return True


class Sim:
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
        self.rng = random.Random(seed)  # noqa: S311 (a reproducible run, not secrets)
        self.links = links or Links()
        self.costs = costs or Costs()
        self.gossip = gossip or Gossip()
        self.sizes = sizes or Sizes()
        self.now = 0.0
        self.nodes = [Node(i) for i in range(size)]
        self.messages: dict[int, Message] = {}
        self._queue: list[tuple[float, int, int, int, int, Any]] = []
        self._counter = 0
        self._fifo: dict[tuple[int, int], float] = {}
        self._free = self.costs.cores or 0  # shared cores free now
        self._ready: list[tuple[float, int, int]] = []  # nodes waiting for a shared core
        self._partitions: list[tuple[float, float, frozenset[int]]] = []
        self._calls: dict[int, Callable[[], None]] = {}
        self._hash = hashlib.sha256() if trace else None
        self.events = 0
        self.sent: dict[int, list[int]] = {}  # RPC kind -> [count, bytes]
        self.delivered: dict[int, dict[int, float]] = {}  # mid -> node -> time validated
        self.on_heartbeat: Callable[[Node], None] | None = None

    # --- the loop --------------------------------------------------------------------------

    def _push(self, at: float, node: int, kind: int, src: int, data: Any) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (at, self._counter, node, kind, src, data))

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated time ``when``."""
        self._counter += 1
        self._calls[self._counter] = action
        heapq.heappush(self._queue, (when, self._counter, -1, _CALL, self._counter, None))

    def run(self, until: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= until:
            at, _, node, kind, src, data = heapq.heappop(queue)
            self.now = at
            self.events += 1
            if self._hash is not None:
                self._hash.update(f"{at:.9f} {node} {kind} {src}\n".encode())
            if kind == _CALL:
                self._calls.pop(src)()
            elif kind == _HEARTBEAT:
                self._heartbeat(self.nodes[node])
            elif kind == _CONNECT:
                self._connected(node, src)
            elif kind == _DONE:
                self._done(self.nodes[node], src)
            else:
                self._receive(self.nodes[node], kind, src, data)
        self.now = max(self.now, until)

    @property
    def digest(self) -> str:
        assert self._hash is not None
        return self._hash.hexdigest()

    # --- links -----------------------------------------------------------------------------

    def partition(self, start: float, end: float, group: Sequence[int]) -> None:
        """From ``start`` to ``end``, every segment between ``group`` and the rest is lost."""
        self._partitions.append((start, end, frozenset(group)))

    def _cut(self, a: int, b: int, when: float) -> float | None:
        """The heal time if a and b are apart at ``when``."""
        for start, end, group in self._partitions:
            if start <= when < end and ((a in group) != (b in group)):
                return end
        return None

    def _transit(self, a: int, b: int, sent: float) -> float:
        links = self.links
        delay = max(links.floor, self.rng.gauss(links.latency, links.jitter))
        at = sent
        rto = links.rto
        while True:
            heal = self._cut(a, b, at)
            if heal is None and not (links.loss and self.rng.random() < links.loss):
                break
            at += rto
            rto = min(2 * rto, links.max_rto)
        arrival = max(at + delay, self._fifo.get((a, b), 0.0))
        self._fifo[(a, b)] = arrival
        return arrival

    def send(self, a: int, b: int, kind: int, data: Any, size: int, sent: float) -> None:
        node = self.nodes[a]
        node.rpcs_out += 1
        node.bytes_out += size
        tally = self.sent.setdefault(kind, [0, 0])
        tally[0] += 1
        tally[1] += size
        self._push(self._transit(a, b, sent), b, kind, a, (data, size))

    # --- CPU -------------------------------------------------------------------------------

    def job(self, i: int, cost: float, action: Callable[[], None] | None = None) -> None:
        """Node ``i`` spends ``cost`` seconds of CPU, after what it already has to do, then
        runs ``action`` (what it sends then leaves then)."""
        node = self.nodes[i]
        node.cpu += cost
        if not self.costs.cores:
            node.busy = max(self.now, node.busy) + cost
            if action is not None:
                self._counter += 1
                self._calls[self._counter] = action
                entry = (node.busy, self._counter, i, _DONE, self._counter, None)
                heapq.heappush(self._queue, entry)
            return
        node.jobs.append((cost, action))
        if not node.running and not node.waiting:
            node.waiting = True
            self._counter += 1
            heapq.heappush(self._ready, (self.now, self._counter, i))
            self._dispatch()

    def _dispatch(self) -> None:
        """Shared cores: the node that has waited longest gets a free core (FCFS)."""
        while self._free and self._ready:
            _, _, i = heapq.heappop(self._ready)
            node = self.nodes[i]
            node.waiting = False
            cost, action = node.jobs.popleft()
            node.running = True
            self._free -= 1
            self._counter += 1
            if action is not None:
                self._calls[self._counter] = action
            heapq.heappush(
                self._queue, (self.now + cost, self._counter, i, _DONE, self._counter, None)
            )

    def _done(self, node: Node, call: int) -> None:
        action = self._calls.pop(call, None)
        if action is not None:
            action()
        if self.costs.cores:
            node.running = False
            self._free += 1
            if node.jobs:
                node.waiting = True
                self._counter += 1
                heapq.heappush(self._ready, (self.now, self._counter, node.index))
            self._dispatch()

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
            self._push(self.now + phase, node.index, _HEARTBEAT, node.index, None)
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
            self._push(self.now + self.gossip.dial_time + 2 * rtt, node.index, _CONNECT, j, None)

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
        accept = _allow(node.forwarders, src, g.forwarder_rate, g.forwarder_burst, now)
        accept = accept and _allow(node.authors, message.author, g.author_rate, g.author_burst, now)
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
        self._push(self.now + g.heartbeat, node.index, _HEARTBEAT, node.index, None)
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
