"""NAT routers in the lab: each one a namespace with a WAN link up and a LAN bridge down.

A NAT hangs off the lab's router (a public address, like a home router's) or off another NAT's
LAN (a NAT behind a NAT, as carrier-grade NAT puts a home router). Hosts behind it sit on its
LAN bridge, so hosts behind the same NAT reach each other directly, as on a home LAN.

Two kinds, both with nftables ``masquerade`` on the WAN side and conntrack's filtering:

- ``cone``: plain ``masquerade``. A flow keeps its source port when that port is free on the
  WAN address, and later flows from the same source ip:port reuse the mapping of a live one
  whatever their destination (endpoint-independent mapping). Only replies from the exact
  remote ip:port a flow was opened to come back in (port-restricted filtering): Linux's
  default, and most home routers'.
- ``symmetric``: ``masquerade random``: every flow (source, destination) gets its own random
  port, so the mapping a third party sees is useless to anyone else.

Unsolicited packets arriving on the WAN side are dropped silently in the NAT's ``input``
hook, before conntrack confirms an entry for them. That matters for hole punching: a
confirmed entry for the peer's first (unanswered) packet would take the reply tuple that our
own outgoing flow needs, and masquerade would then map that flow to another port.

``remap_ports`` simulates a NAT that changes its public port (a laptop that moves to another
network): it maps from a new port range and forgets every mapping (conntrack flushed over
netlink, so no ``conntrack`` tool is needed). See docs/lab.md.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass
from typing import Literal

from meshd.lab.commands import LabError, in_netns, ip_batch, run

NatKind = Literal["cone", "symmetric"]
NAT_KINDS: tuple[NatKind, ...] = ("cone", "symmetric")
NFT_TABLE = "meshdnat"
MAX_NATS = 250
#: Devices (hosts and inner NATs) on one NAT's LAN: .2 to .251.
MAX_LAN_DEVICES = 250

#: The NAT's WAN link to the lab's router: 10.78.K.0/24 (router .1, NAT .2), same in IPv6.
WAN4_BASE = ipaddress.IPv4Network("10.78.0.0/16")
WAN6_BASE = ipaddress.IPv6Network("fd6c:6178::/48")
#: The NAT's LAN: 192.168.K.0/24 (NAT .1, devices from .2), fd6c:6192:0:K::/64.
#: With ``Lab(public=True)``: ``198.51.100.4K/30`` and ``2001:db8:78:K::/64`` (documentation
#: ranges, which meshd counts as public), so at most ``MAX_PUBLIC_NATS`` NATs.
PUBLIC_WAN4_BASE = ipaddress.IPv4Network("198.51.100.0/24")
PUBLIC_WAN6_BASE = ipaddress.IPv6Network("2001:db8:78::/48")
MAX_PUBLIC_NATS = 63
LAN4_BASE = ipaddress.IPv4Network("192.168.0.0/16")
LAN6_BASE = ipaddress.IPv6Network("fd6c:6192::/48")

#: ``remap_ports`` with no range given picks 1,000-port ranges from here, one per remap,
#: all below WireGuard's 51820 (a range holding a flow's own port would keep it).
REMAP_BASE = 20000
REMAP_SIZE = 1000

NAT_SYSCTLS = {
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.keep_addr_on_down": "1",
    "net.ipv6.conf.default.keep_addr_on_down": "1",
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
}

#: Flush a namespace's conntrack table over ctnetlink (IPCTNL_MSG_CT_DELETE with no tuple,
#: nfgenmsg version 0: every family); exits with the kernel's errno, 0 on success.
FLUSH_CONNTRACK = """
import socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
body = struct.pack("=BBH", 0, 0, 0)
s.sendto(struct.pack("=IHHII", 16 + len(body), (1 << 8) | 2, 1 | 4, 1, 0) + body, (0, 0))
s.settimeout(5)
reply = s.recv(65536)
kind = struct.unpack_from("=H", reply, 4)[0]
sys.exit(-struct.unpack_from("=i", reply, 16)[0] if kind == 2 else 0)
"""

Ports = tuple[int, int]
_NAME = re.compile(r"[a-z][a-z0-9-]{0,15}")


@dataclass(frozen=True, slots=True)
class Nat:
    """One NAT router: its namespace, its WAN link and its LAN."""

    name: str
    index: int
    kind: NatKind
    netns: str
    #: The WAN end, inside the NAT's namespace, and the other end of that link.
    wan_ifname: str
    upstream_ifname: str
    #: Where the other end lives: the lab's router or the outer NAT's namespace.
    upstream_netns: str
    #: The LAN bridge, inside the NAT's namespace.
    lan_ifname: str
    wan4: ipaddress.IPv4Interface
    wan6: ipaddress.IPv6Interface
    gateway4: ipaddress.IPv4Address
    gateway6: ipaddress.IPv6Address
    #: The NAT's own address on its LAN (the LAN hosts' gateway), with the LAN's prefix.
    lan4: ipaddress.IPv4Interface
    lan6: ipaddress.IPv6Interface
    #: The outer NAT's name for a NAT behind a NAT, else None (behind the lab's router).
    behind: str | None = None


def check_kind(kind: str) -> NatKind:
    for known in NAT_KINDS:
        if kind == known:
            return known
    raise ValueError(f"a NAT is one of {', '.join(NAT_KINDS)}, not {kind!r}")


def check_name(name: str) -> str:
    """A NAT's name: 1 to 16 lowercase letters, digits or dashes, starting with a letter."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"a NAT name is 1 to 16 of a-z, 0-9 and '-', from a letter: {name!r}")
    return name


