"""Two network namespaces, a veth pair, wireguard-go in each: real packets through meshd's
userspace backend, programmed by the reconciler. Needs root (see tests/conftest.py).

Everything is named with this process's PID and a random token (interface names stay within
15 characters; wireguard-go's socket folder is shared by all namespaces), only the
namespaces made here carry traffic, and everything made here is removed even on failure.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess

import pytest
import trio

from meshd.trust.keys import WgKey
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_userspace import UserspaceBackend
from meshd.wg.model import PeerConfig, clamp_private_key
from meshd.wg.reconcile import plan

OVERLAY = ipaddress.IPv6Network("fd6d:6573:6864::/64")


async def sh(*argv: str, netns: str | None = None) -> subprocess.CompletedProcess[bytes]:
    command = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    return await trio.run_process(command, check=False, capture_stdout=True, capture_stderr=True)


async def must(*argv: str, netns: str | None = None) -> None:
    done = await sh(*argv, netns=netns)
    assert done.returncode == 0, f"{argv}: {done.stderr.decode(errors='replace')}"


async def ping(netns: str, target: str, count: int) -> bool:
    done = await sh(
        "ping", "-6", "-n", "-c", str(count), "-i", "0.2", "-W", "1", target, netns=netns
    )
    return done.returncode == 0


async def scenario() -> None:
    token = f"{os.getpid() % 0x10000:x}{secrets.token_hex(2)}"
    namespaces = [f"meshd-wg-{token}-a", f"meshd-wg-{token}-b"]
    veths = [f"mv{token}a", f"mv{token}b"]
    underlay = ["192.0.2.1", "192.0.2.2"]
    backends: list[UserspaceBackend] = []
    try:
        for ns in namespaces:
            await must("ip", "netns", "add", ns)
        await must(
            "ip", "link", "add", veths[0], "netns", namespaces[0], "type", "veth",
            "peer", "name", veths[1], "netns", namespaces[1],
        )  # fmt: skip
        for ns, veth, address in zip(namespaces, veths, underlay, strict=True):
            await must("ip", "addr", "add", f"{address}/24", "dev", veth, netns=ns)
            await must("ip", "link", "set", veth, "up", netns=ns)

        for n, ns in enumerate(namespaces):
            config = InterfaceConfig(
                ifname=f"mw{token}{'ab'[n]}",
                private_key=clamp_private_key(secrets.token_bytes(32)),
                listen_port=51820,
                overlay_address=OVERLAY[n + 1],
                netns=ns,
                mtu=1280 if n == 0 else None,  # b: wireguard-go's own, 1420
            )
            backends.append(await UserspaceBackend.start(config))
        for backend, mtu in zip(backends, (1280, 1420), strict=True):
            shown = await sh("ip", "-o", "link", "show", backend.ifname, netns=backend.config.netns)
            assert f" mtu {mtu} " in shown.stdout.decode(), shown.stdout

        a, b = backends
        for me, other, other_ip in ((a, b, underlay[1]), (b, a, underlay[0])):
            state = await me.get()
            assert state.public_key == me.config.public_key  # our key derivation agrees
            assert other.config.overlay_address is not None
            overlay_net = ipaddress.ip_network(other.config.overlay_address)
            desired = {
                WgKey(other.config.public_key): PeerConfig(
                    other.config.public_key,
                    endpoint=f"{other_ip}:51820",
                    allowed_ips=(ipaddress.ip_network(other.config.link_local.ip), overlay_net),
                )
            }
            await me.set(plan(desired, state))
            assert plan(desired, await me.get(), desired) == []
            await me.replace_routes([overlay_net])

        ns_a = namespaces[0]
        link_local_b = f"{b.config.link_local.ip}%{a.ifname}"
        assert await ping(ns_a, link_local_b, 3), "no ping over the key-derived link-local"
        assert await ping(ns_a, str(b.config.overlay_address), 3), "no ping over the overlay"
        (peer,) = (await a.get()).peers
        assert peer.last_handshake is not None
        assert peer.rx_bytes > 0

        # Revoke b on a: the reconciler removes the peer and traffic stops.
        removal = plan({}, await a.get())
        assert [type(op).__name__ for op in removal] == ["RemovePeer"]
        await a.set(removal)
        assert (await a.get()).peers == ()
        assert not await ping(ns_a, str(b.config.overlay_address), 2)
    finally:
        with trio.CancelScope(shield=True):
            for backend in backends:
                await backend.aclose()
            for ns in namespaces:
                await sh("ip", "netns", "del", ns)
    for backend in backends:
        assert backend.process.returncode is not None
        assert not await trio.Path(backend.uapi.path).exists()


@pytest.mark.root
def test_two_namespaces_over_wireguard_go() -> None:
    """Pings over the key-derived link-local and the overlay, a revocation stops them; an
    interface made with an MTU has it (the other wireguard-go's own, 1420)."""
    trio.run(scenario)
