"""New direct neighbours keep their overlay address on their own WireGuard peer (pure).

Babel's selected routes become WireGuard allowed-ips (:func:`meshd.mesh.desired.desired_peers`),
and allowed-ips are also WireGuard's receive filter. When a member joins (or a daemon starts),
Babel at one end may route the other through a relay (a member that heard it first) for a
Hello or two while the other end already sends directly; moving the member's overlay /128 to
the relay's peer would make WireGuard drop that direct traffic. So:

* a peer that appears (to this process, once Babel runs) is *held*: its overlay /128 stays on
  the peer itself, whatever Babel says, for ``period`` seconds;
* unless Babel routes it directly first: from then on the hold is over for good and Babel's
  choice is followed, so a direct path heard and then lost moves to a relay at once;
* a direct path that never comes up (UDP blocked between the two, say) is held for
  ``period`` only; then the relay Babel chose takes over.

The rule is the same at both ends: the joiner (or a restarted daemon) holds every member it
finds, and every member holds the joiner, so each sends straight to the other and accepts what
the other sends. A peer removed and programmed again (a member that expired and announced
again) is new again. Time is passed in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence

from meshd.membership import Member
from meshd.wg.model import IPNetwork

#: Hello intervals a new direct neighbour is held: Babel brings a link up in about two (two
#: of the last three Hellos, an IHU, then the member's own Update), so two are to spare.
HOLD_HELLOS = 4
#: A floor in seconds: a member learns of a joiner, and programs its peer, a second or more
#: before the joiner's Babel starts (the joiner's libp2p import comes in between).
MIN_HOLD = 5.0


def hold_down_period(hello_interval: float) -> float:
    """Seconds a new direct neighbour is held, for a Babel Hello interval."""
    return max(HOLD_HELLOS * hello_interval, MIN_HOLD)


def routed_directly(
    peers: Mapping[bytes, Member], extra: Mapping[bytes, Sequence[IPNetwork]]
) -> set[bytes]:
    """The peers (WireGuard keys) whose overlay /128 ``extra`` (Babel's routes by next-hop
    peer) gives to the peer itself: Babel routes those members directly."""
    return {
        wg_key
        for wg_key, member in peers.items()
        if ipaddress.IPv6Network((member.overlay, 128)) in extra.get(wg_key, ())
    }


class HoldDown:
    """Which peers' overlay /128 is held on the peer itself; see the module documentation."""

    def __init__(self, period: float) -> None:
        if period < 0:
            raise ValueError(f"hold-down period {period} is negative")
        self.period = period
        self._appeared: dict[bytes, float] = {}
        self._confirmed: set[bytes] = set()
        self._held: frozenset[bytes] = frozenset()

    def update(
        self, now: float, peers: Collection[bytes], direct: Collection[bytes]
    ) -> frozenset[bytes]:
        """Take in this round's peers (WireGuard keys) and those Babel routes directly now;
        return the held ones. A peer missing from ``peers`` is forgotten."""
        for gone in self._appeared.keys() - set(peers):
            del self._appeared[gone]
            self._confirmed.discard(gone)
        held: set[bytes] = set()
        for key in peers:
            appeared = self._appeared.setdefault(key, now)
            if key in direct:
                self._confirmed.add(key)
            elif key not in self._confirmed and now < appeared + self.period:
                held.add(key)
        self._held = frozenset(held)
        return self._held

    def deadline(self) -> float | None:
        """When the first hold in force (as of the last :meth:`update`) ends, if any."""
        ends = [self._appeared[key] + self.period for key in self._held]
        return min(ends) if ends else None
