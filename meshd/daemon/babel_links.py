"""The links the Babel service speaks on: their ports opened (:func:`open_links`), and
the site interfaces that lose their link, find it again, or are made anew (shell, and a
pure rule).

A Babel port is a socket bound to its interface's index. An interface deleted and made
again under the same name (a VLAN or a bridge re-created by the network's manager, a USB
adapter plugged back) has a new index: the old socket reaches nothing, and Babel on that
link stayed dead, neighbours and routes gone, until the daemon was restarted.
:func:`follow_site_links` looks at the indexes as the kernel tells of a link or an address
changing (:func:`watch_links`), and every :data:`EVERY` seconds whatever it said, and calls
``restart`` once an interface is back under a new index (the daemon starts its Babel
speaker again, as after a WireGuard key rotation: new ports, neighbours found again within
a few Hellos). One that loses its link (down, no carrier) or goes away has its neighbours
and their routes dropped at once (``down``); when it has its link again under the same
index, a Hello, a request and a full update go at once (``up``), as babeld does: routes
came back at the neighbour's next full update otherwise, and installing them failed
every second while the link was down. A link whose MTU changes (``ip link set mtu``, a
VLAN moved under a smaller one, a PPPoE session renegotiated) has Babel's datagrams there
sized from the new MTU at once (``mtu``): read only when Babel started on it, a lowered
MTU had the kernel fragment or drop its full updates until a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Final

import trio

from meshd.babel.auth import LinkAuth
from meshd.babel.core import BabelCore
from meshd.babel.options import BabelConfig
from meshd.babel.ports import (
    IFA_F_TENTATIVE,
    Port,
    UdpPort,
    interface_addresses,
    packet_size,
)
from meshd.daemon.babel_pace import rest_pace
from meshd.errors import BackendError
from meshd.wg import rtnetlink as rt
from meshd.wg.rtnl_socket import RtnlSocket, monitor_socket

log = logging.getLogger(__name__)

#: Seconds between two looks at the site interfaces' indexes when nothing is heard.
EVERY: Final = 2.0
#: After the kernel tells of a link or an address changing: the look comes this much later
#: (what one change brings, a link down and its addresses, seen together), and at most one
#: look every ``LOOK_GAP`` s however much it says (a host making and deleting containers'
#: interfaces all the time).
SETTLE: Final = 0.05
LOOK_GAP: Final = 0.25
#: A link must stay down (or gone) this long before its neighbours and routes are dropped,
#: as routers' carrier delay ("hold-time down"): a blink shorter than that keeps them (the
#: kernel's routes it took are put back at once, meshd.babel.kernel_routes), where dropping
#: them cost the few Hellos that find a neighbour again (~4 s against BIRD) once it is back.
DOWN_HOLD: Final = 1.0
DRAIN: Final = 64  # datagrams read at most per wake-up of watch_links

Watch = Callable[[Callable[[], None]], Awaitable[None]]
"""Something that calls its argument when the interfaces may have changed, until cancelled
(:func:`watch_links`)."""


@dataclass(frozen=True, slots=True)
class Look:
    """A site interface ready to carry Babel, as one look found it: its index and its
    link's MTU (None: not said)."""

    index: int
    mtu: int | None = None


@dataclass
class Links:
    """What :func:`open_links` opened: a port an interface, the MAC state of the keyed
    ones, and each site interface's index and MTU as its port was opened with them."""

    ports: list[Port] = field(default_factory=list)
    auth: dict[str, LinkAuth] = field(default_factory=dict)
    indexes: dict[str, int] = field(default_factory=dict)
    mtus: dict[str, int | None] = field(default_factory=dict)


