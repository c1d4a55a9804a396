"""A member back on the mesh whose WireGuard session stays silent: shake hands anew (pure).

When a member's daemon restarts, its WireGuard device starts with no session, while ours
still holds the one we had with it: WireGuard keeps sending on that session, the member
drops every packet (it knows none of its keys), and WireGuard starts a new handshake only
after 15 s of sending without hearing back (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT). A public
member can end that itself by initiating to us, but not to a member behind a NAT that maps
every destination to its own port: only that member's own initiation gets through.

The sign is cheap to see: the member's libp2p connection comes back (a daemon that
restarted is dialled, or dials, again) while our WireGuard has received nothing from it for
longer than a working session allows (Babel's Hellos reach a peer we speak Babel with every
Hello interval). Then the peer is re-created, which drops the dead session and, with its
persistent keepalive, makes WireGuard initiate at once. The caller
(:mod:`meshd.daemon.punch_restarts`) has watched only a member connected *again* whose
session is older than the last look that saw it connected (``doubted``), and gives its
session's silence only where Hellos flow on it (elsewhere silence is no sign: an idle
session is silent).
:class:`Reconnects` decides:

* a member whose connection is new (not connected at the last look) is watched for
  ``window`` seconds;
* while watched, once its session (it has one: a handshake on our device) has been silent
  for ``silence`` seconds, it is due, and no longer watched;
* a member is due at most once per ``interval`` seconds, so a connection that flaps cannot
  make us re-create its peer over and over.

A member with no session yet is left to the first-handshake rules. Time is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

#: Seconds a member whose connection came back is watched for a silent session.
WINDOW = 10.0
#: A member is re-created at most this often.
INTERVAL = 10.0


def silence_for(hello_interval: float | None) -> float:
    """How long a working session may be silent: one Babel Hello interval and a second
    (a Hello reaches every peer that works), at least 2 s; 5 s without Babel."""
    if hello_interval is None:
        return 5.0
    return max(2.0, hello_interval + 1.0)


class Reconnects(Generic[K]):
    """Which members to shake hands with anew; see the module documentation."""

    def __init__(
        self, silence: float, *, window: float = WINDOW, interval: float = INTERVAL
    ) -> None:
        if silence <= 0 or window <= 0 or interval < 0:
            raise ValueError("silence and window must be positive, interval not negative")
        self.silence = silence
        self.window = window
        self.interval = interval
        self._connected: set[K] | None = None
        self._watched: dict[K, float] = {}  # member -> when its connection came back
        self._done: dict[K, float] = {}  # member -> when it was last due

    def update(
        self,
        now: float,
        connected: Collection[K],
        heard: Mapping[K, float | None],
        doubted: Collection[K] | None = None,
    ) -> list[K]:
        """Take the members connected now and, per member, when our WireGuard last heard
        from it (None: no session); return the members due now. ``doubted``: of the members
        whose connection is new, those to watch (None: every one).

        At the first call every connected member is taken as connected before: a daemon
        that starts has no session to doubt.
        """
        now_connected = set(connected)
        if self._connected is not None:
            for member in now_connected - self._connected:
                if doubted is None or member in doubted:
                    self._watched[member] = now
        self._connected = now_connected
        due: list[K] = []
        for member, since in list(self._watched.items()):
            if now - since > self.window or member not in now_connected:
                del self._watched[member]
                continue
            last = heard.get(member)
            if last is None or now - last < self.silence:
                continue
            del self._watched[member]
            if now - self._done.get(member, -math.inf) < self.interval:
                continue
            self._done[member] = now
            due.append(member)
        for member in [m for m, at in self._done.items() if now - at >= self.interval]:
            del self._done[member]
        return sorted(due, key=repr)

    def forget(self, member: K) -> None:
        """A member that is no longer a peer."""
        self._watched.pop(member, None)
        self._done.pop(member, None)
        if self._connected is not None:
            self._connected.discard(member)
