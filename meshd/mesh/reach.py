"""What a direct path can be, and what it needs (pure): whether any of a peer's candidates
can answer a first initiation (:func:`direct_hopeless`), the persistent keepalive a path
needs (:func:`keepalive_for`), and how a step's per-peer events are logged
(:func:`summary`). :class:`meshd.mesh.punch.DirectPath` follows these rules; see its module
and docs/nat.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal

from meshd.mesh.candidates import Candidate, is_public

Path = Literal["trying", "direct", "relay"]

#: Persistent keepalive while a NAT is in the way (below every common UDP mapping timeout).
KEEPALIVE = 25
#: A step's per-peer log lines beyond this many are counted in one line (:func:`summary`).
NAMED = 3


def summary(events: Sequence[tuple[str, str]], named: int = NAMED) -> tuple[list[str], list[str]]:
    """What one step logs of its per-peer events (``(kind, line)`` in order, e.g.
    ``("direct", "h1: direct at 10.0.0.1:51820")``): ``(info, debug)`` lines.

    At most ``named`` + 1 events are each an INFO line. More (a start from a large store,
    a mass change) make ``named`` INFO lines and one that counts the rest by kind
    (``"9997 more members: 9990 trying, 7 direct"``); the rest are DEBUG lines, one each.
    """
    if len(events) <= named + 1:
        return [line for _, line in events], []
    rest = events[named:]
    kinds: dict[str, int] = {}
    for kind, _ in rest:
        kinds[kind] = kinds.get(kind, 0) + 1
    more = more_line(len(rest), kinds)
    return [*(line for _, line in events[:named]), more], [line for _, line in rest]


def more_line(count: int, kinds: dict[str, int]) -> str:
    """The INFO line that stands for ``count`` events past the named ones, by kind."""
    counted = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    return f"{count} more members: {counted} (each at DEBUG; every path in `meshd peers`)"


def _answers(
    c: Candidate, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    """Whether a peer's own address answers a first initiation: public, or on one of our
    ``networks`` (its address read from its text once)."""
    address = c.address
    return is_public(address) or any(
        address in net for net in networks if net.version == address.version
    )


def direct_hopeless(
    candidates: Iterable[Candidate],
    *,
    symmetric: bool,
    public: bool,
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> bool:
    """Whether no candidate of the peer can answer a first initiation: only a punch round
    (with the hints of a member that sees both sides) could still find a direct path, or
    nothing can.

    False when we hold a public address or a configured endpoint (``public``: the peer's
    own initiation reaches us), or the peer offers a ``configured`` endpoint, a ``local``
    address of its own that is public or on one of our ``networks`` (same LAN), or a
    ``reflexive`` one while our NAT is not known to be ``symmetric``. Otherwise the peer is
    behind a NAT that lets in only what comes from where it sent to (port-restricted, the
    common kind), and it does not know where to send: its private addresses elsewhere
    cannot answer, and behind a symmetric NAT (a mapping per destination, as members see
    us) neither can its reflexive one, as our NAT gives our packets to it a port nobody
    has seen.
    """
    if public:
        return False
    for c in candidates:
        if c.kind == "configured":
            return False
        if c.kind == "reflexive" and not symmetric:
            return False
        if c.kind == "local" and _answers(c, networks):
            return False
    return True


def keepalive_for(
    path: Path,
    *,
    public: bool,
    behind_nat: bool,
    endpoint: str | None,
    candidates: Iterable[Candidate],
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> int:
    """The persistent keepalive a path needs (seconds, 0 for none): only where a NAT must be
    kept open, or an initiation sent at once.

    * ``trying``: ``KEEPALIVE`` (set with the endpoint, it makes WireGuard initiate now, and
      it holds open whatever NAT the attempt goes through);
    * ``relay``: 0 (no direct traffic to keep);
    * ``direct``: 0 only when no NAT is in the way on either side: we hold a public address
      or a configured endpoint (``public``) and no member sees us behind a NAT, and the peer
      is at an ``endpoint`` it offers as its own (``configured``, a ``local`` address that is
      public or on one of our ``networks``) and announces no reflexive one. Otherwise (a
      mapping WireGuard roamed to, a punched path, or we do not know) ``KEEPALIVE``.

    Babel's Hellos reach every working peer every few seconds, and WireGuard sends a
    keepalive only when nothing else went out for its interval; this is what a path keeps
    when that traffic stops, and what is programmed on each peer.
    """
    if path == "trying":
        return KEEPALIVE
    if path == "relay":
        return 0
    if behind_nat or not public:
        return KEEPALIVE
    own = False
    for c in candidates:
        if c.kind == "reflexive":
            return KEEPALIVE
        if c.endpoint == endpoint and (c.kind == "configured" or _answers(c, networks)):
            own = True
    return 0 if own else KEEPALIVE
