"""What a scrape reads: :class:`Traffic`, the counters the daemon keeps for what its views do
not show (gossip messages in and out, sync sessions, their bytes and records), and
:class:`Snapshot`, the daemon's views at one moment. Plain data, no prometheus_client: the
daemon imports this whether or not it serves metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Validator = Callable[[bytes, str, str], bool]


class SyncOutcome(Protocol):
    """What a finished sync conversation reports (meshd.daemon.streams.SyncResult)."""

    @property
    def bytes_sent(self) -> int: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def records_sent(self) -> int: ...
    @property
    def records_received(self) -> int: ...
    @property
    def new(self) -> int: ...


@dataclass(slots=True)
class Traffic:
    """Since the daemon started."""

    gossip_received: Counter[str] = field(default_factory=Counter)  # accepted, dropped
    gossip_published: int = 0
    sync_sessions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, outcome)
    sync_bytes: Counter[str] = field(default_factory=Counter)  # sent, received
    sync_records: Counter[str] = field(default_factory=Counter)  # sent, received, new

    def counting(self, validate: Validator) -> Validator:
        """``validate`` (the gossip validator), counting what it accepts and drops."""

        def counted(data: bytes, author: str, forwarder: str) -> bool:
            accepted = validate(data, author, forwarder)
            self.gossip_received["accepted" if accepted else "dropped"] += 1
            return accepted

        return counted

    def published(self) -> None:
        self.gossip_published += 1

    def synced(self, result: SyncOutcome | None, *, initiator: bool) -> None:
        """A sync conversation ended: ``result``, or None if it failed."""
        role = "initiated" if initiator else "served"
        self.sync_sessions[role, "ok" if result is not None else "failed"] += 1
        if result is not None:
            self.sync_bytes["sent"] += result.bytes_sent
            self.sync_bytes["received"] += result.bytes_received
            self.sync_records["sent"] += result.records_sent
            self.sync_records["received"] += result.records_received
            self.sync_records["new"] += result.new


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The daemon's views at one moment (``now``: Unix time, seconds)."""

    now: float
    status: Mapping[str, Any]
    peers: Sequence[Mapping[str, Any]] = ()
    routes: Mapping[str, Any] | None = None  # Babel's, when it runs
    revocations: int = 0
    gossip_received: Mapping[str, int] = field(default_factory=dict)
    gossip_published: int = 0
    sync_sessions: Mapping[tuple[str, str], int] = field(default_factory=dict)
    sync_bytes: Mapping[str, int] = field(default_factory=dict)
    sync_records: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        now: float,
        status: Mapping[str, Any],
        peers: Sequence[Mapping[str, Any]],
        routes: Mapping[str, Any] | None,
        revocations: int,
        traffic: Traffic,
    ) -> Snapshot:
        """A snapshot with copies of ``traffic``'s counters (it is read in another thread)."""
        return cls(
            now,
            status,
            peers,
            routes,
            revocations,
            dict(traffic.gossip_received),
            traffic.gossip_published,
            dict(traffic.sync_sessions),
            dict(traffic.sync_bytes),
            dict(traffic.sync_records),
        )
