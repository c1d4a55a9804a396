"""What a :class:`meshd.mesh.punch.DirectPath` shares with the others, and how it holds its
candidates (pure): a service holds one path per peer (10,000 of them), so what is the same
for all of them is one object: the settings a path is made with (:class:`Settings`, one for the
paths made alike), what is known of our side (:class:`Side`, set once a step), what a path
holds at its default until it sets it (:class:`Rare`: its last punch, when it was last
lost; one shared object, a path's own from its first change); a path's one candidate is
held as itself, not in a tuple of one, and announced ones as their texts with one entry
naming their kinds, as the announcement carries them (``Ranked``: most members announce one
endpoint, and none a parsed candidate of its own a peer); and
where a path stands in its rounds is one object that says its state too (:data:`Rounds`:
none while direct; while trying, one shared by the paths that try their announced
candidates alike, a round of its own with hints; one shared by the paths that wait alike in
relay).
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from meshd.mesh.candidates import Candidate, Kind
from meshd.mesh.reach import KEEPALIVE, Path

if TYPE_CHECKING:
    from meshd.mesh.punch import DirectPath


@dataclass(frozen=True, slots=True)
class Settings:
    """What a path is made with and never changes: one object for the paths made alike."""

    families: frozenset[int]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    overlay: ipaddress.IPv6Network | None
    attempt: float
    stale_after: float
    retry_base: float
    retry_max: float
    punch_interval: float


#: Equal settings give the same object (a service makes all its paths alike).
shared_settings = functools.lru_cache(maxsize=8)(Settings)


@dataclass(slots=True)
class Side:
    """What is known of our side, the same for a service's paths (set once a step): a NAT
    maps us, it is symmetric, we hold a public address or a configured endpoint."""

    behind_nat: bool = False
    symmetric: bool = False
    public: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class Common:
    """A path's settings and what it knows of our side: one object for the paths made
    alike over one :class:`Side` (:func:`common`)."""

    settings: Settings
    side: Side


_COMMON: dict[tuple[Settings, int], Common] = {}


def common(settings: Settings, side: Side) -> Common:
    """The :class:`Common` of ``settings`` and ``side``: the same object for equal settings
    and the same side (a few kept, the last made)."""
    key = (settings, id(side))
    found = _COMMON.get(key)
    if found is None or found.side is not side:
        if len(_COMMON) >= 8:
            _COMMON.clear()
        found = _COMMON[key] = Common(settings, side)
    return found


#: Each value a path's ``_bits`` took, itself: one object for every path that holds it (an
#: int past 256 is an object of its own each time it is worked out; at most 2 ** 14 values).
_SHARED: dict[int, int] = {}


def shared(bits: int) -> int:
    """``bits`` as the one object every path that holds that value shares."""
    return _SHARED.setdefault(bits, bits)


class Bits:
    """A small field of a path held in bits of its ``_bits`` (an int shared by every path
    that holds it: :func:`shared`): ``width`` bits from ``shift``, stored plus ``offset``;
    a one-bit field reads as a bool."""

    def __init__(self, shift: int, width: int, offset: int = 0) -> None:
        self.shift, self.mask, self.offset = shift, (1 << width) - 1, offset

    def __get__(self, path: Any, owner: type | None = None) -> Any:
        value = (path._bits >> self.shift & self.mask) - self.offset
        return bool(value) if self.mask == 1 else value

    def __set__(self, path: Any, value: int) -> None:
        bits = path._bits
        new = bits & ~(self.mask << self.shift) | (value + self.offset & self.mask) << self.shift
        if new != bits:  # most sets at a step leave it as it was
            path._bits = shared(new)


#: The path a path's last action decided, by its code in bits 0-1 of the path's ``_bits``
#: (one int with its flags: :class:`Bits`, from bit 4); its keepalive and relay are bits 2-3
#: (:func:`how_code`, :data:`HOWS`), and a subclass keeps more above ``HOW_BITS``.
PATHS: tuple[Path | None, ...] = (None, "direct", "trying", "relay")
PATH_CODE: dict[Path, int] = {"direct": 1, "trying": 2, "relay": 3}
HOW_BITS = 10


def how_code(keepalive: int, relay: bool) -> int:
    """An action's keepalive and relay in 2 bits: a path keeps ``KEEPALIVE`` or none."""
    if keepalive and keepalive != KEEPALIVE:
        raise ValueError(f"a path keeps a keepalive of {KEEPALIVE} s or none, not {keepalive}")
    return (keepalive != 0) << 1 | relay


