"""The trio shell around one :class:`~meshd.babel.core.BabelCore`: sockets, clock, kernel.

One task owns the core (:meth:`BabelShell.run`). It waits for whichever comes first, a
datagram from one of the ports or the core's timer, hands it to the core, sends what the
core has to send, and turns the core's route events into the set of routes it wants in the
kernel. Other tasks never touch the core: they send it a :class:`Command` through the same
inbox as the datagrams (:meth:`BabelShell.submit`).

- The ports, one interface's UDP socket each, are :mod:`meshd.babel.ports`'.
- On interfaces with keys, datagrams pass through :class:`~meshd.babel.auth.LinkAuth`
  (RFC 8967): counted and dropped when the MAC is bad, replayed or from an unknown index.
- Malformed datagrams are counted and dropped; they never end a task.
- The routes go to a :class:`~meshd.babel.kernel_routes.RouteSink`, in the daemon
  :class:`~meshd.babel.kernel_routes.KernelRoutes` (rtnetlink). A second task applies the
  difference between what the core wants and what is installed, so a burst of changes costs
  one pass. What the kernel took away by itself (an interface down for a moment loses
  every route through it) is installed again: the sink says when that may have happened,
  and every :data:`KERNEL_CHECK` seconds in any case the task reads which of its routes
  the kernel still holds.
- As it stops it says goodbye on every interface (:meth:`BabelCore.farewell`: a wildcard
  retraction and a short Hello, as babeld on exit), within :data:`FAREWELL_BUDGET`, then
  removes its routes from the kernel.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Final

import trio

from meshd.babel.auth import LinkAuth
from meshd.babel.core import BabelCore
from meshd.babel.kernel_routes import KernelRoute, RouteSink
from meshd.babel.packet import Packet, Tlv
from meshd.babel.ports import Datagram, Port
from meshd.babel.prefix import IPAddress
from meshd.babel.routes import (
    Event,
    RouteChanged,
    RouteInstalled,
    RouteRetracted,
)
from meshd.babel.sources import IPNetwork, RouteKey
from meshd.errors import BackendError, DecodeError, VerifyError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from meshd.babel.mac import MacKey

log = logging.getLogger(__name__)

RETRY_AFTER_ERROR: Final = 1.0
#: Seconds between two reads of which of our routes the kernel still holds, whatever it
#: said; after it said it may have dropped some, the read comes :data:`SETTLE` s later,
#: and at most one every :data:`READ_GAP` s (our own removals are among what it says).
KERNEL_CHECK: Final = 60.0
SETTLE: Final = 0.2
READ_GAP: Final = 2.0
#: Seconds the farewell may take as the shell stops (a datagram a mesh neighbour: thousands).
FAREWELL_BUDGET: Final = 1.0


@dataclass(frozen=True, slots=True)
class Command:
    """Something for the core's owner to do: ``action(core, now)``."""

    action: Callable[[BabelCore, float], None]


@dataclass(slots=True)
class Counters:
    """What went wrong or was refused, for ``meshd routes``."""

    received: int = 0
    sent: int = 0
    received_bytes: int = 0
    """Babel payload bytes (without IPv6, UDP or WireGuard headers), as ``sent_bytes``."""
    sent_bytes: int = 0
    send_errors: int = 0
    decode_errors: int = 0
    bad_mac: int = 0
    replayed: int = 0
    route_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class _Installer:
    """Kernel state: what the core wants, what is installed, and the kick between them."""

    wanted: dict[RouteKey, KernelRoute] = field(default_factory=dict)
    installed: dict[RouteKey, KernelRoute] = field(default_factory=dict)


EventListener = Callable[[Event], None]


