"""Our own WireGuard endpoints: what members observe of us, and the candidates we announce.

Members report where they see us (``/meshd/nat/1.0.0`` reports, :mod:`meshd.gossip.nat`):
the endpoint their WireGuard shows for us and the address our libp2p connection comes from
(the ``identify`` source). :class:`Endpoints` takes them into
:class:`meshd.mesh.candidates.Observations` (pure: K = 2 members must agree before a
reflexive candidate is announced), refusing what comes from non-members, too often, or
names no usable address, each refusal counted by reason. Its candidates (configured,
reflexive, local: :func:`meshd.mesh.candidates.own_candidates`) go into our announcement
(:mod:`meshd.mesh.announced`); when they change, the announcer is asked to announce at once,
at most every ``REANNOUNCE`` seconds. See docs/nat.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence

from meshd.daemon.nat_view import NatKind, ObservedView
from meshd.mesh import candidates as cand
from meshd.mesh.announced import encode_candidates
from meshd.mesh.underlay import LocalAddress
from meshd.wg.model import IPAddress, parse_endpoint

#: Seconds between two reports of one observer that are taken (more are refused: rate).
REPORT_INTERVAL = 5.0
#: Our candidates are re-announced at most this often when they change.
REANNOUNCE = 5.0
#: Observers held for the rate limit; past it the stalest is forgotten.
MAX_OBSERVERS = 1024


class Endpoints:
    """What members see of us, and what we announce (no I/O: the shells call in)."""

    def __init__(
        self,
        *,
        overlay: ipaddress.IPv6Network | None,
        listen_port: int,
        configured: Sequence[str],
        is_member: Callable[[bytes], bool],
    ) -> None:
        self.overlay = overlay
        self.listen_port = listen_port
        self.is_member = is_member
        self.observations = cand.Observations(overlay=overlay, listen_port=listen_port)
        self.configured, refused = cand.configured_candidates(configured, overlay)
        self.refused: dict[str, int] = {}
        self._count("configured", refused)
        self.local: list[cand.Candidate] = []
        self.local_addresses: frozenset[IPAddress] = frozenset()
        self._last_report: dict[bytes, float] = {}
        self.reports = 0

    def set_listen_port(self, port: int) -> None:
        """WireGuard moved to ``port`` (a SIGHUP): our local candidates carry it from the next
        look, and what members saw of us is forgotten (their NATs mapped the old port)."""
        self.listen_port = port
        self.observations = cand.Observations(overlay=self.overlay, listen_port=port)
        self._last_report.clear()

    def set_configured(self, configured: Sequence[str]) -> None:
        """New ``--endpoint`` values (a SIGHUP): announced in their place from the next look."""
        self.configured, refused = cand.configured_candidates(configured, self.overlay)
        self._count("configured", refused)

    def _count(self, what: str, refused: Iterable[cand.Refused]) -> None:
        for reason, n in cand.counts(refused).items():
            self.refused[f"{what}:{reason}"] = self.refused.get(f"{what}:{reason}", 0) + n

    def refuse(self, what: str, reason: str) -> None:
        key = f"{what}:{reason}"
        self.refused[key] = self.refused.get(key, 0) + 1

    # -- in ---------------------------------------------------------------------------------

    def report(self, observer: bytes, wg_endpoint: str, tcp_address: str, now: float) -> bool:
        """A member's report of where it sees us; False (and counted) if not taken."""
        if not self.is_member(observer):
            self.refuse("report", "not-member")
            return False
        last = self._last_report.get(observer)
        if last is not None and 0 <= now - last < REPORT_INTERVAL:
            self.refuse("report", "rate")
            return False
        if len(self._last_report) >= MAX_OBSERVERS and observer not in self._last_report:
            del self._last_report[min(self._last_report, key=self._last_report.__getitem__)]
        self._last_report[observer] = now
        self.reports += 1
        taken = True
        for source, text in (("wireguard", wg_endpoint), ("identify", tcp_address)):
            if not text:
                continue
            reason = self.observations.observe(observer, source, text, now)
            if reason is not None:
                self.refuse(f"report-{source}", reason)
                taken = False
        return taken

    def forget(self, observer: bytes) -> None:
        self.observations.forget(observer)
        self._last_report.pop(observer, None)

    def set_local(self, addresses: Iterable[LocalAddress], exclude: Sequence[str]) -> None:
        found = list(addresses)
        self.local = cand.local_candidates(found, self.listen_port, self.overlay, exclude=exclude)
        self.local_addresses = frozenset(a.address for a in found)

    # -- out --------------------------------------------------------------------------------

    def candidates(self, now: float) -> list[cand.Candidate]:
        """What we announce, ranked. Local addresses only without ``--endpoint`` (there,
        the operator's word and what members observe)."""
        self.observations.expire(now)
        return cand.own_candidates(
            configured=self.configured,
            reflexive=self.observations.reflexive(now),
            local=[] if self.configured else self.local,
        )

    def announced(self, now: float) -> tuple[str, ...]:
        """Our announcement's ``endpoints`` field."""
        return encode_candidates(self.candidates(now))

    def observed(self, now: float) -> list[ObservedView]:
        """Every current observation, grouped by endpoint and source, most observers first."""
        self.observations.expire(now)
        groups: dict[tuple[str, cand.Source], set[bytes]] = {}
        for (observer, source), o in self.observations._held.items():
            groups.setdefault((cand.Candidate("hint", o.address, o.port).endpoint, source), set())
            groups[(cand.Candidate("hint", o.address, o.port).endpoint, source)].add(observer)
        views = [ObservedView(ep, src, tuple(sorted(obs))) for (ep, src), obs in groups.items()]
        views.sort(key=lambda v: (-len(v.observers), v.source, v.endpoint))
        return views

    def behind_nat(self, now: float) -> bool:
        """Whether any member sees our WireGuard at an address none of our interfaces holds
        (one observer is enough for our own keepalives)."""
        return any(
            v.source == "wireguard" and parse_endpoint(v.endpoint)[0] not in self.local_addresses
            for v in self.observed(now)
        )

    def nat_kind(self, now: float) -> NatKind:
        seen = [v for v in self.observed(now) if v.source == "wireguard"]
        observers = {o for v in seen for o in v.observers}
        if not seen:
            return "unknown"
        mapped = [v for v in seen if parse_endpoint(v.endpoint)[0] not in self.local_addresses]
        if not mapped:
            return "none"
        if len(observers) < 2:
            return "unknown"
        return "cone" if len({v.endpoint for v in seen}) == 1 else "symmetric"
