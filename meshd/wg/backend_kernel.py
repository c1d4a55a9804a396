"""The kernel backend: Linux's WireGuard module through generic netlink (pyroute2).

pyroute2's ``WireGuard`` socket is synchronous here too (its async API is asyncio-only), so
every call runs in a worker thread, one at a time. It sets one peer per call, so a list of
operations becomes several netlink requests; as with the UAPI, a failure part way leaves the
device partly changed and the caller re-reads it.

pyroute2 is imported (lean: :mod:`meshd.wg.lean_pyroute2`) when this backend first talks to
the module, not when this file is imported: the other backends, which every daemon imports
through :mod:`meshd.wg.backend_select`, never load it. The link, its addresses and routes
go through meshd's own rtnetlink (:mod:`meshd.wg.netlink`).
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from meshd.errors import BackendError
from meshd.trust.keys import WgKey
from meshd.wg.backend import InterfaceConfig
from meshd.wg.errors import BackendUnavailable
from meshd.wg.model import (
    DeviceState,
    IPNetwork,
    Operation,
    PeerConfig,
    PeerStatus,
    RemovePeer,
    ReplacePeers,
    SetFwmark,
    SetListenPort,
    SetPrivateKey,
    UpdatePeer,
    format_endpoint,
    parse_endpoint,
)
from meshd.wg.netlink import Netlink

T = TypeVar("T")

EOPNOTSUPP = 95
INSTALL_HINT = (
    "use a kernel with the wireguard module (Linux 5.6 or later; Debian: linux-image-amd64), "
    "or the userspace backend: apt-get install --no-install-recommends wireguard-go "
    "wireguard-tools"
)


def kernel_module_available(release: str | None = None) -> bool:
    """True if the wireguard module is loaded, built in, or installed for this kernel."""
    if os.path.isdir("/sys/module/wireguard"):
        return True
    release = release or os.uname().release
    for listing in ("modules.builtin", "modules.dep"):
        try:
            with open(f"/lib/modules/{release}/{listing}", encoding="utf-8") as handle:
                if any("/wireguard.ko" in line for line in handle):
                    return True
        except OSError:
            continue
    return False


def _pyroute2() -> tuple[type[Exception], Callable[[], Any]]:
    """pyroute2's ``NetlinkError`` and ``WireGuard`` socket, pyroute2 imported lean."""
    import meshd.wg.lean_pyroute2  # noqa: F401, I001 (first: pyroute2 lean)
    from pyroute2 import NetlinkError, WireGuard

    return NetlinkError, WireGuard