def wan_subnet(
    index: int, public: bool = False
) -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    """NAT ``index``'s link to the lab's router: ``10.78.K.0/24``, ``fd6c:6178:0:K::/64``;
    with ``public``, ``198.51.100.4K/30``, ``2001:db8:78:K::/64``."""
    _check_index(index)
    if public:
        if index > MAX_PUBLIC_NATS:
            raise LabError(f"a lab with public addresses has at most {MAX_PUBLIC_NATS} NATs")
        return (
            ipaddress.IPv4Network((int(PUBLIC_WAN4_BASE.network_address) + 4 * index, 30)),
            ipaddress.IPv6Network((int(PUBLIC_WAN6_BASE.network_address) + (index << 64), 64)),
        )
    return (
        ipaddress.IPv4Network((int(WAN4_BASE.network_address) + (index << 8), 24)),
        ipaddress.IPv6Network((int(WAN6_BASE.network_address) + (index << 64), 64)),
    )


def lan_subnet(index: int) -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    """NAT ``index``'s LAN: ``192.168.K.0/24``, ``fd6c:6192:0:K::/64``."""
    _check_index(index)
    return (
        ipaddress.IPv4Network((int(LAN4_BASE.network_address) + (index << 8), 24)),
        ipaddress.IPv6Network((int(LAN6_BASE.network_address) + (index << 64), 64)),
    )


def lan_address(index: int, slot: int) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv6Interface]:
    """The address of device ``slot`` (from 2; the NAT is 1) on NAT ``index``'s LAN."""
    if not 1 <= slot <= MAX_LAN_DEVICES + 1:
        raise LabError(f"a NAT's LAN has at most {MAX_LAN_DEVICES} devices")
    net4, net6 = lan_subnet(index)
    return (
        ipaddress.IPv4Interface(f"{net4[slot]}/{net4.prefixlen}"),
        ipaddress.IPv6Interface(f"{net6[slot]}/{net6.prefixlen}"),
    )


def _check_index(index: int) -> None:
    if not 1 <= index <= MAX_NATS:
        raise LabError(f"a lab has at most {MAX_NATS} NATs")


def masquerade_rules(nat: Nat, ports: Ports | None) -> list[str]:
    """The NAT's postrouting rules: masquerade out of the WAN, per its kind and port range.

    A port range applies to TCP and UDP (nftables maps ports only after a transport match);
    other protocols (ICMP) are masqueraded as before.
    """
    random = " random" if nat.kind == "symmetric" else ""
    out = f'oifname "{nat.wan_ifname}"'
    if ports is None:
        return [f"{out} masquerade{random}"]
    low, high = ports
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"a port range is 1 <= low <= high <= 65535, not {ports}")
    return [
        f"{out} meta l4proto {{ tcp, udp }} masquerade to :{low}-{high}{random}",
        f"{out} masquerade{random}",
    ]


