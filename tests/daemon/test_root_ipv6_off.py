"""A daemon told to listen on ``/ip6/::`` alone, on a host with IPv6 turned off (root: a
namespace of the test's own with ``net.ipv6.conf.*.disable_ipv6 = 1``).

Its socket binds and it runs, but it has no address to announce and never will: before, the
only sign was an INFO line's "(no address of this host to announce yet ...)". Now the start
warns, in one line, with what to listen on instead; and a start with an IPv4 address beside
it is not warned."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.daemon.support import FAST, daemons, free_port

pytestmark = pytest.mark.root

WARNING = "IPv6 is turned off on this host"


def run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True)


@contextmanager
def without_ipv6() -> Iterator[str]:
    ns = f"noipv6{os.getpid() % 100000}"
    try:
        run("ip", "netns", "add", ns)
        for name in ("all", "default", "lo"):
            run("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def test_listening_on_ipv6_alone_with_ipv6_off_is_warned(tmp_path: Path) -> None:
    with without_ipv6() as ns, daemons(tmp_path, "alone") as (node,):
        node.netns = ns
        node.init()
        listen = f"/ip6/::/tcp/{node.port}"
        node._spawn(["up", "--listen", listen, *FAST, *node._dir()])
        node.wait_ready()
        assert node.ask("status")["listen_addrs"] == []  # nothing to announce
        node.stop()
        text = node.log.read_text()
        warned = [line for line in text.splitlines() if WARNING in line]
        assert len(warned) == 1, text[-3000:]
        assert " WARNING " in warned[0]
        assert f"--listen /ip4/0.0.0.0/tcp/{node.port}" in warned[0]

        # Beside an IPv4 address (up's own, 127.0.0.1), the same is not warned.
        node.up("--listen", f"/ip6/::/tcp/{free_port()}")
        assert node.ask("status")["listen_addrs"] != []
        node.stop()
        assert node.log.read_text().count(WARNING) == 1
