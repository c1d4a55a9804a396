"""One Babel interface: its neighbours, its Hellos and its IHUs (RFC 8966 3.4, RFC 9616).

An :class:`Interface` is the core's record of one link: its settings, its neighbours, and
when its next Hello and full update are due. It builds the Hellos and IHUs that go out
(with RFC 9616 timestamps when enabled) and takes in those that come. What a neighbour's
cost means for the routes is the core's business; each neighbour's own state (Hello
histories, txcost, RTT) is :class:`meshd.babel.neighbours.Neighbour`.

On a multicast interface (``wired``, ``tunnel``) one Hello goes to ff02::1:6 with an IHU
for every neighbour; on ``unicast-peers`` each neighbour gets its own Hello (with the U
flag and its own seqno) and its IHU.

Neighbours at rest: on a ``unicast-peers`` interface with ``rest_pace`` > 1, a neighbour
the core's ``at_rest`` hook names and that asks us for no route on demand
(:meth:`meshd.babel.interest.Interest.asking`), or does but paces us at rest itself, gets
only every ``rest_pace``-th scheduled Hello (with its IHU) and full update; every interval
we send it (Hello, IHU, Update) is that many times the interface's, so it expects no more
than it gets. The verdict is taken
at each scheduled Hello round; a neighbour busy again gets its Hello at that round and its
full update at the next one (:meth:`meshd.babel.neighbours.Neighbour.set_pace`).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Final

from meshd.babel.config import AtRestHook, InterfaceConfig
from meshd.babel.expand import ihu, wildcard_retraction
from meshd.babel.interest import Interest
from meshd.babel.neighbours import IPAddress, Neighbour, timestamp
from meshd.babel.numbers import HELLO_UNICAST
from meshd.babel.packet import Tlv
from meshd.babel.routes import HEAP_FLOOR, HEAP_SLACK, NeighbourId
from meshd.babel.sources import seqno_plus
from meshd.babel.subtlv_types import HelloTimestamp, IhuTimestamp
from meshd.babel.tlv import Hello, Ihu

MULTICAST_GROUP: Final = IPv6Address("ff02::1:6")
"""Babel's link-local multicast group (RFC 8966 5)."""

SOON: Final = float("-inf")
"""A deadline that is already due, whatever the time."""

FAREWELL_HELLO: Final = 0.1
"""The Hello interval (seconds) a farewell announces, as babeld's on exit: the neighbour
expects our next Hello within it, and drops us after the few it misses."""


def centiseconds(seconds: float) -> int:
    """An interval as the wire carries it: centiseconds in 1..65535."""
    return min(max(round(seconds * 100), 1), 0xFFFF)


