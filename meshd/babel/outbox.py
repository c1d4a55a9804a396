"""What waits to be sent, per destination, and how it is packed into datagrams.

The core does not send messages one by one. Everything bound for one destination (an
interface's multicast group, or one neighbour on it) waits in one :class:`Outgoing`: TLVs
(Hellos, IHUs, requests, Acks) and the route keys to announce there, with a deadline, the
earliest any of them asked for. Triggered messages are given a little jitter so that
several share a datagram. When the deadline comes the core turns the keys into Updates
(saying what it announces at that moment) and :func:`pack` fills datagrams up to the
interface's MTU: the TLVs first, then the Updates, prefix-compressed by
:func:`meshd.babel.expand.build_updates`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from meshd.babel.codec import HEADER, encode_packet, encode_tlv
from meshd.babel.expand import Route, build_updates
from meshd.babel.neighbours import IPAddress
from meshd.babel.packet import Packet, Tlv
from meshd.babel.sources import RouteKey


@dataclass(slots=True)
class Outgoing:
    """What waits to go to one destination: TLVs, and route keys to announce when sent.

    A key maps to True when, if we have nothing to announce there (no route, filter, split
    horizon), a retraction is to be sent instead.
    """

    deadline: float
    tlvs: list[Tlv] = field(default_factory=list)
    routes: dict[RouteKey, bool] = field(default_factory=dict)


class Outbox:
    """The :class:`Outgoing` of every ``(interface, destination)``, in the order queued."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, IPAddress], Outgoing] = {}

    def to(self, interface: str, destination: IPAddress, deadline: float) -> Outgoing:
        """What waits for a destination, now due no later than ``deadline``."""
        outgoing = self._waiting.get((interface, destination))
        if outgoing is None:
            outgoing = self._waiting[(interface, destination)] = Outgoing(deadline)
        outgoing.deadline = min(outgoing.deadline, deadline)
        return outgoing

    def queue(self, interface: str, destination: IPAddress, now: float, *tlvs: Tlv) -> None:
        """TLVs to send at once (with whatever else waits for that destination)."""
        self.to(interface, destination, now).tlvs.extend(tlvs)

    def forget(self, interface: str, destination: IPAddress) -> None:
        """Drop what waits for a destination (a neighbour that is gone)."""
        self._waiting.pop((interface, destination), None)

    def deadlines(self) -> list[float]:
        return [outgoing.deadline for outgoing in self._waiting.values()]

    def take_due(self, now: float) -> list[tuple[str, IPAddress, Outgoing]]:
        """Remove and return what is due by ``now``: ``(interface, destination, outgoing)``."""
        due = [name for name, outgoing in self._waiting.items() if outgoing.deadline <= now]
        return [
            (interface, destination, self._waiting.pop((interface, destination)))
            for interface, destination in due
        ]


def pack(tlvs: list[Tlv], routes: list[Route], *, mtu: int, ipv4_via_ipv6: bool) -> Iterator[bytes]:
    """Pack TLVs, then Updates for ``routes``, into datagrams of at most ``mtu`` bytes.

    With ``ipv4_via_ipv6`` IPv4 routes go with an IPv6 next hop (RFC 9229, AE 4).
    """
    budget = mtu - HEADER.size
    body: list[Tlv] = []
    size = 0
    for tlv in tlvs:
        length = len(encode_tlv(tlv))
        if body and size + length > budget:
            yield encode_packet(Packet(tuple(body)))
            body, size = [], 0
        body.append(tlv)
        size += length
    remaining = sorted(
        routes,
        key=lambda r: (r.prefix.version, r.prefix.network_address.packed, r.prefix.prefixlen),
    )
    guess = 32
    while remaining:
        count, chunk, length = _fit(remaining, budget - size, guess, via_ipv6=ipv4_via_ipv6)
        if count == 0:
            if body:
                yield encode_packet(Packet(tuple(body)))
                body, size = [], 0
                continue
            count, chunk = 1, build_updates(remaining[:1], ipv4_via_ipv6=ipv4_via_ipv6)
            length = _size(chunk)  # alone and still too big: sent anyway, the MTU decides
        body.extend(chunk)
        size += length
        remaining = remaining[count:]
        guess = count
        if remaining:
            yield encode_packet(Packet(tuple(body)))
            body, size = [], 0
    if body:
        yield encode_packet(Packet(tuple(body)))


def _size(tlvs: list[Tlv]) -> int:
    return sum(len(encode_tlv(tlv)) for tlv in tlvs)


def _fit(
    routes: list[Route], budget: int, guess: int, *, via_ipv6: bool
) -> tuple[int, list[Tlv], int]:
    """How many routes from the head of ``routes`` fit in ``budget`` bytes of Updates.

    Returns the count, their TLVs and their size (0, [], 0 if not even one fits). Prefix
    compression makes sizes not quite additive, so counts are tried: doubling from
    ``guess`` (what fitted the previous packet) until one does not fit, then bisecting.
    Each try costs one ``build_updates`` of at most a packet's worth of routes.
    """
    fits, best, best_size = 0, [], 0
    too_many = len(routes) + 1
    count = max(1, min(guess, len(routes)))
    while True:
        chunk = build_updates(routes[:count], ipv4_via_ipv6=via_ipv6)
        length = _size(chunk)
        if length <= budget:
            fits, best, best_size = count, chunk, length
        else:
            too_many = count
        if too_many - fits <= 1:
            return fits, best, best_size
        growing = too_many > len(routes)
        count = min(2 * count, len(routes)) if growing else (fits + too_many) // 2