async def open_links(
    core: BabelCore,
    config: BabelConfig,
    *,
    mesh_if: str | None,
    own_link_local: IPv6Address | None,
) -> Links:
    """Add to ``core`` the site interfaces of ``config`` (multicast, MAC-keyed when it has
    keys) and the mesh's (unicast-peers, from our WireGuard key's link-local address), and
    open a port on each. If one fails, those opened are closed again."""
    links = Links()
    try:
        for name in config.interfaces:
            addresses = await interface_addresses(name)
            links.indexes[name] = addresses.index
            links.mtus[name] = addresses.mtu
            core.add_interface(
                name,
                kind="wired",
                hello_interval=config.hello_interval,
                link_local=addresses.link_local,
                ipv4=addresses.ipv4,
                max_routes=config.max_routes_site,
                mtu=packet_size(addresses.mtu),
            )
            links.ports.append(await UdpPort.open(name, addresses, multicast=True))
            if config.keys:
                links.auth[name] = LinkAuth(config.keys)
            log.info(
                "Babel on %s (link-local %s, IPv4 %s%s)",
                name,
                addresses.link_local,
                addresses.ipv4,
                ", MAC" if config.keys else "",
            )
        if mesh_if is not None:
            assert own_link_local is not None
            addresses = await interface_addresses(mesh_if)
            core.add_interface(
                mesh_if,
                kind="unicast-peers",
                hello_interval=config.hello_interval,
                link_local=own_link_local,
                max_routes=config.max_routes_mesh,
                rest_pace=rest_pace(config.hello_interval),
                mtu=packet_size(addresses.mtu),
            )
            links.ports.append(
                await UdpPort.open(
                    mesh_if,
                    type(addresses)(addresses.index, own_link_local, None),
                    multicast=False,
                )
            )
    except BaseException:
        for port in links.ports:
            port.close()
        raise
    return links


#: ifinfomsg flags: administratively up, and with a carrier (RFC 2863 operational).
IFF_UP: Final = rt.IFF_UP
IFF_RUNNING: Final = 0x40


def _ready(name: str, netns: str | None) -> Look | None:
    # The link by its name and its link-local addresses alone (this runs every 2 s and at
    # each link the kernel tells of): a host of thousands of container interfaces is not
    # read whole, only looked over (meshd.wg.rtnetlink.addresses_untrusted).
    with RtnlSocket(netns) as rtnl:
        link = rtnl.link(name)
        if link is None or link.flags & (IFF_UP | IFF_RUNNING) != IFF_UP | IFF_RUNNING:
            return None
        for address in rtnl.addresses(rt.AF_INET6, index=link.index, scopes=(rt.RT_SCOPE_LINK,)):
            if (
                address.address is not None
                and address.address.is_link_local
                and not address.flags & IFA_F_TENTATIVE
            ):
                return Look(link.index, link.mtu)
    return None


async def ready_index(name: str, netns: str | None = None) -> Look | None:
    """The interface's index and MTU while it can carry Babel (up, with a carrier, and a
    link-local address that is no longer tentative), else None (gone, down, or not ready
    yet)."""
    try:
        return await trio.to_thread.run_sync(_ready, name, netns)
    except (BackendError, OSError):
        return None


def moved(opened: Mapping[str, int], now: Mapping[str, Look | None]) -> str | None:
    """The first interface that is back under another index than the one its port was
    opened on (pure); None if none is (one that is gone is not: it may come back)."""
    for name, index in opened.items():
        found = now.get(name)
        if found is not None and found.index != index:
            return name
    return None


def resized(
    opened: Mapping[str, int], mtus: Mapping[str, int | None], now: Mapping[str, Look | None]
) -> dict[str, int]:
    """The interfaces found under the index their port was opened on with another MTU than
    ``mtus`` has for them (pure): name -> the new MTU. One not ready, or whose MTU the
    look did not say, is not."""
    return {
        name: look.mtu
        for name, look in now.items()
        if look is not None
        and look.index == opened.get(name)
        and look.mtu is not None
        and look.mtu != mtus.get(name)
    }


