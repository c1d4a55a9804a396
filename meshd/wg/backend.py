"""What every WireGuard backend offers, and the interface settings it is started with.

A backend owns one multi-peer WireGuard interface: it creates it, gives it the key, the port
and the addresses, reads and changes its peers, sets routes through it, and removes it on
close. The daemon drives it with :func:`meshd.wg.reconcile.plan`. Backends:

* ``kernel``: the Linux module through generic netlink (:mod:`meshd.wg.backend_kernel`);
* ``userspace``: a ``wireguard-go`` child process and its UAPI socket
  (:mod:`meshd.wg.backend_userspace`);
* ``none``: an in-memory device for simulations and tests (:mod:`meshd.wg.backend_none`).

:func:`meshd.wg.backend_select.select_backend` picks one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, runtime_checkable

from nacl.bindings import crypto_scalarmult_base

from meshd.trust.keys import WgKey
from meshd.wg.addresses import link_local_interface
from meshd.wg.model import DeviceState, IPNetwork, Operation, PeerConfig, check_key

#: Linux limit on interface names (IFNAMSIZ - 1).
MAX_IFNAME = 15


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    """How to bring up our interface. ``netns`` runs it inside a named network namespace."""

    ifname: str
    private_key: bytes = field(repr=False)
    listen_port: int = 0
    overlay_address: ipaddress.IPv6Address | None = None
    fwmark: int | None = None
    netns: str | None = None
    mtu: int | None = None  # the interface's MTU; None: what it is made with (1420)

    def __post_init__(self) -> None:
        name = self.ifname
        if not 0 < len(name) <= MAX_IFNAME or not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError(f"interface name {name!r}: 1-{MAX_IFNAME} of [A-Za-z0-9._-]")
        check_key(self.private_key, "private key")
        if not 0 <= self.listen_port < 65536:
            raise ValueError(f"listen port {self.listen_port} is out of range")

    @property
    def public_key(self) -> bytes:
        return crypto_scalarmult_base(self.private_key)

    @property
    def link_local(self) -> ipaddress.IPv6Interface:
        """The key-derived link-local address with its /64."""
        return link_local_interface(self.public_key)


@runtime_checkable
class ThreadedSet(Protocol):
    """A backend that can also apply operations from a worker thread, while the event loop's
    own thread is busy: the UAPI backend at a start (:mod:`meshd.daemon.kept_peers`)."""

    def prepared_set(self, operations: Sequence[Operation]) -> Callable[[], None]:
        """:meth:`Backend.set` made ready now (its request encoded), done when the function
        returned is called, blocking, from a thread other than the event loop's; that call
        raises a BackendError subclass as ``set`` would."""
        ...


class Backend(Protocol):
    """One running WireGuard interface."""

    @property
    def ifname(self) -> str: ...

    async def get(self) -> DeviceState:
        """Read the device (raises a BackendError subclass)."""
        ...

    async def set(self, operations: Sequence[Operation]) -> None:
        """Apply operations; after an error the device may be partly changed: re-read it."""
        ...

    def expect(self, peers: Mapping[WgKey, PeerConfig]) -> None:
        """The peers the caller means the device to hold, by key (its desired peers, kept
        by reference and not to be changed afterwards): a later :meth:`get` may return these
        very objects for the peers that read the same, instead of equal copies."""
        ...

    async def replace_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        """Add or replace kernel routes for ``prefixes`` through the interface."""
        ...

    async def rekey(self, private_key: bytes) -> None:
        """Switch the interface to a new private key and its key-derived link-local address
        (the old one is removed); peers, port and the overlay address stay."""
        ...

    async def delete_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        """Delete those routes through the interface; missing ones are ignored."""
        ...

    async def aclose(self) -> None:
        """Remove the interface and stop whatever runs it."""
        ...


BackendOpener: TypeAlias = Callable[[InterfaceConfig], AbstractAsyncContextManager[Backend]]
