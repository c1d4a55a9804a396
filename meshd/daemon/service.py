"""The daemon: one trio nursery around a gossip host, the membership owner and the control socket.

Tasks (each a loop; none shares mutable state except through :class:`NodeState`, whose
methods never await):

* gossip: the host's validator is :meth:`NodeState.validate` (merge, store, then forward);
  delivered messages are drained;
* anti-entropy: a sync with every member that connects, then one random member every
  ``sync_interval``, again at once while a sync brings something new;
* enrollment: ``/meshd/enroll/1.0.0`` countersigns invites for peers that present them;
* announcements at start, when our addresses change and every ``announce_interval``;
* a one-second tick that expires silent members;
* connections: keep ``degree`` members connected, dialled from their announced addresses with
  backoff; drop revoked members at once and non-members after a grace period;
* the store poll, which picks up revocations ``meshd revoke`` wrote while we run;
* the control socket.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from meshd.control.server import ControlStats
from meshd.control.server import serve as serve_control
from meshd.daemon.babel import BabelService
from meshd.daemon.config import DaemonConfig, topic_of
from meshd.daemon.ingest import check_sync_records
from meshd.daemon.lifecycle import down_answer
from meshd.daemon.rekey import rotate_wg
from meshd.daemon.renewer import add_expiry, expiring_view, lifecycle_services
from meshd.daemon.state import NodeState, SyncSessions
from meshd.daemon.streams import converse, read_enrollment
from meshd.daemon.wireguard import WireGuardMesh, local_addresses
from meshd.errors import DecodeError, MeshdError, UsageError, VerifyError
from meshd.gossip import enroll
from meshd.gossip import sync as sync_protocol
from meshd.gossip.admission import StrangerBudget
from meshd.gossip.host import (
    DialBackoff,
    FramedStream,
    GossipHost,
    HostConfig,
    PeerConnected,
    TransportError,
    peer_id_of,
    public_key_of,
)
from meshd.keys import fingerprint
from meshd.membership import Event, MemberState, Revoked
from meshd.mesh.underlay import (
    default_endpoints,
    endpoint_hosts,
    expand_listen_addrs,
    underlay_of,
    usable_addresses,
)
from meshd.records import make_announcement, record_id
from meshd.statedir import NodeDir
from meshd.wg.model import IPAddress

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

MAX_RESYNC = 4  # syncs in a row with one peer while each brings something new
EXCLUSION_NOTICE = 2.0  # seconds to sync with a member we just excluded, so it learns it
REVOKED_GRACE = 1.0  # seconds a revoked member that dials in is kept, to hear why it is refused
# Established inbound connections of non-members (fresh keys cost nothing), per source (an
# IPv4 address or IPv6 /64) and in all; and the graces given per source per enrollment_grace.
# Graces are many more than connections: at most 8 strangers of a source are connected at
# once anyway, and machines that join together from behind one NAT each need one.
STRANGERS_PER_SOURCE = 8
STRANGERS_TOTAL = 128
GRACES_PER_SOURCE = 64


class Daemon:
    """The running node. Build it with :func:`run`."""

    def __init__(
        self, config: DaemonConfig, state: NodeState, host: GossipHost, mesh: WireGuardMesh
    ) -> None:
        self.config = config
        self.state = state
        self.host = host
        self.mesh = mesh
        self.random = random.Random()  # noqa: S311 (peer choice, not secrets)
        self.started = time.monotonic()
        self._first_seen: dict[str, float] = {}
        self._refused: set[str] = set()
        self.grace = enroll.GracePolicy(
            connect=config.non_member_grace,
            enroll=config.enrollment_grace,
            attempts=config.enrollment_attempts,
            cooldown=config.grace_cooldown,
        )
        self.strangers: StrangerBudget[Any] = StrangerBudget(
            STRANGERS_PER_SOURCE,
            STRANGERS_TOTAL,
            graces_per_source=GRACES_PER_SOURCE,
            grace_window=config.enrollment_grace,
        )
        host.bound_strangers(self.strangers, self._is_member_peer)
        self.sync_sessions = SyncSessions()
        state.peer_key = _key_of
        self._dials = DialBackoff(config.max_backoff)
        self.control_stats = ControlStats()
        self._dialling: set[bytes] = set()
        self._syncing: set[str] = set()
        self._announced: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        self._hosts: list[IPAddress] = []
        self._endpoints: tuple[str, ...] = config.endpoints
        self._events_send, self._events_receive = trio.open_memory_channel[Event](4096)
        self._sync_send, self._sync_receive = trio.open_memory_channel[str](256)
        self.syncs = 0
        self._nursery: trio.Nursery | None = None
        state.add_sink(self._on_events)
        self.babel = _babel_service(config, state, mesh)
        self.lifecycle = lifecycle_services(state, config, self.flood)
        if self.babel is not None:
            state.add_sink(self.babel.notify)

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        host = self.host
        host.set_stream_handler(sync_protocol.PROTOCOL_ID, self._serve_sync)
        host.set_stream_handler(enroll.PROTOCOL_ID, self._serve_enroll)
        await self._refresh_underlay()
        self._remember_listen_addrs()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(
                partial(serve_control, stats=self.control_stats),
                self.state.node.paths.socket,
                self._control,
            )
            nursery.start_soon(self._drain_messages)
            nursery.start_soon(self._peer_events)
            nursery.start_soon(self._membership_events)
            nursery.start_soon(self._sync_worker)
            nursery.start_soon(self._every, self.config.tick_interval, self._tick)
            nursery.start_soon(self._every, self.config.store_poll_interval, self._poll_store)
            nursery.start_soon(self._every, self.config.announce_interval, self._announce)
            nursery.start_soon(self._every, self.config.connect_interval, self._connections)
            nursery.start_soon(self._every, self.config.sync_interval, self._periodic_sync)
            for service in self.lifecycle:
                await nursery.start(service.run)
            if self.babel is not None:
                await nursery.start(self.babel.run)
            log.info(
                "meshd up: node %s (%s) in network %s, listening on %s",
                self.state.node.name,
                fingerprint(self.state.key),
                self.state.node.anchor.network.name,
                ", ".join(self.listen_addrs()),
            )
            task_status.started()

    async def _every(self, interval: float, action: Any) -> None:
        while True:
            try:
                await action()
            except MeshdError as exc:
                log.warning("%s: %s", getattr(action, "__name__", "task"), exc)
            await trio.sleep(interval)

    def listen_addrs(self) -> list[str]:
        """Where others can dial us: the host's listen addresses, wildcards made concrete."""
        return expand_listen_addrs(self.host.listen_addrs(), self._hosts)

    def _remember_listen_addrs(self) -> None:
        addrs = self.listen_addrs()
        self.state.node.store.set_meta("listen_addrs", "\n".join(addrs).encode())

    async def _refresh_underlay(self) -> None:
        """Read our interface addresses: the endpoints and hosts we announce, what we reach."""
        config = self.config
        exclude = [config.interface, "lo"]
        local = await local_addresses()
        self.mesh.set_underlay(underlay_of(local, exclude=exclude))
        if config.endpoints:
            self._hosts = endpoint_hosts(config.endpoints)
        else:
            self._hosts = [a.address for a in usable_addresses(local, exclude=exclude)]
            if self.mesh.kind != "none":
                self._endpoints = default_endpoints(local, config.listen_port, exclude=exclude)

    # --- gossip --------------------------------------------------------------------------------

    async def _drain_messages(self) -> None:
        # Records were merged and stored by the validator; what is delivered is only drained.
        async for _ in self.host.messages:
            pass

    async def flood(self, raw: bytes) -> None:
        self.state.mark_outgoing(raw)
        try:
            await self.host.publish(raw)
            self.state.traffic.published()
        except (TransportError, ValueError) as exc:
            log.warning("could not publish record %s: %s", record_id(raw).hex()[:12], exc)
        finally:
            self.state.unmark_outgoing(raw)

    async def _announce(self) -> None:
        state = self.state
        await self._refresh_underlay()
        addrs = tuple(self.listen_addrs())
        endpoints = self._endpoints
        now = state.clock()
        announcement = make_announcement(
            state.node.node_key,
            network_id=state.node.anchor.network_id,
            seq=time.time_ns(),
            issued_at=now,
            endpoints=endpoints,
            addrs=addrs,
        )
        try:
            outcome = state.add_local(announcement)
        except VerifyError as exc:
            log.warning("not announcing: %s", exc)
            return
        if (endpoints, addrs) != self._announced:
            self._announced = (endpoints, addrs)
            self._remember_listen_addrs()
        if outcome.new:
            await self.flood(announcement.raw)

    async def _tick(self) -> None:
        self.state.tick()

    async def _poll_store(self) -> None:
        for raw in self.state.adopt_stored_revocations():
            log.info("flooding revocation %s from the store", record_id(raw).hex()[:12])
            await self.flood(raw)

    # --- membership events -------------------------------------------------------------------

    def _on_events(self, events: Sequence[Event]) -> None:
        for event in events:
            try:
                self._events_send.send_nowait(event)
            except trio.WouldBlock:
                log.warning("membership event queue full; dropped %s", type(event).__name__)

    async def _membership_events(self) -> None:
        async for event in self._events_receive:
            member = event.member
            log.info("member %s (%s) is %s", member.name, member.node_id[:10], type(event).__name__)
            if isinstance(event, Revoked) and member.node_key != self.state.key:
                self._nursery_soon(self._tell_and_disconnect, peer_id_of(member.node_key))

    async def _tell_and_disconnect(self, peer: str) -> None:
        """Drop a member that was just excluded, after one short sync so it learns why."""
        if peer in self.host.connected_peers():
            with trio.move_on_after(EXCLUSION_NOTICE):
                await self.sync_once(peer)
        self._refused.add(peer)
        await self._disconnect(peer, "revoked")

    # --- connections ---------------------------------------------------------------------------

    async def _disconnect(self, peer: str, why: str) -> None:
        if peer not in self.host.connected_peers():
            return
        log.info("disconnecting %s: %s", peer, why)
        try:
            await self.host.disconnect(peer)
        except MeshdError as exc:
            log.debug("disconnect %s: %s", peer, exc)

    async def _peer_events(self) -> None:
        async for event in self.host.events:
            if not isinstance(event, PeerConnected):
                self._first_seen.pop(event.peer_id, None)
                self._refused.discard(event.peer_id)
                continue
            peer = event.peer_id
            now = time.monotonic()
            self._first_seen.setdefault(peer, now)
            key = _key_of(peer)
            if key is None:
                await self._disconnect(peer, "not an Ed25519 peer")
                continue
            if not self.state.is_member(key):
                source = self.host.source_of_peer(peer)
                if source is not None and not self.strangers.grant_grace(source, peer, now):
                    # A fresh key costs nothing: a source gets so many graces per window.
                    self._nursery_soon(self._disconnect, peer, f"no grace left for {source}")
                    continue
                self.grace.connected(peer, now)  # once per window, not per connection
            if not self.state.is_revoked(key):
                # Unknown peers too: it may be a member whose admission we have not heard of
                # (two sides of a healed partition); if not, it is dropped after the grace.
                self._request_sync(peer)
            # A revoked member that dials us goes at the next connection pass, within
            # REVOKED_GRACE: long enough to tell it why if it tries to enroll again.

    def _is_member_peer(self, peer: str) -> bool:
        key = _key_of(peer)
        return key is not None and self.state.is_member(key)

    async def _connections(self) -> None:
        now = time.monotonic()
        connected = self.host.connected_peers()
        member_peers = 0
        for peer in connected:
            key = _key_of(peer)
            seen = self._first_seen.setdefault(peer, now)
            if key is None or self.state.is_revoked(key):
                if now - seen >= REVOKED_GRACE or peer in self._refused:
                    await self._disconnect(peer, "revoked")
                continue
            if self.state.is_member(key):
                member_peers += 1
                self.grace.forget(peer)
                self._dials.forget(key)
                continue
            if self.grace.expired(peer, now):
                await self._disconnect(peer, "not a member")
        wanted = self.config.degree - member_peers - len(self._dialling)
        if wanted > 0:
            self._dial_some(wanted, set(connected), now)

    def _dial_some(self, wanted: int, connected: set[str], now: float) -> None:
        candidates = []
        for member in self.state.members():
            key = member.node_key
            if key == self.state.key or member.state is not MemberState.ADMITTED:
                continue
            if member.announcement is None or not member.announcement.addrs:
                continue
            if key in self._dialling or peer_id_of(key) in connected:
                continue
            # Due again after its backoff, or at once when its addresses changed.
            if not self._dials.due(key, member.announcement.addrs, now):
                continue
            candidates.append((key, member.announcement.addrs))
        for key, addrs in self.random.sample(candidates, min(wanted, len(candidates))):
            self._dialling.add(key)
            self._nursery_soon(self._dial, key, addrs)

    def _nursery_soon(self, fn: Any, *args: Any) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    async def _dial(self, key: bytes, addrs: Sequence[str]) -> None:
        try:
            expected = peer_id_of(key)
            usable = [a for a in addrs if a.endswith("/p2p/" + expected)]
            results = await self.host.connect_any(usable) if usable else []
            if any(r.ok for r in results):
                self._dials.forget(key)
                return
            jitter = 0.5 + self.random.random()
            delay = self._dials.failed(key, tuple(addrs), time.monotonic(), jitter)
            log.debug("could not reach %s; next try in %.0f s", expected, delay)
        finally:
            self._dialling.discard(key)

    # --- anti-entropy ----------------------------------------------------------------------

    def _request_sync(self, peer: str) -> None:
        with contextlib.suppress(trio.WouldBlock):
            self._sync_send.send_nowait(peer)

    async def _periodic_sync(self) -> None:
        members = [
            p for p in self.host.connected_peers() if (k := _key_of(p)) and self.state.is_member(k)
        ]
        if members:
            self._request_sync(self.random.choice(members))

    async def _sync_worker(self) -> None:
        async with trio.open_nursery() as nursery:
            async for peer in self._sync_receive:
                if peer not in self._syncing:
                    self._syncing.add(peer)
                    nursery.start_soon(self._sync_with, peer)

    async def _sync_with(self, peer: str) -> None:
        try:
            for _ in range(MAX_RESYNC):
                result = await self.sync_once(peer)
                if result is None or result.new == 0:
                    break
        finally:
            self._syncing.discard(peer)

    async def sync_once(self, peer: str) -> Any:
        """One sync conversation with ``peer``, as initiator; None if it failed."""
        try:
            stream = await self.host.open_stream(peer, sync_protocol.PROTOCOL_ID)
        except MeshdError as exc:
            log.debug("sync with %s: %s", peer, exc)
            return None
        session = sync_protocol.SyncSession(self.state.membership)
        try:
            result = await converse(stream, session, partial(self._ingest, peer), initiator=True)
        except (MeshdError, ValueError) as exc:
            log.info("sync with %s failed: %s", peer, exc)
            self.state.traffic.synced(None, initiator=True)
            await stream.reset()
            return None
        finally:
            self.sync_sessions.dropped += session.dropped
        await stream.close()
        self.syncs += 1
        self.state.traffic.synced(result, initiator=True)
        if result.records_received or result.records_sent:
            log.info(
                "synced with %s: %d records in (%d new), %d out, %d bytes",
                peer,
                result.records_received,
                result.new,
                result.records_sent,
                result.bytes_sent + result.bytes_received,
            )
        return result

    async def _ingest(self, peer: str, raws: Sequence[bytes]) -> int:
        state = self.state
        checked = await check_sync_records(
            raws, admit=lambda records: state.admit_sync_records(peer, records, time.monotonic())
        )
        batch = state.merge_batch(
            checked.records,
            announcements_checked=checked.announcements_checked,
            rejected=checked.rejected,
            source=state.source_of(peer),
        )
        return batch.new

    async def _serve_sync(self, stream: FramedStream) -> None:
        peer = stream.remote_peer_id
        key = _key_of(peer)
        if key is None or self.state.is_revoked(key):
            log.info("refused sync from revoked %s", peer)
            await stream.reset()
            return
        member = self.state.is_member(key)
        now = time.monotonic()
        if not member and self.grace.expired(peer, now):
            why: str | None = "grace-over"
        else:
            why = self.sync_sessions.open(peer, member=member, now=now)
        if why is not None:
            log.info("refused sync from %s: %s", peer, why)
            await stream.reset()
            return
        session = sync_protocol.SyncSession(self.state.membership)
        result = None
        try:
            result = await converse(stream, session, partial(self._ingest, peer), initiator=False)
        finally:
            self.state.traffic.synced(result, initiator=False)
            self.sync_sessions.close(peer, member=member)
            self.sync_sessions.dropped += session.dropped

    # --- enrollment ----------------------------------------------------------------------------

    async def _serve_enroll(self, stream: FramedStream) -> None:
        peer = stream.remote_peer_id
        key = _key_of(peer)
        if (
            key is not None
            and not self.state.is_member(key)
            and not self.grace.enrolling(peer, time.monotonic())
        ):
            log.info("refused enrollment from %s: attempts spent", peer)
            await stream.reset()
            return
        try:
            enrollment = await read_enrollment(stream)
            if key is None:
                raise VerifyError("wrong-peer", "the peer id does not name an Ed25519 key")
            admission = self.state.sponsor(enrollment, key)
        except (DecodeError, VerifyError) as exc:
            error = exc if isinstance(exc, VerifyError) else VerifyError("malformed", str(exc))
            log.info("refused enrollment from %s: %s", peer, error.reason)
            await stream.send_frame(enroll.encode_refusal(error))
            if error.reason == "revoked":
                self._refused.add(peer)
            return
        log.info(
            "admitted %s (%s)",
            admission.enrollment.name,
            fingerprint(admission.enrollment.node_key)[:10],
        )
        await stream.send_frame(enroll.encode_reply(admission))
        await self.flood(admission.raw)

    # --- control -------------------------------------------------------------------------------

    async def _control(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "status":
            view = self.state.status_view()
            view["listen_addrs"] = self.listen_addrs()
            view["endpoints"] = list(self._endpoints)
            view["wireguard"] = await self.mesh.status_view()
            view["peer_id"] = self.host.peer_id
            view["connected"] = len(self.host.connected_peers())
            view["syncs"] = self.syncs
            view["budgets"] = self.budgets_view()
            view["uptime"] = round(time.monotonic() - self.started, 1)
            view["tasks"] = trio_task_count()
            view["shed"] = self.shed_view()
            view["expiring"] = expiring_view(self.state)
            return view
        if cmd == "peers":
            connected = {k for p in self.host.connected_peers() if (k := _key_of(p))}
            rows = self.state.peers_view(connected, await self.mesh.peer_stats())
            if self.babel is not None:
                for member, row in zip(self.state.members(), rows, strict=True):
                    row.update(self.babel.peer_route(member))
            add_expiry(rows)
            return rows
        if cmd == "routes":
            if self.babel is None:
                raise UsageError(
                    "Babel is not running: it runs on the mesh with a WireGuard backend, and "
                    "with the routers of --babel-interface links",
                    hint="start with --wg-backend auto, kernel or userspace, or --babel-interface",
                )
            return self.babel.routes_view()
        if cmd == "invite-bootstrap":
            return self.listen_addrs()
        if cmd == "publish":
            return await self._publish(args)
        if cmd == "connect":
            addrs = args.get("addrs")
            if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
                raise UsageError("connect needs args.addrs: a list of multiaddrs")
            results = await self.host.connect_any(addrs[:16])
            return [{"addr": r.addr, "peer_id": r.peer_id, "error": r.error} for r in results]
        if cmd == "sponsored":
            # What a revocation of args.target lists (Revocation.sponsored), from the
            # membership held here: `meshd revoke` then need not load and verify the store.
            target = args.get("target")
            if not isinstance(target, str) or len(target) != 64:
                raise UsageError("sponsored needs args.target: a 32-byte key in hex")
            try:
                key = bytes.fromhex(target)
            except ValueError:
                raise UsageError("sponsored needs args.target: a 32-byte key in hex") from None
            membership = self.state.membership
            return {
                "sponsored": [rid.hex() for rid in membership.sponsored_by(key)],
                "legacy_only": membership.only_legacy_revocations(key),
            }
        if cmd == "rotate-wg":
            return await rotate_wg(self.state, self.mesh, self.flood, self.babel)
        if cmd == "sync":
            for peer in self.host.connected_peers():
                self._request_sync(peer)
            return {"requested": len(self.host.connected_peers())}
        if cmd == "down":
            return down_answer(self.state.node.paths.root)
        raise UsageError(f"the daemon knows no command {cmd!r}", hint="update the CLI")

    def shed_view(self) -> dict[str, int]:
        """What was refused to stay within budget (docs/threat-model.md, §3.16)."""
        control = self.control_stats
        return {
            "handshakes": self.host.handshakes.shed,
            "handshakes_pending": self.host.handshakes.pending,
            "handshakes_evicted": self.host.handshakes.evicted,
            "control": control.shed,
            "control_idle": control.idle,
            "control_accept_errors": control.accept_errors,
            "strangers": self.strangers.shed,
            "strangers_held": len(self.strangers),
            "strangers_evicted": self.strangers.evicted,
            "strangers_unclosed": self.host.unclosed_sheds,
            "graces_refused": self.strangers.graces_refused,
        }

    async def _publish(self, args: dict[str, Any]) -> Any:
        text = args.get("record")
        if not isinstance(text, str):
            raise UsageError("publish needs args.record: a record in base64")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise UsageError("publish: args.record is not base64") from None
        outcome = self.state.add_local_untrusted(raw)
        if outcome.new:
            await self.flood(raw)
        excluded = [
            e.member.name or e.member.node_id for e in outcome.events if isinstance(e, Revoked)
        ]
        return {"new": outcome.new, "record_id": record_id(raw).hex(), "excluded": excluded}

    def budgets_view(self) -> dict[str, int]:
        """What the per-peer budgets of sync and enrollment refused (docs/daemon.md)."""
        sessions = self.sync_sessions
        return {
            "sync_sessions_open": sessions.open_count,
            "sync_sessions_refused": sessions.refused,
            "sync_items_dropped": sessions.dropped,
            "enroll_attempts_refused": self.grace.refused_attempts,
            "grace_tracked": len(self.grace),
        }


def _babel_service(
    config: DaemonConfig, state: NodeState, mesh: WireGuardMesh
) -> BabelService | None:
    """The Babel service when ``--babel-*`` asks for it; on the mesh when WireGuard runs
    and takes extra allowed-ips from Babel."""
    on_mesh = mesh.kind != "none" and hasattr(mesh, "set_extra_prefixes")
    if not (config.babel.enabled or on_mesh):
        return None
    return BabelService(
        config.babel,
        node_key=state.key,
        overlay=mesh.overlay,
        own_wg_key=mesh.own_wg_key if on_mesh else None,
        members=state.members,
        grants=state.membership.grants,
        mesh=mesh if on_mesh else None,
    )


def trio_task_count() -> int:
    """Trio tasks alive in this process: the root task and every task in its nursery tree."""
    count = 0
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


def _key_of(peer: str) -> bytes | None:
    try:
        return public_key_of(peer)
    except DecodeError:
        return None


def host_config(config: DaemonConfig, node: NodeDir, listen: Sequence[str]) -> HostConfig:
    return HostConfig(
        identity_seed=node.node_key.seed,
        listen_addrs=tuple(listen),
        topic=topic_of(fingerprint(node.anchor.root_key)),
        degree=config.degree,
        degree_low=max(1, min(4, config.degree - 2)),
        degree_high=max(config.degree * 2, 2),
        stream_timeout=config.stream_timeout,
        dial_timeout=config.dial_timeout,
        shutdown_timeout=config.shutdown_timeout,
    )


async def serve(
    config: DaemonConfig,
    state: NodeState,
    mesh: WireGuardMesh,
    *,
    task_status: TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gossip side of a node whose state and WireGuard are open, until cancelled."""
    validate = state.traffic.counting(state.validate)
    async with GossipHost(host_config(config, state.node, config.listen), validate) as host:
        daemon = Daemon(config, state, host, mesh)
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            task_status.started(daemon)
