"""How a round's operations go to the WireGuard device: in sets each answered within the UAPI
deadline (:func:`set_chunks`), a first round's keepalives left for right after it
(:func:`keepalives_later`, :class:`Keepalives`), and how a round's operations are logged
(:func:`described`). Pure: used by :mod:`meshd.daemon.wireguard`'s rounds."""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from meshd.wg.model import DeviceState, Operation, PeerOperation, RemovePeer, UpdatePeer

# Operations per UAPI set: wireguard-go takes ~0.1-0.5 ms per new peer, so a round of
# 10,000 peers in one set would outlast the UAPI client's deadline; in sets of this size the
# first peers are in within a fraction of a second and each set is answered in time.
SET_CHUNK = 1000
# Of those, operations that give a peer a persistent keepalive: wireguard-go sends the
# keepalive at once, and a peer without a session first makes a handshake initiation, in the
# UAPI goroutine. At 10,000 unanswered peers, sets of 1,000 keepalives took 0.4-1.4 s, and
# 6.9 s (past the UAPI deadline) once the first handshakes' retries competed with it; sets of
# 200 took 0.04-0.46 s, all 10,000 keepalives 4.1 s (docs/footprint.md).
KEEPALIVE_CHUNK = 200
LOGGED_OPS = 20  # a round's operations logged one by one; past that, counted


class Keepalives:
    """Keepalives left for later: each peer's key and its seconds, a list and an array (not
    an operation or a tuple each)."""

    __slots__ = ("keys", "seconds")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.seconds = array("H")


def keepalives_later(
    ops: list[PeerOperation], actual: DeviceState, later: Keepalives
) -> list[PeerOperation]:
    """The first round's peers created without their keepalive, noted in ``later``:
    wireguard-go starts a handshake the moment a peer gets one (~0.2 ms each, at 10,000
    members seconds before the last peer is in); they are set, and those handshakes started,
    right after the round (``WireGuardMesh._set_keepalives``). In place: each operation's
    copy takes the place (and the memory) of the one it replaces, not a second list of
    10,000 operations beside the first (~0.8 MiB more at the start's peak).

    So are the keepalives of peers the device holds without one: those a start set before
    the round, as the last stop kept them (:mod:`meshd.daemon.kept_peers`). An update left
    with nothing else to do is dropped."""
    with_keepalive = {p.public_key for p in actual.peers if p.config.persistent_keepalive}
    emptied = False
    for i, op in enumerate(ops):
        if (
            isinstance(op, UpdatePeer)
            and op.persistent_keepalive
            and op.public_key not in with_keepalive
        ):
            later.keys.append(op.public_key)
            later.seconds.append(op.persistent_keepalive)
            ops[i] = op = op.without_keepalive()  # the plan's own values: not checked again
            emptied = emptied or does_nothing(op)
    if emptied:
        ops[:] = [op for op in ops if not does_nothing(op)]
    return ops


def does_nothing(op: PeerOperation) -> bool:
    return (
        isinstance(op, UpdatePeer)
        and op.update_only
        and op.endpoint is None
        and op.persistent_keepalive is None
        and not op.replace_allowed_ips
    )


def set_chunks(ops: Sequence[PeerOperation]) -> list[list[PeerOperation]]:
    """``ops`` in order, in sets of at most SET_CHUNK operations of which at most
    KEEPALIVE_CHUNK give a keepalive (each may start a handshake inside the ``set``): every
    set is answered well within the UAPI deadline. A set that fails leaves the ones before it
    applied; the next round reads the device and plans only what is still missing."""
    chunks: list[list[PeerOperation]] = []
    current: list[PeerOperation] = []
    keepalives = 0
    for op in ops:
        starts = isinstance(op, UpdatePeer) and bool(op.persistent_keepalive)
        if len(current) >= SET_CHUNK or (starts and keepalives >= KEEPALIVE_CHUNK):
            chunks.append(current)
            current, keepalives = [], 0
        current.append(op)
        keepalives += starts
    if current:
        chunks.append(current)
    return chunks


def described(ops: Sequence[Operation]) -> str:
    """A round's operations for the log: each one, or a count past LOGGED_OPS of them."""
    if len(ops) <= LOGGED_OPS:
        return "; ".join(repr(op) for op in ops)
    shown = "; ".join(repr(op) for op in ops[:LOGGED_OPS])
    removed = sum(isinstance(op, RemovePeer) for op in ops)
    return (
        f"{shown}; and {len(ops) - LOGGED_OPS} more ({len(ops)} operations: "
        f"{sum(isinstance(op, UpdatePeer) for op in ops)} peers set, {removed} removed)"
    )
