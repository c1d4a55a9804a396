"""The simulator's event loop, links and CPUs: what :class:`meshd.sim.engine.Sim` runs on.

Time jumps from event to event (a heap ordered by time, then by a counter, so ties break the
same way every run); :meth:`Loop.at` runs an action at a simulated time. A link delivers a
segment after a latency drawn from :class:`meshd.sim.params.Links` (Gaussian, with a floor),
in order (a later segment never overtakes an earlier one between the same two nodes), and a
lost segment or one sent across a partition is sent again after TCP's retransmission
timeout, doubling up to its cap. Each node is one CPU (or they share ``Costs.cores``, first
come first served): :meth:`Loop.job` spends CPU and runs what follows when it is done. Every
event is added to a SHA-256 of the trace (:attr:`Loop.digest`).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from meshd.sim.params import Costs, Links

if TYPE_CHECKING:
    from meshd.sim.engine import Sim

# timer kinds (RPC kinds are below 10: meshd.sim.engine)
HEARTBEAT = 10
CALL = 11
CONNECT = 12
DONE = 13


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


def allow(buckets: dict[int, _Bucket], key: int, rate: float, burst: float, now: float) -> bool:
    """A token bucket per ``key``: whether one more is allowed at ``now``."""
    bucket = buckets.get(key)
    if bucket is None:
        bucket = buckets[key] = _Bucket(burst, now)
    bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
    bucket.at = now
    if bucket.tokens < 1:
        return False
    bucket.tokens -= 1
    return True


class Loop:
    """The event queue, the links and the CPUs of ``size`` nodes."""

    def __init__(self, size: int, seed: int, links: Links | None, costs: Costs | None, trace: bool):
        self.rng = random.Random(seed)  # noqa: S311 (a reproducible run, not secrets)
        self.links = links or Links()
        self.costs = costs or Costs()
        self.now = 0.0
        self.nodes = [Node(i) for i in range(size)]
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

    # --- the queue -------------------------------------------------------------------------

    def _push(self, at: float, node: int, kind: int, src: int, data: Any) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (at, self._counter, node, kind, src, data))

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated time ``when``."""
        self._counter += 1
        self._calls[self._counter] = action
        heapq.heappush(self._queue, (when, self._counter, -1, CALL, self._counter, None))

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
                entry = (node.busy, self._counter, i, DONE, self._counter, None)
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
                self._queue, (self.now + cost, self._counter, i, DONE, self._counter, None)
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