class KernelBackend:
    """One kernel WireGuard interface, created by us and deleted on close."""

    def __init__(self, config: InterfaceConfig, netlink: Netlink) -> None:
        self.config = config
        self.netlink = netlink
        self._limiter = trio.CapacityLimiter(1)
        self._closed = False
        self._expected: Mapping[WgKey, PeerConfig] = {}

    @property
    def ifname(self) -> str:
        return self.config.ifname

    @classmethod
    async def start(cls, config: InterfaceConfig) -> KernelBackend:
        if config.netns is not None:
            raise BackendError("the kernel backend does not run in another network namespace")
        netlink = Netlink()
        if await netlink.link_index(config.ifname) is not None:
            raise BackendError(f"network interface {config.ifname} already exists")
        try:
            await netlink.create_link(config.ifname, "wireguard")
        except BackendError as exc:
            if not kernel_module_available():
                raise BackendUnavailable(
                    "the kernel has no WireGuard module", hint=INSTALL_HINT
                ) from exc
            raise
        backend = cls(config, netlink)
        try:
            ops: list[Operation] = [
                SetPrivateKey(config.private_key),
                SetListenPort(config.listen_port),
            ]
            if config.fwmark is not None:
                ops.append(SetFwmark(config.fwmark))
            await backend.set(ops)
            await netlink.prepare_link(
                config.ifname, config.link_local, config.overlay_address, config.mtu
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await backend.aclose()
            raise
        return backend

    async def _run(self, what: str, fn: Callable[[Any], T]) -> T:
        netlink_error, wireguard = _pyroute2()

        def call() -> T:
            wg = wireguard()
            try:
                return fn(wg)
            finally:
                wg.close()

        try:
            return await trio.to_thread.run_sync(call, limiter=self._limiter)
        except netlink_error as exc:
            code = getattr(exc, "code", None)
            if code == EOPNOTSUPP or not kernel_module_available():
                raise BackendUnavailable(
                    "the kernel has no WireGuard module", hint=INSTALL_HINT
                ) from None
            raise BackendError(f"WireGuard netlink: {what} failed: errno {code}") from None
        except OSError as exc:
            raise BackendError(f"WireGuard netlink: {what} failed: {exc.strerror}") from None

    async def get(self) -> DeviceState:
        messages = await self._run(f"reading {self.ifname}", lambda wg: list(wg.info(self.ifname)))
        return device_state_from_messages(messages, self._expected)

    def expect(self, peers: Mapping[WgKey, PeerConfig]) -> None:
        self._expected = peers

    async def set(self, operations: Sequence[Operation]) -> None:
        for op in operations:
            if isinstance(op, SetPrivateKey):
                key = base64.b64encode(op.private_key).decode()
                await self._set_device("setting the key", private_key=key)
            elif isinstance(op, SetListenPort):
                await self._set_device("setting the port", listen_port=op.port)
            elif isinstance(op, SetFwmark):
                await self._set_device("setting the fwmark", fwmark=op.fwmark)
            elif isinstance(op, ReplacePeers):
                # pyroute2 cannot send WGDEVICE_F_REPLACE_PEERS: remove them one by one.
                for peer in (await self.get()).peers:
                    await self._set_peer(RemovePeer(peer.public_key))
            else:
                await self._set_peer(op)

    async def _set_device(self, what: str, **settings: object) -> None:
        await self._run(what, lambda wg: wg.set(self.ifname, **settings))

    async def _set_peer(self, op: UpdatePeer | RemovePeer) -> None:
        peer = peer_request(op)
        await self._run("changing a peer", lambda wg: wg.set(self.ifname, peer=peer))

    async def replace_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        await self.netlink.replace_routes(self.ifname, prefixes)

    async def rekey(self, private_key: bytes) -> None:
        config = dataclasses.replace(self.config, private_key=private_key)
        await self.set([SetPrivateKey(private_key)])
        self.config = config
        await self.netlink.prepare_link(
            config.ifname, config.link_local, config.overlay_address, config.mtu
        )

    async def delete_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        await self.netlink.delete_routes(self.ifname, prefixes)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            await self.netlink.delete_link(self.ifname)


def peer_request(op: UpdatePeer | RemovePeer) -> dict[str, object]:
    """The ``peer=`` argument of pyroute2's ``WireGuard.set`` for one operation."""
    request: dict[str, object] = {"public_key": base64.b64encode(op.public_key).decode()}
    if isinstance(op, RemovePeer):
        request["remove"] = True
        return request
    if op.endpoint is not None:
        address, port = parse_endpoint(op.endpoint)
        request["endpoint_addr"] = str(address)
        request["endpoint_port"] = port
    if op.persistent_keepalive is not None:
        request["persistent_keepalive"] = op.persistent_keepalive
    request["update_only"] = op.update_only
    request["replace_allowed_ips"] = op.replace_allowed_ips
    if op.allowed_ips or op.replace_allowed_ips:
        request["allowed_ips"] = [str(net) for net in op.allowed_ips]
    return request


def device_state_from_messages(
    messages: Iterable[Any], expected: Mapping[WgKey, PeerConfig] | None = None
) -> DeviceState:
    """Merge the messages of a WG_CMD_GET_DEVICE dump (a big device spans several). A peer
    that reads as its entry in ``expected`` has that :class:`PeerConfig`, not a copy."""
    public_key: bytes | None = None
    listen_port: int | None = None
    fwmark: int | None = None
    peers: dict[bytes, dict[str, Any]] = {}
    try:
        for msg in messages:
            attr = msg.get_attr("WGDEVICE_A_PUBLIC_KEY")
            if attr is not None:
                decoded = base64.b64decode(attr["value"])
                public_key = decoded if decoded != bytes(32) else None
            listen_port = msg.get_attr("WGDEVICE_A_LISTEN_PORT") or listen_port
            fwmark = msg.get_attr("WGDEVICE_A_FWMARK") or fwmark
            for peer in msg.get_attr("WGDEVICE_A_PEERS") or ():
                key = base64.b64decode(peer.get_attr("WGPEER_A_PUBLIC_KEY")["value"])
                entry = peers.setdefault(key, {"allowed": []})
                endpoint = peer.get_attr("WGPEER_A_ENDPOINT")
                if endpoint is not None and endpoint.get("addr"):
                    address = ipaddress.ip_address(endpoint["addr"])
                    if not address.is_unspecified:
                        entry["endpoint"] = format_endpoint(address, endpoint["port"])
                for name in ("PERSISTENT_KEEPALIVE_INTERVAL", "RX_BYTES", "TX_BYTES"):
                    value = peer.get_attr(f"WGPEER_A_{name}")
                    if value is not None:
                        entry[name] = value
                handshake = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
                if handshake is not None and handshake["tv_sec"]:
                    entry["handshake"] = handshake["tv_sec"] + handshake["tv_nsec"] / 1e9
                for allowed in peer.get_attr("WGPEER_A_ALLOWEDIPS") or ():
                    entry["allowed"].append(ipaddress.ip_network(allowed["addr"], strict=False))
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(f"unexpected WireGuard netlink reply: {exc!r}") from None
    expected = expected or {}
    statuses = tuple(
        PeerStatus(
            _config(key, entry, expected.get(WgKey(key))),
            entry.get("handshake"),
            entry.get("RX_BYTES", 0),
            entry.get("TX_BYTES", 0),
        )
        for key, entry in peers.items()
    )
    return DeviceState(public_key, public_key is not None, listen_port, fwmark, statuses)


def _config(key: bytes, entry: dict[str, Any], expected: PeerConfig | None) -> PeerConfig:
    """The peer's configuration: ``expected`` itself if it reads the same."""
    endpoint = entry.get("endpoint")
    keepalive = entry.get("PERSISTENT_KEEPALIVE_INTERVAL") or None
    allowed: list[IPNetwork] = entry["allowed"]
    if (
        expected is not None
        and expected.endpoint == endpoint
        and expected.persistent_keepalive == keepalive
        and len(expected.allowed_ips) == len(allowed)
        and set(expected.allowed_ips) == set(allowed)
    ):
        return expected
    return PeerConfig(key, endpoint, tuple(allowed), keepalive)


@asynccontextmanager
async def open_kernel_backend(config: InterfaceConfig) -> AsyncIterator[KernelBackend]:
    backend = await KernelBackend.start(config)
    try:
        yield backend
    finally:
        await backend.aclose()
