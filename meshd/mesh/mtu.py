"""The WireGuard interface's MTU when ``--mtu`` is not given: derived from the underlay (pure).

Like wg-quick, from the interfaces our packets leave by: the smallest MTU among the
interfaces of the default routes (IPv4 and IPv6, main table), less WireGuard's 80 bytes over
IPv6 (40 of IPv6, 8 of UDP, 32 of WireGuard). Behind PPPoE (1492) that is 1412, where a fixed
1420 would have large packets fragmented or lost outside the tunnel. With no default route
(a LAN-only mesh, a lab), the interfaces that hold a global address; with none of those
either, a 1500-byte underlay is assumed.

Two bounds: at most :data:`CEILING` (1420), since the members across the internet sit behind
1500-byte paths however large the local link's frames (a jumbo-frame LAN's members set
``--mtu`` themselves); at least :data:`FLOOR` (1280), IPv6's minimum, under which the kernel
takes the interface's IPv6 addresses away (an underlay that small: packets are fragmented
outside the tunnel, and :class:`Derived` says so).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final

#: WireGuard's overhead over an IPv6 underlay: IPv6 40, UDP 8, WireGuard's header and tag 32.
OVERHEAD: Final = 80
#: The most a derived MTU is: a 1500-byte path less the overhead (the kernel's default).
CEILING: Final = 1420
#: The least: IPv6's minimum link MTU.
FLOOR: Final = 1280
#: The underlay's MTU assumed when no interface says.
ASSUMED: Final = 1500


@dataclass(frozen=True, slots=True)
class Derived:
    """The MTU to set and, for the log, where it came from (``too_small``: the underlay
    carries less than IPv6's minimum plus the overhead)."""

    mtu: int
    why: str
    too_small: bool = False


def derive_mtu(
    links: Mapping[str, int],
    default_links: Collection[str],
    address_links: Collection[str],
    exclude: Collection[str] = (),
) -> Derived:
    """The MTU from ``links`` (interface name -> its MTU), the interfaces of the default
    routes and those holding a global address, ``exclude`` left out (our own interface,
    ``lo``)."""
    for kind, names in (("default route", default_links), ("underlay", address_links)):
        found = sorted(
            (links[n], n) for n in set(names) if n in links and n not in exclude and links[n] > 0
        )
        if found:
            mtu, name = found[0]
            return _bounded(mtu, f"{name}'s {mtu} ({kind}) less {OVERHEAD}")
    return _bounded(ASSUMED, f"no underlay interface found: {ASSUMED} assumed, less {OVERHEAD}")


def _bounded(underlay: int, why: str) -> Derived:
    mtu = underlay - OVERHEAD
    if mtu > CEILING:
        return Derived(CEILING, f"{why}, at most {CEILING}")
    if mtu < FLOOR:
        return Derived(FLOOR, f"{why}, at least IPv6's {FLOOR}", too_small=True)
    return Derived(mtu, why)
