"""Backend selection, the in-memory backend, and the kernel backend's refusal without a module."""

from __future__ import annotations

import ipaddress

import pytest
import trio

from meshd.errors import UsageError
from meshd.trust.keys import WgKey
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_kernel import KernelBackend, kernel_module_available, peer_request
from meshd.wg.backend_none import open_null_backend
from meshd.wg.backend_select import select_backend
from meshd.wg.backend_userspace import open_userspace_backend
from meshd.wg.errors import BackendUnavailable
from meshd.wg.model import PeerConfig, UpdatePeer
from meshd.wg.reconcile import plan

CONFIG = InterfaceConfig("meshd-test0", private_key=bytes([9]) * 32, listen_port=51820)


def test_select_backend() -> None:
    assert select_backend("none") is open_null_backend
    assert select_backend("auto", kernel_available=lambda: False, which=lambda _: "/x") is (
        open_userspace_backend
    )
    with pytest.raises(BackendUnavailable) as info:
        select_backend("auto", kernel_available=lambda: False, which=lambda _: None)
    assert "wireguard-go wireguard-tools" in info.value.hint
    with pytest.raises(UsageError):
        select_backend("wireguard")


def test_null_backend_reconciles() -> None:
    peer = PeerConfig(bytes([1]) * 32, "192.0.2.1:1", (ipaddress.ip_network("10.0.0.0/8"),))

    async def main() -> None:
        async with open_null_backend(CONFIG) as backend:
            await backend.set(plan({WgKey(peer.public_key): peer}, await backend.get()))
            state = await backend.get()
            assert state.public_key == CONFIG.public_key
            assert state.peer_configs() == {WgKey(peer.public_key): peer}
            await backend.replace_routes(peer.allowed_ips)
            assert backend.routes == set(peer.allowed_ips)

    trio.run(main)


@pytest.mark.skipif(kernel_module_available(), reason="the kernel has a WireGuard module")
def test_kernel_backend_says_what_to_install() -> None:
    with pytest.raises(BackendUnavailable) as info:
        trio.run(KernelBackend.start, CONFIG)
    assert "wireguard-go" in info.value.one_line()


def test_kernel_peer_request() -> None:
    op = UpdatePeer(
        bytes(32),
        update_only=True,
        endpoint="[2001:db8::1]:51820",
        replace_allowed_ips=True,
        allowed_ips=(ipaddress.ip_network("fd00::/64"),),
    )
    assert peer_request(op) == {
        "public_key": "A" * 43 + "=",
        "endpoint_addr": "2001:db8::1",
        "endpoint_port": 51820,
        "update_only": True,
        "replace_allowed_ips": True,
        "allowed_ips": ["fd00::/64"],
    }
