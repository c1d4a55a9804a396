"""Plan the smallest change that moves a WireGuard device to the desired peers.

:func:`plan` compares what we want with what the device reports and returns operations; it
does no I/O, so the caller reads the device, plans, applies the plan, and after any error
reads again and plans again. Rules:

* a peer the device has and we do not want (revoked, left) is removed;
* a missing peer is created with its endpoint, keepalive and allowed-ips in one operation;
* allowed-ips are replaced only when the set differs; keepalive set only when it differs;
* an endpoint is written only when *our* desired endpoint changed since the last one we
  asked for (``previous``), or when the device has none. WireGuard moves a peer's endpoint
  to wherever authenticated packets come from (roaming); writing back a stale address would
  cut off a peer that just moved, so a device endpoint that differs from ours is left alone.
  Our first endpoint for a peer that had none is no change of ours: a device endpoint there
  came from the peer's packets (a member reached us before its announcement came) and stands;
* it never clears an endpoint (the protocol cannot), never touches the device's key, port or
  fwmark, and never uses ``replace_peers`` (a crash half way would empty the device);
* updates of existing peers use ``update_only``, so a peer removed meanwhile by someone else
  is not recreated half-configured; the next round creates it whole.

The operations are made of the desired peers' own fields, checked and canonical since those
were made, so they are not checked again (:meth:`UpdatePeer.derived`).

:func:`apply_operations` is the reference semantics of the operations on a
:class:`DeviceState` (WireGuard's, including "a prefix belongs to one peer: adding it to one
removes it from the other"). The in-memory backend and the tests use it.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping, Sequence
from dataclasses import replace

from meshd.trust.keys import WgKey
from meshd.wg.model import (
    DeviceState,
    IPNetwork,
    Operation,
    PeerConfig,
    PeerStatus,
    RemovePeer,
    ReplacePeers,
    SetFwmark,
    SetListenPort,
    SetPrivateKey,
    UpdatePeer,
)


def check_disjoint(desired: Mapping[WgKey, PeerConfig]) -> None:
    """Raise ValueError if one prefix is given to two peers (WireGuard cannot do that)."""
    owner: dict[IPNetwork, WgKey] = {}
    for key, config in desired.items():
        if key != config.public_key:
            raise ValueError("desired peers must be keyed by their own public key")
        for net in config.allowed_ips:
            if owner.setdefault(net, key) != key:
                raise ValueError(f"{net} is given to two peers; a prefix has one owner")


def plan(
    desired: Mapping[WgKey, PeerConfig],
    actual: DeviceState,
    previous: Mapping[WgKey, PeerConfig] | None = None,
) -> list[RemovePeer | UpdatePeer]:
    """Operations that move ``actual`` to ``desired``; empty when there is nothing to do.

    ``previous`` is the desired state of the last successful round (None on the first):
    it is what tells "we changed the endpoint" from "the peer roamed". Removals come first,
    then updates and additions, each in key order, so plans are deterministic.
    """
    check_disjoint(desired)
    previous = previous or {}
    have = actual.peer_configs()
    ops: list[RemovePeer | UpdatePeer] = [
        RemovePeer(key) for key in sorted(have) if key not in desired
    ]
    # In key order, each peer read along (desired peers kept in key order are not looked up
    # one by one: ~1 us a bisection, 10 ms a round at 10,000), and not copied into a sorted
    # list of pairs when they are in key order already (a round's 10,000 pairs: ~0.6 MiB
    # held for the round, left as holes in Python's pools).
    ordered = all(a < b for a, b in itertools.pairwise(desired))
    pairs = desired.items() if ordered else sorted(desired.items(), key=_first)
    for key, want in pairs:
        current = have.get(key)
        if current is None:
            ops.append(
                UpdatePeer.derived(  # want's own fields: checked when it was made
                    key,
                    endpoint=want.endpoint,
                    persistent_keepalive=want.persistent_keepalive,
                    replace_allowed_ips=True,
                    allowed_ips=want.allowed_ips,
                )
            )
            continue
        if current is want:
            continue  # the device reads as we asked (the very object: nothing to compare)
        update = _update_existing(want, current, previous.get(key))
        if update is not None:
            ops.append(update)
    return ops


_first = operator.itemgetter(0)


def _update_existing(
    want: PeerConfig, current: PeerConfig, before: PeerConfig | None
) -> UpdatePeer | None:
    endpoint: str | None = None
    if want.endpoint is not None and want.endpoint != current.endpoint:
        # Ours changed: not where we had none (the device's then came from the peer's own
        # packets, or from before this run, and says where the peer is better than ours).
        we_changed_it = (
            before is not None and before.endpoint is not None and before.endpoint != want.endpoint
        )
        if current.endpoint is None or we_changed_it:
            endpoint = want.endpoint
    keepalive: int | None = None
    if want.persistent_keepalive != current.persistent_keepalive:
        keepalive = want.persistent_keepalive or 0
    replace = want.allowed_ips != current.allowed_ips
    if endpoint is None and keepalive is None and not replace:
        return None
    return UpdatePeer.derived(
        want.public_key,
        update_only=True,
        endpoint=endpoint,
        persistent_keepalive=keepalive,
        replace_allowed_ips=replace,
        allowed_ips=want.allowed_ips if replace else (),
    )


def apply_operations(
    state: DeviceState, operations: Sequence[Operation], *, update_only: bool = True
) -> DeviceState:
    """The device state after ``operations``, with WireGuard's semantics.

    ``update_only=False`` models boringtun, which ignores the flag and creates the peer.
    Counters and handshakes of surviving peers are kept.
    """
    peers = dict(state.peers_by_key())  # the device's keys, changed below
    has_private_key = state.has_private_key
    public_key = state.public_key
    listen_port = state.listen_port
    fwmark = state.fwmark
    for op in operations:
        if isinstance(op, SetPrivateKey):
            # The key itself is opaque here; the shells derive the public key.
            has_private_key = op.private_key != bytes(32)
        elif isinstance(op, SetListenPort):
            listen_port = op.port or None
        elif isinstance(op, SetFwmark):
            fwmark = op.fwmark or None
        elif isinstance(op, ReplacePeers):
            peers.clear()
        elif isinstance(op, RemovePeer):
            peers.pop(op.public_key, None)
        else:
            _apply_update(peers, op, update_only=update_only)
    return DeviceState(public_key, has_private_key, listen_port, fwmark, tuple(peers.values()))


def _apply_update(peers: dict[bytes, PeerStatus], op: UpdatePeer, *, update_only: bool) -> None:
    existing = peers.get(op.public_key)
    if existing is None:
        if op.update_only and update_only:
            return
        existing = PeerStatus(PeerConfig(op.public_key))
    config = existing.config
    allowed = set() if op.replace_allowed_ips else set(config.allowed_ips)
    allowed.update(op.allowed_ips)
    # A prefix belongs to one peer: taking it here removes it from whoever had it.
    for key, other in list(peers.items()):
        if key != op.public_key and allowed.intersection(other.config.allowed_ips):
            kept = tuple(n for n in other.config.allowed_ips if n not in allowed)
            peers[key] = _with_config(other, replace(other.config, allowed_ips=kept))
    keepalive = config.persistent_keepalive
    if op.persistent_keepalive is not None:
        keepalive = op.persistent_keepalive or None
    new = PeerConfig(
        op.public_key,
        op.endpoint if op.endpoint is not None else config.endpoint,
        tuple(allowed),
        keepalive,
    )
    peers[op.public_key] = _with_config(existing, new)


def _with_config(status: PeerStatus, config: PeerConfig) -> PeerStatus:
    return PeerStatus(config, status.last_handshake, status.rx_bytes, status.tx_bytes)