#: 2 * keepalive + relay of each :func:`how_code` (read from it by index, not worked out).
HOWS = tuple(2 * KEEPALIVE * (code >> 1) + (code & 1) for code in range(4))


def on_side(name: str) -> property:
    """A flag of a path's :class:`Side`, read and set through the path."""

    def get(path: DirectPath) -> bool:
        return bool(getattr(path._side, name))

    def put(path: DirectPath, value: bool) -> None:
        setattr(path._side, name, value)

    return property(get, put)


#: A path's candidates in rank order: one is held as itself, not in a tuple of one, and one
#: announced local address (most members announce one, and no kinds) as its text alone;
#: announced candidates (configured, reflexive, local; no observers counted) as their texts
#: and a last entry naming their kinds (``kinds=`` and a letter each, interned), the way
#: an announcement's ``endpoints`` carry them (:mod:`meshd.mesh.announced`): no candidate
#: object of its own a peer (~56 bytes each), and where the ranked ones are what the
#: member announces, in its order, a path may hold the announcement's own tuple.
Ranked = tuple[Candidate, ...] | Candidate | str | tuple[str, ...]

#: The kind of each letter of a kinds entry (meshd.mesh.announced's), and the letter of each.
_KIND_OF: dict[str, Kind] = {"c": "configured", "r": "reflexive", "l": "local"}
_LETTER_OF: dict[str, str] = {kind: letter for letter, kind in _KIND_OF.items()}
_TAG = "kinds="
_TAGGED = len(_TAG)


def listed(ranked: Ranked) -> tuple[Candidate, ...]:
    """A path's candidates as a tuple (made from their texts where held so)."""
    if type(ranked) is tuple and not (ranked and type(ranked[-1]) is str):
        return ranked  # type: ignore[return-value]
    return tuple(each(ranked))


def each(ranked: Ranked) -> Iterator[Candidate]:
    """A path's candidates one by one, each made from its text (where held so) only when
    reached: a caller that stops at the first that decides makes no more."""
    if type(ranked) is str:
        yield Candidate.canonical("local", ranked)
    elif type(ranked) is not tuple:
        yield ranked  # type: ignore[misc]
    elif ranked and type(ranked[-1]) is str:  # texts, and their kinds last
        canonical, of = Candidate.canonical, _KIND_OF
        for letter, text in zip(ranked[-1][_TAGGED:], ranked, strict=False):
            yield canonical(of[letter], text)
    else:
        yield from ranked  # type: ignore[misc]


#: The kinds entry of each string of letters (one object for the paths whose candidates
#: are of those kinds: at most 3 ** MAX_CANDIDATES strings, a few in practice).
_KINDS: dict[str, str] = {}


def held(ranked: tuple[Candidate, ...]) -> Ranked:
    """Candidates as a path holds them: one local address as its text, announced ones as
    their texts and kinds, others as themselves (one without a tuple)."""
    if len(ranked) == 1:
        one = ranked[0]
        if one.kind == "local" and not one.observers:
            return one.endpoint
    letters, of = "", _LETTER_OF
    for c in ranked:
        letter = of.get(c.kind)
        if letter is None or c.observers:
            return ranked[0] if len(ranked) == 1 else ranked
        letters += letter
    if not letters:
        return ranked
    kinds = _KINDS.get(letters)
    if kinds is None:
        kinds = _KINDS[letters] = _TAG + letters
    return (*[c.endpoint for c in ranked], kinds)