@dataclass(slots=True)
class Interface:
    """An interface the core speaks on, and its neighbours by address."""

    config: InterfaceConfig
    neighbours: dict[IPAddress, Neighbour] = field(default_factory=dict)
    unproven: dict[IPAddress, None] = field(default_factory=dict)
    """The neighbours without a working two-way link (infinite cost: no IHU for us, or too
    few Hellos), least recently heard first: the only ones a newcomer may displace."""
    hello_seqno: int = 0
    next_hello: float = SOON
    next_update: float = SOON
    started: bool = False
    retract_until: float = float("inf")
    """On ``unicast-peers``: until when a neighbour we greet may still hold routes from an
    earlier run of ours (the longest hold time we announce there, from our first Hello):
    until then its greeting carries a wildcard retraction (:meth:`meshd.babel.core_state.
    CoreState._greet_neighbour`)."""
    _due: list[tuple[float, int, IPAddress]] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)

    def targets(self) -> list[IPAddress]:
        """Where updates for everyone go: the multicast group, or each neighbour."""
        if self.config.multicast:
            return [MULTICAST_GROUP]
        return list(self.neighbours)

    def scheduled_targets(self) -> list[IPAddress]:
        """Where a scheduled full update goes: :meth:`targets` but the neighbours at rest
        whose turn it is not."""
        if self.config.multicast:
            return [MULTICAST_GROUP]
        if self.config.rest_pace == 1:
            return list(self.neighbours)
        return [a for a, n in self.neighbours.items() if n.update_due()]

    def update_interval(self, destination: IPAddress) -> int:
        """The Update interval we announce to a destination (centiseconds)."""
        neighbour = None if self.config.multicast else self.neighbours.get(destination)
        pace = 1 if neighbour is None else neighbour.pace
        return centiseconds(pace * self.config.update_interval)

    def deadlines(self) -> list[float]:
        """The next Hello, the next full update, and the earliest neighbour's next missed
        Hello or lapsing IHU (:meth:`note`)."""
        times = [self.next_hello, self.next_update]
        first = self._first_due()
        if first is not None:
            times.append(first)
        return times

    # --- each neighbour's deadline, in a heap -----------------------------------------------

    def note(self, neighbour: Neighbour) -> None:
        """Its deadline (:meth:`Neighbour.deadline`) may have moved: keep it in the heap.

        The core asks for the earliest deadline after every datagram, and a relay has
        thousands of neighbours: a look at each would cost milliseconds a datagram. Entries
        a later note made obsolete stay in the heap until they surface and are dropped.
        """
        deadline = neighbour.deadline()
        if deadline is not None and deadline != neighbour.noted:
            neighbour.noted = deadline
            heapq.heappush(self._due, (deadline, next(self._order), neighbour.address))
            if len(self._due) > HEAP_SLACK * max(HEAP_FLOOR, len(self.neighbours)):
                # Obsolete entries of neighbours whose deadline moved often (a Hello and
                # IHU a datagram, each moving it): rebuilt from what each one noted.
                self._due = [
                    (n.noted, next(self._order), a)
                    for a, n in self.neighbours.items()
                    if n.noted is not None
                ]
                heapq.heapify(self._due)

    def take_due(self, now: float) -> list[Neighbour]:
        """The neighbours whose deadline is ``now`` or earlier, out of the heap (the core
        ticks them and notes them again)."""
        due: list[Neighbour] = []
        while (first := self._first_due()) is not None and first <= now:
            _, _, address = heapq.heappop(self._due)
            neighbour = self.neighbours[address]
            neighbour.noted = None
            due.append(neighbour)
        return due

    def _first_due(self) -> float | None:
        """The earliest deadline in the heap that still holds, dropping those that do not."""
        heap = self._due
        while heap:
            deadline, _, address = heap[0]
            neighbour = self.neighbours.get(address)
            if neighbour is not None and neighbour.noted == deadline:
                if neighbour.deadline() == deadline:
                    return deadline
                neighbour.noted = None  # moved without a note: noted again below
                heapq.heappop(heap)
                self.note(neighbour)
                continue
            heapq.heappop(heap)
        return None

    # --- sending ----------------------------------------------------------------------------

    def hellos(
        self, now: float, at_rest: AtRestHook | None = None, interest: Interest | None = None
    ) -> list[tuple[IPAddress, list[Tlv]]]:
        """The Hellos of this scheduled round, each with its IHUs: ``(destination, TLVs)``.

        On a paced interface each neighbour's pace is settled first: ``rest_pace`` when
        ``at_rest`` says so and it is not busy with us (:meth:`_busy`), else 1.
        """
        config = self.config
        if config.multicast:
            self.hello_seqno = seqno_plus(self.hello_seqno)
            hello = self._hello(self.hello_seqno, 0, config.hello_interval, now)
            ihus = [self.ihu(n, now) for n in self.neighbours.values()]
            return [(MULTICAST_GROUP, [hello, *ihus])]
        hook = at_rest if config.rest_pace > 1 else None
        due: list[tuple[IPAddress, list[Tlv]]] = []
        for address, neighbour in self.neighbours.items():
            neighbour.quick_hellos = 0
            if hook is not None:
                resting = hook(config.name, address) and not self._busy(neighbour, interest, now)
                neighbour.set_pace(config.rest_pace if resting else 1)
            if neighbour.hello_due():
                due.append((address, self.unicast_hello(neighbour, now)))
        return due

    def farewells(self, seqno: int, now: float) -> list[tuple[IPAddress, list[Tlv]]]:
        """What goes to every destination as we stop: a wildcard retraction (every route we
        announced there is gone, RFC 8966 4.6.9) and a Hello of :data:`FAREWELL_HELLO`,
        each Hello in its own sequence (the multicast one, or the neighbour's unicast one).
        ``seqno``: our router seqno, which the retraction carries."""
        config = self.config
        if config.multicast:
            self.hello_seqno = seqno_plus(self.hello_seqno)
            hello = self._hello(self.hello_seqno, 0, FAREWELL_HELLO, now)
            gone = wildcard_retraction(centiseconds(config.update_interval), seqno)
            return [(MULTICAST_GROUP, [gone, hello])]
        parting: list[tuple[IPAddress, list[Tlv]]] = []
        for address, neighbour in self.neighbours.items():
            neighbour.hello_seqno = seqno_plus(neighbour.hello_seqno)
            hello = self._hello(neighbour.hello_seqno, HELLO_UNICAST, FAREWELL_HELLO, now)
            gone = wildcard_retraction(self.update_interval(address), seqno)
            parting.append((address, [gone, hello]))
        return parting

    def _busy(self, neighbour: Neighbour, interest: Interest | None, now: float) -> bool:
        """A neighbour that asked us for a route lately is busy, unless it paces us at rest
        itself (its Hellos to us say a longer interval than ours): then it no longer needs
        that route (a member whose direct path came up) and it must not keep us busy for
        the whole interest hold, nor need it see us fail within a few Hellos."""
        if interest is None or not interest.asking(
            NeighbourId(self.config.name, neighbour.address), now
        ):
            return False
        return neighbour.unicast.interval <= self.config.hello_interval

    def unicast_hello(self, neighbour: Neighbour, now: float) -> list[Tlv]:
        """A Hello of the neighbour's own unicast sequence, and its IHU, at its pace."""
        neighbour.hello_seqno = seqno_plus(neighbour.hello_seqno)
        interval = neighbour.pace * self.config.hello_interval
        hello = self._hello(neighbour.hello_seqno, HELLO_UNICAST, interval, now)
        return [hello, self.ihu(neighbour, now)]

    def _hello(self, seqno: int, flags: int, interval: float, now: float) -> Hello:
        subs = (HelloTimestamp(timestamp(now)),) if self.config.timestamps else ()
        return Hello(seqno, centiseconds(interval), flags, subs)

    def ihu(self, neighbour: Neighbour, now: float) -> Ihu:
        """Our rxcost for a neighbour (its IHU interval: our Hello interval to it, at its
        pace), with the timestamps of its last Hello if recent: within 3 of its own Hello
        intervals or of ours, whichever is longer (a neighbour may pace us at rest)."""
        config = self.config
        interval = centiseconds(neighbour.pace * config.hello_interval)
        tlv = ihu(neighbour.rxcost(config.link), interval, neighbour.address)
        heard = max(config.hello_interval, neighbour.unicast.interval, neighbour.multicast.interval)
        recent = now - neighbour.hello_received_at <= 3 * heard
        if config.timestamps and recent and neighbour.hello_origin is not None:
            assert neighbour.hello_receive is not None
            stamps = IhuTimestamp(neighbour.hello_origin, neighbour.hello_receive)
            tlv = dataclasses.replace(tlv, sub_tlvs=(stamps,))
        return tlv

    # --- receiving --------------------------------------------------------------------------

    def hear(self, neighbour: Neighbour, messages: Sequence[object], now: float) -> None:
        """Take in one packet's Hellos and the IHUs meant for us: histories, txcost, RTT."""
        neighbour.heard(now)
        transmit = self._hear_hellos(neighbour, messages, now)
        for message in messages:
            if isinstance(message, Ihu) and self._for_us(message):
                neighbour.receive_ihu(message.rxcost, message.interval / 100, now)
                stamps = message.timestamps
                if stamps is not None and transmit is not None:
                    neighbour.rtt_sample(
                        stamps.origin, stamps.receive, transmit, now, self.config.link
                    )

    def _hear_hellos(
        self, neighbour: Neighbour, messages: Sequence[object], now: float
    ) -> int | None:
        """Record the packet's Hellos; return the transmit timestamp of a timestamped one."""
        transmit = None
        for message in messages:
            if not isinstance(message, Hello):
                continue
            history = neighbour.unicast if message.unicast else neighbour.multicast
            history.receive(message.seqno, message.interval / 100, now)
            stamp = message.timestamp
            if stamp is not None and self.config.timestamps:
                neighbour.receive_hello_timestamp(stamp, now)
                transmit = stamp
        return transmit

    def _for_us(self, message: Ihu) -> bool:
        ours = [a for a in (self.config.link_local, self.config.ipv4) if a is not None]
        return message.address is None or not ours or message.address in ours
