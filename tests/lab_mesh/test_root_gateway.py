"""A member as the gateway between the mesh and a site's Babel network (root).

Two lab members with Hello 0.5 s; h2's certificate grants 10.55.0.0/24 and fd55::/64, and
h2 speaks Babel on a veth to babeld 1.12 in a third namespace, which redistributes those
two prefixes and 10.66.0.0/24. h2's ``--babel-redistribute`` rules let all three cross
(without a rule nothing would), and h2 originates the granted ones on the mesh under its own
router-id, so h1 accepts them and routes them through h2's WireGuard peer; 10.66.0.0/24
stays off the mesh; a prefix babeld retracts is withdrawn.

h2 has a second site link, to a namespace where a hostile speaker appears (issue 9, attack
3): under h1's router-id, with a newer seqno and a claimed cost of 1, it announces h1's
overlay /128 and the overlay /48, which h2's filter lets cross. h2 refuses both (rule (c)):
its routes for them stay on WireGuard, during the attack and after it.

Last, h2's rules (in its config file) change and h2 is sent SIGHUP: what they no longer let
cross leaves h1 and babeld at once, and comes back with the rules of before.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshd.babel.options import router_id_of
from meshd.lab import Lab
from meshd.lab.demo import LabMesh, MeshTimeout
from meshd.lab.demo import wait_for as wait_until
from tests.babel_interop.netns import Babeld, _stop, sh, wait_for

pytestmark = pytest.mark.root

HELLO = "0.5"
VETH = "gv0"
HOSTILE_VETH = "ga0"
REPO = Path(__file__).resolve().parents[2]
SITE = ("10.55.0.0/24", "fd55::/64", "10.66.0.0/24")
REDISTRIBUTE = ("10.0.0.0/8 le 24 allow", "fd55::/16 allow")
"""Site routes reach the mesh only by an explicit rule; 10.66.0.0/24 passes it but lies
outside h2's grants. In h2's config file (``babel_redistribute``), beside a rule for the
overlay: a SIGHUP takes new ones."""


@dataclass(frozen=True, slots=True)
class Gateway:
    mesh: LabMesh
    site_ns: str
    h1_ns: str
    h2_ns: str
    hostile_ns: str
    h2_config: Path
    rules: tuple[str, ...]


@contextmanager
def site_router(lab: Lab, workdir: Path) -> Iterator[tuple[str, Babeld]]:
    """babeld in a namespace of its own, on a veth to h2, announcing ``SITE``."""
    ns = f"gw{os.getpid() % 100000}b"
    gateway_ns = lab.host("h2").netns
    process: subprocess.Popen[bytes] | None = None
    log = (workdir / "babeld.log").open("wb")
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", VETH, "netns", gateway_ns, "type", "veth",
           "peer", "name", VETH, "netns", ns)  # fmt: skip
        for side in (gateway_ns, ns):
            sh("ip", "netns", "exec", side, "sysctl", "-qw", f"net.ipv6.conf.{VETH}.accept_dad=0")
            sh("ip", "-n", side, "link", "set", VETH, "up")
        for prefix in SITE:
            sh("ip", "-n", ns, "route", "add", prefix, "dev", "lo", "proto", "static")
        control = workdir / "babeld.sock"
        conf = workdir / "babeld.conf"
        conf.write_text(
            "\n".join(
                [
                    f"local-path-readwrite {control}",
                    f"state-file {workdir / 'babeld.state'}",
                    f"pid-file {workdir / 'babeld.pid'}",
                    "default type wired",
                    f"default hello-interval {HELLO}",
                    f"interface {VETH}",
                    *(f"redistribute ip {prefix} allow" for prefix in SITE),
                    "redistribute local deny",
                ]
            )
            + "\n"
        )
        process = subprocess.Popen(
            ["ip", "netns", "exec", ns, "babeld", "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        assert wait_for(control.exists, 5.0), "babeld did not open its control socket"
        yield ns, Babeld(process, control)
    finally:
        if process is not None:
            _stop(process)
        log.close()
        sh("ip", "netns", "del", ns, check=False)


@contextmanager
def hostile_link(lab: Lab) -> Iterator[str]:
    """A namespace of its own on a second veth to h2, for the hostile speaker."""
    ns = f"gw{os.getpid() % 100000}a"
    gateway_ns = lab.host("h2").netns
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", HOSTILE_VETH, "netns", gateway_ns, "type", "veth",
           "peer", "name", HOSTILE_VETH, "netns", ns)  # fmt: skip
        for side in (gateway_ns, ns):
            sh("ip", "netns", "exec", side, "sysctl", "-qw",
               f"net.ipv6.conf.{HOSTILE_VETH}.accept_dad=0")  # fmt: skip
            sh("ip", "-n", side, "link", "set", HOSTILE_VETH, "up")
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("gateway")
    with (
        Lab(2) as lab,
        site_router(lab, workdir) as (site_ns, _router),
        hostile_link(lab) as hostile_ns,
    ):
        mesh = LabMesh(lab, network="gatewaymesh")
        mesh.node("h1").extra = ("--babel-hello-interval", HELLO)
        mesh.node("h2").extra = ("--babel-hello-interval", HELLO)
        try:
            mesh.init("h1")
            mesh.up("h1")
            done = mesh.run(
                "h1", "invite", "--name", "h2", "--expires", "1h",
                *(arg for prefix in SITE[:2] for arg in ("--prefix", prefix)),
            )  # fmt: skip
            mesh.join("h2", done.stdout.strip().splitlines()[-1])
            # ``join`` has no --babel-interface: the gateway comes back up with it.
            mesh.stop("h2")
            # A filter that lets the overlay /48 cross too: rule (c) holds even so.
            overlay = ipaddress.IPv6Network((mesh.node("h1").me()["overlay_ip"], 48), strict=False)
            rules = (*REDISTRIBUTE, f"{overlay} ge 48 allow")
            config = workdir / "h2.toml"
            config.write_text(redistribute(rules))
            mesh.node("h2").extra += (
                *("--babel-interface", VETH, "--babel-interface", HOSTILE_VETH),
                *("--config", str(config)),
            )
            mesh.up("h2")
            yield Gateway(
                mesh,
                site_ns,
                lab.host("h1").netns,
                lab.host("h2").netns,
                hostile_ns,
                config,
                rules,
            )
        finally:
            mesh.close()
        assert not mesh.running()


def redistribute(rules: tuple[str, ...]) -> str:
    return "babel_redistribute = [" + ", ".join(f'"{rule}"' for rule in rules) + "]\n"


def kernel(ns: str) -> str:
    return sh("ip", "-n", ns, "-4", "route", "show", "proto", "babel") + sh(
        "ip", "-n", ns, "-6", "route", "show", "proto", "babel"
    )


def has_route(ns: str, prefix: str, device: str) -> bool:
    return any(
        line.startswith(f"{prefix} ") and f"dev {device}" in line
        for line in kernel(ns).splitlines()
    )


def test_granted_site_prefixes_reach_the_mesh_through_the_gateway(gateway: Gateway) -> None:
    mesh = gateway.mesh
    wg = mesh.node("h1").ifname
    took = wait_until(
        lambda: (
            has_route(gateway.h1_ns, "10.55.0.0/24", wg)
            and has_route(gateway.h1_ns, "fd55::/64", wg)
        ),
        30,
        "h1 to route the site prefixes into the mesh",
    )
    print(f"site prefixes at h1 after {took:.1f} s")
    rows = json.loads(mesh.run("h1", "routes", "--json").stdout)["routes"]
    site = {r["prefix"]: r for r in rows if r["prefix"] in SITE and r["selected"]}
    assert set(site) == set(SITE[:2])
    for row in site.values():
        assert row["origin"] == "h2"  # the gateway's router-id, not babeld's
        assert row["metric"] >= 2 * 96  # the site hop's metric is carried over
    # h2's WireGuard peer at h1 holds the prefixes; h2 keeps its routes toward the site.
    peer = mesh.wg_peers("h1")[mesh.node("h2").me()["wg_public_key"]]
    assert {"10.55.0.0/24", "fd55::/64"} <= set(peer.allowed_ips)
    assert has_route(gateway.h2_ns, "10.55.0.0/24", VETH)
    assert has_route(gateway.h2_ns, "fd55::/64", VETH)
    # Learnt by the gateway, outside its grants: not on the mesh.
    assert has_route(gateway.h2_ns, "10.66.0.0/24", VETH)
    assert not any(r["prefix"] == "10.66.0.0/24" for r in rows)
    assert "10.66.0.0/24" not in kernel(gateway.h1_ns)


def test_a_retracted_site_prefix_is_withdrawn_from_the_mesh(gateway: Gateway) -> None:
    wg = gateway.mesh.node("h1").ifname
    wait_until(lambda: has_route(gateway.h1_ns, "fd55::/64", wg), 30, "fd55::/64 at h1")
    sh("ip", "-n", gateway.site_ns, "route", "del", "fd55::/64", "dev", "lo", "proto", "static")
    took = wait_until(
        lambda: not has_route(gateway.h1_ns, "fd55::/64", wg), 30, "fd55::/64 gone from h1"
    )
    print(f"fd55::/64 withdrawn at h1 after {took:.1f} s")
    wait_until(lambda: not has_route(gateway.h2_ns, "fd55::/64", VETH), 5, "h2 to let go")
    assert has_route(gateway.h1_ns, "10.55.0.0/24", wg)


def routes_of(ns: str, prefix: str) -> list[str]:
    """The kernel's IPv6 routes for exactly ``prefix``, any protocol."""
    return [
        line
        for line in sh("ip", "-n", ns, "-6", "route", "show", "exact", prefix).splitlines()
        if line.strip()
    ]


