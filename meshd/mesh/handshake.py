"""Getting a first handshake at once when a peer's endpoint becomes known (pure).

WireGuard starts at most one handshake per peer every 5 seconds (REKEY_TIMEOUT). A peer
created before its endpoint was known (the member was admitted, its announcement had not
arrived) already spent that attempt: the first packet found no endpoint. When the endpoint
then arrives, the next attempt is up to 5 s away. Likewise when our first initiation reached
a member that did not know us yet.

So when a plan gives a new endpoint to a peer that has never completed a handshake (it has no
session to lose), :func:`recreate_unanswered` replaces that update with a removal and a
creation of the whole peer. A new peer's handshake state is fresh, and its persistent
keepalive makes WireGuard send a first packet, hence an initiation, at once.

Two members that learn each other's endpoints at the same moment would both do this, and
their initiations would cross: each answers the other's, which replaces its own pending
handshake, so neither answer matches and no session forms until WireGuard's retry 5 s
later. :class:`FirstHandshakes` breaks the tie: of the two, the one with the lower WireGuard
public key re-creates at once; the other leaves the peer as it is (it still answers an
initiation: WireGuard learns the endpoint from it) and re-creates it only if it is still
unanswered ``defer`` seconds later, when the first side was slow or its packets were lost.

A peer created with its endpoint initiates at once on either side, and that initiation can
still cross the other's (the other side creating its peer for us, or re-creating it, at the
same moment). So the higher key also checks back on each peer it created with an endpoint:
still unanswered ``defer`` seconds later, it is re-created once. The lower key never checks
back, so the two do not initiate together again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshd.trust.keys import WgKey
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus, RemovePeer, UpdatePeer

DEFER = 1.0  # seconds the higher key leaves a first handshake to the lower one

Op = RemovePeer | UpdatePeer


def recreate_unanswered(
    ops: Sequence[Op],
    desired: Mapping[WgKey, PeerConfig],
    actual: DeviceState,
) -> list[Op]:
    """``ops`` with each endpoint change of a never-answered peer made a re-creation."""
    device = actual.peers_by_key()
    out: list[Op] = []
    for op in ops:
        want = desired.get(WgKey(op.public_key))
        if _new_endpoint_unanswered(op, device.get(op.public_key)) and want is not None:
            out.extend(_recreation(want))
        else:
            out.append(op)
    return out


class FirstHandshakes:
    """:func:`recreate_unanswered`, with the tie between two members broken by key."""

    def __init__(self, own_key: WgKey, defer: float = DEFER) -> None:
        self.own_key = own_key
        self.defer = defer
        self._waiting: dict[WgKey, float] = {}  # peer key -> when we re-create it ourselves
        # Waiting peers whose member announced no usable endpoint since (nothing to
        # re-create them with): kept, with their deadline, out of :meth:`deadline` (a past
        # one would wake the round loop at once, every time), until an endpoint is back.
        self._parked: dict[WgKey, float] = {}

    def goes_first(self, key: WgKey) -> bool:
        """Whether we, rather than the member with WireGuard key ``key``, initiate first."""
        return self.own_key < key

    def ops(
        self,
        ops: Sequence[Op],
        desired: Mapping[WgKey, PeerConfig],
        actual: DeviceState,
        now: float,
    ) -> list[Op]:
        """``ops`` (a plan) with each endpoint change of a never-answered peer made a
        re-creation now, or held back until ``defer`` after it was first planned."""
        device = actual.peers_by_key()
        # One deadline object for every peer held back this round, not a float each (24
        # bytes a peer: at a start from the store, every member waits).
        later = now + self.defer
        # A peer leaves the tables once answered or gone; one left without an endpoint
        # (its member announced none since) is parked until it has one again: dropped, a
        # moment without one lost the tie-break for good, and the initiations that crossed
        # waited for WireGuard's retry (5 s).
        waiting: dict[WgKey, float] = {}
        parked: dict[WgKey, float] = {}
        for table in (self._parked, self._waiting):
            for key, due in table.items():
                want = desired.get(key)
                if want is None or not _unanswered(device.get(key)):
                    continue
                (waiting if want.endpoint is not None else parked)[key] = due
        self._waiting, self._parked = waiting, parked
        out: list[Op] = []
        done: set[WgKey] = set()
        for op in ops:
            key = WgKey(op.public_key)
            want = desired.get(key)
            if want is not None and _created_with_endpoint(op, device.get(key)):
                if not self.goes_first(key):
                    # Ours may cross the other's first initiation (it may be creating or
                    # re-creating its peer for us now): check back, as for a held-back one.
                    self._waiting.setdefault(key, later)
                out.append(op)
                continue
            if want is None or not _new_endpoint_unanswered(op, device.get(key)):
                out.append(op)
                continue
            due = self._waiting.setdefault(key, now if self.goes_first(key) else later)
            if due <= now:
                out.extend(_recreation(want))
                done.add(key)
                del self._waiting[key]
                continue
            rest = _without_endpoint(op)
            if rest is not None:
                out.append(rest)
        # Still unanswered (any endpoint the device holds came with an initiation that we
        # answered but that never completed): start one ourselves. Their other operations go
        # in one pass over the round (once per peer was quadratic: 10,000 peers waiting at a
        # start from the store held the event loop for tens of seconds).
        late = [
            key
            for key, due in sorted(self._waiting.items())
            if due <= now and key not in done and desired[key].endpoint is not None
        ]
        if late:
            gone = set(late)
            out = [op for op in out if op.public_key not in gone]
            for key in late:
                out.extend(_recreation(desired[key]))
                del self._waiting[key]
        if done or late:
            # A table keeps its size when entries leave it: one that held every peer at a
            # start (~15-30 bytes a member at 10,000) is made again for those still waiting.
            self._waiting = dict(self._waiting)
        return out

    def created(self, keys: Sequence[WgKey], now: float) -> None:
        """Peers created with their endpoint outside a plan (those a start set as the last
        stop kept them, before its first round): the higher key checks back on each as on a
        plan's creations, ``defer`` seconds from ``now``."""
        later = now + self.defer
        for key in keys:
            if not self.goes_first(key):
                self._waiting.setdefault(key, later)

    def deadline(self) -> float | None:
        """When a held-back re-creation is due (a round should run then), if any."""
        return min(self._waiting.values(), default=None)

    def waiting(self) -> frozenset[WgKey]:
        """The peers held back or checked back on, parked ones included."""
        return frozenset(self._waiting) | frozenset(self._parked)


