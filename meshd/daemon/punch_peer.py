"""A programmed member's record in the punching service: its direct path and what the device
last showed of it, one object a member (:class:`_Peer`, held by
:class:`meshd.daemon.peer_paths.PeerPaths` by node key).

The peer is its own :class:`meshd.mesh.punch.DirectPath` (not a path and a record: two
objects a member), and keeps what a step reads and lays beside it: its member (its
WireGuard key, name and announced endpoints read from there, not copied), the endpoint put
on the device and when, the received bytes and when they last grew, when its round began,
the endpoint chosen for a start and what the last step laid (:mod:`meshd.daemon.laid_paths`).
What most peers hold at its default (no punch asked for, nothing reported, Hellos on the
path, nothing lost) is one shared object until set (:class:`_PeerRare`); its flags and
codes are bits of small ints; its announced candidates, ranked as announced, the
announcement's own tuple (:mod:`meshd.mesh.punch_parts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network, IPv6Network

from meshd.daemon.laid_paths import UNLAID
from meshd.membership import Member
from meshd.mesh.candidates import Candidate
from meshd.mesh.liveness_probe import Liveness
from meshd.mesh.punch import Action, DirectPath, Side
from meshd.mesh.punch_parts import (
    HOW_BITS,
    HOWS,
    NEVER,
    PATH_CODE,
    Bits,
    Ranked,
    Rare,
    RareField,
    shared,
)

UNCHOSEN = ""  # a peer's chosen endpoint not worked out yet (no endpoint is empty)
#: ``laid_how`` by its code in a peer's ``_bits`` (0: UNLAID, else 1 + the code of HOWS).
_LAID_HOWS = (UNLAID, *HOWS)


class _PeerRare(Rare):
    """A peer's fields that most peers hold at their default (:class:`Rare`)."""

    __slots__ = ("heard_at", "liveness", "reported_at", "reported_endpoint", "requested_at")

    def __init__(self) -> None:
        super().__init__()
        self.heard_at: float | None = None  # None: when it last heard is rx_at
        self.reported_endpoint = ""
        self.reported_at = NEVER
        self.requested_at = NEVER
        self.liveness: Liveness | None = None


_PeerRare.DEFAULT = _PeerRare()


