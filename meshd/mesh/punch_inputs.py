"""What moves a direct path from outside its clock (pure): the peer's new candidates, our
own new underlay, a punch request, a direct path seen falling silent.

:class:`PathInputs` is the part of :class:`meshd.mesh.punch.DirectPath` that takes them
(the path is one class; these are its inputs besides ``update``'s clock and WireGuard's
report, in a module of their own): each ranks the candidates again or starts a round, by
the rules in docs/nat.md. The state they act on is the path's own (its slots and shared
fields: :mod:`meshd.mesh.punch_parts`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from meshd.mesh.candidates import Candidate, Reason, check_endpoint
from meshd.mesh.punch_parts import (
    Bits,
    Common,
    Ranked,
    RareField,
    Rounds,
    Settings,
    Side,
    common,
    listed,
    shared_settings,
)

#: A punch request starts no round while a direct handshake is this fresh, and brings at
#: most this many hints (its round at most every ``punch_interval``: meshd.mesh.punch).
PUNCH_FRESH = 15.0
MAX_HINTS = 2


class PathInputs:
    """A direct path's inputs besides its clock (see the module)."""

    if not TYPE_CHECKING:  # no storage of its own: the path's slots (mypy reads them below)
        __slots__ = ()
    #: The last punch request: when, and its hints, kept for its round (a rare field).
    _punched: RareField[tuple[float, tuple[Candidate, ...]]] = RareField()
    #: Whether the path is hopeless (bit 0), and for which of our sides (symmetric,
    #: public: 0-3, the bits above); -1 not worked out since the candidates changed.
    _hopeless = Bits(4, 4, offset=1)

    if TYPE_CHECKING:  # the path's own (meshd.mesh.punch.DirectPath)
        _ranked: Ranked
        _rounds: Rounds
        _common: Common
        _last_handshake: float | None

        @property
        def _settings(self) -> Settings: ...

        @property
        def _side(self) -> Side: ...

        def _rank(self, candidates: Iterable[Candidate]) -> Ranked: ...

        def _ordered(self, candidates: Iterable[Candidate]) -> Ranked: ...

        def _start_round(
            self,
            now: float,
            hints: Sequence[Candidate],
            kept: Candidate | None = None,
            failed: int | None = None,
        ) -> None: ...

    def set_candidates(self, candidates: Iterable[Candidate], now: float) -> None:
        """The peer announced (possibly) new candidates: without a direct path, try them now
        (with the hints of a punch request less than ``punch_interval`` ago)."""
        ranked = self._rank(candidates)
        if ranked == self._ranked:
            return
        self._ranked = ranked
        self._hopeless = -1
        if self._rounds is not None:  # not direct: its rounds start again, none failed
            # A punch's hints stay for its round: the peer is sending to us now.
            at, hints = self._punched
            punched = now - at < self._settings.punch_interval
            self._start_round(now, hints if punched else (), failed=0)

    def set_underlay(
        self,
        families: frozenset[int],
        networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
        now: float,
    ) -> None:
        """Our own address families or attached networks changed (another network, an
        address gained or lost): the candidates ranked under them (a peer on the network we
        joined first). Without a direct path, a round starts now only if the first to try
        is now an address on a network we are attached to (the peer is on our LAN): a
        flapping link restarts the rounds of the members on its LANs, not of every member,
        whose rounds keep their spacing. A direct path stays: if the change broke it, its
        silence says so."""
        old = self._settings
        families, networks = frozenset(families), tuple(networks)
        if (old.families, old.networks) == (families, networks):
            return
        settings = shared_settings(
            families,
            networks,
            old.overlay,
            old.attempt,
            old.stale_after,
            old.retry_base,
            old.retry_max,
            old.punch_interval,
        )
        self._common = common(settings, self._side)
        before = self._ranked
        self._ranked = ranked = self._ordered(listed(before))
        self._hopeless = -1
        first = next(iter(listed(ranked)), None)
        if (
            self._rounds is not None
            and first is not None
            and first != next(iter(listed(before)), None)
            and first.kind == "local"
            and any(
                first.address in net for net in networks if net.version == first.address.version
            )
        ):
            self._start_round(now, (), failed=0)

    def punch(self, now: float, hints: Iterable[object] = ()) -> Reason | Literal["busy"] | None:
        """A punch request: the peer is sending to us now. Start a round (with up to
        ``MAX_HINTS`` valid hints) unless one started less than ``punch_interval`` ago or a
        direct handshake is fresh. None if started, else why not (for counting)."""
        if now - self._punched[0] < self._settings.punch_interval:
            return "busy"
        hs = self._last_handshake
        if self._rounds is None and hs is not None and 0 <= now - hs <= PUNCH_FRESH:
            return "busy"
        taken: list[Candidate] = []
        refused: Reason | None = None
        for n, text in enumerate(hints):
            if n >= MAX_HINTS:
                refused = "oversized"
                break
            checked = check_endpoint(text, self._settings.overlay)
            if isinstance(checked, str):
                refused = checked
                continue
            taken.append(Candidate("hint", *checked))
        self._punched = (now, self._punched[1])
        self._start_round(now, taken, failed=0)
        return refused

    def lost(self, now: float) -> bool:
        """The caller saw a direct path fall silent (no packet from the peer for longer
        than its keepalives allow, while WireGuard's handshake is not stale yet: a NAT
        mapping changed). Start a round now; False if the path is not direct."""
        if self._rounds is not None:
            return False
        self._start_round(now, ())
        return True
