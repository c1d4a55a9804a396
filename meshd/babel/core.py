"""The Babel routing core (RFC 8966): packets and time in, packets and events out.

:class:`BabelCore` owns no socket and reads no clock; every entry point that depends on time
takes ``now`` (seconds, any monotonic origin), and randomness (jitter) comes from the
``random`` function of :class:`CoreConfig`. The shell that drives it:

- feeds every datagram to :meth:`BabelCore.receive`;
- calls :meth:`BabelCore.handle_timer` when :meth:`BabelCore.timer` says;
- after either, sends what :meth:`BabelCore.datagrams_to_send` returns and applies the
  events of :meth:`BabelCore.next_event` (kernel routes, WireGuard allowed-ips).

Interfaces come in three kinds. ``wired`` and ``tunnel`` are ordinary Babel links: Hellos and
Updates go to the multicast group ff02::1:6, neighbours appear when they speak; ``wired``
uses split horizon, ``tunnel`` measures RTT. ``unicast-peers`` is the WireGuard mesh, where
multicast reaches one peer at most: neighbours are added and removed by the caller (from the
peer table), and every Hello (with its real interval), IHU and Update is unicast to each.

Here: the configuration entry points (interfaces, neighbours of ``unicast-peers``, our own
prefixes). The rest of :class:`BabelCore` comes from its bases:

- the state, the counters, and neighbours coming and going: :mod:`meshd.babel.core_state`;
- a datagram received, and the Hellos, requests and AckReqs it answers:
  :mod:`meshd.babel.core_receive`;
- the timer, what is due at it, neighbours' ticks, and the datagrams to send:
  :mod:`meshd.babel.core_timers`;
- the snapshots, counters and events: :mod:`meshd.babel.core_queries`.

The protocol's rules live beside it:

- settings and hooks: :mod:`meshd.babel.config`;
- one interface, its Hellos and IHUs: :mod:`meshd.babel.interfaces`; each neighbour's
  Hello histories, link cost and RTT: :mod:`meshd.babel.neighbours`;
- Updates received, hold times, route selection and what a change sets off:
  :mod:`meshd.babel.selection`, over :mod:`meshd.babel.routes` (the table, ``choose``,
  the events) and :mod:`meshd.babel.sources` (feasibility);
- triggered, periodic and urgent updates, and what we announce: :mod:`meshd.babel.updates`;
- Seqno Requests, starvation recovery and forwarding: :mod:`meshd.babel.requests`;
- what waits per destination, packed into datagrams: :mod:`meshd.babel.outbox`;
- the snapshots ``meshd routes`` shows: :mod:`meshd.babel.views`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address

from meshd.babel.config import (
    DEFAULT_MAX_ROUTES,
    AcceptHook,
    AtRestHook,
    CoreConfig,
    InterfaceConfig,
    InterfaceKind,
    RedistributeHook,
    accept_all,
    no_jitter,
    redistribute_all,
)
from meshd.babel.core_queries import Queries
from meshd.babel.core_receive import Receiving
from meshd.babel.core_timers import Timers
from meshd.babel.expand import route_request
from meshd.babel.interfaces import MULTICAST_GROUP, Interface
from meshd.babel.martians import martian
from meshd.babel.neighbours import IPAddress, LinkParams, Neighbour
from meshd.babel.numbers import INFINITY
from meshd.babel.routes import NeighbourId
from meshd.babel.sources import IPNetwork, RouteKey
from meshd.babel.views import NeighbourView, RouteView

__all__ = [
    "MULTICAST_GROUP",
    "AcceptHook",
    "AtRestHook",
    "BabelCore",
    "CoreConfig",
    "InterfaceConfig",
    "InterfaceKind",
    "NeighbourView",
    "RedistributeHook",
    "RouteView",
    "accept_all",
    "no_jitter",
    "redistribute_all",
]


class BabelCore(Receiving, Timers, Queries):
    """A Babel speaker without I/O. See the module documentation."""

    def add_interface(
        self,
        name: str,
        *,
        kind: InterfaceKind,
        hello_interval: float = 4.0,
        update_interval: float | None = None,
        link_local: IPv6Address | None = None,
        ipv4: IPv4Address | None = None,
        rxcost: int = 96,
        k: int = 2,
        j: int = 3,
        timestamps: bool | None = None,
        rtt_min: float = 0.010,
        rtt_max: float = 0.120,
        max_rtt_penalty: int | None = None,
        split_horizon: bool | None = None,
        mtu: int = 1400,
        max_neighbours: int = 64,
        max_routes: int = DEFAULT_MAX_ROUTES,
        rest_pace: int = 1,
    ) -> InterfaceConfig:
        """Start speaking Babel on an interface; the first Hello goes at the next timer.

        ``link_local`` and ``ipv4`` are our addresses there: IHUs for other addresses are
        ignored (when neither is given, every IHU counts), and without ``ipv4`` IPv4 routes
        are announced with our IPv6 address as next hop (RFC 9229, AE 4). Timestamps and an
        RTT penalty of 96 are on by default for ``tunnel`` and ``unicast-peers``; split
        horizon for ``wired``. ``max_neighbours``: the neighbour budget of a multicast
        interface (see :meth:`receive`). ``max_routes``: the route budget of each neighbour
        there (routes held from it; past it, new prefixes from it are dropped and counted).
        ``rest_pace``: the pace of the neighbours at rest (``CoreConfig.at_rest``) on a
        ``unicast-peers`` interface, 1 (off) elsewhere; pace times either interval must fit
        in 655.35 s.
        """
        if name in self._interfaces:
            raise ValueError(f"interface {name} already added")
        if not 0.01 <= hello_interval <= 655.35:
            raise ValueError(f"Hello interval {hello_interval} s outside 0.01..655.35")
        update = update_interval if update_interval is not None else 4 * hello_interval
        if not 0.01 <= update <= 655.35:
            raise ValueError(f"update interval {update} s outside 0.01..655.35")
        measured = kind != "wired"
        config = InterfaceConfig(
            name=name,
            kind=kind,
            hello_interval=hello_interval,
            update_interval=update,
            link=LinkParams(
                rxcost=rxcost,
                k=k,
                j=j,
                rtt_min=rtt_min,
                rtt_max=rtt_max,
                max_rtt_penalty=(96 if measured else 0)
                if max_rtt_penalty is None
                else max_rtt_penalty,
            ),
            timestamps=measured if timestamps is None else timestamps,
            split_horizon=(kind == "wired") if split_horizon is None else split_horizon,
            link_local=link_local,
            ipv4=ipv4,
            mtu=mtu,
            max_neighbours=max_neighbours,
            max_routes=max_routes,
            rest_pace=rest_pace,
        )
        if mtu < 512:
            raise ValueError(f"MTU {mtu} is too small for Babel")
        if max_neighbours < 1:
            raise ValueError(f"neighbour budget {max_neighbours} must be at least 1")
        if max_routes < 1:
            raise ValueError(f"route budget {max_routes} must be at least 1")
        self._interfaces[name] = Interface(config)
        return config

    def add_neighbour(self, interface: str, address: IPAddress) -> None:
        """Add a neighbour on a unicast-peers interface (a WireGuard peer's address).

        It is sent a Hello, an IHU and a wildcard Route Request at the next timer.
        """
        iface = self._interface(interface)
        if iface.config.multicast:
            raise ValueError(f"{interface} discovers its neighbours; only unicast-peers take them")
        if address not in iface.neighbours:
            iface.neighbours[address] = Neighbour(interface, address)
            self._greet.append(NeighbourId(interface, address))

    def remove_neighbour(self, interface: str, address: IPAddress, now: float) -> None:
        """Forget a neighbour (a removed or revoked peer): its routes go at once."""
        self._now = now
        iface = self._interface(interface)
        neighbour = iface.neighbours.pop(address, None)
        if neighbour is not None:
            self._drop_neighbour(neighbour, now)

    def link_down(self, interface: str, now: float) -> None:
        """A multicast interface lost its link (down, no carrier): its neighbours and every
        route through them go at once (the kernel dropped those routes already), as babeld
        does, rather than after their Hellos run out. It speaks again at :meth:`link_up`."""
        self._now = now
        iface = self._interface(interface)
        if not iface.config.multicast:
            raise ValueError(f"{interface} is unicast-peers: its neighbours are the caller's")
        for neighbour in list(iface.neighbours.values()):
            del iface.neighbours[neighbour.address]
            iface.unproven.pop(neighbour.address, None)
            self._drop_neighbour(neighbour, now)

    def link_up(self, interface: str, now: float) -> None:
        """A multicast interface has its link again: a Hello, a wildcard Route Request and
        a full update go at once, as at the start (and as babeld does), so that neighbours
        and routes come back within a Hello rather than at the neighbours' next full
        update."""
        self._now = now
        iface = self._interface(interface)
        if not iface.config.multicast:
            raise ValueError(f"{interface} is unicast-peers: its neighbours are the caller's")
        iface.started = False
        iface.next_hello = iface.next_update = now

    def request_routes(
        self, interface: str, address: IPAddress, keys: Sequence[RouteKey], now: float
    ) -> None:
        """Ask a neighbour for these routes (Route Requests, unicast, at once): its answer,
        and on an interface where it announces them on demand, its updates for a while."""
        self._now = now
        iface = self._interface(interface)
        if address not in iface.neighbours or not keys:
            return
        self._outbox.queue(interface, address, now, *(route_request(*key) for key in keys))

    def originate(
        self, prefix: IPNetwork, source_prefix: IPNetwork | None = None, metric: int = 0
    ) -> None:
        """Announce a prefix of ours (with RFC 9079 ``source_prefix``), at once."""
        if not 0 <= metric < INFINITY:
            raise ValueError(f"metric {metric} outside 0..65534")
        if martian(prefix) or martian(source_prefix):
            raise ValueError(f"{prefix} from {source_prefix} is a martian prefix")
        _check_source(prefix, source_prefix)
        key = (prefix, source_prefix)
        before = self._selection.current(key)
        self._local[key] = metric
        self._updates.clear_lost(key)
        self._selection.reselect(key, before, self._now)
        self._updates.announce(key, self._now, urgent=True)

    def withdraw(self, prefix: IPNetwork, source_prefix: IPNetwork | None = None) -> None:
        """Stop announcing a prefix of ours; a retraction goes at once."""
        key = (prefix, source_prefix)
        if self._local.pop(key, None) is None:
            return
        self._selection.reselect(key, None, self._now)
        if self._table.selected(key) is None:
            self._updates.mark_lost(key, self._now)
        self._updates.announce(key, self._now, urgent=True)

    def refilter(self, interfaces: Iterable[str], now: float) -> None:
        """The redistribute hook's rules changed: on each of ``interfaces`` every route we
        have goes again at once, as an update where it may go now and as a retraction where
        it may not (an interface not running is passed over)."""
        self._now = now
        for name in interfaces:
            iface = self._interfaces.get(name)
            if iface is not None:
                self._updates.refilter(iface, now)

    def set_mtu(self, name: str, mtu: int) -> None:
        """The largest datagram on interface ``name`` from now on (its link's MTU changed:
        ``packet_size``); nothing for an interface not added."""
        if mtu < 512:
            raise ValueError(f"MTU {mtu} is too small for Babel")
        iface = self._interfaces.get(name)
        if iface is not None:
            iface.config = dataclasses.replace(iface.config, mtu=mtu)

    def revalidate(self, now: float) -> None:
        """Ask the acceptance hook again about every route (a member was revoked)."""
        self._now = now
        self._selection.revalidate(now)


def _check_source(prefix: IPNetwork, source: IPNetwork | None) -> None:
    if source is None:
        return
    if source.version != prefix.version:
        raise ValueError(f"source {source} and prefix {prefix} are of different families")
    if source.prefixlen == 0:
        raise ValueError("a source prefix of length 0 is an ordinary route: pass None")
