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
