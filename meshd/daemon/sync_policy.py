"""When to run anti-entropy, and with whom (pure: ``now`` is given).

* a sync with every peer that connects (a member, or a peer that may be one we have not heard
  of yet) unless it is revoked;
* then one random connected member every ``interval`` seconds;
* again at once with the same peer while a sync brings something new, at most MAX_RESYNC in a
  row;
* never two syncs with one peer at once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

MAX_RESYNC: Final = 4  # syncs in a row with one peer while each brings something new


@dataclass(slots=True)
class SyncPolicy:
    interval: float
    random: random.Random = field(default_factory=random.Random)
    _running: set[str] = field(default_factory=set)
    _next: float | None = None

    def start(self, peer: str) -> bool:
        """Whether a sync with ``peer`` may start now (none with it is running); if so, it
        counts as running until :meth:`done`."""
        if peer in self._running:
            return False
        self._running.add(peer)
        return True

    def again(self, rounds: int, new: int | None) -> bool:
        """After ``rounds`` syncs in a row that brought ``new`` records the last time (None: it
        failed): sync again at once?"""
        return new is not None and new > 0 and rounds < MAX_RESYNC

    def done(self, peer: str) -> None:
        self._running.discard(peer)

    def periodic(self, now: float, members: Sequence[str]) -> str | None:
        """The connected member to sync with now, if the periodic sync is due."""
        if self._next is not None and now < self._next:
            return None
        self._next = now + self.interval
        return self.random.choice(list(members)) if members else None

    def next_due(self, now: float) -> float:
        """Seconds until the periodic sync is due."""
        return 0.0 if self._next is None else max(0.0, self._next - now)
