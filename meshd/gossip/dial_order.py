"""In which order one peer's addresses are dialled, and for how long each (pure).

A member's addresses come in the order it, or its invite, lists them: an inviter's public
address first, then where a peer saw it, then where it listens. Seen from the inviter's own
LAN, the public address of a member behind a NAT that does not hairpin never answers, and
its dial waited the whole dial timeout (5 s) before the LAN address was tried. So:

- an address on a network this node has an address on (*on link*: reached without a
  router, a dial done in well under a second) is dialled first, in the listed order;
- while other addresses follow it, for at most :data:`ON_LINK_TIMEOUT`: the same private
  range may be another site's (192.168.1.0/24 is everybody's), where the address names
  nobody or another machine, and the next address is then tried after that short try, not
  after the whole timeout;
- the rest follow in the listed order, each within the dial timeout;
- an on-link address cut short is dialled again, within the whole dial timeout, once all
  the others failed: a slow member on our own LAN is still reached.

The same wait came from any silent address listed before one that works, off our LAN too: a
stale public address, a public IPv4 address whose port is not forwarded before the member's
IPv6 one. So when a peer has two or more such addresses (*far*, ``/ip4`` or ``/ip6`` with a
TCP port), once its on-link addresses (if any) failed, each far one is asked for a bare TCP
connection, all at once (the shell's probe, :mod:`meshd.gossip.dialling`), until one accepts
or :data:`PROBE_WINDOW` passes; then:

- those that accepted are dialled first, in the listed order, within the dial timeout;
- the far addresses not probed (a name, another transport) follow, as listed;
- those silent in the probe follow for at most :data:`ON_LINK_TIMEOUT` each (a slow path
  may still answer), and are dialled again within the whole dial timeout once all the
  others failed, as an on-link address cut short is;
- when none accepted, the far addresses are dialled as listed, each within the dial timeout:
  the probe said nothing (a refused port fails its dial at once anyway).

A probe costs one TCP handshake per address, and its answer at most one round trip before
the first dial; a peer with fewer than two far addresses is not probed, and of more than
:data:`MOST_PROBED` only the first that many are (the rest dialled after them, as listed):
a member's own announcement decides what is asked, and a member that listed twenty
addresses of a third party's would otherwise have every member send that party twenty SYNs
at each of its dials, where a dial sends one at a time.

A name (``/dns/..``) is not on link (its addresses are known only once it is looked up).
Nothing here needs the addresses to be valid: one that does not parse keeps its place.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TypeAlias

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Seconds an on-link address is dialled for while other addresses of its peer follow.
#: A dial over a LAN takes 0.25-0.5 s in py-libp2p (a TCP, Noise and Yamux handshake);
#: three times that leaves a loaded machine room.
ON_LINK_TIMEOUT = 1.5
#: Seconds the probe of a peer's far addresses waits for the first to accept a connection.
PROBE_WINDOW = 1.0
#: Far addresses of one peer probed at most (a member's own: a public IPv4 and IPv6 address,
#: where a peer saw it, a NAT's mapping).
MOST_PROBED = 4


@dataclass(frozen=True, slots=True)
class Attempt:
    """Dial the peer's address ``index`` (its place in the list), for at most ``within``
    seconds (None: the dial timeout)."""

    index: int
    within: float | None = None


@dataclass(frozen=True, slots=True)
class DialPlan:
    """``first`` in turn until one answers; if none does, ``again`` in turn."""

    first: tuple[Attempt, ...]
    again: tuple[Attempt, ...] = ()


def host_of(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address an ``/ip4/..`` or ``/ip6/..`` multiaddr dials; None for any other."""
    parts = addr.split("/", 3)
    if len(parts) < 3 or parts[0] or parts[1] not in ("ip4", "ip6"):
        return None
    try:
        host = ipaddress.ip_address(parts[2])
    except ValueError:
        return None
    return host if host.version == int(parts[1][2]) else None


def on_link(addr: str, networks: Sequence[IPNetwork]) -> bool:
    """Whether ``addr`` dials an address on one of ``networks`` (ours)."""
    host = host_of(addr)
    return host is not None and any(host in net for net in networks if net.version == host.version)


def dialable(addr: str, loopback: bool) -> bool:
    """Whether a member's announced address may be dialled: never the unspecified address
    (``0.0.0.0``, ``::``), a multicast or the broadcast address; a loopback address only when
    this node listens on one itself (``loopback``: daemons side by side on one machine).
    Elsewhere a member's loopback address names *our* host: a member that announced
    ``/ip4/127.0.0.1/tcp/6379`` had every other member connect to its own local port 6379
    (and speak libp2p's first bytes to whatever listens there). A name, or an address that
    does not parse, is left to the dial."""
    host = host_of(addr)
    if host is None:
        return True
    if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped is not None:
        host = host.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    if host.is_unspecified or host.is_multicast or host == _BROADCAST:
        return False
    return loopback or not host.is_loopback


def listens_on_loopback(listen: Sequence[str]) -> bool:
    """Whether one of these listen addresses is a loopback address (not the wildcard)."""
    return any((host := host_of(addr)) is not None and host.is_loopback for addr in listen)


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def tcp_target(addr: str) -> tuple[str, int] | None:
    """The IP address and TCP port an ``/ip4/A/tcp/P/..`` or ``/ip6/A/tcp/P/..`` multiaddr
    dials; None for any other (a name, another transport, one that does not parse)."""
    host = host_of(addr)
    parts = addr.split("/", 6)
    if host is None or len(parts) < 5 or parts[3] != "tcp" or not parts[4].isdigit():
        return None
    port = int(parts[4])
    return (str(host), port) if 0 < port < 65536 else None


def probe_targets(
    addrs: Sequence[str], networks: Sequence[IPNetwork]
) -> dict[int, tuple[str, int]]:
    """The far addresses of one peer to probe (see the module's text), by their place in
    ``addrs``: the first :data:`MOST_PROBED`, none unless there are two or more."""
    targets: dict[int, tuple[str, int]] = {}
    for i, addr in enumerate(addrs):
        if len(targets) == MOST_PROBED:
            break
        if not on_link(addr, networks) and (target := tcp_target(addr)) is not None:
            targets[i] = target
    return targets if len(targets) >= 2 else {}


def dial_plan(
    addrs: Sequence[str],
    networks: Sequence[IPNetwork],
    quick: float = ON_LINK_TIMEOUT,
    *,
    probed: Collection[int] = (),
    answered: Collection[int] = (),
) -> DialPlan:
    """How to dial ``addrs``, the addresses of one peer in their listed order, from a node
    whose own addresses are on ``networks``, ``probed`` of them asked for a connection and
    ``answered`` of those accepting one (see the module's text)."""
    near = [i for i, addr in enumerate(addrs) if on_link(addr, networks)]
    far = [i for i in range(len(addrs)) if i not in near]
    silent: list[int] = []
    if answered:
        first = [i for i in far if i in answered]
        rest = [i for i in far if i not in probed]
        silent = [i for i in far if i in probed and i not in answered]
        far = [*first, *rest]
    if near and far:
        near_first = tuple(Attempt(i, quick) for i in near)
    else:
        near_first = tuple(Attempt(i) for i in near)
    cut_short = near if near and far else []
    return DialPlan(
        (*near_first, *(Attempt(i) for i in far), *(Attempt(i, quick) for i in silent)),
        tuple(Attempt(i) for i in (*cut_short, *silent)),
    )
