"""meshd's WireGuard routes through its own rtnetlink, beside other routes for the same
prefix (root).

The routes meshd installs toward its WireGuard interface carry protocol RTPROT_MESHD and the
family's default priority; removing them names both and the interface. A removal that named
only the prefix and the interface took the kernel's first match: another program's route for
the same prefix through the same interface, at a better priority, went instead of ours.
Replacing ours likewise replaces only ours: the kernel's replace took another program's route
for the prefix at the same priority, through any interface. A veth interface stands in for
the WireGuard interface.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import pytest
import trio

from meshd.errors import AlreadyRunning
from meshd.lab.commands import ip
from meshd.lab.lab import Lab
from meshd.lab.plumbing import Host
from meshd.wg import rtnetlink as rt
from meshd.wg.netlink import Netlink

pytestmark = pytest.mark.root

WG = "wn0"  # the WireGuard interface's stand-in
OTHER = "wn0p"
PREFIX6 = IPv6Network("fd5a:2::/48")
PREFIX4 = IPv4Network("10.201.0.0/24")


def routes(host: Host, prefix: IPv6Network | IPv4Network) -> set[tuple[str, str, int]]:
    family = "-6" if prefix.version == 6 else "-4"
    found: list[dict[str, Any]] = json.loads(
        ip("-j", family, "route", "show", "exact", str(prefix), netns=host.netns)
    )
    return {
        (str(r.get("protocol", "boot")), str(r["dev"]), int(r.get("metric", 0)))
        for r in found
        if r.get("dst") in (str(prefix), str(prefix.network_address))
    }


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    with Lab(1) as lab:
        (h,) = lab.hosts
        ip("link", "add", WG, "type", "veth", "peer", "name", OTHER, netns=h.netns)
        for name in (WG, OTHER):
            ip("link", "set", name, "up", netns=h.netns)
        yield h


def test_meshds_routes_carry_its_protocol_and_the_default_priority(host: Host) -> None:
    netlink = Netlink(host.netns)
    trio.run(netlink.replace_routes, WG, [PREFIX6, PREFIX4])
    assert routes(host, PREFIX6) == {("77", WG, 1024)}
    assert routes(host, PREFIX4) == {("77", WG, 0)}
    assert trio.run(netlink.route_interfaces, PREFIX6) == [WG]
    trio.run(netlink.replace_routes, WG, [PREFIX6])  # again: replaced in place
    assert routes(host, PREFIX6) == {("77", WG, 1024)}
    trio.run(netlink.delete_routes, WG, [PREFIX6, PREFIX4])
    assert routes(host, PREFIX6) == routes(host, PREFIX4) == set()
    trio.run(netlink.delete_routes, WG, [PREFIX6])  # not there: nothing to do


def test_removing_meshds_routes_leaves_other_routes_for_the_same_prefix(host: Host) -> None:
    netlink = Netlink(host.netns)
    trio.run(netlink.replace_routes, WG, [PREFIX6, PREFIX4])
    # Another program's routes for the same prefixes: through the same interface at a
    # better priority, and through another interface.
    ip("-6", "route", "add", str(PREFIX6), "dev", WG, "proto", "static", "metric", "100",
       netns=host.netns)  # fmt: skip
    ip("-6", "route", "add", str(PREFIX6), "dev", OTHER, "metric", "2000", netns=host.netns)
    ip("-4", "route", "add", str(PREFIX4), "dev", WG, "proto", "static", "metric", "5",
       netns=host.netns)  # fmt: skip
    trio.run(netlink.delete_routes, WG, [PREFIX6, PREFIX4])
    assert routes(host, PREFIX6) == {("static", WG, 100), ("boot", OTHER, 2000)}
    assert routes(host, PREFIX4) == {("static", WG, 5)}


def test_replacing_meshds_route_never_takes_another_programs_in_its_place(host: Host) -> None:
    netlink = Netlink(host.netns)
    for prefix in (PREFIX6, PREFIX4):
        ip(f"-{prefix.version}", "route", "flush", "exact", str(prefix), netns=host.netns)
    # Another program's routes for the prefixes at the family's default priority, as meshd's.
    ip("-6", "route", "add", str(PREFIX6), "dev", OTHER, "proto", "static", "metric", "1024",
       netns=host.netns)  # fmt: skip
    ip("-4", "route", "add", str(PREFIX4), "dev", OTHER, "proto", "static", netns=host.netns)
    for prefix in (PREFIX6, PREFIX4):
        with pytest.raises(AlreadyRunning, match=f"another program's route to {prefix}"):
            trio.run(netlink.replace_routes, WG, [prefix])
    assert routes(host, PREFIX6) == {("static", OTHER, 1024)}
    assert routes(host, PREFIX4) == {("static", OTHER, 0)}
    # At another priority it is no obstacle: ours goes beside it, and is replaced in place.
    ip("-6", "route", "del", str(PREFIX6), "dev", OTHER, "metric", "1024", netns=host.netns)
    ip("-6", "route", "add", str(PREFIX6), "dev", OTHER, "proto", "static", "metric", "500",
       netns=host.netns)  # fmt: skip
    trio.run(netlink.replace_routes, WG, [PREFIX6])
    trio.run(netlink.replace_routes, WG, [PREFIX6])
    assert routes(host, PREFIX6) == {("static", OTHER, 500), ("77", WG, 1024)}
    for prefix in (PREFIX6, PREFIX4):
        ip(f"-{prefix.version}", "route", "flush", "exact", str(prefix), netns=host.netns)


def test_the_addresses_of_a_scope_come_with_their_links_names(host: Host) -> None:
    """Among 50 more links with only their link-local addresses (a container host's), the
    addresses of global scope are the lab's and one we add, each named by its own link; the
    link-local ones are not among them, and every address is there when no scope is asked."""
    extra = [f"ct{i}" for i in range(25)]
    lines = [f"link add {name} type veth peer name {name}p" for name in extra]
    lines += [f"link set {n} up" for name in extra for n in (name, f"{name}p")]
    run = ["ip", "-n", host.netns, "-batch", "-"]
    subprocess.run(run, input="\n".join(lines).encode(), check=True, capture_output=True)
    try:
        ip("addr", "add", "2001:db8:77::1/64", "dev", OTHER, "nodad", netns=host.netns)
        netlink = Netlink(host.netns)
        deadline = time.monotonic() + 10  # the link-local addresses come as links go up
        while sum(name.startswith("ct") for name, _ in trio.run(netlink.addresses)) < 50:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        reachable = trio.run(netlink.addresses, (rt.RT_SCOPE_UNIVERSE, rt.RT_SCOPE_SITE))
        assert (OTHER, ipaddress.ip_interface("2001:db8:77::1/64")) in reachable
        assert all(not i.ip.is_link_local and not i.ip.is_loopback for _, i in reachable)
        assert not any(name.startswith("ct") for name, _ in reachable)
        shown = json.loads(ip("-j", "addr", "show", "scope", "global", netns=host.netns))
        want = {
            (link["ifname"], ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}"))
            for link in shown
            for a in link["addr_info"]
            if "local" in a
        }
        assert set(reachable) == want
    finally:
        for name in extra:
            subprocess.run(["ip", "-n", host.netns, "link", "del", name], check=False)
        ip("addr", "del", "2001:db8:77::1/64", "dev", OTHER, netns=host.netns)
