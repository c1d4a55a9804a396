"""Named Babel cores on shared links, on a fake clock: a gateway between a mesh and a LAN.

Unlike :mod:`tests.babel.sim` (numbered routers, one kind of interface), each node here
has its own interfaces, and each interface sits on a *segment*: a LAN, or the WireGuard
mesh. A datagram to the multicast group reaches every other interface on its segment; a
unicast one reaches the interface with that address. Who talks to whom on a
``unicast-peers`` segment is up to the cores' neighbours. Datagrams take 1 ms; the clock
jumps from one event to the next. ``inject`` puts a datagram of the test's own making on
a segment, as a speaker that is no core would.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from meshd.babel.core import MULTICAST_GROUP, BabelCore
from meshd.babel.neighbours import IPAddress
from meshd.babel.routes import Event

DELAY = 0.001


@dataclass(order=True)
class _Delivery:
    time: float
    order: int
    node: str = field(compare=False)
    interface: str = field(compare=False)
    source: IPAddress = field(compare=False)
    payload: bytes = field(compare=False)


class Segments:
    """Cores by name, their interfaces on segments, and a queue of datagrams."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cores: dict[str, BabelCore] = {}
        self.events: dict[str, list[Event]] = {}
        self.sent: dict[str, int] = {}
        """Bytes each node has sent."""
        self._ends: dict[str, list[tuple[str, str, IPAddress]]] = {}
        self._segment_of: dict[tuple[str, str], tuple[str, IPAddress]] = {}
        self._queue: list[_Delivery] = []
        self._order = itertools.count()
        self.tick: Callable[[Segments], None] | None = None
        """Called after every step (a datagram handled or a timer run)."""

    def add(self, name: str, core: BabelCore) -> BabelCore:
        self.cores[name] = core
        self.events[name] = []
        self.sent[name] = 0
        return core

    def attach(self, node: str, interface: str, segment: str, address: IPv6Address) -> None:
        """Put ``node``'s ``interface`` (already added to its core) on ``segment``."""
        self._ends.setdefault(segment, []).append((node, interface, address))
        self._segment_of[(node, interface)] = (segment, address)

    def remove(self, node: str) -> None:
        """The node stops: it sends and receives nothing more."""
        del self.cores[node]
        for ends in self._ends.values():
            ends[:] = [end for end in ends if end[0] != node]

    def inject(self, segment: str, source: IPAddress, payload: bytes) -> None:
        """A datagram from ``source`` to the multicast group of ``segment``, now."""
        self._deliver(segment, None, source, MULTICAST_GROUP, payload)

    def _deliver(
        self,
        segment: str,
        sender: str | None,
        source: IPAddress,
        destination: IPAddress,
        payload: bytes,
    ) -> None:
        for node, interface, address in self._ends.get(segment, ()):
            if node == sender:
                continue
            if destination in (MULTICAST_GROUP, address):
                heapq.heappush(
                    self._queue,
                    _Delivery(
                        self.now + DELAY, next(self._order), node, interface, source, payload
                    ),
                )

    def _flush(self, name: str) -> None:
        core = self.cores[name]
        for interface, destination, payload in core.datagrams_to_send(self.now):
            self.sent[name] += len(payload)
            segment, address = self._segment_of[(name, interface)]
            self._deliver(segment, name, address, destination, payload)
        while (event := core.next_event()) is not None:
            self.events[name].append(event)

    def step(self, until: float) -> bool:
        """Handle the next datagram or timer due by ``until``; False if there is none."""
        timers = [(t, name) for name, core in self.cores.items() if (t := core.timer()) is not None]
        when, name = min(timers, default=(float("inf"), ""))
        net = self._queue[0].time if self._queue else float("inf")
        if min(when, net) > until:
            return False
        if net <= when:
            delivery = heapq.heappop(self._queue)
            self.now = max(self.now, delivery.time)
            core = self.cores.get(delivery.node)
            if core is not None:
                core.receive(delivery.interface, delivery.source, delivery.payload, self.now)
                self._flush(delivery.node)
        else:
            self.now = max(self.now, when)
            self.cores[name].handle_timer(self.now)
            self._flush(name)
        if self.tick is not None:
            self.tick(self)
        return True

    def run(self, duration: float) -> None:
        until = self.now + duration
        while self.step(until):
            pass
        self.now = until
