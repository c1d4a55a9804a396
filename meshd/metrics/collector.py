"""The metrics: what each is (:data:`CATALOGUE`, the table of docs/metrics.md) and its
samples from one :class:`Snapshot` of the daemon's views, as a prometheus_client collector.

Pure: a snapshot is data (the daemon's ``status``, ``peers`` and ``routes`` views, the
:class:`~meshd.metrics.counters.Traffic` counters, and ``now``), taken on the event loop at
scrape time; turning it into text may happen in any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

# The package before its submodules, and as a name read from it: importing py-libp2p defers
# prometheus_client (meshd.gossip.lean_imports), and a submodule imported while its package is
# still a placeholder runs under it and loads the package halfway through (a circular import).
from prometheus_client import registry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from meshd.metrics.snapshot import Snapshot

Kind = Literal["gauge", "counter"]
Sample = tuple[tuple[str, ...], float]

# The keys of the status view's ``budgets`` and ``shed`` that hold a level, not a count.
LEVELS: Final = frozenset(
    {"sync_sessions_open", "grace_tracked", "handshakes_pending", "strangers_held"}
)


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric: its exposed name (counters end in ``_total``), kind, labels and help."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    samples: Callable[[Snapshot], Iterator[Sample]]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _one(value: Any) -> Iterator[Sample]:
    number = _number(value)
    if number is not None:
        yield (), number


def _status(key: str) -> Callable[[Snapshot], Iterator[Sample]]:
    return lambda s: _one(s.status.get(key))


def _wireguard(key: str) -> Callable[[Snapshot], Iterator[Sample]]:
    def samples(s: Snapshot) -> Iterator[Sample]:
        view = s.status.get("wireguard")
        if isinstance(view, Mapping) and view.get("backend") != "none":
            yield from _one(view.get(key))

    return samples


def _info(s: Snapshot) -> Iterator[Sample]:
    st = s.status
    labels = tuple(str(st.get(k, "")) for k in ("node_id", "name", "network", "network_id"))
    yield labels, 1.0


def _members(s: Snapshot) -> Iterator[Sample]:
    for state, key in (("admitted", "members"), ("expired", "expired"), ("revoked", "revoked")):
        number = _number(s.status.get(key))
        if number is not None:
            yield (state,), number


def _refused(s: Snapshot) -> Iterator[Sample]:
    reasons = s.status.get("rejected")
    if isinstance(reasons, Mapping):
        for reason, count in sorted(reasons.items()):
            yield from (((str(reason),), n) for _, n in _one(count))


def _ingested(s: Snapshot) -> Iterator[Sample]:
    yield from ((("gossip",), n) for _, n in _one(s.status.get("accepted")))
    yield ("sync",), float(s.sync_records.get("new", 0))


def _end(row: Mapping[str, Any]) -> float | None:
    """When a member's credentials end: the latest known (renewals included), else its
    admission's."""
    return _number(row.get("credentials_end")) or _number(row.get("not_after")) or None


def _own_expiry(s: Snapshot) -> Iterator[Sample]:
    for row in s.peers:
        if row.get("state") == "self":
            end = _end(row)
            if end is not None:
                yield (), end


def _earliest_expiry(s: Snapshot) -> Iterator[Sample]:
    ends = [e for r in s.peers if r.get("state") in ("self", "admitted") and (e := _end(r))]
    if ends:
        yield (), min(ends)


def _budget(*, level: bool) -> Callable[[Snapshot], Iterator[Sample]]:
    def samples(s: Snapshot) -> Iterator[Sample]:
        for view in ("budgets", "shed"):
            values = s.status.get(view)
            if not isinstance(values, Mapping):
                continue
            for key, value in sorted(values.items()):
                if (key in LEVELS) == level:
                    yield from (((str(key),), n) for _, n in _one(value))

    return samples


def _peer_labels(row: Mapping[str, Any]) -> tuple[str, ...]:
    return str(row.get("name", "")), str(row.get("node_id", ""))[:16]


def _wg_peers(s: Snapshot) -> Iterator[Mapping[str, Any]]:
    return (r for r in s.peers if r.get("wg_peer"))


def _handshake_age(s: Snapshot) -> Iterator[Sample]:
    for row in _wg_peers(s):
        at = _number(row.get("last_handshake"))
        if at:
            yield _peer_labels(row), max(0.0, s.now - at)


def _peer_bytes(key: str) -> Callable[[Snapshot], Iterator[Sample]]:
    def samples(s: Snapshot) -> Iterator[Sample]:
        for row in _wg_peers(s):
            yield from ((_peer_labels(row), n) for _, n in _one(row.get(key)))

    return samples


