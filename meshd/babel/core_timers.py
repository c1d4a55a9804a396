"""Time in the Babel core: the next deadline, what is due then, and the datagrams to send.

:class:`Timers` is the part of :class:`meshd.babel.core.BabelCore` the shell drives by the
clock: :meth:`Timers.timer` says when there is work, :meth:`Timers.handle_timer` does it
(neighbours' missed Hellos and lapsed IHUs, route expiry, resends, greetings, scheduled
Hellos and full updates, garbage collection), and :meth:`Timers.datagrams_to_send` packs
what waits into datagrams; :meth:`Timers.farewell` is what goes as the speaker stops.
"""

from __future__ import annotations

from meshd.babel.core_state import CoreState
from meshd.babel.expand import route_request, wildcard_retraction
from meshd.babel.interest import HOLDS
from meshd.babel.interfaces import MULTICAST_GROUP, SOON, Interface, centiseconds
from meshd.babel.neighbours import IPAddress
from meshd.babel.numbers import INFINITY
from meshd.babel.outbox import pack


class Timers(CoreState):
    """What the core does when time passes; see the module documentation."""

    def timer(self) -> float | None:
        """When :meth:`handle_timer` (or :meth:`datagrams_to_send`) next has work."""
        times: list[float] = []
        if self._greet:
            times.append(SOON)
        for iface in self._interfaces.values():
            times.extend(iface.deadlines())
        expiry = self._table.next_expiry()
        if expiry is not None:
            times.append(expiry)
        times.extend(self._requests.deadlines())
        times.extend(self._outbox.deadlines())
        times.extend(self._updates.deadlines())
        if self._interfaces:
            times.append(self._next_gc)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Do everything that is due at ``now``."""
        self._now = now
        for iface in self._interfaces.values():
            self._tick_neighbours(iface, now)
        self._selection.expire(now)
        self._requests.resend(now)
        self._updates.resend(now)
        greet, self._greet = self._greet, []
        for neighbour in greet:
            self._greet_neighbour(neighbour, now, hello=True, first=True)
        for iface in self._interfaces.values():
            name = iface.config.name
            if iface.next_hello <= now:
                for destination, tlvs in iface.hellos(now, self.config.at_rest, self._interest):
                    self._outbox.queue(name, destination, now, *tlvs)
                iface.next_hello = now + iface.config.hello_interval
                if not iface.started:
                    iface.started = True
                    if iface.config.multicast:
                        # As babeld at its start, "in case we were restarted recently": what
                        # neighbours hold from an earlier run (a prefix no longer ours) goes
                        # now, before the full update that follows, not at their hold time.
                        gone = wildcard_retraction(centiseconds(iface.config.update_interval))
                        self._outbox.queue(name, MULTICAST_GROUP, now, gone, route_request(None))
                    else:
                        # The same on the mesh, to each neighbour as it is greeted, for as
                        # long as one may hold routes of an earlier run (its hold time of
                        # our longest interval); greetings at the start came before this.
                        config = iface.config
                        hold = HOLDS * config.update_interval * config.rest_pace
                        iface.retract_until = now + hold
            if iface.next_update <= now:
                self._updates.full(iface, None, now)
                jitter = 0.75 + 0.25 * self.config.random()
                iface.next_update = now + iface.config.update_interval * jitter
        if now >= self._next_gc:
            self._sources.expire(now)
            self._requests.expire(now)
            self._updates.expire(now)
            self._interest.expire(now)
            self._next_gc = now + 10.0

    def datagrams_to_send(self, now: float) -> list[tuple[str, IPAddress, bytes]]:
        """The datagrams due by ``now``: ``(interface, destination, payload)``."""
        self._now = now
        return self._updates.datagrams(now, self.seqno)

    def farewell(self, now: float) -> list[tuple[str, IPAddress, bytes]]:
        """The datagrams to send as we stop, as babeld sends on exit: on every interface, to
        the multicast group or each neighbour, a wildcard retraction and a Hello of 0.1 s
        (:meth:`meshd.babel.interfaces.Interface.farewells`). Neighbours drop the routes
        they hold from us at once, and us within a second or two, where they kept both
        for their hold times (3.5 update intervals, 14 s after Hellos of 1 s; minutes for a
        mesh neighbour at rest) and sent traffic into a router that had gone. Nothing else
        waiting goes with it (an update after the retraction would announce a route again).
        """
        self._now = now
        datagrams: list[tuple[str, IPAddress, bytes]] = []
        for iface in self._interfaces.values():
            config = iface.config
            for destination, tlvs in iface.farewells(self.seqno, now):
                for payload in pack(tlvs, [], mtu=config.mtu, ipv4_via_ipv6=config.ipv4 is None):
                    datagrams.append((config.name, destination, payload))
        return datagrams

    def _tick_neighbours(self, iface: Interface, now: float) -> None:
        """Count the missed Hellos and lapsed IHUs due by ``now``. On ``unicast-peers`` (a
        relay has thousands of neighbours) only those whose deadline passed: their cost
        changes then or on a datagram, never otherwise. A multicast interface (at most
        ``max_neighbours``) looks at each, and forgets one silent for good."""
        if not iface.config.multicast:
            for neighbour in iface.take_due(now):
                neighbour.tick(now)
                self._refresh_neighbour(iface, neighbour, now)
                iface.note(neighbour)
            return
        for neighbour in list(iface.neighbours.values()):
            deadline = neighbour.deadline()
            if deadline is not None and deadline <= now:
                neighbour.tick(now)
            self._refresh_neighbour(iface, neighbour, now)
            idle = neighbour.reach() == 0 and neighbour.txcost >= INFINITY
            if idle and neighbour.deadline() is None:
                del iface.neighbours[neighbour.address]
                iface.unproven.pop(neighbour.address, None)
                self._drop_neighbour(neighbour, now)
            else:
                iface.note(neighbour)