def test_a_site_speaker_cannot_take_a_members_address_or_the_overlay(gateway: Gateway) -> None:
    mesh, h2_ns = gateway.mesh, gateway.h2_ns
    wg2 = mesh.node("h2").ifname
    h1 = mesh.node("h1").me()
    h1_host = f"{h1['overlay_ip']}/128"
    overlay = str(ipaddress.IPv6Network((h1["overlay_ip"], 48), strict=False))
    wait_until(
        lambda: any(f"dev {wg2}" in line for line in routes_of(h2_ns, h1_host)),
        30,
        "h2 to route h1's /128 on the mesh",
    )
    before = routes_of(h2_ns, overlay)
    assert before
    assert all(f"dev {wg2}" in line for line in before)
    seqno = json.loads(mesh.run("h1", "routes", "--json").stdout)["seqno"]
    router_id = router_id_of(base64.b64decode(h1["node_key"])).hex()

    def refused() -> int:
        counters = json.loads(mesh.run("h2", "routes", "--json").stdout)["counters"]
        return int(counters.get("refused_routes", 0))

    refused_before = refused()
    speaker = subprocess.Popen(
        [
            "ip", "netns", "exec", gateway.hostile_ns,
            sys.executable, "-m", "tests.babel.lan_speaker", HOSTILE_VETH, h1_host, overlay,
            "--router-id", router_id, "--seqno", str((seqno + 1000) % 65536),
            "--rxcost", "1", "--hello", HELLO, "--duration", "8",
        ],
        cwd=REPO,
    )  # fmt: skip
    samples = 0
    try:
        while speaker.poll() is None:
            for prefix in (h1_host, overlay):
                lines = routes_of(h2_ns, prefix)
                assert lines, f"h2 lost its route for {prefix}"
                assert not any(HOSTILE_VETH in line for line in lines), lines
                assert all(f"dev {wg2}" in line for line in lines), lines
            samples += 1
            time.sleep(0.2)
    finally:
        _stop(speaker)
    assert speaker.returncode == 0
    heard = refused() - refused_before
    print(f"hostile speaker: {heard} Updates refused at h2, {samples} samples of h2's routes")
    assert heard > 0  # it was heard, and refused
    rows = json.loads(mesh.run("h2", "routes", "--json").stdout)["routes"]
    assert not any(row["interface"] == HOSTILE_VETH for row in rows)
    # Nothing stays broken: the /48's route to WireGuard is as it was, h1 answers.
    time.sleep(2)
    assert routes_of(h2_ns, overlay) == before
    assert any(f"dev {wg2}" in line for line in routes_of(h2_ns, h1_host))
    sh(
        "ip",
        "netns",
        "exec",
        h2_ns,
        "ping",
        "-6",
        "-n",
        "-q",
        "-c",
        "1",
        "-W",
        "2",
        h1["overlay_ip"],
    )


