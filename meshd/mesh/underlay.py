"""This machine's underlay, from its interface addresses: what to announce, what we reach.

Pure: the daemon reads the addresses (:meth:`meshd.wg.netlink.Netlink.addresses`) and
passes them in.

* :func:`default_endpoints`: without ``--endpoint``, a node announces every usable address
  of its underlay interfaces with its WireGuard listen port;
* :func:`underlay_of`: the families and attached networks :func:`~meshd.mesh.desired.
  choose_endpoint` prefers;
* :func:`expand_listen_addrs`: a libp2p listen address on ``0.0.0.0`` or ``::`` is
  announced as one address per concrete host, never as the wildcard (which names nobody).

Usable means: not loopback, not link-local, not multicast, not unspecified, and not on the
mesh interface itself (its overlay address is reachable only once WireGuard already works).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshd.mesh.desired import Underlay
from meshd.wg.model import IPAddress, format_endpoint, parse_endpoint

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_WILDCARDS = {"/ip4/0.0.0.0/": 4, "/ip6/::/": 6}


@dataclass(frozen=True, slots=True)
class LocalAddress:
    """One address of one local interface, with its prefix length."""

    ifname: str
    interface: IPInterface

    @property
    def address(self) -> IPAddress:
        return self.interface.ip


def usable(address: IPAddress) -> bool:
    """An address another machine could reach us at."""
    return not (
        address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
    )


def usable_addresses(
    addresses: Iterable[LocalAddress], *, exclude: Iterable[str] = ()
) -> list[LocalAddress]:
    """Usable addresses, minus those on the ``exclude`` interfaces, IPv4 first, each once."""
    skip = set(exclude)
    seen: dict[IPAddress, LocalAddress] = {}
    for local in addresses:
        if local.ifname not in skip and usable(local.address) and local.address not in seen:
            seen[local.address] = local
    return sorted(seen.values(), key=lambda a: (a.address.version, int(a.address)))


def default_endpoints(
    addresses: Iterable[LocalAddress], port: int, *, exclude: Iterable[str] = ()
) -> tuple[str, ...]:
    """``host:port`` for every usable address (``[v6]:port`` for IPv6)."""
    chosen = usable_addresses(addresses, exclude=exclude)
    return tuple(format_endpoint(a.address, port) for a in chosen)


def underlay_of(addresses: Iterable[LocalAddress], *, exclude: Iterable[str] = ()) -> Underlay:
    """The families we hold a usable address in, and the networks those addresses are on."""
    usable_ones = usable_addresses(addresses, exclude=exclude)
    return Underlay(
        families=frozenset(a.address.version for a in usable_ones),
        networks=tuple(sorted({a.interface.network for a in usable_ones}, key=_net_order)),
    )


def _net_order(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def endpoint_hosts(endpoints: Iterable[str]) -> list[IPAddress]:
    """The hosts of ``host:port`` endpoints, in order, each once; unparsable ones skipped."""
    hosts: list[IPAddress] = []
    for text in endpoints:
        try:
            host, _ = parse_endpoint(text)
        except ValueError:
            continue
        if host not in hosts:
            hosts.append(host)
    return hosts


def expand_listen_addrs(listen: Sequence[str], hosts: Sequence[IPAddress]) -> list[str]:
    """Listen multiaddrs with every wildcard host replaced by each concrete host of its family.

    ``/ip4/0.0.0.0/tcp/7100/p2p/Qm..`` with hosts 192.0.2.1 and 2001:db8::1 becomes
    ``/ip4/192.0.2.1/tcp/7100/p2p/Qm..``. A wildcard with no host of its family is dropped:
    announcing it would tell others to dial themselves.
    """
    out: list[str] = []
    for addr in listen:
        wildcard = next((w for w in _WILDCARDS if addr.startswith(w)), None)
        if wildcard is None:
            expanded = [addr]
        else:
            family = _WILDCARDS[wildcard]
            rest = addr[len(wildcard) :]
            expanded = [f"/ip{family}/{h}/{rest}" for h in hosts if h.version == family]
        out.extend(a for a in expanded if a not in out)
    return out
