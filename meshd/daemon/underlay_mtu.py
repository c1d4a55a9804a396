"""The underlay's MTU, read from netlink, and followed while the daemon runs (shell).

:func:`read_derived` reads what :func:`meshd.mesh.mtu.derive_mtu` needs: the default routes'
links (a dump of the routes, only the default ones decoded, then one request a link), or,
with no default route but ours, every link and where global addresses are.

:class:`UnderlayMtu` follows it for a running interface whose MTU was not given: called at
each of the announcer's looks (every 10 s), it asks the links it last found again (one
request each: an uplink's MTU changed) and reads the routes again when our addresses changed,
when the kernel told of a default route changing (:func:`watch_default_routes`, which also
has the announcer look at once), or :data:`ROUTES_EVERY` seconds have passed: a router
holding a full internet table pays for its route dump once a minute, not at every look.
A new MTU is set on the interface, sessions kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Final

import trio

from meshd.errors import DecodeError
from meshd.mesh.mtu import Derived, derive_mtu
from meshd.wg.netlink import Netlink

if TYPE_CHECKING:
    from meshd.daemon.wireguard import WireGuardMesh

log = logging.getLogger(__name__)

ROUTES_EVERY: Final = 60.0
"""Seconds between two reads of the routes while our addresses stay and the kernel tells of
no default route changing."""
GAP: Final = 2.0
"""After the kernel told of a default route changing: seconds before it is heard again (a
route that flaps has the daemon look at most once every ``GAP`` s)."""
DRAIN: Final = 64  # notifications read at most per wake-up; a full batch rests REST s
REST: Final = 0.1


async def watch_default_routes(changed: Callable[[bool], None], netns: str | None = None) -> None:
    """Call ``changed(True)`` when the kernel tells of a default route added, changed or
    deleted (a laptop's uplink replaced, a router's failover), ``changed(False)`` when it
    said more than could be read (what was lost is unknown: worth a read of the routes at
    the next look, not one now); until cancelled. Only the messages' headers are read
    (:func:`meshd.wg.rtnetlink.default_routes_changed_untrusted`), at most :data:`DRAIN`
    datagrams a wake-up, and a full batch rests :data:`REST` s: a router's full table
    churning costs a header scan a route, or the kernel drops what we do not read. Where the
    notifications cannot be had, it logs so and returns: the routes are read once a
    minute."""
    from meshd.wg import rtnetlink as rt
    from meshd.wg.rtnl_socket import monitor_socket

    groups = rt.RTMGRP_IPV4_ROUTE | rt.RTMGRP_IPV6_ROUTE
    try:
        sock = await trio.to_thread.run_sync(monitor_socket, netns, groups)
    except OSError as exc:
        log.warning(
            "cannot hear of the default routes' changes (%s): they are read once a minute",
            exc.strerror or exc,
        )
        return
    try:
        while True:
            await trio.lowlevel.wait_readable(sock.fileno())
            told = lost = full = False
            for _ in range(DRAIN):
                try:
                    data = sock.recv(1 << 17)
                except BlockingIOError:
                    break
                except OSError:  # ENOBUFS: some were lost
                    lost = True
                    break
                try:
                    told = rt.default_routes_changed_untrusted(data) or told
                except DecodeError:
                    lost = True
            else:
                full = True
            if told:
                changed(True)
                await trio.sleep(GAP)
            elif lost:
                changed(False)
            if full:
                await trio.sleep(REST)
    finally:
        sock.close()


async def read_derived(
    ifname: str, netns: str | None, oifs: Collection[int] | None = None
) -> tuple[Derived, tuple[int, ...] | None]:
    """:func:`meshd.mesh.mtu.derive_mtu` over what netlink says now, and the indexes of the
    default routes' links it came from (None where it did not come from a default route).
    With ``oifs``, those links are asked again and the routes not read."""
    from meshd.wg import rtnetlink as rt
    from meshd.wg.rtnl_socket import RtnlSocket

    exclude = (ifname, "lo")

    def read() -> tuple[dict[str, int], set[str], set[str], tuple[int, ...] | None]:
        with RtnlSocket(netns) as rtnl:
            indexes = oifs
            if indexes is None:
                indexes = {
                    route.oif
                    for family in (rt.AF_INET, rt.AF_INET6)
                    for route in rtnl.routes(family, dst_len=0)
                    if route.type == rt.RTN_UNICAST and route.oif is not None
                }
            # The default routes' links alone, one request each, not a dump of every link
            # (a host of thousands of container interfaces).
            found = [link for link in map(rtnl.link_at, sorted(indexes)) if link is not None]
            mtus = {link.name or "": link.mtu or 0 for link in found}
            if any(name not in exclude for name in mtus):
                return mtus, set(mtus), set(), tuple(sorted(indexes))
            # No default route but ours (or none): every link, and where global addresses are.
            links = rtnl.links()
            names = {link.index: link.name or "" for link in links}
            mtus = {names[link.index]: link.mtu or 0 for link in links}
            defaults = {names.get(index, "") for index in indexes}
            global_ = {
                names.get(a.index, "")
                for a in rtnl.addresses(scopes=(rt.RT_SCOPE_UNIVERSE,))
                if a.address is not None
            }
        return mtus, defaults, global_, None

    mtus, defaults, global_, via = await trio.to_thread.run_sync(read)
    return derive_mtu(mtus, defaults, global_, exclude=exclude), via


def say(derived: Derived, line: str, *args: object) -> None:
    """The INFO line of a derived MTU, a WARNING when the underlay is too small for it."""
    if derived.too_small:
        log.warning(
            "MTU %d (%s): the underlay carries less than that with WireGuard's overhead, "
            "so large packets are fragmented outside the tunnel",
            derived.mtu,
            derived.why,
        )
    else:
        log.info(line, *args)


class UnderlayMtu:
    """Follows the underlay's MTU for ``mesh``'s running interface (``--mtu`` not given)."""

    def __init__(self, mesh: WireGuardMesh) -> None:
        self.mesh = mesh
        self._via: tuple[int, ...] | None = None  # the default routes' links last found
        self._routes_at = -ROUTES_EVERY
        self._stale = False  # the kernel told of a default route changing since the read

    def routes_changed(self) -> None:
        """The default routes may have changed: read them at the next look."""
        self._stale = True

    async def look(self, now: float, addresses_changed: bool) -> int | None:
        """Derive the MTU again and set it on the interface if it moved (sessions are
        kept); the new MTU, None if it stayed. Raises OSError or BackendError if it could
        not be read or set (it stays, and the routes are read at the next look)."""
        mesh = self.mesh
        routes = (
            self._via is None
            or self._stale
            or addresses_changed
            or now - self._routes_at >= ROUTES_EVERY
        )
        if routes:
            self._stale = False  # told again while they are read: read again next time
        self._via, via = None, self._via  # read the routes again after a failure
        derived, found = await read_derived(mesh.ifname, None, None if routes else via)
        if routes:
            self._routes_at = now
        if derived.mtu != mesh.mtu:
            await Netlink().set_mtu(mesh.ifname, derived.mtu)
        self._via = found
        if derived.mtu == mesh.mtu:
            return None
        was, mesh.mtu = mesh.mtu, derived.mtu
        say(derived, "the underlay changed: MTU %d, was %d (%s)", derived.mtu, was, derived.why)
        return derived.mtu
