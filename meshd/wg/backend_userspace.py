"""The userspace backend: a ``wireguard-go`` child process driven over its UAPI socket.

``wireguard-go IFNAME`` creates a tun device and listens on
``/var/run/wireguard/IFNAME.sock``. It normally daemonises; ``WG_PROCESS_FOREGROUND=1``
keeps it in the foreground, so it stays our child: we know its PID, it dies with us, and
:meth:`UserspaceBackend.aclose` stops it (it then removes the device and the socket itself).
The socket folder is shared by every network namespace, so interface names must be unique
on the machine even across namespaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager

import trio

from meshd.errors import BackendError
from meshd.trust.keys import WgKey
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_process import ChildProcess, spawn_tied
from meshd.wg.errors import BackendUnavailable, UapiConnectionError
from meshd.wg.model import (
    DeviceState,
    IPNetwork,
    Operation,
    PeerConfig,
    SetFwmark,
    SetListenPort,
    SetPrivateKey,
)
from meshd.wg.netlink import Netlink
from meshd.wg.uapi import DEFAULT_SOCKET_DIR, UapiClient, socket_path

INSTALL_HINT = "apt-get install --no-install-recommends wireguard-go wireguard-tools"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class UserspaceBackend:
    """One wireguard-go process and the interface it runs."""

    def __init__(
        self,
        config: InterfaceConfig,
        process: ChildProcess,
        uapi: UapiClient,
        netlink: Netlink,
    ) -> None:
        self.config = config
        self.process = process
        self.uapi = uapi
        self.netlink = netlink
        self._closed = False

    @property
    def ifname(self) -> str:
        return self.config.ifname

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(
        cls,
        config: InterfaceConfig,
        *,
        executable: str = "wireguard-go",
        socket_dir: str = DEFAULT_SOCKET_DIR,
    ) -> UserspaceBackend:
        """Start wireguard-go, wait for its socket, and configure key, port and addresses."""
        program = shutil.which(executable)
        if program is None:
            raise BackendUnavailable(f"{executable} is not installed", hint=INSTALL_HINT)
        path = socket_path(config.ifname, socket_dir)
        if await trio.Path(path).exists():
            raise BackendError(
                f"{path} exists: interface {config.ifname} is already run by someone",
                hint="choose another interface name, or stop the process that owns it",
            )
        command = [program, config.ifname]
        if config.netns is not None:
            command = ["ip", "netns", "exec", config.netns, *command]
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
        try:
            process = spawn_tied(command, env)  # it dies with us (meshd/wg/backend_process.py)
        except OSError as exc:
            raise BackendError(f"cannot start {executable}: {exc.strerror or exc}") from None
        backend = cls(config, process, UapiClient(path), Netlink(config.netns))
        try:
            await backend._wait_for_socket()
            ops: list[Operation] = [
                SetPrivateKey(config.private_key),
                SetListenPort(config.listen_port),
            ]
            if config.fwmark is not None:
                ops.append(SetFwmark(config.fwmark))
            await backend.uapi.set(ops)
            await backend.netlink.prepare_link(
                config.ifname, config.link_local, config.overlay_address, config.mtu
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await backend.aclose()
            raise
        return backend

    async def _wait_for_socket(self) -> None:
        with trio.move_on_after(START_TIMEOUT):
            while True:
                if self.process.poll() is not None:
                    raise BackendUnavailable(
                        f"wireguard-go for {self.ifname} exited with {self.process.returncode}",
                        hint=f"run `wireguard-go -f {self.ifname}` as root to see why",
                    )
                if await trio.Path(self.uapi.path).exists():
                    try:
                        await self.uapi.get()
                    except UapiConnectionError:
                        pass
                    else:
                        return
                await trio.sleep(0.01)
        raise BackendError(f"wireguard-go for {self.ifname} did not open {self.uapi.path}")

    async def get(self) -> DeviceState:
        return await self.uapi.get()

    async def set(self, operations: Sequence[Operation]) -> None:
        await self.uapi.set(operations)

    def prepared_set(self, operations: Sequence[Operation]) -> Callable[[], None]:
        """:class:`meshd.wg.backend.ThreadedSet`: the UAPI request encoded now."""
        return self.uapi.prepared_set(operations)

    def expect(self, peers: Mapping[WgKey, PeerConfig]) -> None:
        self.uapi.expect(peers)

    async def replace_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        await self.netlink.replace_routes(self.ifname, prefixes)

    async def rekey(self, private_key: bytes) -> None:
        config = dataclasses.replace(self.config, private_key=private_key)
        await self.uapi.set([SetPrivateKey(private_key)])
        self.config = config
        await self.netlink.prepare_link(
            config.ifname, config.link_local, config.overlay_address, config.mtu
        )

    async def delete_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        await self.netlink.delete_routes(self.ifname, prefixes)

    async def aclose(self) -> None:
        """Stop wireguard-go (SIGTERM, then SIGKILL) and wait for it; idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.send_signal(signal.SIGTERM)
                with trio.move_on_after(STOP_TIMEOUT):
                    await self.process.wait()
                if self.process.returncode is None:
                    self.process.kill()
                    await self.process.wait()
            # A killed wireguard-go leaves its socket behind; it is ours to remove.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.uapi.path)


@asynccontextmanager
async def open_userspace_backend(config: InterfaceConfig) -> AsyncIterator[UserspaceBackend]:
    backend = await UserspaceBackend.start(config)
    try:
        yield backend
    finally:
        await backend.aclose()
