"""Which mesh neighbours Babel paces at rest (pure).

A relay has every member as a Babel neighbour, and most members need nothing of it most of
the time: their direct paths cover the others. Babel's ``unicast-peers`` interface sends a
neighbour at rest every ``REST_PACE``-th Hello (with its IHU) and full update only, and says
so in the interval fields (docs/babel.md, "Neighbours at rest"): 32 s Hellos and 128 s
updates at the default 4 s Hellos, an eighth of the bytes. The core keeps a neighbour that
asked us for a route lately out of rest whatever this rule says; :func:`at_rest` is the
daemon's side of the verdict:

- a **gateway** paces no one, and no one paces a gateway: its site routes must fail over
  within a few Hellos, as before;
- a member that **wants a route through a relay** (a /128 no direct path covers and that
  is not backed off, :attr:`meshd.daemon.babel_wants.Wants.active`) paces no one: the relay
  it is routed through must be seen failing within a few Hellos;
- everyone else is at rest: a relay towards the members that ask it nothing, a member
  towards the relays while every direct path works, the relays among themselves.

A neighbour at rest that fails is noticed in a few of its Hellos (about two minutes), which
costs nothing while nothing goes through it; one that comes back is up again in a round
trip (the quick Hellos of an unproven link).
"""

from __future__ import annotations

from typing import Final

from meshd.babel.config import MAX_INTERVAL
from meshd.babel.interfaces import centiseconds
from meshd.babel.neighbours import IPAddress
from meshd.daemon.babel_peers import MeshMembers

REST_PACE: Final = 8
"""A neighbour at rest gets every this-many-th Hello and full update (32 s and 128 s at the
default 4 s Hellos; Babel's 16-bit intervals cap it to what fits 655.35 s)."""


def at_rest(view: MeshMembers, address: IPAddress, *, wanting: bool) -> bool:
    """Whether the mesh neighbour ``address`` may be paced at rest (see the module)."""
    return not (view.gateway or wanting or address in view.gateways)


def rest_pace(hello_interval: float) -> int:
    """``REST_PACE``, less where the update interval (4 Hellos) times it would not fit
    Babel's 16-bit centisecond interval fields."""
    fits = MAX_INTERVAL // centiseconds(4 * hello_interval)
    return max(1, min(REST_PACE, fits))