def _unanswered(status: PeerStatus | None) -> bool:
    return status is not None and status.last_handshake is None


def _created_with_endpoint(op: Op, status: PeerStatus | None) -> bool:
    return (
        isinstance(op, UpdatePeer)
        and status is None
        and not op.update_only
        and op.endpoint is not None
    )


def _new_endpoint_unanswered(op: Op, status: PeerStatus | None) -> bool:
    return isinstance(op, UpdatePeer) and op.endpoint is not None and _unanswered(status)


def _recreation(want: PeerConfig) -> list[Op]:
    return [
        RemovePeer(want.public_key),
        UpdatePeer(
            want.public_key,
            endpoint=want.endpoint,
            persistent_keepalive=want.persistent_keepalive,
            replace_allowed_ips=True,
            allowed_ips=want.allowed_ips,
        ),
    ]


def _without_endpoint(op: Op) -> UpdatePeer | None:
    """``op`` (an update of an existing peer) without its endpoint; None if that leaves
    nothing to do."""
    assert isinstance(op, UpdatePeer)
    if op.persistent_keepalive is None and not op.replace_allowed_ips:
        return None
    return UpdatePeer(
        op.public_key,
        update_only=True,
        persistent_keepalive=op.persistent_keepalive,
        replace_allowed_ips=op.replace_allowed_ips,
        allowed_ips=op.allowed_ips,
    )
