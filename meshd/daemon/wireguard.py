"""The WireGuard shell of the daemon: one backend, one interface, one reconcile loop.

:func:`meshd.daemon.wireguard_open.open_mesh` opens the backend (for ``userspace``, a
``wireguard-go`` child), which configures the interface: key, port, ``addrgenmode none``, the
key-derived link-local address, the overlay /128, link up. It then routes the network's
overlay /48 through the interface. :class:`WireGuardMesh` owns the backend from then on:

* each round reads the device, computes the desired peers from the membership
  (:func:`meshd.mesh.desired.desired_peers`), plans (:func:`meshd.wg.reconcile.plan`) and
  applies the plan; the next round reads the device again, so a ``set`` that failed half way
  is planned over from what the device really holds;
* the members come from the membership owner's feed (:meth:`WireGuardMesh.follow`, frozen
  snapshots, :mod:`meshd.daemon.feed`); a round runs at once on every new snapshot (a revoked
  member is removed the moment the revocation is accepted), after an error within
  ``RETRY_AFTER_ERROR``, and every ``interval`` seconds otherwise, or further apart when a
  round's pass (its read of the device and its plan) costs more
  (:mod:`meshd.daemon.cost_pace`); such a periodic round
  reads the device with the punching step, which reads it about as often: half way through
  its wait, it takes the step's read begun within the last second, or the step's next one
  (within the whole wait again at most), and shares it (:mod:`meshd.daemon.device_reads`);
* ``previous`` (the desired state of the last successful round) is what lets the reconciler
  leave an endpoint WireGuard learnt by roaming alone;
* Babel's selected routes come in through :meth:`WireGuardMesh.set_extra_prefixes`; once
  Babel runs (:meth:`WireGuardMesh.follow_babel`), a new direct neighbour keeps its overlay
  /128 on its own peer for a hold-down (:mod:`meshd.mesh.holddown`), and a round runs when
  a hold ends;
* a never-answered peer given an endpoint is re-created, at once if our WireGuard key is the
  lower of the two, else only if still unanswered a second later; with the higher key, a peer
  created with its endpoint is also re-created once if still unanswered a second later
  (:class:`meshd.mesh.handshake.FirstHandshakes`: first handshakes must not cross), and a
  round runs when such a re-creation is due;
* peers that were just created, or given a new endpoint, get one small UDP datagram to their
  overlay address (the discard port): it makes WireGuard start a handshake now rather than
  at the first real packet (:mod:`meshd.daemon.wireguard_poke`).

The first round runs from the store, before the gossip host exists: a restarted member has
its tunnels back before it has reconnected to anyone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import operator
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import TYPE_CHECKING

import trio
from nacl.bindings import crypto_scalarmult_base

from meshd.daemon import wireguard_sets
from meshd.daemon.cost_pace import spaced
from meshd.daemon.device_reads import SharedReads, read_cost, threaded_sets, writes_counted
from meshd.daemon.feed import Subscription
from meshd.daemon.wireguard_poke import poke_peers, poke_targets, send_pokes
from meshd.daemon.wireguard_sets import (
    Keepalives,
    described,
    keepalives_later,
    set_chunks,
)
from meshd.errors import BackendError
from meshd.membership import Member
from meshd.mesh.desired import (
    DesiredMesh,
    ExtraPrefixes,
    PeersByKey,
    Underlay,
    desired_peers,
    peer_members,
)
from meshd.mesh.handshake import FirstHandshakes
from meshd.mesh.holddown import HoldDown, hold_down_period, routed_directly
from meshd.mesh.paths import Path, with_paths
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.backend import Backend
from meshd.wg.model import (
    DeviceState,
    IPNetwork,
    PeerConfig,
    PeerOperation,
    PeerStatus,
    RemovePeer,
    SetListenPort,
    UpdatePeer,
    key_to_base64,
)
from meshd.wg.reconcile import plan

if TYPE_CHECKING:
    from trio_typing import TaskStatus


log = logging.getLogger(__name__)

RETRY_AFTER_ERROR = 0.5  # seconds before a round that follows a failed one
# Seconds before a round a deadline calls for when the round just run began after it and
# left it due (a hold or a first handshake it could not settle): a deadline that stays due
# does not run rounds back to back. One that came due while the round ran is due at once.
DUE_AGAIN = 1.0


class WireGuardMesh:
    """Keeps one WireGuard interface's peers equal to the admitted members."""

    def __init__(
        self,
        backend: Backend,
        *,
        kind: str,
        own_node_key: NodeKey,
        own_wg_key: WgKey,
        overlay: ipaddress.IPv6Address,
        overlay_prefix: ipaddress.IPv6Network,
        listen_port: int,
        interval: float = 5.0,
        keepalive: int | None = 25,
        poke: bool = True,
        mtu: int = 1420,
    ) -> None:
        self.backend = backend
        self.mtu = mtu  # what the interface was given (at its start, or by a SIGHUP)
        self.kind = kind
        self.own_node_key = own_node_key
        self.own_wg_key = own_wg_key
        self.overlay = overlay
        self.overlay_prefix = overlay_prefix
        self.listen_port = listen_port
        self.interval = interval
        self.keepalive = keepalive
        self.underlay = Underlay()
        self.rounds = 0
        self.errors = 0
        self.last_error = ""
        self.last_round_ops = 0
        # Seconds the last round's pass over every member took: its read of the device (the
        # last one made, if it was handed on) and its plan; what paces the periodic rounds.
        self.pass_cost = 0.0
        self._poke = poke
        self._members: Sequence[Member] = ()
        self._extra = ExtraPrefixes()
        self._hold: HoldDown | None = None
        self._first = FirstHandshakes(own_wg_key)
        self._later = Keepalives()  # what the first round left to set right after it
        # The device as a start set it from the peers the last stop kept, before the first
        # round (meshd.daemon.kept_peers): that round plans from it, not from a read.
        self._assumed: DeviceState | None = None
        self._created_early: list[WgKey] = []  # those of them created with an endpoint
        # Or, at a start without them, the keys of the members the store judged admitted,
        # being set from a worker thread while the first round is planned
        # (meshd.daemon.early_keys): peers with nothing else, which that round creates as
        # if they were not there (their endpoints, allowed-ips and keepalives), after the
        # set has ended (``_early``); those it does not want it removes.
        self._unconfigured: AbstractSet[bytes] = frozenset()
        self._early: Callable[[], Awaitable[bool]] | None = None
        self._held: frozenset[WgKey] = frozenset()
        self._kept: set[tuple[WgKey, WgKey]] = set()
        self._desired = DesiredMesh()
        self._reported: set[tuple[bytes, bytes]] = set()
        self._kick_send, self._kick_receive = trio.open_memory_channel[None](1)
        # Per peer (WireGuard key): the endpoint and keepalive its direct path chose
        # (meshd.daemon.punching, read from its peers: meshd.daemon.laid_paths); they win
        # over the announcement's.
        self.paths: Mapping[bytes, Path] = {}
        # The device's latest handshake by peer (Unix time), as of the last round: a member
        # that handshakes is alive (meshd.daemon.liveness).
        self.handshakes: dict[bytes, float] = {}
        # Peers whose direct path is hopeless (meshd.mesh.punch.direct_hopeless): not held.
        self.relay_now: AbstractSet[bytes] = frozenset()

    @property
    def ifname(self) -> str:
        return self.backend.ifname

    def set_members(self, members: Sequence[Member]) -> None:
        """The members from now on (a round runs at once)."""
        self._members = tuple(members)
        self.kick()

    async def follow(self, subscription: Subscription) -> None:
        """Take every snapshot of the membership the owner publishes."""
        self._members = subscription.latest.members
        async for snapshot in subscription:
            if snapshot.revocations:
                log.debug("snapshot %d: reconciling WireGuard now", snapshot.version)
            self.set_members(snapshot.members)

    def set_underlay(self, underlay: Underlay) -> None:
        if underlay != self.underlay:
            self.underlay = underlay
            self.kick()

    def set_extra_prefixes(self, extra: Mapping[WgKey, Sequence[IPNetwork]]) -> None:
        """Route these prefixes through these peers (by WireGuard key) from now on: Babel's
        selected routes. A round runs at once if the mapping changed."""
        mapping = ExtraPrefixes(extra)
        if mapping != self._extra:
            self._extra = mapping
            self.kick()

    def follow_babel(self, hello_interval: float) -> None:
        """Babel runs on the interface from now on, with this Hello interval: every peer is
        a new direct neighbour, held for a few Hellos (:mod:`meshd.mesh.holddown`)."""
        period = hold_down_period(hello_interval)
        self._hold = HoldDown(period)
        log.info("WireGuard %s: new direct neighbours held for %.1f s", self.ifname, period)
        self.kick()

    async def rekey(self, private_key: bytes) -> None:
        """Switch our interface to a new WireGuard key (``meshd rotate wg``): the key, the
        link-local address derived from it, then a round, and a datagram to every peer so
        that handshakes under the new key start at once."""
        await self.backend.rekey(private_key)
        self.own_wg_key = WgKey(crypto_scalarmult_base(private_key))
        self._first = FirstHandshakes(self.own_wg_key)
        log.info("WireGuard %s: now under key %s", self.ifname, key_to_base64(self.own_wg_key))
        await self.reconcile()
        if self._poke:
            updates = [UpdatePeer(key) for key in self._desired.peers]
            await poke_peers(self._desired, self.overlay_prefix, updates)

    async def set_listen_port(self, port: int) -> None:
        """Move WireGuard to UDP port ``port`` (a SIGHUP's ``listen_port``; a BackendError if
        the device refuses it): the sessions are kept, and a datagram goes to every peer
        from the new port, so that each peer's WireGuard follows us there at once, as it
        follows any peer that roams (our announcement with the new port goes too)."""
        await self.backend.set([SetListenPort(port)])
        was, self.listen_port = self.listen_port, port
        log.info("WireGuard %s: now on UDP port %d, was %d", self.ifname, port, was)
        if self._poke:
            updates = [UpdatePeer(key) for key in self._desired.peers]
            await poke_peers(self._desired, self.overlay_prefix, updates)

    def kick(self) -> None:
        """Ask for a round now (coalesced: many kicks before it runs make one round)."""
        with contextlib.suppress(trio.WouldBlock):
            self._kick_send.send_nowait(None)

    def assume_programmed(self, peers: Sequence[PeerConfig]) -> None:
        """Before the first round: the device holds ``peers`` (as the last stop kept them)
        and nothing else, set by :mod:`meshd.daemon.kept_peers` while the store loaded. The
        first round plans from them as from its read of the device, with them as the last
        round's desired peers: a peer no longer admitted is removed, an endpoint that moved
        since is set, the keepalives come right after it. A peer created with its endpoint
        is checked back on as the first round's own creations are
        (:class:`meshd.mesh.handshake.FirstHandshakes`)."""
        kept = PeersByKey.ordered(tuple(sorted(peers, key=_public_key)))
        self._desired = DesiredMesh(peers=kept)
        self._assumed = DeviceState(
            public_key=self.own_wg_key,
            has_private_key=True,
            peers=tuple(PeerStatus(peer) for peer in kept.values()),
        )
        self.backend.expect(kept)
        self._created_early = [WgKey(p.public_key) for p in kept.values() if p.endpoint]

    def assume_created(
        self, keys: AbstractSet[bytes], finished: Callable[[], Awaitable[bool]]
    ) -> None:
        """Before the first round: ``keys`` are being set on the device, each a peer with
        nothing but its key (no endpoint, no allowed-ips: it carries no packet), by
        :mod:`meshd.daemon.early_keys` until ``finished`` returns. The first round plans as
        for the empty device it opened, so each peer it wants is made whole as a creation
        (the UAPI takes it as an update of the peer there: the costly part of a new peer,
        WireGuard's precomputation from its key, is done), removes those of ``keys`` it
        does not want, and sends nothing before ``finished`` has returned, whether the set
        succeeded or not: its operations are right for the device either way."""
        self._assumed = DeviceState(public_key=self.own_wg_key, has_private_key=True)
        self._unconfigured = keys
        self._early = finished

    # --- the loop ------------------------------------------------------------------------------

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reconcile once (from whatever membership is attached), report started, then loop."""
        with contextlib.suppress(trio.WouldBlock):
            self._kick_receive.receive_nowait()  # kicks so far: the first round covers them
        began = trio.current_time()
        ok = await self.reconcile()
        task_status.started()
        while True:
            if ok and self._later.keys:  # what the first round left: right after it
                ok = await self._set_keepalives()
            # The device read for itself at most every `interval`, further apart as it grows
            # (meshd.daemon.cost_pace): a new snapshot or a kick still runs a round at once.
            paced = spaced(self.interval, self.pass_cost) if ok else RETRY_AFTER_ERROR
            # With reads shared, half of it, then the next read of another's (as long again
            # at most): a periodic round reads the device with the punching step.
            riding = ok and isinstance(self.backend, SharedReads)
            wait = paced / 2 if riding else paced
            hold_ends = self._hold.deadline() if self._hold is not None else None
            now = trio.current_time()
            for due in (hold_ends, self._first.deadline()):
                if due is not None:
                    wait = min(wait, max(0.0, due - now) if due > began else DUE_AGAIN)
            kicked = False
            with trio.move_on_after(wait):
                await self._kick_receive.receive()
                kicked = True
            if not kicked and riding and wait == paced / 2:
                await self._with_another_read(paced)
            began = trio.current_time()
            ok = await self.reconcile()

    async def _with_another_read(self, longest: float) -> None:
        """A periodic round reads the device with another caller (the punching step, which
        reads it about as often): at once if a read just began (and is held), else at the
        next one, or a kick, or ``longest`` seconds from now, whichever comes first
        (meshd.daemon.device_reads)."""
        reads = self.backend
        if not isinstance(reads, SharedReads) or reads.would_share():
            return
        with trio.move_on_after(longest) as waiting:
            async with trio.open_nursery() as nursery:

                async def kicked() -> None:
                    await self._kick_receive.receive()
                    waiting.cancel()

                nursery.start_soon(kicked)
                await reads.next_read()
                waiting.cancel()

    async def reconcile(self) -> bool:
        """One round: read, plan, apply. False (and logged) if the backend failed."""
        try:
            targets = await self._round()
        except BackendError as exc:
            self.errors += 1
            self.last_error = str(exc)
            log.warning("WireGuard %s: %s (reading the device again)", self.ifname, exc)
            return False
        if targets:
            await send_pokes(targets)
        return True

    async def _round(self) -> list[ipaddress.IPv6Address]:
        """Read, plan and apply; the overlay addresses of the peers to poke. What only the
        round needed (the device read, its operations: at a start, a list of ~2 operations a
        member) is let go when it returns, not held while the datagrams go out."""
        started = trio.current_time()
        if self._assumed is not None:  # set from the kept peers just now: not read back
            actual, self._assumed = self._assumed, None
        else:
            actual = await self.backend.get()
        read = trio.current_time()
        read_took = read_cost(self.backend, read - started)
        self.handshakes = {p.public_key: p.last_handshake for p in actual.peers if p.last_handshake}
        members = self._members
        held = self._hold_down(members, actual)
        desired = desired_peers(
            members,
            own_node_key=self.own_node_key,
            own_wg_key=self.own_wg_key,
            underlay=self.underlay,
            keepalive=self.keepalive,
            extra_prefixes=self._extra,
            held=held,
            previous=self._desired.peers,
        )
        desired = with_paths(desired, self.paths, actual, time.time(), self._desired.peers)
        # What the device reads back as desired is then these objects, not copies.
        self.backend.expect(desired.peers)
        self._held = held
        self._report(desired, members)
        if self._created_early:
            self._first.created(self._created_early, trio.current_time())
            self._created_early = []
        planned = plan(desired.peers, actual, self._desired.peers)
        if self._unconfigured:  # set before this round, wanted or not (assume_created)
            wanted = desired.peers
            gone: list[RemovePeer | UpdatePeer] = [
                RemovePeer(key) for key in sorted(k for k in self._unconfigured if k not in wanted)
            ]
            planned = gone + planned  # removals first, as a plan has them
            self._unconfigured = frozenset()
        ops = self._first.ops(planned, desired.peers, actual, trio.current_time())
        del planned
        deferred = self.rounds == 0 and self.keepalive is not None
        if deferred:
            self._later = Keepalives()  # a first round that failed noted its own
            ops = keepalives_later(ops, actual, self._later)
        self.pass_cost = read_took + trio.current_time() - read
        if self._early is not None:  # the keys set meanwhile: after them, not beside them
            early, self._early = self._early, None
            await self._set_after(early, ops)
        else:
            for chunk in set_chunks(ops):
                await self.backend.set(chunk)
        self.rounds += 1
        self.last_round_ops = len(ops)
        # Its peers (the endpoints we asked for, for the next plan) and what was left out;
        # not the members the peers stand for, which nothing reads again (8 bytes a member).
        self._desired = replace(desired, programmed=())
        if not ops:
            return []
        log.info("WireGuard %s: %s", self.ifname, described(ops))
        if deferred:
            return []  # the keepalives next, at once (run): they start the handshakes
        if not self._poke:
            return []
        updates = (op for op in ops if isinstance(op, UpdatePeer) and op.endpoint is not None)
        return poke_targets(desired, self.overlay_prefix, updates)

    async def _set_after(
        self, early: Callable[[], Awaitable[bool]], ops: Sequence[PeerOperation]
    ) -> None:
        """The first round's sets once the keys set early are in (``early``): each request
        made now, while ``wireguard-go`` still takes the keys, and sent from a worker thread
        one after another once they are in (at 10,000 members ~0.04 s after them, not the
        ~0.1 s of making each request once the one before was answered)."""
        backend = threaded_sets(self.backend)
        assert backend is not None  # the keys were set early through it (early_keys)
        sends = [backend.prepared_set(chunk) for chunk in set_chunks(ops)]
        await early()
        with writes_counted(self.backend):
            for send in sends:
                await trio.to_thread.run_sync(send)  # a refusal raises here, as a set's would

    async def _set_keepalives(self) -> bool:
        """The keepalives the first round left out, right after it, in sets of
        KEEPALIVE_CHUNK, each set's operations made as it goes: not a plan of every peer held,
        with the device read it came from, for the seconds 10,000 keepalives take (~1.5 MiB of
        RSS at 10,000 members: freed after the start, left as free blocks). A set that fails
        ends it (False, counted and logged as a round's): the next round's plan sets what is
        still missing. Done, it counts as a round (the one that set them before)."""
        later, self._later = self._later, Keepalives()
        keys, seconds = later.keys, later.seconds
        size = min(wireguard_sets.SET_CHUNK, wireguard_sets.KEEPALIVE_CHUNK)  # as set_chunks cuts
        for start in range(0, len(keys), size):
            end = start + size
            chunk: list[PeerOperation] = [
                UpdatePeer.derived(key, update_only=True, persistent_keepalive=value)
                for key, value in zip(keys[start:end], seconds[start:end], strict=True)
            ]
            try:
                await self.backend.set(chunk)
            except BackendError as exc:
                self.errors += 1
                self.last_error = str(exc)
                log.warning("WireGuard %s: %s (reading the device again)", self.ifname, exc)
                return False
        self.rounds += 1  # the first round's second half: counted as the round it was
        log.info("WireGuard %s: keepalives set on %d peers", self.ifname, len(keys))
        return True

    def _hold_down(self, members: Sequence[Member], actual: DeviceState) -> frozenset[WgKey]:
        """The peers held on their own overlay /128 this round (none before Babel runs);
        one whose first handshake did not come is released to the relay at once."""
        if self._hold is None:
            return frozenset()
        peers = peer_members(members, own_node_key=self.own_node_key, own_wg_key=self.own_wg_key)
        direct = routed_directly(peers, self._extra)
        answered = {WgKey(p.public_key) for p in actual.peers if p.last_handshake}
        released = {WgKey(key) for key in self.relay_now}
        return self._hold.update(trio.current_time(), peers.keys(), direct, answered, released)

    def _report(self, desired: DesiredMesh, members: Sequence[Member]) -> None:
        self._report_holds(desired, members)
        for shadowed in desired.shadowed:
            pair = (shadowed.member.node_key, shadowed.holder)
            if pair not in self._reported:
                self._reported.add(pair)
                whose = "this node" if shadowed.holder == self.own_node_key else "another member"
                log.warning(
                    "member %s (%s) announces the WireGuard key %s that %s holds; "
                    "it is not programmed",
                    shadowed.member.name,
                    shadowed.member.node_id[:10],
                    key_to_base64(shadowed.member.wg_key)[:8],
                    whose,
                )

    def _report_holds(self, desired: DesiredMesh, members: Sequence[Member]) -> None:
        """Log when a hold keeps a member off the relay Babel chose, and when the relay takes
        over after the hold-down (the direct path never came up)."""
        if not desired.refused_prefixes and not self._kept:
            return  # nothing held off a relay now or at the last round: nothing to say
        names: dict[WgKey, str] = {m.wg_key: m.name for m in members}
        # The interned /128s (the peers' own): no network made per member and round.
        owner: dict[IPNetwork, WgKey] = {m.overlay_prefix: m.wg_key for m in members}
        kept = {
            (owner[p], relay)
            for relay, p in desired.refused_prefixes
            if p in owner and owner[p] in self._held
        }
        relayed = {
            (owner[p], relay)
            for relay, peer in desired.peers.items()
            for p in peer.allowed_ips
            if p in owner and owner[p] != relay
        }
        for member, relay in sorted(kept - self._kept):
            log.info(
                "WireGuard %s: %s stays on its own peer, a new direct neighbour (Babel: via %s)",
                self.ifname,
                names.get(member, "?"),
                names.get(relay, "?"),
            )
        for member, relay in sorted((self._kept - kept) & relayed):
            log.info(
                "WireGuard %s: %s: no direct route from Babel within the hold-down; via %s now",
                self.ifname,
                names.get(member, "?"),
                names.get(relay, "?"),
            )
        self._kept = kept


_public_key = operator.attrgetter("public_key")
