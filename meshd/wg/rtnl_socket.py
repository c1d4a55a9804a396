"""The rtnetlink socket: one request at a time, the kernel's answer read to its end.

:class:`RtnlSocket` is a blocking ``AF_NETLINK`` socket (opened in a named network namespace,
if any) that sends one request at a time and reads the kernel's answer (an acknowledgement,
or a dump up to its end), with the messages encoded and decoded by :mod:`meshd.wg.rtnetlink`;
the kernel's refusals raise :class:`~meshd.wg.rtnetlink.RtnetlinkError`. Blocking: the trio
side (:mod:`meshd.wg.netlink`, :mod:`meshd.babel.kernel_routes`) runs it in a worker thread.

The routes meshd installs toward its WireGuard interface carry protocol
:data:`RTPROT_MESHD` and an explicit priority (:func:`route_priority`, the kernel's default
for the family), and are removed by naming both with the interface: a route for the same
prefix that another program installed, at another priority or with another protocol, is
never the one deleted.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import os
import socket
from collections.abc import Callable, Collection, Iterable
from typing import Final, TypeVar

from meshd.errors import BackendError, DecodeError
from meshd.wg import rtnetlink as rt
from meshd.wg.model import IPNetwork
from meshd.wg.rtnetlink import (
    Ack,
    Address,
    Done,
    Link,
    Message,
    Route,
    RtnetlinkError,
)

_M = TypeVar("_M", Route, Address)

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

IFA_F_NODAD = rt.IFA_F_NODAD
RT_SCOPE_LINK = rt.RT_SCOPE_LINK
ADDR_GEN_MODE_NONE = rt.ADDR_GEN_MODE_NONE
#: The protocol of the routes meshd installs toward WireGuard (``ip route`` shows the number;
#: unassigned in iproute2's rt_protos).
RTPROT_MESHD: Final = 77

_NETLINK_ROUTE: Final = 0
_CLONE_NEWNET: Final = 0x40000000
_RECEIVE: Final = 1 << 17
_TIMEOUT: Final = 10.0  # seconds for the kernel's answer (it answers at once)
_ESRCH: Final = 3  # "No such process": the kernel's answer for a route that is not there
_ENODEV: Final = 19


def route_priority(prefix: IPNetwork) -> int:
    """The priority meshd's WireGuard routes carry: the kernel's default for the family (0 for
    IPv4, 1024 for IPv6), so they rank as before; named again when they are removed."""
    return 0 if prefix.version == 4 else 1024


def _setns(fd: int) -> None:
    import ctypes  # only for another namespace (the lab, tests): not in the daemon's memory

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _socket_in(netns: str | None) -> socket.socket:
    """A rtnetlink socket in ``netns`` (None: ours).

    A namespace is entered by a thread of its own that ends once the socket is made: a
    socket stays in the namespace it was created in, and no thread is left in another.
    """
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
    if "/" in netns or netns in ("", ".", ".."):
        raise BackendError(f"no network namespace {netns!r}")
    made: list[socket.socket] = []
    failed: list[OSError] = []

    def enter() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE))
        except OSError as exc:
            failed.append(exc)

    import threading

    thread = threading.Thread(target=enter, name=f"netns {netns}", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def monitor_socket(netns: str | None, groups: int) -> socket.socket:
    """A non-blocking rtnetlink socket in ``netns`` that receives the kernel's notifications
    of ``groups`` (``rt.RTMGRP_*``), with a receive buffer of 1 MiB (a flood of them
    overruns it: then ``recv`` fails with ENOBUFS, and what was missed is unknown)."""
    sock = _socket_in(netns)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, groups))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class RtnlSocket:
    """One rtnetlink socket: blocking requests, one at a time (not shared between threads)."""

    def __init__(self, netns: str | None = None) -> None:
        self._sock = _socket_in(netns)
        try:
            self._sock.settimeout(_TIMEOUT)
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise
        self._seq = itertools.count(1)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RtnlSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the exchange ---------------------------------------------------------------------

    def _replies(self, request: bytes, seq: int) -> Iterable[Message]:
        self._sock.send(request)
        while True:
            data = self._sock.recv(_RECEIVE)
            try:
                messages = rt.decode_messages_untrusted(data)
            except DecodeError as exc:
                raise BackendError(f"unexpected rtnetlink reply: {exc}") from None
            for message in messages:
                if message.seq == seq:
                    yield message

    def _ack(self, message: Message, *, type: int, flags: int, what: str) -> None:
        seq = next(self._seq)
        request = rt.encode_message(
            _with_seq(message, seq), type=type, flags=flags | rt.NLM_F_REQUEST | rt.NLM_F_ACK
        )
        for reply in self._replies(request, seq):
            if isinstance(reply, Ack):
                if reply.code:
                    raise RtnetlinkError(reply.code, f"{what}: {strerror(reply.code)}")
                return

    def _dump(self, type: int, family: int) -> list[Message]:
        seq = next(self._seq)
        found: list[Message] = []
        for reply in self._replies(rt.encode_dump(type, family, seq), seq):
            if isinstance(reply, Done | Ack):
                if reply.code:
                    raise RtnetlinkError(reply.code, f"dump: {strerror(reply.code)}")
                return found
            found.append(reply)
        return found  # pragma: no cover (the loop ends at Done)

    def _scanned_dump(
        self,
        type: int,
        family: int,
        scan: Callable[[bytes, int], tuple[list[_M], Done | Ack | None]],
    ) -> list[_M]:
        """A dump read as it comes, each datagram through ``scan`` (one of rtnetlink's
        header scans: only what the caller asks for decoded) until the dump's end."""
        seq = next(self._seq)
        self._sock.send(rt.encode_dump(type, family, seq))
        found: list[_M] = []
        while True:
            data = self._sock.recv(_RECEIVE)
            try:
                kept, ended = scan(data, seq)
            except DecodeError as exc:
                raise BackendError(f"unexpected rtnetlink reply: {exc}") from None
            found += kept
            if ended is not None:
                if ended.code:
                    raise RtnetlinkError(ended.code, f"dump: {strerror(ended.code)}")
                return found

    # --- links ----------------------------------------------------------------------------

    def link_index(self, name: str) -> int | None:
        """The index of the link named ``name``, or None if there is none."""
        link = self.link(name)
        return None if link is None else link.index

    def link(self, name: str) -> Link | None:
        """The link named ``name`` (its index, flags and MTU), or None if there is none."""
        return self._link(Link(0, name), name)

    def link_at(self, index: int) -> Link | None:
        """The link of index ``index`` (one request, not a dump of every link), or None if
        there is none."""
        return self._link(Link(index, None), f"link {index}")

    def _link(self, which: Link, what: str) -> Link | None:
        seq = next(self._seq)
        request = rt.encode_message(
            dataclasses.replace(which, seq=seq), type=rt.RTM_GETLINK, flags=rt.NLM_F_REQUEST
        )
        for reply in self._replies(request, seq):
            if isinstance(reply, Link):
                return reply
            if isinstance(reply, Ack):
                if reply.code in (_ENODEV, 0):
                    return None
                raise RtnetlinkError(reply.code, f"looking up {what}: {strerror(reply.code)}")
        return None  # pragma: no cover

    def index(self, name: str) -> int:
        found = self.link_index(name)
        if found is None:
            raise BackendError(f"network interface {name} does not exist")
        return found

    def links(self) -> list[Link]:
        return [m for m in self._dump(rt.RTM_GETLINK, rt.AF_UNSPEC) if isinstance(m, Link)]

    def names(self) -> dict[int, str]:
        return {link.index: link.name or "" for link in self.links()}

    def create_link(self, name: str, kind: str) -> None:
        flags = rt.NLM_F_CREATE | rt.NLM_F_EXCL
        what = f"creating {kind} link {name}"
        self._ack(Link(0, name, kind=kind), type=rt.RTM_NEWLINK, flags=flags, what=what)

    def delete_link(self, index: int) -> None:
        self._ack(Link(index), type=rt.RTM_DELLINK, flags=0, what=f"deleting link {index}")

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        addr_gen_mode: int | None = None,
        mtu: int | None = None,
    ) -> None:
        flags = rt.IFF_UP if up else 0
        change = rt.IFF_UP if up is not None else 0
        link = Link(index, flags=flags, change=change, addr_gen_mode=addr_gen_mode, mtu=mtu)
        self._ack(link, type=rt.RTM_NEWLINK, flags=0, what=f"changing link {index}")

    # --- addresses ------------------------------------------------------------------------

    def addresses(
        self,
        family: int = rt.AF_UNSPEC,
        index: int | None = None,
        *,
        scopes: Collection[int] | None = None,
    ) -> list[Address]:
        """The addresses of ``family`` on link ``index`` and of one of ``scopes`` (None: any),
        read as the dump comes: only those decoded
        (:func:`~meshd.wg.rtnetlink.addresses_untrusted`)."""
        return self._scanned_dump(
            rt.RTM_GETADDR,
            family,
            lambda data, seq: rt.addresses_untrusted(data, seq, scopes=scopes, index=index),
        )

    def add_address(self, index: int, interface: IPInterface, *, flags: int = 0) -> None:
        """Add ``interface`` to link ``index``, or replace it (its flags) if it is there."""
        address = Address(
            family_of(interface.version),
            interface.network.prefixlen,
            index,
            interface.ip,
            interface.ip,
            flags,
        )
        self._ack(
            address,
            type=rt.RTM_NEWADDR,
            flags=rt.NLM_F_CREATE | rt.NLM_F_REPLACE,
            what=f"adding {interface}",
        )

    def delete_address(self, address: Address) -> None:
        self._ack(address, type=rt.RTM_DELADDR, flags=0, what=f"removing {address.address}")

    # --- routes ---------------------------------------------------------------------------

    def routes(
        self,
        family: int,
        table: int = rt.RT_TABLE_MAIN,
        *,
        dst_len: int | None = None,
        protocol: int | None = None,
    ) -> list[Route]:
        """The routes of ``family`` in ``table``, of prefix length ``dst_len`` and of
        ``protocol`` (None: any), read as the dump comes: only those decoded
        (:func:`~meshd.wg.rtnetlink.routes_untrusted`; a full internet table is not held)."""
        routes = self._scanned_dump(
            rt.RTM_GETROUTE,
            family,
            lambda data, seq: rt.routes_untrusted(data, seq, dst_len=dst_len, protocol=protocol),
        )
        return [r for r in routes if r.table == table]

    def add_route(self, route: Route, *, replace: bool = False) -> None:
        """Add ``route`` (fails with EEXIST if the kernel holds one with its key), or
        replace the one with its key."""
        flags = rt.NLM_F_CREATE | (rt.NLM_F_REPLACE if replace else rt.NLM_F_EXCL)
        self._ack(route, type=rt.RTM_NEWROUTE, flags=flags, what=f"adding {_describe(route)}")

    def delete_route(self, route: Route) -> bool:
        """Delete the route that matches ``route``'s given fields; False if there is none.

        Name the protocol and priority: the kernel deletes the first route for the prefix
        that matches what is given, whoever installed it.
        """
        route = Route(
            route.family,
            route.dst_len,
            route.src_len,
            route.dst,
            route.src,
            route.oif,
            route.gateway,
            route.via,
            route.priority,
            route.table,
            route.protocol,
            rt.RT_SCOPE_NOWHERE,  # any scope
            0,  # any type
        )
        try:
            self._ack(route, type=rt.RTM_DELROUTE, flags=0, what=f"removing {_describe(route)}")
        except RtnetlinkError as exc:
            if exc.code == _ESRCH:
                return False
            raise
        return True