class BabelShell:
    """Runs one core over a set of ports; see the module documentation."""

    def __init__(
        self,
        core: BabelCore,
        ports: Iterable[Port],
        *,
        routes: RouteSink | None = None,
        auth: Mapping[str, LinkAuth] | None = None,
        device_routes: Iterable[str] = (),
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.core = core
        self.ports = {port.name: port for port in ports}
        self.routes = routes
        self.auth = dict(auth or {})
        self.device_routes = frozenset(device_routes)
        """Interfaces whose routes point at the device (WireGuard ignores next hops)."""
        self.counters = Counters()
        self._clock = clock
        self._listeners: list[EventListener] = []
        self._kernel = _Installer()
        self._inbox_send, self._inbox = trio.open_memory_channel[Datagram | Command](1024)
        self._kick_send, self._kick = trio.open_memory_channel[None](1)
        self._verify_at: float | None = None  # when to read what the kernel holds again

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener`` with every event of the core, in the owner task, without await."""
        self._listeners.append(listener)

    def submit(self, action: Callable[[BabelCore, float], None]) -> None:
        """Have the core's owner run ``action(core, now)`` soon, then send what it calls for."""
        try:
            self._inbox_send.send_nowait(Command(action))
        except trio.WouldBlock:
            log.warning("Babel: command queue full, a command was dropped")

    def set_keys(self, interface: str, keys: Sequence[MacKey]) -> None:
        """The RFC 8967 keys of ``interface`` from now on: a key rollover keeps our counter
        and what we know of each sender (no challenge again); none: the link goes
        unauthenticated; the first: it is authenticated from the next datagram."""
        if not keys:
            self.auth.pop(interface, None)
            return
        auth = self.auth.get(interface)
        if auth is None:
            self.auth[interface] = LinkAuth(keys)
        else:
            auth.keys = tuple(keys)

    def installed(self, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        return (prefix, source) in self._kernel.installed

    # --- tasks ---------------------------------------------------------------------------

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive, drive the core, install routes; on cancellation say goodbye to the
        neighbours and remove our routes."""
        try:
            async with trio.open_nursery() as nursery:
                for port in self.ports.values():
                    nursery.start_soon(self._receive_from, port)
                if self.routes is not None:
                    nursery.start_soon(self._install_loop)
                    nursery.start_soon(self._watch_kernel, self.routes)
                task_status.started()
                await self._own_core()
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(FAREWELL_BUDGET):
                    await self._send_all(self.core.farewell(self._clock()))
                with trio.move_on_after(5):
                    await self._remove_all()
            for port in self.ports.values():
                port.close()

    async def _receive_from(self, port: Port) -> None:
        while True:
            try:
                datagram = await port.receive()
            except OSError as exc:
                log.debug("Babel %s: receive: %s", port.name, exc)
                await trio.sleep(0.1)
                continue
            await self._inbox_send.send(datagram)

    async def _own_core(self) -> None:
        core = self.core
        while True:
            deadline = core.timer()
            item: Datagram | Command | None = None
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                item = await self._inbox.receive()
            now = self._clock()
            if isinstance(item, Datagram):
                await self._receive(item, now)
            elif isinstance(item, Command):
                item.action(core, now)
            due = core.timer()
            if due is not None and due <= now:
                core.handle_timer(now)
            await self._send_due(now)
            self._take_events()

    async def _receive(self, datagram: Datagram, now: float) -> None:
        self.counters.received += 1
        self.counters.received_bytes += len(datagram.payload)
        auth = self.auth.get(datagram.interface)
        if auth is None:
            before = self.core.decode_errors
            self.core.receive(datagram.interface, datagram.ends.src, datagram.payload, now)
            self.counters.decode_errors += self.core.decode_errors - before
            return
        try:
            opened = auth.open_untrusted(datagram.payload, datagram.ends, now)
        except DecodeError:
            self.counters.decode_errors += 1
            return
        except VerifyError:
            self.counters.bad_mac += 1
            return
        if opened.reply:
            await self._send_sealed(datagram.interface, datagram.ends.src, opened.reply)
        if opened.packet is None:
            self.counters.replayed += opened.dropped == "replay"
            return
        self.core.receive(datagram.interface, datagram.ends.src, opened.packet, now)

    async def _send_due(self, now: float) -> None:
        await self._send_all(self.core.datagrams_to_send(now))

    async def _send_all(self, datagrams: Iterable[tuple[str, IPAddress, bytes]]) -> None:
        for interface, destination, payload in datagrams:
            port = self.ports.get(interface)
            if port is None:
                continue
            auth = self.auth.get(interface)
            if auth is not None:
                payload = auth.seal(payload, port.endpoints_to(destination))
            await self._send(port, payload, destination)

    async def _send_sealed(
        self, interface: str, destination: IPAddress, tlvs: tuple[Tlv, ...]
    ) -> None:
        port = self.ports.get(interface)
        auth = self.auth.get(interface)
        if port is None or auth is None:
            return
        payload = auth.seal(Packet(tlvs), port.endpoints_to(destination))
        await self._send(port, payload, destination)

    async def _send(self, port: Port, payload: bytes, destination: IPAddress) -> None:
        try:
            await port.send(payload, destination)
            self.counters.sent += 1
            self.counters.sent_bytes += len(payload)
        except OSError as exc:
            self.counters.send_errors += 1
            log.debug("Babel %s: send to %s: %s", port.name, destination, exc)

    def _take_events(self) -> None:
        changed = False
        while (event := self.core.next_event()) is not None:
            if isinstance(event, RouteInstalled | RouteChanged):
                key = (event.prefix, event.source)
                on_device = event.neighbour.interface in self.device_routes
                self._kernel.wanted[key] = KernelRoute(
                    event.prefix,
                    event.source,
                    event.neighbour.interface,
                    None if on_device else event.next_hop,
                )
                changed = True
            elif isinstance(event, RouteRetracted):
                self._kernel.wanted.pop((event.prefix, event.source), None)
                changed = True
            for listener in self._listeners:
                listener(event)
        if changed:
            with contextlib.suppress(trio.WouldBlock):
                self._kick_send.send_nowait(None)

    async def _watch_kernel(self, routes: RouteSink) -> None:
        """Have the install task read what the kernel holds whenever the sink says routes
        may have gone. A sink that cannot watch (no netlink) leaves the periodic read."""
        try:
            await routes.watch(self._kernel_changed)
        except BackendError as exc:
            log.warning("Babel: %s; the kernel's routes are checked every %d s", exc, KERNEL_CHECK)

    def _kernel_changed(self) -> None:
        if self._verify_at is None:  # SETTLE: the rest of what the kernel is taking away
            self._verify_at = self._clock() + SETTLE
        with contextlib.suppress(trio.WouldBlock):
            self._kick_send.send_nowait(None)

    async def _install_loop(self) -> None:
        ok = True
        next_read = self._clock() + KERNEL_CHECK
        last_read = -math.inf
        while True:
            due = next_read
            if self._verify_at is not None:
                due = min(due, max(self._verify_at, last_read + READ_GAP))
            if not ok:
                due = min(due, self._clock() + RETRY_AFTER_ERROR)
            with trio.move_on_at(due):
                await self._kick.receive()
            now = self._clock()
            asked = self._verify_at is not None and now >= max(
                self._verify_at, last_read + READ_GAP
            )
            if asked or now >= next_read:
                self._verify_at = None
                last_read, next_read = now, now + KERNEL_CHECK
                await self._forget_lost()
            ok = await self._apply(dict(self._kernel.wanted))

    async def _forget_lost(self) -> None:
        """Take out of what is installed what the kernel no longer holds (it goes in again
        at the next :meth:`_apply`)."""
        assert self.routes is not None
        try:
            held = await self.routes.held()
        except BackendError as exc:
            log.warning("Babel: %s", exc)
            return
        installed = self._kernel.installed
        lost = [key for key in installed if key not in held]
        if lost:
            log.info(
                "Babel: the kernel dropped %d of our routes (%s, ...); installing them again",
                len(lost),
                lost[0][0],
            )
        for key in lost:
            del installed[key]

    async def _apply(self, wanted: dict[RouteKey, KernelRoute]) -> bool:
        """Make the kernel hold ``wanted``; False if something failed (retried later)."""
        assert self.routes is not None
        installed = self._kernel.installed
        ok = True
        for key, route in list(installed.items()):
            if wanted.get(key) != route and key not in wanted:
                try:
                    await self.routes.remove(route)
                except BackendError as exc:
                    ok = self._route_error(exc)
                    continue
                del installed[key]
        for key, route in wanted.items():
            if installed.get(key) == route:
                continue
            if isinstance(route.prefix, IPv4Network) and route.source is not None:
                continue  # Linux has no source-specific IPv4 routes in one table
            try:
                await self.routes.install(route)
            except BackendError as exc:
                ok = self._route_error(exc)
                continue
            installed[key] = route
        return ok

    def _route_error(self, exc: BackendError) -> bool:
        self.counters.route_errors += 1
        log.warning("Babel: %s", exc)
        return False

    async def _remove_all(self) -> None:
        if self.routes is None:
            return
        for key, route in list(self._kernel.installed.items()):
            try:
                await self.routes.remove(route)
            except BackendError as exc:
                log.warning("Babel: %s", exc)
            self._kernel.installed.pop(key, None)
