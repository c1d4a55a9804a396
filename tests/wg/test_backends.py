"""Backend selection, the in-memory backend, and the kernel backend's refusal without a module."""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import replace
from typing import Any

import pytest
import trio

from meshd.errors import UsageError
from meshd.trust.keys import WgKey
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_kernel import (
    KernelBackend,
    device_state_from_messages,
    kernel_module_available,
    peer_request,
)
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


class _Attrs:
    """A pyroute2 netlink message as far as device_state_from_messages reads it."""

    def __init__(self, **attrs: Any) -> None:
        self.attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


def _kernel_peer(config: PeerConfig, endpoint: str, port: int) -> _Attrs:
    return _Attrs(
        WGPEER_A_PUBLIC_KEY={"value": base64.b64encode(config.public_key).decode()},
        WGPEER_A_ENDPOINT={"addr": endpoint, "port": port},
        WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL=config.persistent_keepalive or 0,
        WGPEER_A_ALLOWEDIPS=[{"addr": str(net)} for net in reversed(config.allowed_ips)],
    )


def test_kernel_peers_read_as_expected_are_the_expected_objects() -> None:
    nets = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::1/128"))
    ours = PeerConfig(bytes([1]) * 32, "192.0.2.1:51820", nets, 25)
    other = PeerConfig(bytes([2]) * 32, "192.0.2.2:51820", nets[:1], None)
    device = _Attrs(
        WGDEVICE_A_LISTEN_PORT=51820,
        WGDEVICE_A_PEERS=[
            _kernel_peer(ours, "192.0.2.1", 51820),
            _kernel_peer(other, "192.0.2.2", 1),
        ],
    )
    expected = {WgKey(ours.public_key): ours, WgKey(other.public_key): other}
    state = device_state_from_messages([device], expected)
    assert state == device_state_from_messages([device])
    read = state.peers_by_key()
    assert read[ours.public_key].config is ours
    assert read[other.public_key].config == replace(other, endpoint="192.0.2.2:1")
