"""Routes announced on demand: which neighbour asked for which route, until when (pure).

On the WireGuard mesh a member's overlay /128 needs a Babel route only where no direct
path covers it (docs/babel.md, "Routes on demand"). A route the core's ``on_demand`` hook
names is therefore announced on that interface only to the neighbours that asked for it
with a Route Request (RFC 8966 3.8.1.1) within ``hold`` seconds: the answer, then every
full and triggered update while the interest lasts. The requester asks again every update
interval while it wants the route, so ``hold`` (3.5 update intervals, as a route's own
hold time) outlives two lost requests.

The state is bounded: only keys the hook names are kept (on the mesh, members' overlay
/128s), at most ``limit`` a neighbour (its interface's route budget), and a neighbour's
entries go with it. Whether a neighbour asks for anything at all (:meth:`Interest.asking`:
then it is never paced at rest) is O(1): the latest end of its interests is kept apart, and
so are the askers of each key (:meth:`Interest.askers`: a triggered update of a route on
demand goes to them, not to every neighbour of a relay to be dropped there).
"""

from __future__ import annotations

from meshd.babel.routes import NeighbourId
from meshd.babel.sources import RouteKey

HOLDS = 3.5
"""An interest lasts this many update intervals of its interface after a request."""


class Interest:
    """Which neighbour asked for which on-demand route, and until when."""

    def __init__(self) -> None:
        self._until: dict[NeighbourId, dict[RouteKey, float]] = {}
        self._latest: dict[NeighbourId, float] = {}
        """When the last of each neighbour's interests runs out."""
        self._askers: dict[RouteKey, dict[NeighbourId, float]] = {}
        """The same interests by key."""
        self.refused = 0
        """Requests not noted: the neighbour already held ``limit`` live interests."""

    def note(
        self, nid: NeighbourId, key: RouteKey, until: float, *, now: float, limit: int
    ) -> None:
        """``nid`` asked for ``key``: announce it there until ``until``."""
        keys = self._until.setdefault(nid, {})
        if key not in keys and len(keys) >= limit:
            for stale in [k for k, t in keys.items() if t <= now]:
                del keys[stale]
                self._unlink(stale, nid)
            if len(keys) >= limit:
                self.refused += 1
                return
        keys[key] = until
        self._askers.setdefault(key, {})[nid] = until
        self._latest[nid] = max(until, self._latest.get(nid, until))

    def _unlink(self, key: RouteKey, nid: NeighbourId) -> None:
        askers = self._askers.get(key)
        if askers is not None:
            askers.pop(nid, None)
            if not askers:
                del self._askers[key]

    def wants(self, nid: NeighbourId, key: RouteKey, now: float) -> bool:
        """Whether ``nid`` asked for ``key`` recently enough."""
        keys = self._until.get(nid)
        return keys is not None and keys.get(key, -1.0) > now

    def asked_by(self, nid: NeighbourId, now: float) -> list[RouteKey]:
        """The keys ``nid`` asked for recently enough."""
        keys = self._until.get(nid)
        return [k for k, t in keys.items() if t > now] if keys else []

    def askers(self, key: RouteKey, now: float) -> list[NeighbourId]:
        """The neighbours that asked for ``key`` recently enough."""
        askers = self._askers.get(key)
        return [n for n, t in askers.items() if t > now] if askers else []

    def asking(self, nid: NeighbourId, now: float) -> bool:
        """Whether ``nid`` asked for any route recently enough (it is busy, not at rest)."""
        return self._latest.get(nid, -1.0) > now

    def forget(self, nid: NeighbourId) -> None:
        """The neighbour is gone."""
        for key in self._until.pop(nid, {}):
            self._unlink(key, nid)
        self._latest.pop(nid, None)

    def expire(self, now: float) -> None:
        """Drop the interests that ran out."""
        for nid in list(self._until):
            keys = {k: t for k, t in self._until[nid].items() if t > now}
            if keys:
                self._until[nid] = keys
            else:
                del self._until[nid]
                self._latest.pop(nid, None)
        self._askers = {
            key: live
            for key, askers in self._askers.items()
            if (live := {n: t for n, t in askers.items() if t > now})
        }

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._until.values())
