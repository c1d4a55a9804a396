"""A joiner on the inviter's own network dials its LAN address first (root: a namespace).

The invite carries the inviter's public address first (``--public-addr``), then where it
listens. Seen from its own LAN, behind a NAT that does not hairpin, the public address never
answers: here it is routed, inside a namespace of the test's own, onto a veth where nobody
holds it (its neighbour never resolves). The joiner's addresses are on the LAN's network,
so it dials the LAN address first and the public one never (an nftables counter of packets
to it stays at 0); before, the public address came first, its dial waited the whole dial
timeout (5 s), then the LAN address was dialled.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from meshd.trust.invites import decode_token_untrusted
from tests.daemon.support import Daemon, daemons, wait_for

pytestmark = pytest.mark.root

LAN = "10.77.0.1"
PUBLIC = "203.0.113.7"  # TEST-NET-3: routed to nothing, inside the namespace alone


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def nft(ns: str, script: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=True,
    )


def sent_to_public(ns: str) -> int:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "lanfirst", "out"],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"counter packets (\d+)", done.stdout)
    assert found is not None, done.stdout
    return int(found.group(1))


@contextmanager
def counted(name: str, *, drop: bool = False) -> Iterator[str]:
    """A namespace (``name`` and this process's id) with a LAN (10.77.0.0/24 on a veth)
    and a route for the public address onto it, where nobody answers; packets to it
    counted (and dropped, with ``drop``: never even a neighbour solicitation)."""
    ns = f"{name}{os.getpid() % 100000}"
    verdict = " drop" if drop else ""
    try:
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
        ip("-n", ns, "addr", "add", f"{LAN}/24", "dev", "lan0")
        for end in ("lan0", "lan1"):
            ip("-n", ns, "link", "set", end, "up")
        ip("-n", ns, "route", "add", f"{PUBLIC}/32", "dev", "lan0")
        nft(
            ns,
            "table inet lanfirst {\n"
            "  chain out { type filter hook output priority 0; policy accept;\n"
            f"    ip daddr {PUBLIC} counter{verdict}\n"
            "  }\n"
            "}\n",
        )
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def site() -> contextlib.AbstractContextManager[str]:
    return counted("lanfirst")


def test_a_joiner_on_the_inviters_lan_dials_its_lan_address_not_its_public_one(
    tmp_path: Path,
) -> None:
    with site() as ns, daemons(tmp_path, "founder", "j") as nodes:
        took = join_public_first(ns, nodes, LAN)
        print(f"joined in {took:.2f} s (dial timeout 5 s)")
        assert sent_to_public(ns) == 0
        _stop_all(*nodes)


def join_public_first(ns: str, nodes: Sequence[Daemon], listen: str) -> float:
    """In ``ns``: the first of ``nodes`` founds a network, listens on ``listen`` with
    ``--public-addr`` the public address (its invite carries that first), and the second
    joins with its invite; the seconds from the join's start until it is admitted."""
    founder, joiner = nodes
    founder.netns = joiner.netns = ns
    founder.init()
    founder.up("--listen", f"/ip4/{listen}/tcp/{founder.port}", "--public-addr",
               f"{PUBLIC}:{founder.port}")  # fmt: skip
    token = founder.invite("--name", "j")
    carried = decode_token_untrusted(token).bootstrap
    hosts = [a.split("/")[2] for a in carried]
    assert hosts.index(PUBLIC) < hosts.index(listen), carried  # the public address first
    started = time.monotonic()
    joiner.join(token)
    wait_for(lambda: joiner.states().get("founder") == "admitted", 20, "admitted")
    return time.monotonic() - started


def _stop_all(*nodes: Daemon) -> None:
    for node in nodes:
        node.stop()