def _with_seq(message: Message, seq: int) -> Message:
    return dataclasses.replace(message, seq=seq)


def family_of(version: int) -> int:
    """The address family (``AF_INET``, ``AF_INET6``) of IP version ``version``."""
    return rt.AF_INET if version == 4 else rt.AF_INET6


def prefix_route(
    prefix: IPNetwork,
    *,
    oif: int | None,
    protocol: int,
    priority: int | None,
    source: IPNetwork | None = None,
    scope: int = rt.RT_SCOPE_UNIVERSE,
) -> Route:
    """The route message for ``prefix`` (and source prefix) in the main table."""
    return Route(
        family_of(prefix.version),
        prefix.prefixlen,
        0 if source is None else source.prefixlen,
        prefix.network_address if prefix.prefixlen else None,
        None if source is None else source.network_address,
        oif,
        priority=priority,
        protocol=protocol,
        scope=scope,
    )


def _describe(route: Route) -> str:
    if route.dst is None:
        return f"the default route (family {route.family})"
    return f"the route to {route.dst}/{route.dst_len}"


def strerror(code: int) -> str:
    """The kernel's error ``code`` in words, with the number."""
    try:
        return f"{os.strerror(code)} (errno {code})"
    except (ValueError, OverflowError):
        return f"errno {code}"
