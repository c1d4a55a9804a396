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
* a direct path that never comes up (UDP blocked between the two, two symmetric NATs) is
  not waited for: a peer with no handshake at all ``attempt`` seconds after it appeared
  (WireGuard's first initiation went unanswered) is released at once, and the relay Babel
  chose takes over then, not after the whole ``period``. Nothing direct can be dropped by
  that: WireGuard sends no data without a session. When the direct path comes up later,
  Babel hears the peer's Hellos on its own link-local address (always on its own peer),
  prefers the direct route, and the overlay /128 moves back: the direct path is taken back;
* a peer the punching service says the relay may carry at once (``released``: its direct
  path is hopeless, two NATs that cannot be punched, :func:`meshd.mesh.punch.direct_hopeless`)
  is not held at all, and not waited for ``attempt`` either;
* with no handshake information (``answered`` None), the hold lasts ``period``.

The rule is the same at both ends: the joiner (or a restarted daemon) holds every member it
finds, and every member holds the joiner, so each sends straight to the other and accepts what
the other sends. A peer removed and programmed again (a member that expired and announced
again) is new again. Time is passed in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from meshd.membership import Member
from meshd.trust.keys import WgKey
from meshd.wg.model import IPNetwork

#: Hello intervals a new direct neighbour is held: Babel brings a link up in about two (two
#: of the last three Hellos, an IHU, then the member's own Update), so two are to spare.
HOLD_HELLOS = 4
#: A floor in seconds: a member learns of a joiner, and programs its peer, a second or more
#: before the joiner's Babel starts (the joiner's libp2p import comes in between).
MIN_HOLD = 5.0
#: Seconds a new peer's first handshake is given before its direct attempt counts as failed:
#: a first initiation goes out at once (a persistent keepalive set with the endpoint, or the
#: re-creation of :mod:`meshd.mesh.handshake` within 1 s) and is answered within a round
#: trip; WireGuard's own retry would come only 5 s later.
DIRECT_ATTEMPT = 2.0


def hold_down_period(hello_interval: float) -> float:
    """Seconds a new direct neighbour is held, for a Babel Hello interval."""
    return max(HOLD_HELLOS * hello_interval, MIN_HOLD)


def routed_directly(
    peers: Mapping[WgKey, Member], extra: Mapping[WgKey, Sequence[IPNetwork]]
) -> set[WgKey]:
    """The peers (WireGuard keys) whose overlay /128 ``extra`` (Babel's routes by next-hop
    peer) gives to the peer itself: Babel routes those members directly. A member's /128 is
    the interned one (:func:`meshd.addressing.host_prefix`), not a network made a member
    each round: 0.2 ms a round at 1,000 members, where making them took 8.6."""
    return {
        wg_key
        for wg_key, member in peers.items()
        if wg_key in extra and member.overlay_prefix in extra[wg_key]
    }


class HoldDown:
    """Which peers' overlay /128 is held on the peer itself; see the module documentation."""

    def __init__(self, period: float, attempt: float = DIRECT_ATTEMPT) -> None:
        if period < 0 or attempt < 0:
            raise ValueError(f"hold-down period {period} or attempt {attempt} is negative")
        self.period = period
        self.attempt = min(attempt, period)
        # The peers of the last round (the members' own keys: 8 bytes a peer), and when
        # each appeared while its hold can still be in force: one whose hold is over for good
        # (Babel routed it directly, or ``period`` passed) is only present, not a table
        # entry and a set's (~70 bytes a peer where every path works).
        self._present: tuple[WgKey, ...] = ()
        self._appeared: dict[WgKey, float] = {}
        self._most = 0  # the most entries it held since it was last made
        self._held: frozenset[WgKey] = frozenset()
        self._waiting: frozenset[WgKey] = frozenset()  # held, no handshake yet

    def update(
        self,
        now: float,
        peers: Collection[WgKey],
        direct: Collection[WgKey],
        answered: Collection[WgKey] | None = None,
        released: Collection[WgKey] = (),
    ) -> frozenset[WgKey]:
        """Take in this round's peers (WireGuard keys), those Babel routes directly now,
        (``answered``) those with a handshake on the device and (``released``) those whose
        direct path is hopeless; return the held ones. A peer missing from ``peers`` is
        forgotten."""
        before = set(self._present)
        appearing = self._appeared
        for gone in appearing.keys() - set(peers):
            del appearing[gone]
        held: set[WgKey] = set()
        for key in peers:
            appeared = appearing.get(key)
            if appeared is None:
                if key in before:
                    continue  # its hold is over for good
                appeared = appearing[key] = now
            if key in direct or now >= appeared + self.period:
                del appearing[key]  # over for good (Babel routes it directly, or it ended)
            elif key in released and (answered is None or key not in answered):
                continue  # hopeless: the relay at once
            elif answered is not None and key not in answered and now >= appeared + self.attempt:
                continue  # the direct attempt failed: the relay now
            else:
                held.add(key)
        if self._most and len(appearing) <= self._most // 4:
            # A table keeps its size when entries leave it: one that held every peer at a
            # start (~37 bytes a member at 1,000) is made again for the holds still in force
            # once they are a quarter of the most it held (not copied every round).
            self._appeared = dict(appearing)
            self._most = len(appearing)
        else:
            self._most = max(self._most, len(appearing))
        self._present = tuple(peers)
        self._held = frozenset(held)
        self._waiting = frozenset(held - set(answered)) if answered is not None else frozenset()
        return self._held

    def deadline(self) -> float | None:
        """When the first hold in force (as of the last :meth:`update`) ends, if any."""
        ends = [self._appeared[key] + self.period for key in self._held]
        ends += [self._appeared[key] + self.attempt for key in self._waiting]
        return min(ends) if ends else None
