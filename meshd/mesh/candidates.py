"""A member's WireGuard endpoint candidates, and what others observe of it (pure).

A member behind a NAT cannot see its own public WireGuard endpoint; members that receive its
packets can. Three kinds of candidate, announced ranked in the member's own (signed)
announcement:

* ``configured``: ``--endpoint`` values; the operator's word, first;
* ``reflexive``: the public ip:port others see our WireGuard packets come from. Learnt from
  *observations* that other members report (the ``endpoint`` their WireGuard shows for us:
  the source of our latest authenticated packet) and from libp2p identify's observed
  address (an IP seen on our TCP connection, paired with our WireGuard listen port: right
  for NATs that keep ports, the common kind; not counted from an observer whose WireGuard
  sees us at that IP with another port, a NAT that does not keep them);
* ``local``: the usable addresses of our interfaces with our listen port (a peer on the
  same LAN reaches us there; a public machine's own address is its public endpoint).

An observation about us is a **hint, never a signed fact**: any member can report anything.
So a reflexive candidate is kept only when at least ``min_observers`` distinct members
(by node key) currently report the same ip:port within ``window`` seconds; each observer
holds one current observation per source (a new one replaces its old one), so one member
alone, whatever it sends and however often, never makes us announce an address of its
choosing. Every endpoint, observed or announced, is refused if malformed, oversized,
loopback (except a configured one), multicast, unspecified, link-local, scoped, an
IPv4-mapped IPv6 address, reserved or broadcast, or inside the mesh's own overlay prefix;
refusals carry a reason for the caller to count. Sizes are bounded: observers, candidates
per kind and in all. The order is deterministic. Time is passed in.

:mod:`meshd.mesh.punch` is the other side: how a member tries another's candidates.
See docs/nat.md and docs/threat-model.md ("Endpoint hints").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from meshd.mesh.underlay import LocalAddress, usable_addresses
from meshd.wg.model import IPAddress, format_endpoint, parse_endpoint

Kind = Literal["configured", "reflexive", "local", "hint"]
KINDS: tuple[Kind, ...] = ("configured", "reflexive", "local", "hint")
Source = Literal["wireguard", "identify"]
SOURCES: tuple[Source, ...] = ("wireguard", "identify")

#: Distinct observers needed before an observed address is announced.
MIN_OBSERVERS = 2
#: Seconds an observation stays current: WireGuard's REJECT_AFTER_TIME (180 s); members
#: report again well within it while they have a session with us.
OBSERVATION_WINDOW = 180.0
#: Observations held at once (observer and source pairs); past it the stalest goes.
MAX_OBSERVATIONS = 512
#: Candidates announced, per kind and in all.
MAX_CONFIGURED = 4
MAX_REFLEXIVE = 4
MAX_LOCAL = 8
MAX_CANDIDATES = 8
#: "[" + 39 characters of IPv6 + "]:" + 5 digits.
MAX_ENDPOINT_TEXT = 47
#: Node keys are Ed25519 public keys.
NODE_KEY_LEN = 32

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
#: Documentation ranges (RFC 5737, RFC 3849): never routed on the internet, so no real host
#: holds one by mistake; test networks (meshd's lab) give them to the hosts that stand for
#: public machines, so they count as public here.
DOCUMENTATION: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.IPv4Network("192.0.2.0/24"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("203.0.113.0/24"),
    ipaddress.IPv6Network("2001:db8::/32"),
)


#: Shared address space (RFC 6598): neither private nor global.
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
#: ``is_private`` as the standard library works it out, without its cache.
_PRIVATE: dict[int, Callable[[IPAddress], bool]] = {
    4: ipaddress.IPv4Address.is_private.fget.__wrapped__,  # type: ignore[attr-defined]
    6: ipaddress.IPv6Address.is_private.fget.__wrapped__,  # type: ignore[attr-defined]
}


def is_global(address: IPAddress) -> bool:
    """``address.is_global`` as the standard library works it out, without its caches: they
    keep the last 128 addresses asked about alive, and this asks about every candidate
    (~46 KB, ~46 bytes a member at 1,000)."""
    if address.version == 4 and address in _SHARED:
        return False
    return not _PRIVATE[address.version](address)


def is_public(address: IPAddress) -> bool:
    """Whether an address is a public one: global (``is_global``), or in a documentation
    range (:data:`DOCUMENTATION`)."""
    if is_global(address):
        return True
    return any(address in net for net in DOCUMENTATION if net.version == address.version)


Reason = Literal[
    "malformed",
    "oversized",
    "loopback",
    "multicast",
    "unspecified",
    "link-local",
    "scoped",
    "mapped",
    "reserved",
    "overlay",
    "observer",
    "source",
]


@dataclass(frozen=True, slots=True, init=False)
class Candidate:
    """One endpoint a member may be reached at; ``observers`` counts for reflexive ones.

    Made from its address and port; held as its ``ip:port`` text alone, written the
    canonical way (:func:`meshd.wg.model.format_endpoint`) once, when it is made: the text
    given if it is that (an announced one: the announcement's own string, not a copy per
    peer), else formatted. Its ``address`` and ``port`` are read from that text when asked
    for (a parsed address held by each of 10,000 peers' candidates cost ~80 bytes a peer);
    canonical, the text compares as the address and port did."""

    kind: Kind
    endpoint: str
    observers: int

    def __init__(
        self, kind: Kind, address: IPAddress, port: int, observers: int = 0, endpoint: str = ""
    ) -> None:
        text = format_endpoint(address, port)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "endpoint", endpoint if endpoint == text else text)
        object.__setattr__(self, "observers", observers)

    @classmethod
    def canonical(cls, kind: Kind, endpoint: str, observers: int = 0) -> Candidate:
        """A candidate from the text of one (its ``endpoint``: canonical, not checked)."""
        made = object.__new__(cls)
        object.__setattr__(made, "kind", kind)
        object.__setattr__(made, "endpoint", endpoint)
        object.__setattr__(made, "observers", observers)
        return made

    @property
    def address(self) -> IPAddress:
        return parse_endpoint(self.endpoint)[0]

    @property
    def port(self) -> int:
        return int(self.endpoint.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class Refused:
    """An endpoint not taken, with why (for the caller's counters)."""

    text: str
    reason: Reason


def check_endpoint(
    text: object,
    overlay: ipaddress.IPv6Network | None,
    *,
    allow_loopback: bool = False,
) -> tuple[IPAddress, int] | Reason:
    """Parse an untrusted ``ip:port`` (``[v6]:port``); the address and port, or why not."""
    if not isinstance(text, str):
        return "malformed"
    if len(text) > MAX_ENDPOINT_TEXT:
        return "oversized"
    if "%" in text:
        return "scoped"
    try:
        address, port = parse_endpoint(text)
    except ValueError:
        return "malformed"
    return check_address(address, overlay, allow_loopback=allow_loopback) or (address, port)


def check_address(
    address: IPAddress,
    overlay: ipaddress.IPv6Network | None,
    *,
    allow_loopback: bool = False,
) -> Reason | None:
    """Why an address is no endpoint for another machine to send WireGuard to, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "scoped"
        if address.ipv4_mapped is not None:
            return "mapped"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return None if allow_loopback else "loopback"
    if address.is_multicast:
        return "multicast"
    if address.is_link_local:
        return "link-local"
    if address == _BROADCAST or (address.version == 4 and address.is_reserved):
        return "reserved"
    if overlay is not None and address.version == 6 and address in overlay:
        return "overlay"
    return None


@dataclass(frozen=True, slots=True)
class _Observation:
    address: IPAddress
    port: int
    at: float


@dataclass
class Observations:
    """What members report seeing of our WireGuard endpoint: one current report per
    observer and source, bounded in number, forgotten after ``window`` seconds."""

    overlay: ipaddress.IPv6Network | None
    listen_port: int
    min_observers: int = MIN_OBSERVERS
    window: float = OBSERVATION_WINDOW
    limit: int = MAX_OBSERVATIONS
    _held: dict[tuple[bytes, Source], _Observation] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.min_observers < 1:
            raise ValueError("a reflexive candidate needs at least one observer")
        if not 0 < self.listen_port < 65536:
            raise ValueError(f"listen port {self.listen_port} is out of range")

    def __len__(self) -> int:
        return len(self._held)

    def observe(self, observer: bytes, source: str, text: object, now: float) -> Reason | None:
        """Take one member's report of where it sees us; None if held, else why not.

        ``wireguard``: ``ip:port`` as that member's WireGuard shows our endpoint.
        ``identify``: ``ip:port`` as libp2p identify saw our connection; only the address is
        used, with our WireGuard listen port (a NAT that keeps ports maps it the same).
        A refused report also withdraws the observer's earlier one of that source.
        """
        if not isinstance(observer, bytes) or len(observer) != NODE_KEY_LEN:
            return "observer"
        kind = next((s for s in SOURCES if s == source), None)
        if kind is None:
            return "source"
        checked = check_endpoint(text, self.overlay)
        if isinstance(checked, str):
            self._held.pop((observer, kind), None)
            return checked
        address, port = checked
        if kind == "identify":
            port = self.listen_port
        self._held.pop((observer, kind), None)
        if len(self._held) >= self.limit:
            stalest = min(self._held, key=lambda k: (self._held[k].at, k))
            del self._held[stalest]
        self._held[(observer, kind)] = _Observation(address, port, now)
        return None

    def forget(self, observer: bytes) -> None:
        """Drop what one member reported (it left, was revoked or expired)."""
        for key in [k for k in self._held if k[0] == observer]:
            del self._held[key]

    def expire(self, now: float) -> None:
        """Forget observations older than the window (and any dated in the future)."""
        for key in [k for k, o in self._held.items() if not now - self.window < o.at <= now]:
            del self._held[key]

    def reflexive(self, now: float) -> list[Candidate]:
        """Reflexive candidates: addresses at least ``min_observers`` distinct members see
        now; most observers first, then WireGuard-observed, then by address and port."""
        seen: dict[tuple[IPAddress, int], set[bytes]] = {}
        by_wireguard: set[tuple[IPAddress, int]] = set()
        for (observer, source), o in self._held.items():
            if not now - self.window < o.at <= now:
                continue
            if source == "identify" and self._contradicted(observer, o, now):
                continue
            seen.setdefault((o.address, o.port), set()).add(observer)
            if source == "wireguard":
                by_wireguard.add((o.address, o.port))
        kept = sorted(
            ((-len(observers), endpoint not in by_wireguard, *_order(*endpoint)), endpoint)
            for endpoint, observers in seen.items()
            if len(observers) >= self.min_observers
        )
        return [
            Candidate("reflexive", address, port, len(seen[(address, port)]))
            for _, (address, port) in kept[:MAX_REFLEXIVE]
        ]

    def _contradicted(self, observer: bytes, o: _Observation, now: float) -> bool:
        """Whether the observer's own WireGuard sees us at the identify address with another
        port: our NAT does not keep ports, so identify's guess (our listen port) is wrong."""
        wg = self._held.get((observer, "wireguard"))
        return (
            wg is not None
            and now - self.window < wg.at <= now
            and wg.address == o.address
            and wg.port != o.port
        )


def _order(address: IPAddress, port: int) -> tuple[int, int, int]:
    return address.version, int(address), port


def configured_candidates(
    endpoints: Iterable[str], overlay: ipaddress.IPv6Network | None
) -> tuple[list[Candidate], list[Refused]]:
    """``--endpoint`` values as candidates, in the order given, each once (loopback allowed:
    the operator asked for it)."""
    kept: list[Candidate] = []
    refused: list[Refused] = []
    for text in endpoints:
        checked = check_endpoint(text, overlay, allow_loopback=True)
        if isinstance(checked, str):
            refused.append(Refused(str(text)[:MAX_ENDPOINT_TEXT], checked))
            continue
        candidate = Candidate("configured", *checked)
        if candidate not in kept and len(kept) < MAX_CONFIGURED:
            kept.append(candidate)
    return kept, refused


def local_candidates(
    addresses: Iterable[LocalAddress],
    port: int,
    overlay: ipaddress.IPv6Network | None,
    *,
    exclude: Iterable[str] = (),
) -> list[Candidate]:
    """Our usable interface addresses with our listen port: global ones first, IPv4 first."""
    found = [
        Candidate("local", a.address, port)
        for a in usable_addresses(addresses, exclude=exclude)
        if check_address(a.address, overlay) is None
    ]
    found.sort(key=lambda c: (not is_public(c.address), *_order(c.address, c.port)))
    return found[:MAX_LOCAL]


def own_candidates(
    *,
    configured: Sequence[Candidate],
    reflexive: Sequence[Candidate],
    local: Sequence[Candidate],
) -> list[Candidate]:
    """What to announce, ranked: configured, reflexive, then local; each endpoint once (at
    its best kind), at most ``MAX_CANDIDATES``."""
    out: list[Candidate] = []
    taken: set[str] = set()
    for candidate in [*configured, *reflexive, *local]:
        key = candidate.endpoint  # canonical: the address and port
        if key not in taken:
            taken.add(key)
            out.append(candidate)
    return out[:MAX_CANDIDATES]


def behind_nat(candidates: Sequence[Candidate]) -> bool:
    """Whether others see us at an address none of our interfaces holds (a NAT maps us)."""
    locals_ = {c.address for c in candidates if c.kind == "local"}
    return any(c.kind == "reflexive" and c.address not in locals_ for c in candidates)


def parse_announced(
    items: Iterable[tuple[object, object]], overlay: ipaddress.IPv6Network | None
) -> tuple[list[Candidate], list[Refused]]:
    """Another member's announced (kind, endpoint) pairs as candidates, in its order, each
    endpoint once, at most ``MAX_CANDIDATES``; the rest refused with a reason.

    A ``hint`` kind is never taken from an announcement (hints come with a punch request);
    loopback only for ``configured`` (its operator asked for it, e.g. a one-machine test).
    """
    kept: list[Candidate] = []
    refused: list[Refused] = []
    taken: set[tuple[IPAddress, int]] = set()
    for n, (kind, text) in enumerate(items):
        shown = text[:MAX_ENDPOINT_TEXT] if isinstance(text, str) else "?"
        if n >= MAX_CANDIDATES * 4:
            refused.append(Refused(shown, "oversized"))
            break
        known = next((k for k in KINDS if k == kind and k != "hint"), None)
        if known is None:
            refused.append(Refused(shown, "malformed"))
            continue
        checked = check_endpoint(text, overlay, allow_loopback=known == "configured")
        if isinstance(checked, str):
            refused.append(Refused(shown, checked))
            continue
        if checked in taken:
            continue
        if len(kept) >= MAX_CANDIDATES:
            refused.append(Refused(shown, "oversized"))
            continue
        taken.add(checked)
        kept.append(Candidate(known, *checked, endpoint=str(text)))
    return kept, refused


def rank_for_us(
    candidates: Iterable[Candidate],
    *,
    families: frozenset[int],
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> list[Candidate]:
    """Order another member's candidates the way we try them, deterministically:

    1. a local address on a network we are attached to (same LAN: no NAT in the way);
    2. configured, and local addresses that are global (a public machine's own address);
    3. reflexive, most observers first;
    4. hints a punch request brought;
    5. other local addresses (private ones elsewhere: cheap to try, seldom right).

    Within each, a family we hold an address in first, then IPv4, then address and port.
    """

    def key(c: Candidate) -> tuple[int, ...]:
        address = c.address  # read from its text once
        if c.kind != "local":
            tier = {"configured": 1, "reflexive": 2, "hint": 3}[c.kind]
        elif any(address in net for net in networks if net.version == address.version):
            tier = 0
        else:
            tier = 1 if is_public(address) else 4
        order = _order(address, c.port)
        return (tier, address.version not in families, -c.observers, *order, KINDS.index(c.kind))

    listed = list(candidates)
    return sorted(listed, key=key) if len(listed) > 1 else listed  # one: no address read


def counts(refused: Iterable[Refused]) -> Mapping[Reason, int]:
    """Refusals by reason, for the caller's counters."""
    out: dict[Reason, int] = {}
    for r in refused:
        out[r.reason] = out.get(r.reason, 0) + 1
    return out
