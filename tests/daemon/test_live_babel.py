"""A SIGHUP's ``babel_interface`` and ``babel_hello_interval`` taken by a running daemon (root).

A real ``meshd up`` (wireguard-go, in a namespace of its own) is given a site link by a
SIGHUP: Babel starts again on it, and a router on the link's other end (a socket in a
second namespace, joined to Babel's multicast group) hears its Hellos at the new interval.
Its MTU lowered, Babel's datagrams there follow without a restart. A link the host does not
have refuses the whole SIGHUP: the daemon runs on as it was, still heard on its link. The
same process throughout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from tests.daemon.support import ROOT
from tests.daemon.test_mtu import BehindPppoe

pytestmark = pytest.mark.root

# Run in the router's namespace: the interval (centiseconds) of the first multicast Hello
# heard on ``site1`` from a sender other than ``skip`` within the deadline; "" if none.
LISTEN = r"""
import socket, struct, sys, time
from meshd.babel.codec import decode_packet_untrusted
from meshd.babel.tlv import Hello
from meshd.errors import DecodeError
index = socket.if_nametoindex("site1")
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 6696))
group = socket.inet_pton(socket.AF_INET6, "ff02::1:6") + struct.pack("@I", index)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    s.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        data, (source, *_) = s.recvfrom(4096)
    except TimeoutError:
        break
    try:
        packet = decode_packet_untrusted(data)
    except DecodeError:
        continue
    hellos = [t.interval for t in packet.tlvs if isinstance(t, Hello) and not t.flags]
    if hellos:
        print(hellos[0])
        break
"""


def heard_interval(router_ns: str, seconds: float) -> int | None:
    """The Hello interval (centiseconds) the router hears on its link, None if none."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        ["ip", "netns", "exec", router_ns, sys.executable, "-c", LISTEN, str(seconds)],
        capture_output=True, text=True, env=env, timeout=seconds + 30, check=True,
    )  # fmt: skip
    return int(done.stdout) if done.stdout.strip() else None


def test_a_sighup_gives_babel_a_new_site_link_and_hello_interval(tmp_path: Path) -> None:
    with BehindPppoe(tmp_path, "") as node:
        assert node.process is not None
        router = f"{node.ns}r"
        run = partial(subprocess.run, check=True, capture_output=True)
        try:
            run(["ip", "netns", "add", router])
            run(["ip", "-n", node.ns, "link", "add", "site0", "type", "veth",
                 "peer", "name", "site1", "netns", router])  # fmt: skip
            for ns, name in ((node.ns, "site0"), (router, "site1")):
                # No duplicate address detection: the link-local addresses are usable at once.
                run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                     f"net.ipv6.conf.{name}.accept_dad=0"])  # fmt: skip
                run(["ip", "-n", ns, "link", "set", name, "up"])
            assert heard_interval(router, 2.0) is None  # no Babel on the link yet

            node.config.write_text('babel_interface = ["site0"]\nbabel_hello_interval = 0.5\n')
            node.process.send_signal(signal.SIGHUP)
            assert heard_interval(router, 10.0) == 50, node.log()
            # The reload's report follows Babel's start again (logged once the daemon took
            # the options): awaited, not read the instant the Hellos are heard.
            deadline = time.monotonic() + 10
            while not _reported(node.log_path.read_text()):
                assert time.monotonic() < deadline, node.log()
                time.sleep(0.05)

            # The site link's MTU lowered: Babel's datagrams there follow, no restart.
            run(["ip", "-n", node.ns, "link", "set", "site0", "mtu", "1280"])
            said = "Babel: interface site0's MTU is now 1280 (was 1500): datagrams of at most 1232"
            deadline = time.monotonic() + 10
            while said not in node.log_path.read_text():
                assert time.monotonic() < deadline, node.log()
                time.sleep(0.1)
            assert node.log_path.read_text().count("Babel: starting again") == 1

            node.config.write_text('babel_interface = ["site0", "nosuch9"]\n')
            node.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "no such network interface here" not in node.log_path.read_text():
                assert time.monotonic() < deadline, node.log()
                time.sleep(0.1)
            assert heard_interval(router, 10.0) == 50, node.log()  # as it was
            assert node.process.poll() is None
        finally:
            subprocess.run(["ip", "netns", "del", router], check=False, capture_output=True)


def _reported(text: str) -> bool:
    return (
        "Babel: starting again: site links site0, Hello interval 0.5 s" in text
        and "SIGHUP: the running daemon took babel_hello_interval, babel_interface" in text
    )
