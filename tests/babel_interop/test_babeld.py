"""meshd against babeld 1.12 on a veth pair, each in its own network namespace (root).

babeld originates fd00:255::2/128, 10.255.0.2/32 and fd00:99::/64 from fd00:aa::/48; meshd
its overlay /128, 10.254.0.1/32 and fd00:77::/64 from fd00:bb::/48. On a link with IPv4
addresses IPv4 routes use IPv4 next hops; on one without, both sides announce them via
their IPv6 link-local address (RFC 9229) and install ``via inet6``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.babel_interop.netns import (
    Babeld,
    Meshd,
    _stop,
    babeld,
    meshd,
    sh,
    veth_pair,
    wait_for,
)

pytestmark = pytest.mark.root

CONVERGE = 20.0  # seconds; with Hello 0.5 s it takes two to four


@dataclass(frozen=True, slots=True)
class Run:
    meshd: Meshd
    babeld: Babeld


@pytest.fixture(scope="module", params=["dual-stack", "ipv6-only"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    ipv4 = request.param == "dual-stack"
    workdir = tmp_path_factory.mktemp(request.param)
    with (
        veth_pair("4" if ipv4 else "6", ipv4=ipv4) as pair,
        babeld(pair, workdir) as router,
        meshd(pair, workdir) as node,
    ):
        yield Run(node, router)


def _babeld_installed(run: Run, prefix: str) -> bool:
    return any(
        line.startswith("add route") and f"prefix {prefix} " in line and "installed yes" in line
        for line in run.babeld.dump()
    )


def _overlay(run: Run) -> str:
    routes = run.meshd.routes().get("routes", [])
    assert isinstance(routes, list)
    ours = [r["prefix"] for r in routes if r["next_hop"] is None and r["prefix"].endswith("/128")]
    return str(ours[0]) if ours else ""


def test_meshd_installs_babeld_routes(run: Run) -> None:
    assert wait_for(lambda: "fd00:255::2 via fe80:" in run.meshd.kernel("-6"), CONVERGE)
    assert wait_for(
        lambda: (
            re.search(r"fd00:99::/64 from fd00:aa::/48 via fe80:\S+ dev", run.meshd.kernel("-6"))
            is not None
        ),
        CONVERGE,
    )
    assert wait_for(lambda: "10.255.0.2 via" in run.meshd.kernel("-4"), CONVERGE)
    v4 = run.meshd.kernel("-4")
    # RFC 9229: without IPv4 on the link the next hop is babeld's link-local address.
    assert ("via inet6 fe80:" in v4) == ("10.201.0.2" not in v4)


def test_babeld_installs_meshd_routes(run: Run) -> None:
    assert wait_for(lambda: bool(_overlay(run)), CONVERGE)
    overlay = _overlay(run)
    for prefix in (overlay, "10.254.0.1/32", "fd00:77::/64"):
        assert wait_for(lambda p=prefix: _babeld_installed(run, p), CONVERGE), prefix  # type: ignore[misc]
    lines = run.babeld.dump()
    assert any("prefix fd00:77::/64 from fd00:bb::/48" in line for line in lines)


def test_babeld_sees_meshd_as_a_neighbour_with_finite_cost(run: Run) -> None:
    def finite() -> bool:
        for line in run.babeld.dump():
            found = re.match(r"add neighbour .* cost (\d+)", line)
            if found and int(found.group(1)) < 65535:
                return True
        return False

    assert wait_for(finite, CONVERGE)


def test_meshd_reports_routes_and_neighbour(run: Run) -> None:
    assert wait_for(lambda: bool(run.meshd.routes().get("neighbours")), CONVERGE)
    view = run.meshd.routes()
    (neighbour,) = view["neighbours"]
    assert neighbour["cost"] < 65535
    installed = [r for r in view["routes"] if r["installed"] and r["next_hop"]]
    assert installed


# --- RFC 8967 -------------------------------------------------------------------------------

KEY = "hmac-sha256:" + "42" * 32
OTHER = "hmac-sha256:" + "17" * 32


@pytest.mark.parametrize(
    ("theirs", "accepted"), [(KEY, True), (OTHER, False)], ids=["same-key", "other-key"]
)
def test_mac_authentication(tmp_path: Path, theirs: str, accepted: bool) -> None:
    kind, secret = KEY.split(":")
    with (
        veth_pair("k" if accepted else "x", ipv4=True) as pair,
        babeld(pair, tmp_path, key=theirs) as router,
        meshd(pair, tmp_path, ["--babel-key", f"k1:{kind}:{secret}"]) as node,
    ):
        run = Run(node, router)
        if accepted:
            assert wait_for(lambda: "fd00:255::2 via fe80:" in node.kernel("-6"), CONVERGE)
            assert wait_for(lambda: _babeld_installed(run, "10.254.0.1/32"), CONVERGE)
            return
        # Give them the time routes took with the right key, several times over.
        assert not wait_for(lambda: "fd00:255::2" in node.kernel("-6"), 8.0)
        assert not any(line.startswith("add route") for line in router.dump())
        counters = node.routes()["counters"]
        assert counters["bad_mac"] > 0
        assert node.routes()["neighbours"] == []


# --- a meshd that stops -----------------------------------------------------------------------


def _babeld_metric(run: Run, prefix: str) -> int | None:
    """The metric of babeld's route for ``prefix``, if it holds one."""
    for line in run.babeld.dump():
        found = re.match(rf"add route .* prefix {re.escape(prefix)} .* metric (\d+) ", line)
        if found:
            return int(found.group(1))
    return None


def test_a_meshd_that_stops_is_left_at_once(tmp_path: Path) -> None:
    """meshd at its default Hello interval (4 s: babeld kept its routes for ~14 s after it
    went silent): stopped, it says goodbye (a wildcard retraction and a Hello of 0.1 s, as
    babeld on exit). babeld's routes through it are retracted (metric 65535) within a
    second, and it and they are gone within three."""
    with (
        veth_pair("q", ipv4=True) as pair,
        babeld(pair, tmp_path) as router,
        meshd(pair, tmp_path, hello=None) as node,
    ):
        run = Run(node, router)
        assert wait_for(lambda: _babeld_installed(run, "10.254.0.1/32"), CONVERGE)
        _stop(node.process)
        stopped = time.monotonic()
        assert wait_for(lambda: _babeld_metric(run, "10.254.0.1/32") in (65535, None), 20.0)
        assert time.monotonic() - stopped < 1.0
        assert wait_for(lambda: _babeld_metric(run, "10.254.0.1/32") is None, 20.0)
        assert time.monotonic() - stopped < 3.0


# --- the kernel takes routes away --------------------------------------------------------------


def test_a_route_deleted_by_hand_is_installed_again(tmp_path: Path) -> None:
    """The kernel takes a route of meshd's away (here an administrator's ``ip route del``;
    an interface down for a moment takes every route through it): meshd installs it again
    within a second (before, it took it for installed until the route next changed)."""
    with (
        veth_pair("f", ipv4=True) as pair,
        babeld(pair, tmp_path),
        meshd(pair, tmp_path) as node,
    ):
        assert wait_for(lambda: "fd00:255::2 via fe80:" in node.kernel("-6"), CONVERGE)
        sh("ip", "-n", pair.meshd_ns, "-6", "route", "del", "fd00:255::2/128", "proto", "babel")
        gone = time.monotonic()
        assert wait_for(lambda: "fd00:255::2 via fe80:" in node.kernel("-6"), 10.0)
        assert time.monotonic() - gone < 1.0
        time.sleep(1.0)  # and it is not installed twice
        assert node.kernel("-6").count("fd00:255::2") == 1
