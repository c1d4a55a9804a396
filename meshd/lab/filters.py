"""Dropping UDP (or all traffic) between two hosts, in the router's namespace.

Three ways, best first; ``choose_filter("auto")`` takes the first whose tool is installed:

- ``nft``: one table ``inet meshdlab`` with a forward chain that drops UDP whose (source,
  destination) pair is in one set, and any packet whose pair is in another; blocking and
  unblocking add and remove set elements.
- ``iptables``: one ``FORWARD ... -p udp -j DROP`` (or ``-p all``) rule per direction and
  family (``iptables`` and ``ip6tables``).
- ``iprule``: policy routing, needing only iproute2: ``ip rule add from A to B ipproto udp
  blackhole`` (without ``ipproto`` for all traffic). The router drops the packets silently
  while forwarding.

Every way blocks both directions and both families; packets are dropped, not rejected, as a
lossy network would. The rules live in the router namespace and vanish with it. ``Proto``
says what is dropped: ``udp``, or ``all`` (a partition: TCP, UDP and ICMP alike).
"""

from __future__ import annotations

import ipaddress
import shutil
from typing import Literal, Protocol

from meshd.lab.commands import LabError, in_netns, ip, run

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: (source, destination) pairs, both directions and both families of one host pair.
Pairs = list[tuple[Address, Address]]
#: What a block drops: UDP only, or every packet (a partition).
Proto = Literal["udp", "all"]

FILTER_NAMES = ("nft", "iptables", "iprule")
NFT_TABLE = "meshdlab"
INSTALL_HINT = "apt-get install --no-install-recommends nftables"


class UdpFilter(Protocol):
    name: str

    def setup(self) -> None: ...

    def block(self, pairs: Pairs, proto: Proto = "udp") -> None: ...

    def unblock(self, pairs: Pairs, proto: Proto = "udp") -> None: ...


def _split(pairs: Pairs) -> tuple[Pairs, Pairs]:
    return [p for p in pairs if p[0].version == 4], [p for p in pairs if p[0].version == 6]


class NftFilter:
    name = "nft"

    def __init__(self, netns: str) -> None:
        self.netns = netns

    def _nft(self, script: str) -> None:
        run(in_netns(self.netns, ["nft", "-f", "-"]), input=script)

    def setup(self) -> None:
        self._nft(
            f"table inet {NFT_TABLE} {{\n"
            "  set blocked4 { type ipv4_addr . ipv4_addr; }\n"
            "  set blocked6 { type ipv6_addr . ipv6_addr; }\n"
            "  set parted4 { type ipv4_addr . ipv4_addr; }\n"
            "  set parted6 { type ipv6_addr . ipv6_addr; }\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            "    meta l4proto udp ip saddr . ip daddr @blocked4 drop\n"
            "    meta l4proto udp ip6 saddr . ip6 daddr @blocked6 drop\n"
            "    ip saddr . ip daddr @parted4 drop\n"
            "    ip6 saddr . ip6 daddr @parted6 drop\n"
            "  }\n"
            "}\n"
        )

    def _elements(self, verb: str, pairs: Pairs, proto: Proto) -> None:
        lines = []
        kind = "blocked" if proto == "udp" else "parted"
        for family, group in zip((4, 6), _split(pairs), strict=True):
            if group:
                elements = ", ".join(f"{src} . {dst}" for src, dst in group)
                lines.append(f"{verb} element inet {NFT_TABLE} {kind}{family} {{ {elements} }}")
        self._nft("\n".join(lines) + "\n")

    def block(self, pairs: Pairs, proto: Proto = "udp") -> None:
        self._elements("add", pairs, proto)

    def unblock(self, pairs: Pairs, proto: Proto = "udp") -> None:
        self._elements("delete", pairs, proto)


class IptablesFilter:
    name = "iptables"

    def __init__(self, netns: str) -> None:
        self.netns = netns

    def setup(self) -> None:
        for tool in ("iptables", "ip6tables"):
            if shutil.which(tool) is None:
                raise LabError(f"{tool} is not installed", hint=INSTALL_HINT)

    def _rules(self, action: str, pairs: Pairs, proto: Proto) -> None:
        for src, dst in pairs:
            tool = "iptables" if src.version == 4 else "ip6tables"
            rule = ["FORWARD", "-s", str(src), "-d", str(dst), "-p", proto, "-j", "DROP"]
            run(in_netns(self.netns, [tool, "-w", action, *rule]))

    def block(self, pairs: Pairs, proto: Proto = "udp") -> None:
        self._rules("-I", pairs, proto)

    def unblock(self, pairs: Pairs, proto: Proto = "udp") -> None:
        self._rules("-D", pairs, proto)


class IpRuleFilter:
    name = "iprule"

    def __init__(self, netns: str) -> None:
        self.netns = netns

    def setup(self) -> None:
        pass

    def _rules(self, action: str, pairs: Pairs, proto: Proto) -> None:
        match = ["ipproto", "udp"] if proto == "udp" else []
        for src, dst in pairs:
            family = "-4" if src.version == 4 else "-6"
            ip(family, "rule", action, "from", str(src), "to", str(dst), *match, "blackhole",
               netns=self.netns)  # fmt: skip

    def block(self, pairs: Pairs, proto: Proto = "udp") -> None:
        self._rules("add", pairs, proto)

    def unblock(self, pairs: Pairs, proto: Proto = "udp") -> None:
        self._rules("del", pairs, proto)


def available_filters() -> list[str]:
    """The ways that can work on this machine, best first."""
    found = []
    if shutil.which("nft"):
        found.append("nft")
    if shutil.which("iptables") and shutil.which("ip6tables"):
        found.append("iptables")
    found.append("iprule")
    return found


def choose_filter(name: str, netns: str) -> UdpFilter:
    """The filter called ``name`` (or the best available one for ``auto``) for a router."""
    if name == "auto":
        name = available_filters()[0]
    if name == "nft":
        if shutil.which("nft") is None:
            raise LabError("nft is not installed", hint=INSTALL_HINT)
        return NftFilter(netns)
    if name == "iptables":
        return IptablesFilter(netns)
    if name == "iprule":
        return IpRuleFilter(netns)
    raise ValueError(f"unknown UDP filter {name!r}; choose auto or one of {FILTER_NAMES}")
