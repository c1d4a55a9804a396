"""The listen addresses' check at start (meshd.daemon.startup.check_listen): every address
binds now, port 0 too; a family the kernel lacks is one line, not a traceback; and a start
that no member could ever dial (every address ``/ip6/::`` while IPv6 is off) is warned."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import pytest

from meshd.daemon.startup import check_listen, unreachable_listen
from meshd.errors import AddressUnavailable


def switch(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "disable_ipv6"
    path.write_text(value + "\n")
    return path


def test_port_0_on_an_address_this_host_lacks_fails_the_check(tmp_path: Path) -> None:
    """Before, port 0 was not tried: the bind failed later, in libp2p's listener, once
    WireGuard had been set up."""
    with pytest.raises(AddressUnavailable) as caught:
        check_listen(["/ip4/192.0.2.1/tcp/0"], switch(tmp_path, "0"))
    assert str(caught.value) == "--listen /ip4/192.0.2.1/tcp/0: this host has no such address"
    assert check_listen(["/ip4/127.0.0.1/tcp/0"], switch(tmp_path, "0")) is None


def test_a_family_the_kernel_lacks_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel without IPv6 (``ipv6.disable=1``) refuses the socket itself: before, that
    OSError went up uncaught."""
    real = socket.socket

    def no_ipv6(family: int = socket.AF_INET, *args: Any, **kwargs: Any) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(family, *args, **kwargs)

    monkeypatch.setattr(socket, "socket", no_ipv6)
    with pytest.raises(AddressUnavailable) as caught:
        check_listen(["/ip6/::/tcp/0"], tmp_path / "absent")
    assert (
        str(caught.value)
        == "--listen /ip6/::/tcp/0: this host has no IPv6 (its kernel offers none)"
    )
    assert caught.value.hint == "listen on an address of a family it has (`ip addr`)"


def test_only_ipv6_s_unspecified_address_with_ipv6_off_is_warned() -> None:
    said = unreachable_listen(["/ip6/::/tcp/7100"], ipv6_off=True)
    assert said == (
        "listening on /ip6/::/tcp/7100 alone, and IPv6 is turned off on this host "
        "(net.ipv6.conf.all.disable_ipv6 = 1): this node has no address to announce, so no "
        "member can dial it; listen on IPv4 too (--listen /ip4/0.0.0.0/tcp/7100), or turn "
        "IPv6 on"
    )
    assert unreachable_listen(["/ip6/::/tcp/7100", "/ip6/::/tcp/7101"], True) is not None
    assert unreachable_listen(["/ip6/::/tcp/7100"], ipv6_off=False) is None
    assert unreachable_listen(["/ip6/::/tcp/7100", "/ip4/0.0.0.0/tcp/7100"], True) is None
    assert unreachable_listen(["/ip4/0.0.0.0/tcp/7100"], True) is None
    assert unreachable_listen(["/ip6/::1/tcp/7100"], True) is None  # bound: IPv6 works there
    assert unreachable_listen([], True) is None


def test_the_check_reads_the_switch(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.fail("this host's Python has no IPv6: the check cannot bind /ip6/::")
    listen = ["/ip6/::/tcp/0"]
    assert check_listen(listen, switch(tmp_path, "1")) is not None
    assert check_listen(listen, switch(tmp_path, "0")) is None
    assert check_listen(listen, tmp_path / "absent") is None