async def watch_links(changed: Callable[[], None], netns: str | None = None) -> None:
    """Call ``changed`` whenever the kernel tells of a link or an IPv6 address changing
    (or said more than could be read); until cancelled. What it says is not decoded: any
    word is a reason to look (:func:`follow_site_links`). Where the notifications cannot
    be had, it logs so and returns: the looks every :data:`EVERY` s go on."""
    try:
        sock = await trio.to_thread.run_sync(
            monitor_socket, netns, rt.RTMGRP_LINK | rt.RTMGRP_IPV6_IFADDR
        )
    except OSError as exc:
        log.warning(
            "Babel: cannot hear of the interfaces' changes (%s): looking every %.0f s",
            exc.strerror or exc,
            EVERY,
        )
        return
    try:
        while True:
            await trio.lowlevel.wait_readable(sock.fileno())
            for _ in range(DRAIN):  # what waits (bounded): one look for the lot
                try:
                    if not sock.recv(1 << 16):
                        break
                except BlockingIOError:
                    break
                except OSError:  # ENOBUFS: some were lost, the look covers them
                    break
            changed()
    finally:
        sock.close()


async def follow_site_links(
    opened: Mapping[str, int],
    restart: Callable[[str], None],
    *,
    down: Callable[[str], None] = lambda name: None,
    up: Callable[[str], None] = lambda name: None,
    mtu: Callable[[str, int], None] = lambda name, mtu: None,
    mtus: Mapping[str, int | None] | None = None,
    every: float = EVERY,
    index_of: Callable[[str], Awaitable[Look | None]] = ready_index,
    changes: Watch | None = None,
) -> None:
    """Call ``restart(name)`` once an interface of ``opened`` (name -> the index its port
    was opened on) is there under another index; ``down(name)`` when one loses its link
    or goes, ``up(name)`` when it has it again under its index (each logged once);
    ``mtu(name, mtu)`` when its link's MTU is no longer the one it had (``mtus``: as its
    port was opened; without them, as the first look finds it).
    It looks every ``every`` s, and :data:`SETTLE` s after ``changes`` says the kernel
    told of a change (:func:`watch_links`), at most once every :data:`LOOK_GAP` s; one not
    ready is told ``down`` once it has been so for :data:`DOWN_HOLD` s (looked at again
    then).
    Returns after ``restart``; runs until cancelled otherwise."""
    told = trio.Event()

    def changed() -> None:
        told.set()

    gone: set[str] = set()
    sizes: dict[str, int | None] | None = None if mtus is None else dict(mtus)
    missing: dict[str, float] = {}  # not ready, since when (not yet told: DOWN_HOLD)
    last = float("-inf")
    async with trio.open_nursery() as nursery:
        if changes is not None:
            nursery.start_soon(changes, changed)
        while True:
            wait = every
            if missing:
                wait = min(wait, min(missing.values()) + DOWN_HOLD - trio.current_time())
            with trio.move_on_after(max(0.0, wait)):
                await told.wait()
            if told.is_set():
                await trio.sleep(max(SETTLE, last + LOOK_GAP - trio.current_time()))
                told = trio.Event()
            last = trio.current_time()
            now = {name: await index_of(name) for name in opened}
            if sizes is None:
                sizes = {name: look.mtu for name, look in now.items() if look is not None}
            for name, size in resized(opened, sizes, now).items():
                log.info(
                    "Babel: interface %s's MTU is now %d (was %s): datagrams of at most %d"
                    " bytes there",
                    name,
                    size,
                    sizes.get(name, "unknown"),
                    packet_size(size),
                )
                sizes[name] = size
                mtu(name, size)
            for name, look in now.items():
                if look is not None:
                    missing.pop(name, None)
                    if name in gone and look.index == opened[name]:
                        gone.discard(name)
                        log.info("Babel: interface %s is up again", name)
                        up(name)
                elif name not in gone:
                    since = missing.setdefault(name, last)
                    if last - since >= DOWN_HOLD:
                        del missing[name]
                        gone.add(name)
                        log.warning(
                            "Babel: interface %s is down or gone; its neighbours dropped", name
                        )
                        down(name)
            anew = moved(opened, now)
            if anew is not None:
                found = now[anew]
                assert found is not None  # moved: found under another index
                log.info(
                    "Babel: interface %s was made anew (index %s, was %s): starting Babel again",
                    anew,
                    found.index,
                    opened[anew],
                )
                restart(anew)
                nursery.cancel_scope.cancel()
                return
