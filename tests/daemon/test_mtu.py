"""The WireGuard interface's MTU (``--mtu``, config key ``mtu``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize(("mtu", "ok"), [(1279, False), (1280, True), (1420, True), (65536, False)])
def test_the_wireguard_mtu_is_an_ipv6_links(tmp_path: Path, mtu: int, ok: bool) -> None:
    """The overlay is IPv6: an MTU under 1280 is refused in one line, with what to use."""
    from meshd.daemon.config import DaemonConfig
    from meshd.errors import CommandLineError

    if ok:
        assert DaemonConfig(state_dir=tmp_path, mtu=mtu).mtu == mtu
        return
    with pytest.raises(CommandLineError) as refused:
        DaemonConfig(state_dir=tmp_path, mtu=mtu)
    assert refused.value.one_line().startswith(f"--mtu {mtu} is out of range (1280-65535)")


@pytest.mark.root
def test_without_mtu_it_is_derived_from_the_namespaces_default_routes() -> None:
    """In a namespace: a default route through a 1492-byte link (PPPoE's) gives 1412; an
    IPv6 default through a 1400-byte one besides gives the smaller, 1320; with no default
    route the interfaces holding a global address say; ours is never among them."""
    import os
    import subprocess
    from functools import partial

    import trio

    from meshd.daemon.wireguard_open import derived_mtu

    ns = f"mtu{os.getpid() % 100000}"
    run = partial(subprocess.run, check=True, capture_output=True)
    try:
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1"])
        # wgx stands for ours (a veth: this kernel may have no dummy links)
        run(["ip", "-n", ns, "link", "add", "wgx", "type", "veth", "peer", "name", "wgy"])
        for name, mtu in (("up0", "1492"), ("up1", "1400"), ("wgx", "1280"), ("wgy", "1500")):
            run(["ip", "-n", ns, "link", "set", name, "mtu", mtu, "up"])
        run(["ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", "up0"])
        run(["ip", "-n", ns, "addr", "add", "198.51.100.1/24", "dev", "wgx"])
        assert trio.run(derived_mtu, "wgx", ns) == 1412  # no default route: up0's address
        run(["ip", "-n", ns, "route", "add", "default", "dev", "up0"])
        assert trio.run(derived_mtu, "wgx", ns) == 1412
        run(["ip", "-n", ns, "-6", "route", "add", "default", "dev", "up1"])
        assert trio.run(derived_mtu, "wgx", ns) == 1320
        run(["ip", "-n", ns, "-6", "route", "del", "default", "dev", "up1"])
        run(["ip", "-n", ns, "route", "del", "default", "dev", "up0"])
        run(["ip", "-n", ns, "route", "add", "default", "dev", "wgx"])  # ours: not counted
        assert trio.run(derived_mtu, "wgx", ns) == 1412
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
