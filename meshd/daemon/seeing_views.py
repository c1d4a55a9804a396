"""What the path column of ``meshd peers`` and ``meshd netcheck`` show: the daemon's side.

The decisions are pure (:mod:`meshd.mesh.seeing`); this reads what they need: the members,
the WireGuard device's peers, this node's interface addresses and what members observe of
its WireGuard endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from meshd.daemon import wireguard_views
from meshd.daemon.wireguard_open import local_addresses
from meshd.membership import Member, MemberState
from meshd.mesh import seeing
from meshd.wg.model import IPAddress, PeerStatus

if TYPE_CHECKING:
    from meshd.daemon.service import Daemon
    from meshd.daemon.state import NodeState

NOT_OBSERVING = "this daemon does not gather what members see of it"


def _label(member: Member) -> str:
    return member.name or member.node_id[:12]


def add_paths(
    state: NodeState,
    rows: Sequence[dict[str, Any]],
    device: Mapping[bytes, PeerStatus],
    now: float,
    attempts: Mapping[bytes, str] | None = None,
    members: Sequence[Member] | None = None,
) -> None:
    """Fill ``path``, ``path_endpoint`` and ``path_via`` of each member's row (the rows of
    :func:`meshd.daemon.state_views.peers_view`, in the order of ``members``:
    ``state.members()`` if not given), and ``path_state``: what the punching service is
    doing for the member (``attempts``, by node key: ``trying``, ``direct``, ``relay`` or
    ``none``)."""
    if members is None:
        members = state.members()
    names: dict[bytes, str] = {m.wg_key: _label(m) for m in members if m.node_key != state.key}
    owners = seeing.Owners(device.values())  # once for every member's path
    for member, row in zip(members, rows, strict=True):
        if member.node_key == state.key:
            continue
        path = seeing.path_of(member.wg_key, member.overlay, device, now, owners)
        row["path"] = path.kind
        if path.endpoint is not None:
            row["path_endpoint"] = path.endpoint
        if path.via is not None:
            row["path_via"] = names.get(path.via, "?")
        if attempts is not None and member.node_key in attempts:
            row["path_state"] = attempts[member.node_key]


def netcheck_view(
    daemon: Daemon,
    device: Mapping[bytes, PeerStatus],
    listen_port: int | None,
    own_addresses: Sequence[IPAddress],
    observations: Sequence[tuple[bytes, str]] | None,
    reflexive: Sequence[str] = (),
    local: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The answer to ``meshd netcheck``. ``observations``: (observer, ``ip:port``) pairs of
    what members' WireGuard shows for us, or None when this daemon gathers none."""
    state = daemon.state
    now = time.time()
    others = [
        m for m in state.members() if m.node_key != state.key and m.state is MemberState.ADMITTED
    ]
    reach = []
    owners = seeing.Owners(device.values())
    for member in others:
        path = seeing.path_of(member.wg_key, member.overlay, device, now, owners)
        peer = device.get(member.wg_key)
        if path.kind == "direct" and peer is not None and peer.last_handshake:
            reach.append(
                {
                    "name": _label(member),
                    "node_id": member.node_id,
                    "endpoint": path.endpoint,
                    "last_handshake": peer.last_handshake,
                }
            )
    report = seeing.nat_of(observations or (), own_addresses)
    return {
        "listen_port": listen_port,
        "local": list(daemon.announcer.endpoints if local is None else local),
        "observing": observations is not None,
        "seen": [
            {"endpoint": s.endpoint, "observers": s.observers, "own": s.own}
            for s in report.mappings
        ],
        "reflexive": list(reflexive),
        "nat": report.kind,
        "nat_why": report.why if observations is not None else NOT_OBSERVING,
        "behind_nat": report.behind_nat,
        "reachable_from": reach,
        "members": len(others),
    }


def attempts(daemon: Daemon) -> dict[bytes, str]:
    """The punching service's state per member, by node key."""
    return {p.node_key: p.path for p in daemon.punching.snapshot().peers}


def add_kept_handshakes(
    rows: Sequence[dict[str, Any]],
    members: Sequence[Member],
    kept: Callable[[bytes], float | None],
) -> None:
    """Fill the ``last_handshake`` of each row whose device peer shows none with the one its
    path saw (``kept``: by node key, :meth:`meshd.daemon.punching.Punching.last_handshake`):
    a peer whose session had ended is created anew when its round fails
    (meshd.mesh.kicks.hush), and the device then forgets its handshake. Asked only for the
    rows without one (most have one)."""
    for member, row in zip(members, rows, strict=True):
        if not row.get("last_handshake") and row.get("wg_peer"):
            at = kept(member.node_key)
            if at is not None:
                row["last_handshake"] = at


async def netcheck(daemon: Daemon) -> dict[str, Any]:
    """Read what ``meshd netcheck`` needs and build its answer: the device, our addresses,
    and what members observe of our WireGuard endpoint (the punching service's snapshot)."""
    state = await wireguard_views.device(daemon.mesh)
    device = state.peers_by_key() if state is not None else {}
    own = [a.interface.ip for a in await local_addresses()]
    port = state.listen_port if state is not None else None
    snapshot = daemon.punching.snapshot()
    observations = [
        (observer, seen.endpoint)
        for seen in snapshot.observed
        if seen.source == "wireguard"
        for observer in seen.observers
    ]
    reflexive = [endpoint for kind, endpoint in snapshot.candidates if kind == "reflexive"]
    local = [endpoint for kind, endpoint in snapshot.candidates if kind != "reflexive"]
    return netcheck_view(
        daemon, device, port or daemon.mesh.listen_port, own, observations, reflexive, local
    )