class _Peer(DirectPath):
    """A programmed member: its direct path (this object itself, one per member rather than
    two: ``path`` is the peer) and what the device last showed of it. Its WireGuard key,
    name and announced endpoints are read from its member (held, not copied: the view the
    last step went over), its last handshake from its path."""

    __slots__ = (
        "_rx_at", "chosen", "laid_endpoint", "laid_since", "member", "put_at", "put_endpoint",
        "rx_bytes", "trying_since",
    )  # fmt: skip
    # What most peers hold at its default (no punch requested, no endpoint reported, Hellos
    # on the path): one shared object until set (_PeerRare). The endpoint put on the device
    # is not among them: every peer's is put at a start (an object of its own a peer).
    _RARE = _PeerRare.DEFAULT
    #: The endpoint we last reported to the peer (a NAT report), and when.
    reported_endpoint: RareField[str] = RareField()
    reported_at: RareField[float] = RareField()
    requested_at: RareField[float] = RareField()  # when we last asked for a punch
    #: While direct without Babel's Hellos on the path: whether it still works.
    liveness: RareField[Liveness | None] = RareField()
    #: When the peer's received bytes last grew, where a lost path set ``rx_at`` anew since
    #: (None: ``rx_at`` says it: a path is lost seldom, and holds its own rare fields then).
    _heard_at: RareField[float | None] = RareField()
    # Above the path's bits (HOW_BITS): the laid code (3 bits), then these.
    request_due = Bits(HOW_BITS + 3, 1)  # a round started: a punch is to be asked for
    shaken = Bits(HOW_BITS + 4, 1)  # the device showed a handshake (since this peer was made)

    def __init__(
        self,
        member: Member,
        candidates: Iterable[Candidate],
        now: float,
        *,
        families: frozenset[int] = frozenset({4, 6}),
        networks: Sequence[IPv4Network | IPv6Network] = (),
        overlay: IPv6Network | None = None,
        kept: str | None = None,
        side: Side | None = None,
        rx_at: float = 0.0,
        heard_at: float = 0.0,
    ) -> None:
        """The path as :class:`DirectPath` makes it (over ``candidates`` at ``now``)."""
        self.member = member  # its WireGuard key the peer's own (a new key: a new peer)
        super().__init__(
            candidates, now, families=families, networks=networks, overlay=overlay, kept=kept,
            side=side,
        )  # fmt: skip
        # The endpoint this service last put on the device for the peer, and the Unix time
        # from which it was there: a handshake no newer did not answer it (it is not kept).
        self.put_endpoint: str | None = None
        self.put_at = NEVER
        self.rx_bytes = 0
        self._rx_at = rx_at
        self.heard_at = heard_at
        self.trying_since = 0.0  # Unix time the current candidate began to be tried
        # The endpoint a start programs from the announcement (under the underlay of
        # meshd.daemon.punch_restarts), UNCHOSEN until worked out, and again once either
        # changes (meshd.mesh.desired.choose_endpoint parses every candidate).
        self.chosen: str | None = UNCHOSEN
        # What the last step laid over the desired peers (meshd.daemon.laid_paths): its
        # endpoint, 2 * keepalive + relay (UNLAID before any), when its round began.
        self.laid_endpoint: str | None = None
        self.laid_since: float | None = None  # and laid_how, UNLAID: in the path's _bits

    def __repr__(self) -> str:
        return f"_Peer({self.name!r}, {self.acted or self.state})"

    @property
    def rx_at(self) -> float:
        """When the peer's received bytes last grew, or since when the direct path is judged
        afresh (set anew when it was lost, or Hellos came back): its silence counts from it."""
        return self._rx_at

    @rx_at.setter
    def rx_at(self, value: float) -> None:
        if value != self._rx_at and self._heard_at is None:
            self._heard_at = self._rx_at  # when it last heard: kept
        self._rx_at = value

    @property
    def heard_at(self) -> float:
        """When the peer's received bytes last grew (never set anew: :meth:`heard`)."""
        heard = self._heard_at
        return self._rx_at if heard is None else heard

    @heard_at.setter
    def heard_at(self, value: float) -> None:
        self._heard_at = None if value == self._rx_at else value

    def heard(self, now: float) -> None:
        """The peer's received bytes grew: ``rx_at`` and ``heard_at`` both ``now``."""
        self._rx_at = now
        self._heard_at = None

    @property
    def laid_how(self) -> int:
        """What the last step laid of the path's keepalive and relay (2 * keepalive +
        relay), UNLAID before any: a code in 3 bits of the path's ``_bits`` (from
        ``HOW_BITS``)."""
        return _LAID_HOWS[self._bits >> HOW_BITS & 7]

    @property
    def wg_key(self) -> bytes:
        return self.member.wg_key

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def announced(self) -> tuple[str, ...]:
        """The endpoints its member announces (none without an announcement)."""
        ann = self.member.announcement
        return ann.endpoints if ann is not None else ()

    def _rank(self, candidates: Iterable[Candidate]) -> Ranked:
        """The candidates ranked as :class:`DirectPath` holds them; where that is its
        member's announced endpoints as they are (texts and kinds, in its order), the
        announcement's own tuple: nothing of the peer's own."""
        ranked = super()._rank(candidates)
        if type(ranked) is tuple and ranked and type(ranked[-1]) is str:
            announced = self.announced
            if ranked == announced:
                return announced
        return ranked

    def hold_announced(self) -> None:
        """Its member's new announcement says the same endpoints: hold its tuple, not the
        old announcement's (an equal one, else kept alive by the peer alone)."""
        ranked, announced = self._ranked, self.announced
        if type(ranked) is tuple and ranked is not announced and ranked == announced:
            self._ranked = announced

    @property
    def path(self) -> DirectPath:
        """The peer's direct path: the peer itself."""
        return self

    @property
    def action(self) -> Action | None:
        """What the path last decided (:meth:`DirectPath.last_action`: kept there as plain
        values, not as an Action a peer)."""
        return self.last_action()

    def lay(self) -> bool:
        """Lay the path as the last update left it (:mod:`meshd.daemon.laid_paths`); whether
        that changed what was laid."""
        endpoint, how = self._shown, self._bits
        shown = 1 + (how >> 2 & 3)  # the laid code of the last action's keepalive and relay
        since = self.trying_since if how & 3 == PATH_CODE["trying"] else None
        laid = how >> HOW_BITS & 7
        if endpoint == self.laid_endpoint and laid == shown and since == self.laid_since:
            return False
        self.laid_endpoint, self.laid_since = endpoint, since
        self._bits = shared(how & ~(7 << HOW_BITS) | shown << HOW_BITS)
        return True

    def works(self, now: float, silent_after: float) -> bool:
        """Whether the direct path is up and not in doubt: something came within
        ``silent_after`` (where Hellos flow), or, without Hellos on it, its judge has not
        declared it lost (silence alone means little there: :mod:`meshd.mesh.liveness_probe`)."""
        if self.state != "direct":
            return False
        return self.liveness is not None or now - self.rx_at <= silent_after