def _relayed(s: Snapshot) -> Iterator[Sample]:
    if s.routes is not None:
        yield (), float(sum(str(r.get("route") or "").startswith("via ") for r in s.peers))


def _babel_routes(s: Snapshot) -> Iterator[Sample]:
    if s.routes is not None:
        rows = [r for r in s.routes.get("routes", ()) if isinstance(r, Mapping)]
        yield ("all",), float(len(rows))
        yield ("selected",), float(sum(bool(r.get("selected")) for r in rows))
        yield ("installed",), float(sum(bool(r.get("installed")) for r in rows))


def _babel_neighbours(s: Snapshot) -> Iterator[Sample]:
    if s.routes is not None:
        yield (), float(len(s.routes.get("neighbours", ())))


def _keyed(
    mapping: Callable[[Snapshot], Mapping[Any, int]],
) -> Callable[[Snapshot], Iterator[Sample]]:
    def samples(s: Snapshot) -> Iterator[Sample]:
        for key, value in sorted(mapping(s).items()):
            yield (key if isinstance(key, tuple) else (key,)), float(value)

    return samples


def _gossip_received(s: Snapshot) -> Mapping[str, int]:
    return {"accepted": 0, "dropped": 0} | dict(s.gossip_received)


def _sync_sessions(s: Snapshot) -> Mapping[tuple[str, str], int]:
    every = {(r, o): 0 for r in ("initiated", "served") for o in ("ok", "failed")}
    return every | dict(s.sync_sessions)


def _sync_bytes(s: Snapshot) -> Mapping[str, int]:
    return {"sent": 0, "received": 0} | dict(s.sync_bytes)


def _sync_records(s: Snapshot) -> Mapping[str, int]:
    return {"sent": 0, "received": 0} | {k: v for k, v in s.sync_records.items() if k != "new"}


def _config(s: Snapshot) -> Mapping[str, Any] | None:
    view = s.status.get("config")
    return view if isinstance(view, Mapping) else None


def _config_reloads(s: Snapshot) -> Iterator[Sample]:
    view = _config(s)
    if view is not None:
        for outcome, key in (("ok", "reloads"), ("failed", "failed")):
            yield from (((outcome,), n) for _, n in _one(view.get(key)))


def _config_last_ok(s: Snapshot) -> Iterator[Sample]:
    view = _config(s)
    if view is not None:
        yield (), 0.0 if view.get("last_ok") is False else 1.0


def _config_waiting(s: Snapshot) -> Iterator[Sample]:
    view = _config(s)
    if view is not None and isinstance(view.get("waiting"), list):
        yield (), float(len(view["waiting"]))


PEER: Final = ("peer", "node_id")

