"""Both ends of a relayed pair use the same relay (pure).

Babel's selected routes become WireGuard allowed-ips, and allowed-ips are also WireGuard's
receive filter: a packet from member B is accepted only on the peer that holds B's overlay
/128. When A and B reach each other through a relay, A must therefore put B's /128 on the
very relay B sends through, and B must put A's on the relay A sends through: **the same
relay at both ends**, or every packet is dropped on arrival although both routes look fine.

Babel chooses each end's route alone: the smallest metric, with hysteresis for the route it
has. With two relays whose metrics differ only by the RTT penalty (a loaded machine, a
restart that brings routes back in another order), A can keep the route via R1 while B keeps
the one via R2, for good. So where Babel's best route to a member's overlay /128 goes
through a relay, Babel selects by a rule both ends compute alike (the core's ``relay_rank``
hook, :func:`meshd.babel.routes.choose`): among the relays that offer a feasible route with a
finite metric (Babel's own loop-freedom condition), the one whose hash of
``sorted(A, B) + R`` (WireGuard keys) is lowest. It depends on the pair and the set of relays
only, not on metrics or on which announcement came first; different pairs spread over the
relays. A direct route (the member is its own next hop) is chosen as before, by metric; so
is a route to a prefix that is no member's overlay /128 (site routes).
"""

from __future__ import annotations

import hashlib

from meshd.trust.keys import WgKey


def pair_rank(own: WgKey, other: WgKey, relay: WgKey) -> bytes:
    """The relay's rank for the pair (lowest first): the same at both ends of the pair."""
    low, high = sorted((bytes(own), bytes(other)))
    return hashlib.sha256(low + high + bytes(relay)).digest()
