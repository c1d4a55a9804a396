"""Martian prefixes: destinations no Babel Update may carry. Pure.

The list is babeld's (``martian_prefix`` in its ``util.c``, 1.14), written out here as
prefixes: an Update whose prefix (or RFC 9079 source prefix) lies inside one of them is
refused on receipt, counted, never installed and so never announced again, and we never
originate one.

- IPv6: multicast ``ff00::/8``, link-local ``fe80::/10``, the unspecified ``::/128`` and
  loopback ``::1/128``, and anything inside ``::ffff:0:0/96`` (IPv4-mapped: babeld keeps
  IPv4 routes in that form, so such an IPv6 prefix would stand for an IPv4 one);
- IPv4: ``0.0.0.0/8`` ("this network", the unspecified address among it), loopback
  ``127.0.0.0/8``, multicast ``224.0.0.0/4`` and the limited broadcast
  ``255.255.255.255/32``.

A prefix that merely *covers* a martian range (a default route, ``fc00::/7``) is no
martian: it does not claim the range more than its neighbours in it.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Final

from meshd.babel.sources import IPNetwork

MARTIANS_V6: Final = (
    IPv6Network("ff00::/8"),
    IPv6Network("fe80::/10"),
    IPv6Network("::/128"),
    IPv6Network("::1/128"),
    IPv6Network("::ffff:0:0/96"),
)
MARTIANS_V4: Final = (
    IPv4Network("0.0.0.0/8"),
    IPv4Network("127.0.0.0/8"),
    IPv4Network("224.0.0.0/4"),
    IPv4Network("255.255.255.255/32"),
)


def martian(prefix: IPNetwork | None) -> bool:
    """Whether ``prefix`` lies inside a martian range (None, no source prefix: no)."""
    if prefix is None:
        return False
    if isinstance(prefix, IPv6Network):
        return any(prefix.subnet_of(m) for m in MARTIANS_V6)
    return any(prefix.subnet_of(m) for m in MARTIANS_V4)
