"""A lab's plumbing: the namespaces, veths, addresses and routes of its router and hosts.

:class:`Host` says what one host is made of; the functions make it with ``ip`` and
``sysctl`` (meshd.lab.commands), from the names and subnets of meshd.lab.naming. They keep
no record of what they made: the run id names all of it, and meshd.lab.teardown removes it
by that id. A NAT router's plumbing is meshd.lab.nat, blocking UDP meshd.lab.filters.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from meshd.lab import naming
from meshd.lab.commands import ip, ip_batch, sysctl
from meshd.lab.nat import Nat

#: Set in every namespace before its interfaces exist: addresses are usable at once (no
#: duplicate address detection to wait for) and survive ``ip link set down``.
NETNS_SYSCTLS = {
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.keep_addr_on_down": "1",
    "net.ipv6.conf.default.keep_addr_on_down": "1",
}
ROUTER_SYSCTLS = {
    **NETNS_SYSCTLS,
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
}


@dataclass(frozen=True, slots=True)
class Host:
    """One lab host: its namespace, its uplink to the router and its addresses."""

    name: str
    index: int
    netns: str
    ifname: str
    router_ifname: str
    wg_ifname: str
    ipv4: ipaddress.IPv4Interface
    ipv6: ipaddress.IPv6Interface
    gateway4: ipaddress.IPv4Address
    gateway6: ipaddress.IPv6Address
    #: The NAT the host is behind (its name), or None for a host on the router.
    behind: str | None = None
    #: The namespace of ``router_ifname``: the router's, or that of the NAT it is behind.
    upstream_netns: str = ""


def describe_host(run_id: str, index: int, public: bool) -> Host:
    """Host ``index`` of a run, on the router: its names and addresses (nothing made yet)."""
    subnet = naming.subnet(index, public)
    return Host(
        name=naming.host_name(index),
        index=index,
        netns=naming.host_netns(run_id, index),
        ifname=naming.host_ifname(run_id, index),
        router_ifname=naming.router_ifname(run_id, index),
        wg_ifname=naming.wg_ifname(run_id, index),
        ipv4=subnet.host4,
        ipv6=subnet.host6,
        gateway4=subnet.router4.ip,
        gateway6=subnet.router6.ip,
        upstream_netns=naming.router_netns(run_id),
    )


def add_router(router_netns: str) -> None:
    """Make the router's namespace, forwarding both families."""
    ip("netns", "add", router_netns)
    sysctl(router_netns, ROUTER_SYSCTLS)
    ip("link", "set", "lo", "up", netns=router_netns)


def add_host(host: Host, router_netns: str, public: bool) -> None:
    """Make a host on the router: its namespace, its veth to the router, both ends' addresses."""
    ip("netns", "add", host.netns)
    sysctl(host.netns, NETNS_SYSCTLS)
    ip("link", "add", host.ifname, "netns", host.netns, "type", "veth",
       "peer", "name", host.router_ifname, "netns", router_netns)  # fmt: skip
    subnet = naming.subnet(host.index, public)
    ip_batch(
        [
            f"address add {subnet.router4} dev {host.router_ifname}",
            f"address add {subnet.router6} dev {host.router_ifname} nodad",
            f"link set {host.router_ifname} up",
        ],
        netns=router_netns,
    )
    _host_links(host)


def add_host_behind(host: Host, nat: Nat) -> None:
    """Make a host on a NAT's LAN: its namespace, its veth into the LAN's bridge."""
    ip("netns", "add", host.netns)
    sysctl(host.netns, NETNS_SYSCTLS)
    ip("link", "add", host.ifname, "netns", host.netns, "type", "veth",
       "peer", "name", host.router_ifname, "netns", nat.netns)  # fmt: skip
    ip_batch(
        [f"link set {host.router_ifname} master {nat.lan_ifname}",
         f"link set {host.router_ifname} up"],
        netns=nat.netns,
    )  # fmt: skip
    _host_links(host)


def _host_links(host: Host) -> None:
    ip_batch(
        [
            "link set lo up",
            f"address add {host.ipv4} dev {host.ifname}",
            f"address add {host.ipv6} dev {host.ifname} nodad",
            f"link set {host.ifname} up",
            f"route add default via {host.gateway4} dev {host.ifname}",
            f"route add ::/0 via {host.gateway6} dev {host.ifname}",
        ],
        netns=host.netns,
    )
