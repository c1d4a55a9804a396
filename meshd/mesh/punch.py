"""How a member reaches another member's WireGuard directly, or falls back to a relay (pure).

WireGuard holds one endpoint per peer, so trying a peer's candidates means setting them in
turn. Per peer, a :class:`DirectPath` decides, from the clock and WireGuard's own report
(the peer's latest handshake and the endpoint it came from):

* **trying**: candidates in rank order (:func:`meshd.mesh.candidates.rank_for_us`), each for
  ``attempt`` seconds (WireGuard sends an initiation as soon as an endpoint and a persistent
  keepalive are set, and again after 5 s: two chances). The first that answers wins: any
  handshake newer than the moment the path was lost means the peer is reachable directly,
  and the endpoint WireGuard shows (the source of the peer's authenticated packets, which
  may be a mapping no candidate named) is where we settle. Once the first candidate has
  failed, traffic may go through a relay while the rest are tried;
* **direct**: settled; kept while handshakes stay fresh (``stale_after``, WireGuard's
  180 s session lifetime plus a margin; Babel's Hellos keep traffic, so rekeying, going),
  or, where no Hellos flow (``watched``), until the caller sees it fail (:meth:`lost`):
  an idle session expires there by itself;
  a persistent keepalive of 25 s where a NAT may be in the way keeps the mapping open
  (:func:`keepalive_for`: none between two members that each hold a public address);
* **relay**: every candidate failed. Direct is tried again after a backoff (30 s doubling
  to 5 min), at once when the peer announces new candidates, when a punch request says the
  peer is trying now (at most once per ``punch_interval``: a hostile relay cannot make us
  spin), or when the peer reaches us itself (a handshake).

A direct path may be *hopeless* (:func:`direct_hopeless`): we hold no public address, and
the peer offers no candidate that can answer a first initiation (nothing public, nothing on
a network we are on, no reflexive one, or only reflexive ones while our own NAT maps each
destination to a port of its own: symmetric, as at least two members see us). Then traffic
may go through a relay at once (``Action.relay``) while the candidates are still tried, and
punch rounds still run, in the background: a punch's hints, or a NAT that filters less than
the common port-restricted one, still let the direct path come up, and it is taken back
then.

A punch request may bring hints (where the relaying member sees the peer): at most
``MAX_HINTS``, checked like every endpoint (:func:`meshd.mesh.candidates.check_endpoint`),
used for that one round only, ranked after the peer's own configured and reflexive
candidates and before its private addresses elsewhere. A path made when this node starts
may be given the endpoint our WireGuard last saw the peer at before the restart
(``kept``, :mod:`meshd.mesh.remembered`): its first round tries that one first. Time is
passed in. What every path shares, how a path holds its candidates (one as itself, one
announced local address as its text, announced ones as their texts and kinds), what it
seldom sets and where it stands in its rounds: :mod:`meshd.mesh.punch_parts`; what moves it
from outside its clock (new candidates, our new underlay, a punch request, a silent direct
path): :mod:`meshd.mesh.punch_inputs`. See docs/nat.md.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from meshd.mesh.candidates import Candidate, check_endpoint, rank_for_us
from meshd.mesh.punch_inputs import PathInputs
from meshd.mesh.punch_parts import (
    HOWS,
    NEVER,
    PATH_CODE,
    PATHS,
    Bits,
    Ranked,
    Rare,
    RareField,
    Rounds,
    Settings,
    Trying,
    Waiting,
    common,
    each,
    endpoint_at,
    held,
    how_code,
    listed,
    on_side,
    shared,
    shared_settings,
    trying,
    waiting,
)
from meshd.mesh.punch_parts import Side as Side

# The rules a path follows, and its log lines: re-exported, where callers find them.
from meshd.mesh.reach import KEEPALIVE as KEEPALIVE
from meshd.mesh.reach import NAMED as NAMED
from meshd.mesh.reach import Path as Path
from meshd.mesh.reach import direct_hopeless as direct_hopeless
from meshd.mesh.reach import keepalive_for as keepalive_for
from meshd.mesh.reach import summary as summary

#: Seconds per candidate: an initiation at once and one retry after REKEY_TIMEOUT (5 s).
ATTEMPT = 5.5
#: A direct path with no handshake for this long is lost (REJECT_AFTER_TIME 180 s + margin).
STALE_AFTER = 195.0
#: After a failed round, the next one after this, doubling per failed round, up to the cap.
RETRY_BASE = 30.0
RETRY_MAX = 300.0
#: Punch requests start a round at most this often (meshd.mesh.punch_inputs).
PUNCH_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class Action:
    """What to do for the peer now.

    ``endpoint``: the endpoint WireGuard should have (None: no candidate to try).
    ``kick``: the endpoint just changed: set it together with the persistent keepalive in
    one UAPI call, so that WireGuard sends an initiation at once. ``keepalive``: seconds,
    0 for off. ``relay``: traffic to the peer may go through a relay now (every candidate
    failed, the first one did, or the direct path is hopeless). ``next_check``:
    call :meth:`DirectPath.update` again by then.
    """

    path: Path
    endpoint: str | None
    kick: bool
    keepalive: int
    relay: bool
    next_check: float


class DirectPath(PathInputs):
    """One peer's direct path; see the module documentation."""

    # A service holds one per peer (10,000 of them): no __dict__, what every path is made
    # with and what is known of our side one shared object (Common), its small flags and
    # codes one int shared by the paths that hold its value (Bits), the round the announced
    # candidates when it adds nothing, what it seldom sets a shared default until set
    # (Rare), and where it stands in its rounds one object that is its state too
    # (punch_parts.Rounds).
    __slots__ = (
        "_bits", "_common", "_last_handshake", "_ranked", "_rare", "_rounds", "_shown",
    )  # fmt: skip
    #: What most paths hold at its default, in one shared object until set (punch_parts.Rare):
    #: when the direct path was last lost, and the last punch request (when, and its hints,
    #: kept for its round).
    _RARE: ClassVar[Rare] = Rare.DEFAULT
    _rare: Rare
    _lost_at: RareField[float] = RareField()
    #: The caller judges whether the direct path works (no Babel Hellos on it:
    #: :mod:`meshd.mesh.liveness_probe`), and calls :meth:`lost`: an idle session that
    #: WireGuard let expire (nothing to send, no keepalive) does not lose it.
    watched = Bits(8, 1)
    #: Direct, and kept while the caller judges it (``watched`` at its last update): no
    #: handshake going stale is checked for (``next_check``).
    _kept = Bits(9, 1)

    @property
    def _settings(self) -> Settings:
        return self._common.settings

    @property
    def _side(self) -> Side:
        return self._common.side

    def __init__(
        self,
        candidates: Iterable[Candidate],
        now: float,
        *,
        families: frozenset[int] = frozenset({4, 6}),
        networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        overlay: ipaddress.IPv6Network | None = None,
        behind_nat: bool = False,
        attempt: float = ATTEMPT,
        stale_after: float = STALE_AFTER,
        retry_base: float = RETRY_BASE,
        retry_max: float = RETRY_MAX,
        punch_interval: float = PUNCH_INTERVAL,
        kept: str | None = None,
        side: Side | None = None,
    ) -> None:
        """``side``: what is known of our side, shared with other paths (set there); else
        the path's own (``behind_nat`` its start)."""
        if attempt <= 0 or stale_after <= 0 or retry_base <= 0 or retry_max < retry_base:
            raise ValueError("attempt, stale_after and retry times must be positive")
        settings = shared_settings(
            frozenset(families),
            tuple(networks),
            overlay,
            attempt,
            stale_after,
            retry_base,
            retry_max,
            punch_interval,
        )
        # What it is made with and what is known of our side: one object for paths alike.
        self._common = common(settings, side if side is not None else Side(behind_nat))
        # Small flags and codes in one int (punch_parts.Bits): not watched, hopeless not
        # known, no action yet.
        self._bits = 0
        self._ranked = self._rank(candidates)
        self._rounds: Rounds = trying(None, 0, now, 0)  # trying, none failed (round below)
        self._rare = self._RARE  # never lost, no punch yet
        self._last_handshake: float | None = None
        # What the last action said (last_action), as plain values, not the Action kept: its
        # endpoint; its path, keepalive and relay as codes in bits 0-3 of _bits (acted,
        # _shown_how), none before the first.
        self._shown: str | None = None
        # Where our WireGuard last saw the peer before this node restarted (meshd.mesh.
        # remembered): tried first, in the first round only (this one).
        checked = check_endpoint(kept, overlay, allow_loopback=True) if kept else "malformed"
        self._start_round(
            now, (), None if isinstance(checked, str) else Candidate("hint", *checked)
        )

    # -- inputs ---------------------------------------------------------------------------

    def _rank(self, candidates: Iterable[Candidate]) -> Ranked:
        unique = {c.endpoint: c for c in candidates if c.kind != "hint"}  # canonical
        return self._ordered(unique.values())

    def _ordered(self, candidates: Iterable[Candidate]) -> Ranked:
        settings = self._settings
        return held(
            tuple(rank_for_us(candidates, families=settings.families, networks=settings.networks))
        )

    @property
    def candidates(self) -> list[Candidate]:
        """The peer's announced candidates, in the order we try them."""
        return list(listed(self._ranked))

    @property
    def state(self) -> Path:
        rounds = self._rounds
        return "direct" if rounds is None else "trying" if type(rounds) is Trying else "relay"

    #: What the caller knows of our side (for :func:`direct_hopeless` and
    #: :func:`keepalive_for`), held in the path's :class:`Side` (shared where one was given).
    behind_nat = on_side("behind_nat")
    symmetric = on_side("symmetric")
    public = on_side("public")

    @property
    def hopeless(self) -> bool:
        """Whether punching cannot bring the direct path up (:func:`direct_hopeless`),
        worked out again only when the candidates or what we know of our side change (it
        parses every candidate's address: at 10,000 peers, a quarter of a step)."""
        side = self._side
        key = 2 * side.symmetric + side.public
        if self._hopeless >> 1 != key:
            hopeless = direct_hopeless(
                each(self._ranked),
                symmetric=side.symmetric,
                public=side.public,
                networks=self._settings.networks,
            )
            self._hopeless = 2 * key + hopeless
        return bool(self._hopeless & 1)

    @property
    def acted(self) -> Path | None:
        """The path the last :meth:`update` decided (its action's ``path``), None before the
        first."""
        return PATHS[self._bits & 3]

    @property
    def _shown_how(self) -> int:
        """The last action's keepalive and relay: 2 * keepalive + relay."""
        return HOWS[self._bits >> 2 & 3]

    def last_action(self) -> Action | None:
        """What the last :meth:`update` returned (``kick`` False: it was acted on), None
        before the first."""
        acted = self.acted
        if acted is None:
            return None
        how = self._shown_how
        return Action(acted, self._shown, False, how >> 1, bool(how & 1), self.next_check)

    @property
    def next_check(self) -> float:
        """When to call :meth:`update` again: its last action's ``next_check``, ``NEVER``
        before the first; read from where the path stands (its round's next candidate, its
        next round, its handshake going stale), not kept (a float a path)."""
        if not self._bits & 3:
            return NEVER
        rounds, settings = self._rounds, self._settings
        if rounds is None:
            if self._kept:
                return math.inf
            assert self._last_handshake is not None  # direct: a fresh one
            return self._last_handshake + settings.stale_after
        if type(rounds) is Trying:
            return rounds.started + settings.attempt
        return rounds.next_at  # type: ignore[union-attr]

    @property
    def settled(self) -> str | None:
        """The endpoint of the working direct path, when there is one (while direct, every
        action shows it: :meth:`update`)."""
        return self._shown if self._rounds is None else None

    def _start_round(
        self,
        now: float,
        hints: Sequence[Candidate],
        kept: Candidate | None = None,
        failed: int | None = None,
    ) -> None:
        """A round from ``now`` (its candidates: the announced ones, ``hints``, ``kept``
        first), or relay if it has none; ``failed``: the rounds failed before it (None: as
        they stand, none while direct)."""
        if hints or self._punched[1]:  # the hints of this round (none: no new tuple)
            self._punched = (self._punched[0], tuple(hints))
        extra: dict[str, Candidate] = {}
        if hints:  # the announced candidates listed only then (made from their texts)
            announced = {c.endpoint for c in listed(self._ranked)}  # canonical
            extra = {h.endpoint: h for h in hints if h.endpoint not in announced}
        # Hints go after the peer's own configured and reflexive candidates, and before its
        # private addresses elsewhere (rank_for_us), which seldom answer. Without a hint it
        # does not announce, the round is the announced candidates (None: no copy, and a
        # Trying shared with the paths that start one at the same time).
        round_ = self._ordered([*listed(self._ranked), *extra.values()]) if extra else None
        if kept is not None:
            tried = listed(round_ if round_ is not None else self._ranked)
            round_ = held((kept, *(c for c in tried if c.endpoint != kept.endpoint)))
        rounds = self._rounds
        if rounds is None:  # direct: lost now
            self._lost_at = now
        if failed is None:
            failed = 0 if rounds is None else rounds.failed
        if not (round_ if round_ is not None else self._ranked):
            self._rounds = waiting(failed, math.inf)
        else:  # a round under way gives way to this one
            self._rounds = trying(round_, 0, now, failed)

    # -- the decision ---------------------------------------------------------------------

    def update(
        self,
        now: float,
        last_handshake: float | None,
        wg_endpoint: str | None,
        *,
        came_before: bool = False,
    ) -> Action:
        """Decide, from WireGuard's latest handshake with the peer (time, or None) and the
        endpoint it shows for the peer.

        ``came_before``: the endpoint shown is one the caller put there after that handshake
        came (the step that put it read the device just before the handshake landed), so
        it is not where the handshake came from: a round then settles on its candidate
        before that one (what the device had when it came), not on the one shown."""
        if last_handshake is not None and last_handshake <= now:
            self._last_handshake = last_handshake
        hs = self._last_handshake
        kept = self.watched and self._rounds is None
        settings = self._settings
        stale_after = settings.stale_after
        fresh = hs is not None and hs > self._lost_at and (kept or now - hs <= stale_after)
        if fresh:
            # Where it settles: the candidate that answered, or where WireGuard shows the
            # peer; once direct, what the last action showed (every one shows it).
            if self._rounds is None:
                settled = self._shown
            elif came_before:
                settled = self._answered() or wg_endpoint
            else:
                settled = self._current() or wg_endpoint
            self._rounds = None  # direct: no round, none failed
            shown = check_endpoint(wg_endpoint, settings.overlay, allow_loopback=True)
            if wg_endpoint is not None and not came_before and not isinstance(shown, str):
                settled = wg_endpoint
            assert hs is not None
            self._kept = kept
            return self._action(settled, now, math.inf if kept else hs + stale_after)
        if self._rounds is None:
            self._lost_at = now
            self._start_round(now, ())
        rounds = self._rounds
        if type(rounds) is Waiting and now >= rounds.next_at:
            self._start_round(now, ())
            rounds = self._rounds
        if type(rounds) is Trying and now - rounds.started >= settings.attempt:
            rounds = self._rounds = trying(rounds.round, rounds.index + 1, now, rounds.failed)
            if self._current() is None:  # the last one failed
                failed = rounds.failed + 1
                backoff = min(settings.retry_base * 2 ** min(failed - 1, 16), settings.retry_max)
                rounds = self._rounds = waiting(failed, now + backoff)
        if type(rounds) is Trying:
            return self._action(self._current(), now, rounds.started + settings.attempt)
        assert type(rounds) is Waiting
        best = endpoint_at(self._ranked, 0)
        return self._action(best, now, rounds.next_at)

    def _round(self) -> Ranked | None:
        """The candidates of the round under way (None if not trying)."""
        rounds = self._rounds
        if type(rounds) is not Trying:
            return None
        return rounds.round if rounds.round is not None else self._ranked

    def _current(self) -> str | None:
        rounds = self._rounds
        if type(rounds) is not Trying:
            return None
        return endpoint_at(rounds.round if rounds.round is not None else self._ranked, rounds.index)

    def _answered(self) -> str | None:
        """Where a handshake that came before the round's current candidate was put came
        through: the candidate before it (the round's first: the current one, nothing of
        before it known)."""
        rounds = self._rounds
        if type(rounds) is not Trying:
            return None
        ranked = rounds.round if rounds.round is not None else self._ranked
        return endpoint_at(ranked, max(rounds.index - 1, 0))

    def _action(self, endpoint: str | None, now: float, next_check: float) -> Action:
        kick = endpoint is not None and endpoint != self._shown
        self._shown = endpoint
        rounds, side, ranked = self._rounds, self._side, self._ranked
        state = self.state
        # keepalive_for's rules; trying, relay and a NAT on our side need no call (10,000
        # paths a step), nor the candidates listed.
        keepalive = (
            KEEPALIVE
            if state == "trying"
            else 0
            if state == "relay"
            else KEEPALIVE
            if side.behind_nat or not side.public
            else keepalive_for(
                state,
                public=side.public,
                behind_nat=side.behind_nat,
                endpoint=endpoint,
                candidates=each(ranked),
                networks=self._settings.networks,
            )
        )
        relay = state == "relay" or (
            type(rounds) is Trying and (rounds.index >= 1 or self.hopeless)
        )
        next_check = max(next_check, now)  # as next_check reads it (never in the past)
        code = PATH_CODE[state] | how_code(keepalive, relay) << 2
        bits = self._bits
        if bits & 15 != code:  # its flags and a subclass's kept
            self._bits = shared(bits & ~15 | code)
        return Action(state, endpoint, kick, keepalive, relay, next_check)
