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

A name (``/dns/..``) is not on link (its addresses are known only once it is looked up).
Nothing here needs the addresses to be valid: one that does not parse keeps its place.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Seconds an on-link address is dialled for while other addresses of its peer follow.
#: A dial over a LAN takes 0.25-0.5 s in py-libp2p (a TCP, Noise and Yamux handshake);
#: three times that leaves a loaded machine room.
ON_LINK_TIMEOUT = 1.5


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


def dial_plan(
    addrs: Sequence[str], networks: Sequence[IPNetwork], quick: float = ON_LINK_TIMEOUT
) -> DialPlan:
    """How to dial ``addrs``, the addresses of one peer in their listed order, from a node
    whose own addresses are on ``networks`` (see the module's text)."""
    near = [i for i, addr in enumerate(addrs) if on_link(addr, networks)]
    far = [i for i in range(len(addrs)) if i not in near]
    if not near or not far:
        return DialPlan(tuple(Attempt(i) for i in (*near, *far)))
    return DialPlan(
        (*(Attempt(i, quick) for i in near), *(Attempt(i) for i in far)),
        tuple(Attempt(i) for i in near),
    )
