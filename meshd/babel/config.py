"""Settings of the Babel core: the speaker's (:class:`CoreConfig`) and one interface's.

:class:`CoreConfig` also carries the core's hooks (route origin validation, redistribution)
and its random source; every default is such that runs repeat. :class:`InterfaceConfig` is
what :meth:`meshd.babel.core.BabelCore.add_interface` settles from its arguments.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Literal

from meshd.babel.neighbours import IPAddress, LinkParams
from meshd.babel.numbers import INFINITY
from meshd.babel.sources import IPNetwork

InterfaceKind = Literal["wired", "tunnel", "unicast-peers"]
AcceptHook = Callable[[bytes, IPNetwork, IPNetwork | None], bool]
"""``accept(router_id, prefix, source)``: may this originator announce this route?"""


class Carrier(enum.IntEnum):
    """What a neighbour is to a router-id's routes (the ``carries`` hook's answer)."""

    NONE = 0
    """It may not bring them: its Updates for that router-id are refused."""
    CARRIED = 1
    """It may carry them, from their originator elsewhere (a relay, a gateway)."""
    OWN = 2
    """It is their originator itself, vouched for by the link (on the mesh, WireGuard's
    keys): its route is always feasible and, while finite, chosen over every carried one."""


CarriesHook = Callable[[bytes, str, IPAddress], Carrier]
"""``carries(router_id, interface, neighbour)``: what that neighbour is to the router-id's
routes (:class:`Carrier`)."""
RedistributeHook = Callable[[str, IPNetwork, IPNetwork | None], bool]
"""``redistribute(interface, prefix, source)``: may we announce this route there?"""
OnDemandHook = Callable[[str, IPNetwork, IPNetwork | None], bool]
"""``on_demand(interface, prefix, source)``: is this learnt route announced there only to the
neighbours that ask for it (:mod:`meshd.babel.interest`)?"""
RelayRank = Callable[[IPNetwork, IPNetwork | None, str, IPAddress], bytes | None]
"""``relay_rank(prefix, source, interface, neighbour)``: the rank (lowest first) of a route
through that neighbour among the relays both ends of a pair must agree on, or None when the
route is no such relayed route (see :func:`meshd.babel.routes.choose`)."""
AtRestHook = Callable[[str, IPAddress], bool]
"""``at_rest(interface, neighbour)``: may we pace this neighbour at rest (the interface's
``rest_pace``)? Asked at every scheduled Hello round, for each neighbour of a paced
interface (:meth:`meshd.babel.interfaces.Interface.hellos`)."""

MAX_INTERVAL = 0xFFFF
"""The longest interval the wire carries, in centiseconds (655.35 s)."""

DEFAULT_MAX_ROUTES = 10_000
"""The default route budget of one neighbour (:attr:`InterfaceConfig.max_routes`): far more
than a site's Babel network gives one router (babeld's own tables are sized for hundreds)."""


def accept_all(router_id: bytes, prefix: IPNetwork, source: IPNetwork | None) -> bool:
    """The default route-acceptance hook: every route is welcome."""
    return True


def redistribute_all(interface: str, prefix: IPNetwork, source: IPNetwork | None) -> bool:
    """The default redistribution filter: every route goes everywhere."""
    return True


def no_jitter() -> float:
    """The default random source: always the middle, so runs are reproducible."""
    return 0.5


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Settings of a Babel core that do not belong to one interface."""

    hysteresis: int = 48
    """A better route replaces the selected one only when better by more than this."""
    hop_count: int = 64
    """Hop count of the Seqno Requests we originate."""
    request_timeout: float = 0.5
    """First resend delay of an unanswered Seqno Request; it doubles at each resend."""
    request_attempts: int = 4
    resend_delay: float = 1.0
    """Urgent updates (retractions, originator switches) are sent again after this."""
    urgent_jitter: float = 0.02
    """Triggered messages wait up to this long, so that several share a packet."""
    triggered_threshold: int = 64
    """A change of metric this large (same originator and seqno) triggers an update."""
    source_gc: float = 180.0
    dump_interval: float = 1.0
    """A neighbour's wildcard Route Requests get a full dump at most once per this many
    seconds; the others are dropped and counted (it hears every route in our periodic
    updates anyway)."""
    accept: AcceptHook = accept_all
    accept_on: frozenset[str] | None = None
    """Interfaces whose Updates go through ``accept`` (None: all of them): the mesh, where
    router-ids are members' and origins are validated. The other interfaces (a gateway's
    site links) go through ``accept_site``, and what is learnt there is never announced as
    it is on an interface of ``accept_on``: a router-id cannot be checked on a site link,
    so a site route reaches the mesh only when the gateway originates it as its own."""
    accept_site: AcceptHook = accept_all
    """``accept`` for the interfaces outside ``accept_on``: on a gateway, nothing that claims
    the mesh's addresses or a member's router-id (:class:`meshd.babel.options.SiteOrigins`)."""
    carries: CarriesHook | None = None
    """Where set, what a neighbour (interface, address) is to a router-id's routes: on the
    mesh a member brings its own (``Carrier.OWN``), only a relay or a gateway brings another
    member's (``CARRIED``), and nobody else (``NONE``). ``accept`` says what a router-id may
    originate, not who may carry it: any member could announce another's /128 under its
    router-id and take its traffic at a relay. And the originator's own route, heard from
    it directly, wins over every carried one while its link is up, whatever seqno or metric
    a carrier claims (:func:`meshd.babel.routes.choose`). None: every neighbour carries."""
    redistribute: RedistributeHook = redistribute_all
    on_demand: OnDemandHook | None = None
    """Where set, a learnt route it names goes out on that interface only to a neighbour that
    asked for it with a Route Request lately (:mod:`meshd.babel.interest`); our own routes
    and the others go to every neighbour as usual. None: every route to every neighbour."""
    relay_rank: RelayRank | None = None
    """Where set, a key whose best route goes through a ranked neighbour takes the feasible
    ranked route of lowest rank, whatever the metrics (:func:`meshd.babel.routes.choose`)."""
    at_rest: AtRestHook | None = None
    """Where set, the neighbours of a ``unicast-peers`` interface with ``rest_pace`` > 1 it
    names, and that asked us for no route on demand lately, get only every ``rest_pace``-th
    scheduled Hello and full update (with intervals to match). None: every neighbour at the
    interface's own pace."""
    random: Callable[[], float] = no_jitter
    """Uniform in [0, 1): e.g. ``random.Random().random``."""

    def __post_init__(self) -> None:
        if not 0 <= self.hysteresis < INFINITY:
            raise ValueError(f"hysteresis {self.hysteresis} outside 0..65534")
        if not 1 <= self.hop_count <= 255:
            raise ValueError(f"hop count {self.hop_count} outside 1..255")
        if self.dump_interval < 0:
            raise ValueError(f"dump interval {self.dump_interval} s is negative")


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    """One interface, as :meth:`~meshd.babel.core.BabelCore.add_interface` settles it."""

    name: str
    kind: InterfaceKind
    hello_interval: float
    update_interval: float
    link: LinkParams
    timestamps: bool
    split_horizon: bool
    link_local: IPv6Address | None
    ipv4: IPv4Address | None
    mtu: int
    max_neighbours: int = 64
    """Neighbours a multicast interface admits (a speaker discovered on the link takes a
    slot; see :meth:`meshd.babel.core.BabelCore.receive` for who makes room)."""
    max_routes: int = DEFAULT_MAX_ROUTES
    """Routes held from one neighbour on this interface (its route budget): past it an
    Update for a prefix the neighbour has not announced yet is dropped and counted; its
    older routes and everyone else's stay."""
    rest_pace: int = 1
    """A neighbour at rest (:attr:`CoreConfig.at_rest`) gets every ``rest_pace``-th scheduled
    Hello and full update only, and our Hello, IHU and Update intervals to it are this many
    times the interface's. 1: no pacing; ``unicast-peers`` interfaces only."""

    def __post_init__(self) -> None:
        pace = self.rest_pace
        if pace < 1:
            raise ValueError(f"rest pace {pace} must be at least 1")
        if pace > 1 and self.multicast:
            raise ValueError(f"{self.kind} interface {self.name} cannot pace its neighbours")
        longest = max(self.hello_interval, self.update_interval)
        if round(pace * longest * 100) > MAX_INTERVAL:
            raise ValueError(
                f"rest pace {pace} times the {longest} s interval exceeds the 655.35 s "
                "the wire can carry"
            )

    @property
    def multicast(self) -> bool:
        return self.kind != "unicast-peers"
