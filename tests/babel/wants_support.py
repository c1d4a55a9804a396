"""Members for :class:`meshd.daemon.babel_wants.Wants`, from tables written by hand."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from meshd.babel.neighbours import IPAddress
from meshd.babel.sources import IPNetwork


@dataclass(frozen=True, eq=False)
class _Member:
    node_key: bytes


@dataclass(frozen=True)
class _Origins:
    nodes: Mapping[bytes, bytes]


@dataclass(frozen=True)
class WantsMembers:
    """What :class:`~meshd.daemon.babel_wants.Members` asks for."""

    member_of_overlay: Mapping[IPNetwork, _Member]
    peers: Mapping[ipaddress.IPv6Address, _Member]
    origins: _Origins


def members_of(
    address_of: Mapping[IPNetwork, IPAddress], router_ids: Mapping[IPAddress, bytes]
) -> WantsMembers:
    """Each member's overlay /128 -> link-local address, and link-local -> router-id (its
    node key here too)."""
    by_address = {a: _Member(router_ids.get(a, a.packed)) for a in address_of.values()}
    return WantsMembers(
        {p: by_address[a] for p, a in address_of.items()},
        by_address,  # type: ignore[arg-type]
        _Origins({rid: rid for rid in router_ids.values()}),
    )
