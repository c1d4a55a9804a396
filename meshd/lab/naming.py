"""Names and addresses of a lab: pure functions of the run id and the host number.

Every object a lab makes carries its run id, so two labs never collide and a lab can be found
and removed by its run id alone, even by another process after a crash:

==================  ===============================  ==========================
object              name                             where
==================  ===============================  ==========================
router namespace    ``meshdlab-RUNID-r``             ``ip netns``
host namespace      ``meshdlab-RUNID-hN``            ``ip netns``
NAT namespace       ``meshdlab-RUNID-nK``            ``ip netns``
host uplink         ``mlRUNIDhN``                    in host N's namespace
router downlink     ``mlRUNIDrN``                    in the router namespace
NAT WAN / upstream  ``mlRUNIDwK`` / ``mlRUNIDuK``    NAT K's / its upstream's
NAT LAN bridge      ``mlRUNIDbK``                    in NAT K's namespace
WireGuard iface     ``mwRUNIDhN``                    ``/var/run/wireguard/*.sock``
files               ``$TMPDIR/meshdlab-RUNID/``      the temporary directory
==================  ===============================  ==========================

The run id is six lowercase hex digits. Hosts are numbered from 1, so host ``h1`` has the
uplink ``mlRUNIDh1`` and the subnets ``10.77.1.0/24`` and ``fd6c:6162:0:1::/64``; the router
is ``.1`` / ``::1`` on each subnet and the host ``.2`` / ``::2``. Labs live in their own
namespaces, so the address plan is the same in every lab.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass

NETNS_PREFIX = "meshdlab-"
VETH_PREFIX = "ml"
WG_PREFIX = "mw"
RUN_ID_LENGTH = 6
RUN_ID_PATTERN = re.compile(r"[0-9a-f]{6}")
#: Linux's IFNAMSIZ is 16 bytes including the terminating NUL.
IFNAME_MAX = 15
MAX_HOSTS = 250

IPV4_BASE = ipaddress.IPv4Network("10.77.0.0/16")
IPV6_BASE = ipaddress.IPv6Network("fd6c:6162::/48")
#: ``Lab(public=True)``: public hosts in documentation ranges (RFC 5737, RFC 3849), which
#: meshd counts as public addresses, a /30 per host (so at most ``MAX_PUBLIC_HOSTS``).
PUBLIC4_BASE = ipaddress.IPv4Network("203.0.113.0/24")
PUBLIC6_BASE = ipaddress.IPv6Network("2001:db8:77::/48")
MAX_PUBLIC_HOSTS = 63

_NETNS_NAME = re.compile(r"meshdlab-([0-9a-f]{6})-(r|h[0-9]+|n[0-9]+)")


def new_run_id() -> str:
    """A random run id (24 bits; the caller reserves it, see ``Lab``)."""
    return secrets.token_hex(RUN_ID_LENGTH // 2)


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is well formed, else raise ``ValueError``."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(f"a lab run id is six lowercase hex digits, not {run_id!r}")
    return run_id


def host_name(index: int) -> str:
    """The short name of host ``index`` (from 1): ``h1``, ``h2``, ..."""
    if not 1 <= index <= MAX_HOSTS:
        raise ValueError(f"host numbers go from 1 to {MAX_HOSTS}, not {index}")
    return f"h{index}"


def netns_prefix(run_id: str) -> str:
    """The prefix every namespace of this run starts with."""
    return f"{NETNS_PREFIX}{run_id}-"


def router_netns(run_id: str) -> str:
    return f"{netns_prefix(run_id)}r"


def host_netns(run_id: str, index: int) -> str:
    return f"{netns_prefix(run_id)}{host_name(index)}"


def _ifname(prefix: str, run_id: str, side: str, index: int) -> str:
    name = f"{prefix}{run_id}{side}{index}"
    if len(name) > IFNAME_MAX:
        raise ValueError(f"interface name {name!r} is longer than {IFNAME_MAX} characters")
    return name


def host_ifname(run_id: str, index: int) -> str:
    """Host ``index``'s end of its veth pair (inside the host's namespace)."""
    return _ifname(VETH_PREFIX, run_id, "h", index)


def router_ifname(run_id: str, index: int) -> str:
    """The router's end of host ``index``'s veth pair (inside the router's namespace)."""
    return _ifname(VETH_PREFIX, run_id, "r", index)


def wg_ifname(run_id: str, index: int) -> str:
    """The WireGuard interface name reserved for host ``index``.

    wireguard-go's socket folder is shared by all namespaces, so this name is unique on the
    machine, not only inside the host's namespace.
    """
    return _ifname(WG_PREFIX, run_id, "h", index)


def nat_netns(run_id: str, index: int) -> str:
    """The namespace of NAT router ``index`` (from 1)."""
    return f"{netns_prefix(run_id)}n{index}"


def nat_wan_ifname(run_id: str, index: int) -> str:
    """NAT ``index``'s WAN end (inside the NAT's namespace)."""
    return _ifname(VETH_PREFIX, run_id, "w", index)


def nat_upstream_ifname(run_id: str, index: int) -> str:
    """The other end of NAT ``index``'s WAN link (in the router's or the outer NAT's namespace)."""
    return _ifname(VETH_PREFIX, run_id, "u", index)


def nat_lan_ifname(run_id: str, index: int) -> str:
    """NAT ``index``'s LAN bridge (inside the NAT's namespace)."""
    return _ifname(VETH_PREFIX, run_id, "b", index)


def owns_ifname(run_id: str, ifname: str) -> bool:
    """Whether an interface (or wireguard-go socket) name belongs to this run."""
    return ifname.startswith((f"{VETH_PREFIX}{run_id}", f"{WG_PREFIX}{run_id}"))


def run_id_of_netns(name: str) -> str | None:
    """The run id of a lab namespace name, or None for a namespace that is not a lab's."""
    match = _NETNS_NAME.fullmatch(name)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Subnet:
    """The link between host ``index`` and the router: both families."""

    index: int
    ipv4: ipaddress.IPv4Network
    ipv6: ipaddress.IPv6Network

    @property
    def router4(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.ipv4[1]}/{self.ipv4.prefixlen}")

    @property
    def host4(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.ipv4[2]}/{self.ipv4.prefixlen}")

    @property
    def router6(self) -> ipaddress.IPv6Interface:
        return ipaddress.IPv6Interface(f"{self.ipv6[1]}/{self.ipv6.prefixlen}")

    @property
    def host6(self) -> ipaddress.IPv6Interface:
        return ipaddress.IPv6Interface(f"{self.ipv6[2]}/{self.ipv6.prefixlen}")


def subnet(index: int, public: bool = False) -> Subnet:
    """Host ``index``'s subnets: ``10.77.N.0/24`` and ``fd6c:6162:0:N::/64``; with
    ``public``, ``203.0.113.4N/30`` and ``2001:db8:77:N::/64`` (documentation ranges, which
    meshd counts as public)."""
    host_name(index)  # validates the range
    if public:
        if index > MAX_PUBLIC_HOSTS:
            raise ValueError(f"a lab with public addresses has at most {MAX_PUBLIC_HOSTS} hosts")
        ipv4 = ipaddress.IPv4Network((int(PUBLIC4_BASE.network_address) + 4 * index, 30))
        ipv6 = ipaddress.IPv6Network((int(PUBLIC6_BASE.network_address) + (index << 64), 64))
        return Subnet(index, ipv4, ipv6)
    ipv4 = ipaddress.IPv4Network((int(IPV4_BASE.network_address) + (index << 8), 24))
    ipv6 = ipaddress.IPv6Network((int(IPV6_BASE.network_address) + (index << 64), 64))
    return Subnet(index, ipv4, ipv6)