def endpoint_at(ranked: Ranked, index: int) -> str | None:
    """The endpoint of a path's ``index``-th candidate, None past the last."""
    if type(ranked) is tuple:
        if ranked and type(ranked[-1]) is str:  # texts, and their kinds last
            return ranked[index] if index < len(ranked) - 1 else None
        return ranked[index].endpoint if index < len(ranked) else None  # type: ignore[union-attr]
    if index:
        return None
    return ranked if type(ranked) is str else ranked.endpoint  # type: ignore[union-attr]


NEVER = -math.inf  # one object for every path's "not yet" (``-math.inf`` makes a new one)
#: A path's punch when none came: (when, its hints).
NO_PUNCH: tuple[float, tuple[Candidate, ...]] = (NEVER, ())


@dataclass(frozen=True, slots=True)
class Trying:
    """A round under way (the path is trying): its candidates (None: the path's announced
    ones, its ``_ranked``), the index of the one tried, since when (the daemon's clock), and
    the rounds that failed before it. Never changed: a path moves on to a new one, and the
    paths that try their announced candidates alike hold one object (:func:`trying`)."""

    round: Ranked | None
    index: int
    started: float
    failed: int


@dataclass(frozen=True, slots=True)
class Waiting:
    """A path in relay: the rounds that failed, and when the next one starts. Paths that
    wait alike hold one object (:func:`waiting`)."""

    failed: int
    next_at: float


#: Where a path stands in its rounds, and so its state: direct (None: no round, none
#: failed), trying (:class:`Trying`, shared while it tries its announced candidates) or
#: relay (:class:`Waiting`, shared).
Rounds = Trying | Waiting | None

_TRYING: dict[tuple[int, float, int], Trying] = {}


def trying(round_: Ranked | None, index: int, started: float, failed: int) -> Trying:
    """The round of paths at candidate ``index`` since ``started`` with ``failed`` rounds
    failed before it: over the announced candidates (``round_`` None), one object for the
    paths that start or move on at one time (a few kept, the last made); a round of its own
    (hints, a kept endpoint) its own object."""
    if round_ is not None:
        return Trying(round_, index, started, failed)
    key = (index, started, failed)
    found = _TRYING.get(key)
    if found is None:
        if len(_TRYING) >= 16:
            _TRYING.clear()
        found = _TRYING[key] = Trying(None, index, started, failed)
    return found


_WAITING: dict[tuple[int, float], Waiting] = {}


def waiting(failed: int, next_at: float) -> Waiting:
    """The relay of paths with ``failed`` rounds failed and the next at ``next_at``: one
    object for the paths that fail at one time (a few kept, the last made)."""
    key = (failed, next_at)
    found = _WAITING.get(key)
    if found is None:
        if len(_WAITING) >= 16:
            _WAITING.clear()
        found = _WAITING[key] = Waiting(failed, next_at)
    return found


T = TypeVar("T")


class Rare:
    """What most paths hold at its default (a path's ``_rare``): the class's ``DEFAULT``,
    shared, until a path sets one of these; then an object of its own. A subclass adds the
    fields of a subclass of the path (set its own ``DEFAULT``)."""

    __slots__ = ("lost_at", "punched")
    DEFAULT: Rare

    def __init__(self) -> None:
        self.lost_at = NEVER  # when the direct path was last lost
        self.punched = NO_PUNCH  # the last punch request: when, and its hints


Rare.DEFAULT = Rare()


class RareField(Generic[T]):
    """A path's field held in its :class:`Rare` (``_rare``): read there; set there, in an
    object of the path's own, made from the default the first time a value other than the
    default is set."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name.lstrip("_")

    def __get__(self, path: Any, owner: type | None = None) -> T:
        return getattr(path._rare, self.name)  # type: ignore[no-any-return]

    def __set__(self, path: Any, value: T) -> None:
        rare = path._rare
        if rare is type(rare).DEFAULT:
            if value == getattr(rare, self.name):
                return  # the default: still shared
            rare = path._rare = type(rare)()
        setattr(rare, self.name, value)