CATALOGUE: Final[tuple[Spec, ...]] = (
    Spec("meshd_info", "gauge", ("node_id", "name", "network", "network_id"),
         "This node and its network (always 1).", _info),
    Spec("meshd_uptime_seconds", "gauge", (), "Seconds since the daemon started.",
         _status("uptime")),
    Spec("meshd_members", "gauge", ("state",),
         "Members this node knows, by state (admitted, expired, revoked); admitted counts "
         "this node.", _members),
    Spec("meshd_records", "gauge", (), "Signed records in the membership's record set.",
         _status("records")),
    Spec("meshd_revocations", "gauge", (), "Revocation records in the record set.",
         lambda s: _one(s.revocations)),
    Spec("meshd_records_ingested_total", "counter", ("via",),
         "Records new to this node, by how they came (gossip, sync).", _ingested),
    Spec("meshd_records_refused_total", "counter", ("reason",),
         "Records refused, by reason (bad-signature, revoked, rate-limited, decode, ...).",
         _refused),
    Spec("meshd_pending_records", "gauge", (),
         "Records waiting in the pending pool for a credential they depend on.",
         _status("pending")),
    Spec("meshd_pending_evicted_total", "counter", (),
         "Records evicted from the full pending pool.", _status("pending_evicted")),
    Spec("meshd_store_unwritten_rows", "gauge", (),
         "Rows the store could not take (its disk full), kept in memory until it can: "
         "alert above 0.", _status("store_unwritten")),
    Spec("meshd_credential_expiry_timestamp_seconds", "gauge", (),
         "When this node's membership credentials end (Unix time): renew before.",
         _own_expiry),
    Spec("meshd_credential_expiry_earliest_timestamp_seconds", "gauge", (),
         "The earliest end of an admitted member's credentials, this node included (Unix "
         "time).", _earliest_expiry),
    Spec("meshd_connected_peers", "gauge", (), "libp2p peers connected now.",
         _status("connected")),
    Spec("meshd_isolated_since_timestamp_seconds", "gauge", (),
         "Since when no member has been connected while others exist (Unix time); 0 while "
         "one is: alert when it is not 0 for long.", _status("isolated_since")),
    Spec("meshd_gossip_messages_received_total", "counter", ("result",),
         "Gossip messages validated: accepted (new, forwarded) or dropped (known, waiting, "
         "or refused: see meshd_records_refused_total).",
         _keyed(_gossip_received)),
    Spec("meshd_gossip_messages_published_total", "counter", (),
         "Records this node published on the gossip topic.",
         lambda s: _one(s.gossip_published)),
    Spec("meshd_sync_sessions_total", "counter", ("role", "outcome"),
         "Anti-entropy sync conversations, by role (initiated, served) and outcome (ok, "
         "failed).", _keyed(_sync_sessions)),
    Spec("meshd_sync_bytes_total", "counter", ("direction",),
         "Bytes of finished sync conversations, sent and received.", _keyed(_sync_bytes)),
    Spec("meshd_sync_records_total", "counter", ("direction",),
         "Records carried by finished sync conversations, sent and received.",
         _keyed(_sync_records)),
    Spec("meshd_shed_total", "counter", ("what",),
         "What the budgets refused or evicted to stay within bounds, by budget (the status "
         "view's budgets and shed; docs/threat-model.md).", _budget(level=False)),
    Spec("meshd_budget_used", "gauge", ("what",),
         "What the budgets hold now: sync sessions open, peers in their grace, handshakes "
         "pending, strangers connected.", _budget(level=True)),
    Spec("meshd_wireguard_peers", "gauge", (), "Peers on the WireGuard interface.",
         _wireguard("peers")),
    Spec("meshd_wireguard_peers_desired", "gauge", (),
         "Peers the membership asks for on the WireGuard interface.",
         _wireguard("desired_peers")),
    Spec("meshd_wireguard_reconcile_rounds_total", "counter", (),
         "Rounds of the WireGuard reconcile loop.", _wireguard("rounds")),
    Spec("meshd_wireguard_errors_total", "counter", (),
         "WireGuard backend errors (the round is retried).", _wireguard("errors")),
    Spec("meshd_wireguard_device_reads_total", "counter", (),
         "Reads of the whole WireGuard device (peers, handshakes, counters) the daemon made.",
         _wireguard("device_reads")),
    Spec("meshd_wireguard_device_reads_shared_total", "counter", (),
         "Reads of the WireGuard device handed to a second caller instead of made anew.",
         _wireguard("device_reads_shared")),
    Spec("meshd_wireguard_peer_handshake_age_seconds", "gauge", PEER,
         "Seconds since a member's last WireGuard handshake (absent: none yet).",
         _handshake_age),
    Spec("meshd_wireguard_peer_receive_bytes_total", "counter", PEER,
         "Bytes received from a member's WireGuard peer.", _peer_bytes("rx_bytes")),
    Spec("meshd_wireguard_peer_transmit_bytes_total", "counter", PEER,
         "Bytes sent to a member's WireGuard peer.", _peer_bytes("tx_bytes")),
    Spec("meshd_relayed_peers", "gauge", (),
         "Members Babel reaches through another member, not directly (with Babel on).",
         _relayed),
    Spec("meshd_babel_routes", "gauge", ("state",),
         "Babel routes: all, selected, installed in the kernel (with Babel on).",
         _babel_routes),
    Spec("meshd_babel_neighbours", "gauge", (), "Babel neighbours (with Babel on).",
         _babel_neighbours),
    Spec("meshd_trio_tasks", "gauge", (), "Event-loop tasks alive in the daemon.",
         _status("tasks")),
    Spec("meshd_config_reloads_total", "counter", ("outcome",),
         "SIGHUPs (systemctl reload) that read the options again (ok) or could not (failed).",
         _config_reloads),
    Spec("meshd_config_last_reload_successful", "gauge", (),
         "0 when the last SIGHUP could not read the options (a wrong file), else 1.",
         _config_last_ok),
    Spec("meshd_config_restart_pending", "gauge", (),
         "Options changed since the start that take effect only when meshd starts again.",
         _config_waiting),
)  # fmt: skip


def family_name(spec: Spec) -> str:
    """The name prometheus_client's family takes (counters without ``_total``)."""
    return spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name


class SnapshotCollector(registry.Collector):
    """Every metric of :data:`CATALOGUE` from one snapshot (register it, scrape, drop it)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        for spec in CATALOGUE:
            family_type = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            family = family_type(family_name(spec), spec.help, labels=spec.labels)
            for labels, value in spec.samples(self.snapshot):
                family.add_metric(list(labels), value)
            yield family

    def describe(self) -> Iterator[Metric]:
        for spec in CATALOGUE:
            family_type = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            yield family_type(family_name(spec), spec.help, labels=spec.labels)
