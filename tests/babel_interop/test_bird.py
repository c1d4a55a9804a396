"""meshd against BIRD 2 (2.0.12) on a veth pair, each in its own network namespace (root).

BIRD exports its loopback's fd00:255::2/128 and 10.255.0.2/32; meshd originates its overlay
/128, 10.254.0.1/32 and fd00:77::/64 from fd00:bb::/48. The link is dual-stack: BIRD 2.0.12
sends IPv4 routes only with an IPv4 next hop (RFC 9229 came in later releases). With an
ordinary IPv6 channel BIRD must ignore the source-specific route (RFC 9079: its sub-TLV is
mandatory); with a ``sadr`` channel, source-specific routes flow both ways.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.babel_interop.bird import Bird, bird
from tests.babel_interop.netns import Meshd, _stop, meshd, sh, veth_pair, wait_for

pytestmark = pytest.mark.root

CONVERGE = 20.0  # seconds; with Hellos of 0.5 s it takes two to four


@dataclass(frozen=True, slots=True)
class Run:
    meshd: Meshd
    bird: Bird
    ns: str  # BIRD's namespace


def _overlay(node: Meshd) -> str:
    routes = node.routes().get("routes", [])
    ours = [r["prefix"] for r in routes if r["next_hop"] is None and r["prefix"].endswith("/128")]
    return str(ours[0]) if ours else ""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("bird")
    with (
        veth_pair("r", ipv4=True) as pair,
        bird(pair, workdir) as router,
        meshd(pair, workdir) as node,
    ):
        yield Run(node, router, pair.babeld_ns)


def test_meshd_installs_bird_routes(run: Run) -> None:
    assert wait_for(lambda: "fd00:255::2 via fe80:" in run.meshd.kernel("-6"), CONVERGE)
    assert wait_for(lambda: "10.255.0.2 via 10.201.0.2" in run.meshd.kernel("-4"), CONVERGE)


def test_bird_installs_meshd_routes_but_not_a_source_specific_one(run: Run) -> None:
    assert wait_for(lambda: bool(_overlay(run.meshd)), CONVERGE)
    for prefix in (_overlay(run.meshd), "10.254.0.1/32"):
        assert wait_for(lambda p=prefix: run.bird.unicast(p), CONVERGE), prefix  # type: ignore[misc]
    # Sent in the same updates as the others, and again at each full update (Hello 0.5 s:
    # every 2 s): an ordinary IPv6 channel must not take it as fd00:77::/64 from anywhere.
    time.sleep(2.5)
    assert not run.bird.held("fd00:77::/64")


def test_bird_sees_meshd_as_a_neighbour(run: Run) -> None:
    def listed() -> bool:
        found = re.search(r"^fe80::\S+\s+bv0\s+96\s", run.bird.neighbours(), re.MULTILINE)
        return found is not None

    assert wait_for(listed, CONVERGE)
    assert wait_for(lambda: bool(run.meshd.routes().get("neighbours")), CONVERGE)
    (neighbour,) = run.meshd.routes()["neighbours"]
    assert neighbour["cost"] == 96


def test_a_route_bird_withdraws_leaves_meshd(run: Run) -> None:
    sh("ip", "-n", run.ns, "addr", "add", "fd00:256::3/128", "dev", "lo")
    assert wait_for(lambda: "fd00:256::3 via fe80:" in run.meshd.kernel("-6"), CONVERGE)
    sh("ip", "-n", run.ns, "addr", "del", "fd00:256::3/128", "dev", "lo")
    gone = time.monotonic()
    assert wait_for(lambda: "fd00:256::3" not in run.meshd.kernel("-6"), 5.0)
    assert time.monotonic() - gone < 3.0


def test_routes_come_back_after_the_link_blinks(tmp_path: Path) -> None:
    """meshd's interface down for 0.3 s: the kernel drops every route through it. meshd
    installs them again at once (before, it took them for installed, and with BIRD on the
    other side, which saw nothing change, they stayed gone)."""
    with (
        veth_pair("f", ipv4=True) as pair,
        bird(pair, tmp_path),
        meshd(pair, tmp_path) as node,
    ):
        assert wait_for(lambda: "fd00:255::2 via fe80:" in node.kernel("-6"), CONVERGE)
        assert wait_for(lambda: "10.255.0.2 via" in node.kernel("-4"), CONVERGE)
        sh("ip", "-n", pair.meshd_ns, "link", "set", pair.veth, "down")
        assert "fd00:255::2" not in node.kernel("-6")  # the kernel's doing
        time.sleep(0.3)
        sh("ip", "-n", pair.meshd_ns, "link", "set", pair.veth, "up")
        up = time.monotonic()
        assert wait_for(lambda: "fd00:255::2 via fe80:" in node.kernel("-6"), 10.0)
        assert wait_for(lambda: "10.255.0.2 via" in node.kernel("-4"), 10.0)
        assert time.monotonic() - up < 2.0


def test_babel_starts_again_on_an_interface_made_anew(tmp_path: Path) -> None:
    """meshd's interface deleted and made again under its name (a new index): meshd's
    socket was bound to the old one, and Babel on the link stayed dead until a restart.
    It starts again on the new one: routes flow both ways again."""
    with (
        veth_pair("n", ipv4=True) as pair,
        bird(pair, tmp_path) as router,
        meshd(pair, tmp_path) as node,
    ):
        assert wait_for(lambda: "fd00:255::2 via fe80:" in node.kernel("-6"), CONVERGE)
        assert wait_for(lambda: router.unicast("10.254.0.1/32"), CONVERGE)
        m, b = pair.meshd_ns, pair.babeld_ns
        sh("ip", "-n", m, "link", "del", pair.veth)  # its peer in b goes with it
        sh("ip", "link", "add", pair.veth, "netns", m, "type", "veth",
           "peer", "name", pair.veth, "netns", b)  # fmt: skip
        for ns, address in ((m, "10.201.0.1/24"), (b, "10.201.0.2/24")):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw",
               f"net.ipv6.conf.{pair.veth}.accept_dad=0")  # fmt: skip
            sh("ip", "-n", ns, "link", "set", pair.veth, "up")
            sh("ip", "-n", ns, "addr", "add", address, "dev", pair.veth)
        made = time.monotonic()
        assert wait_for(lambda: router.unicast("10.254.0.1/32"), CONVERGE)
        assert wait_for(lambda: "fd00:255::2 via fe80:" in node.kernel("-6"), CONVERGE)
        assert wait_for(lambda: "10.255.0.2 via 10.201.0.2" in node.kernel("-4"), CONVERGE)
        assert time.monotonic() - made < 10.0
        assert node.process.poll() is None  # the daemon ran on throughout


def test_source_specific_routes_flow_both_ways_with_a_sadr_channel(tmp_path: Path) -> None:
    with (
        veth_pair("s", ipv4=True) as pair,
        bird(pair, tmp_path, sadr=True) as router,
        meshd(pair, tmp_path) as node,
    ):
        assert wait_for(
            lambda: (
                re.search(r"fd00:99::/64 from fd00:aa::/48 via fe80:\S+ dev", node.kernel("-6"))
                is not None
            ),
            CONVERGE,
        )
        assert wait_for(lambda: router.unicast("fd00:77::/64 from fd00:bb::/48"), CONVERGE)
        overlay = _overlay(node)
        assert wait_for(lambda: router.unicast(f"{overlay} from ::/0"), CONVERGE)


# --- RFC 8967: BIRD's key is its password's bytes; 0x42 is "B" ------------------------------

SECRET = "B" * 32


@pytest.mark.parametrize(
    ("theirs", "ours", "accepted"),
    [
        ("hmac sha256:" + SECRET, "hmac-sha256", True),
        ("blake2s128:" + SECRET, "blake2s128", True),
        ("hmac sha256:" + "C" + SECRET[1:], "hmac-sha256", False),
    ],
    ids=["hmac-sha256", "blake2s128", "other-key"],
)
def test_mac_authentication(tmp_path: Path, theirs: str, ours: str, accepted: bool) -> None:
    key = f"k1:{ours}:{'42' * 32}"
    with (
        veth_pair("m" if accepted else "n", ipv4=True) as pair,
        bird(pair, tmp_path, password=theirs) as router,
        meshd(pair, tmp_path, ["--babel-key", key]) as node,
    ):
        if accepted:
            assert wait_for(lambda: "fd00:255::2 via fe80:" in node.kernel("-6"), CONVERGE)
            assert wait_for(lambda: router.unicast("10.254.0.1/32"), CONVERGE)
            return
        assert not wait_for(lambda: "fd00:255::2" in node.kernel("-6"), 8.0)
        assert not router.held("10.254.0.1/32")
        assert node.routes()["counters"]["bad_mac"] > 0


def test_a_meshd_that_stops_is_left_at_once(tmp_path: Path) -> None:
    """meshd at its default Hello interval (4 s: BIRD would keep its routes ~12 s after it
    went silent): stopped, it says goodbye, and BIRD's routes through it are unreachable
    within a second."""
    with (
        veth_pair("q", ipv4=True) as pair,
        bird(pair, tmp_path) as router,
        meshd(pair, tmp_path, hello=None) as node,
    ):
        assert wait_for(lambda: router.unicast("10.254.0.1/32"), CONVERGE)
        _stop(node.process)
        stopped = time.monotonic()
        assert wait_for(lambda: not router.unicast("10.254.0.1/32"), 15.0)
        assert time.monotonic() - stopped < 1.0