def test_new_rules_at_a_sighup_take_effect_at_once_both_ways(gateway: Gateway) -> None:
    """``systemctl reload`` after the gateway's rules changed (meshd.daemon.live_config):
    without the rules for 10/8 and the overlay, h2's site route leaves the mesh and h1's
    overlay /128 leaves babeld at once (babeld would have held it for 3.5 of h2's Update
    intervals); the rules of before bring both back. The daemon runs on throughout."""
    mesh = gateway.mesh
    wg = mesh.node("h1").ifname
    h1_host = f"{mesh.node('h1').me()['overlay_ip']}/128"

    def at_site() -> bool:
        # babeld holds a retracted route as unreachable for a while: not a route.
        lines = routes_of(gateway.site_ns, h1_host)
        return any("proto babel" in ln and not ln.startswith("unreachable") for ln in lines)

    def both() -> tuple[bool, bool]:
        return has_route(gateway.h1_ns, "10.55.0.0/24", wg), at_site()

    wait_until(lambda: both() == (True, True), 30, "the site route at h1, h1's /128 at babeld")
    process = mesh.node("h2").process
    assert process is not None
    try:
        gateway.h2_config.write_text(redistribute(("fd55::/16 allow",)))
        process.send_signal(signal.SIGHUP)
        try:
            took = wait_until(lambda: both() == (False, False), 10, "both routes to leave")
        except MeshTimeout:
            # Which one stayed (the site route at h1, h1's /128 at babeld), and what h2 says.
            status = mesh.run("h2", "status", "--json").stdout
            raise AssertionError(f"still there: {both()}; h2's config: {status[:2000]}") from None
        print(f"new rules: both routes gone {took:.2f} s after the SIGHUP")
        assert took < 3.0, "a route the rules refuse now was left to its hold time"
    finally:
        gateway.h2_config.write_text(redistribute(gateway.rules))
        process.send_signal(signal.SIGHUP)
    took = wait_until(lambda: both() == (True, True), 10, "both routes back")
    print(f"rules of before: both routes back {took:.2f} s after the SIGHUP")
    assert process.poll() is None
    rows = json.loads(mesh.run("h2", "status", "--json").stdout)["config"]
    assert (rows["reloads"], rows["failed"], rows["waiting"]) == (2, 0, [])