def ruleset(nat: Nat, ports: Ports | None = None) -> str:
    """The NAT's nftables table: masquerade, and drop what arrives unasked on the WAN."""
    wan = nat.wan_ifname
    return (
        f"table inet {NFT_TABLE} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        + "".join(f"    {rule}\n" for rule in masquerade_rules(nat, ports))
        + "  }\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy accept;\n"
        "    ct state established,related accept\n"
        f'    iifname "{wan}" drop\n'
        "  }\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        "    ct state established,related accept\n"
        f'    iifname "{wan}" meta l4proto {{ tcp, udp }} drop\n'
        "  }\n"
        "}\n"
    )


def nft(netns: str, script: str) -> None:
    run(in_netns(netns, ["nft", "-f", "-"]), input=script)


def build(nat: Nat, upstream_bridge: str | None) -> None:
    """Make the NAT's namespace, WAN link, LAN bridge, routes and nftables table.

    ``upstream_bridge``: the outer NAT's LAN bridge for a NAT behind a NAT; None when the
    upstream is the lab's router (which then gets the WAN link's router end addresses).
    """
    run(["ip", "netns", "add", nat.netns])
    run(in_netns(nat.netns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in NAT_SYSCTLS.items())]))
    run(["ip", "link", "add", nat.wan_ifname, "netns", nat.netns, "type", "veth",
         "peer", "name", nat.upstream_ifname, "netns", nat.upstream_netns])  # fmt: skip
    if upstream_bridge is None:
        upstream = [
            f"address add {nat.gateway4}/{nat.wan4.network.prefixlen} dev {nat.upstream_ifname}",
            f"address add {nat.gateway6}/{nat.wan6.network.prefixlen} dev {nat.upstream_ifname}"
            " nodad",
        ]
    else:
        upstream = [f"link set {nat.upstream_ifname} master {upstream_bridge}"]
    ip_batch([*upstream, f"link set {nat.upstream_ifname} up"], netns=nat.upstream_netns)
    ip_batch(
        [
            "link set lo up",
            f"address add {nat.wan4} dev {nat.wan_ifname}",
            f"address add {nat.wan6} dev {nat.wan_ifname} nodad",
            f"link set {nat.wan_ifname} up",
            f"route add default via {nat.gateway4} dev {nat.wan_ifname}",
            f"route add ::/0 via {nat.gateway6} dev {nat.wan_ifname}",
            f"link add {nat.lan_ifname} type bridge stp_state 0 forward_delay 0",
            f"address add {nat.lan4} dev {nat.lan_ifname}",
            f"address add {nat.lan6} dev {nat.lan_ifname} nodad",
            f"link set {nat.lan_ifname} up",
        ],
        netns=nat.netns,
    )
    nft(nat.netns, ruleset(nat))


def remap_ports(nat: Nat, ports: Ports) -> None:
    """Map from ``ports`` from now on and forget every mapping the NAT holds.

    The rule is replaced atomically, then conntrack is flushed: every flow, a WireGuard
    session's too, gets a new public port from the range on its next packet out, and
    packets sent to the old mapping are dropped. A cone NAT stays cone (a live mapping is
    reused for other destinations); a symmetric one stays symmetric.
    """
    rules = masquerade_rules(nat, ports)
    nft(
        nat.netns,
        f"flush chain inet {NFT_TABLE} postrouting\n"
        + "".join(f"add rule inet {NFT_TABLE} postrouting {rule}\n" for rule in rules),
    )
    flush_conntrack(nat.netns)


def flush_conntrack(netns: str) -> None:
    """Forget every conntrack entry (so every NAT mapping) in a namespace."""
    run(in_netns(netns, [sys.executable, "-c", FLUSH_CONNTRACK]))


def next_ports(remaps: int) -> Ports:
    """The port range of a NAT's ``remaps``-th remap (from 1): 21000-21999, 22000-22999..."""
    low = REMAP_BASE + (remaps % 30) * REMAP_SIZE
    return low, low + REMAP_SIZE - 1
