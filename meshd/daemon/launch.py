"""Starting a node in the order that gets its tunnels up first.

1. open WireGuard (:func:`~meshd.daemon.wireguard_open.open_mesh`); if the last clean stop
   kept its peers (:mod:`meshd.daemon.kept_peers`) and the backend is ``wireguard-go``'s
   UAPI, a worker thread sets them while this thread loads the membership from the store
   (:class:`~meshd.daemon.state.NodeState`): both take about a second at 10,000 members;
   without them, a worker thread sets the keys of the members the store judged admitted
   while this thread plans the first round (:mod:`meshd.daemon.early_keys`);
2. reconcile once from the stored membership: every member we knew is a peer again (what
   the kept peers got wrong is corrected), and the new peers' first packets are already on
   their way;
3. only then load and start the gossip side (:mod:`meshd.daemon.service`), whose import
   alone (libp2p) takes about a second. It is imported in a worker thread, so the reconcile
   loop keeps running meanwhile;
4. tell systemd the node is ready (READY=1, :mod:`meshd.daemon.notify`), and keep its
   STATUS= line current.

Python's cyclic garbage collector is paused from the store's load until WireGuard is
programmed: a start-up from a 10,000-member store makes about a million objects that live
on, and each collection walked those made so far (a quarter of the CPU time of that start-up,
docs/footprint.md). Little of it is cyclic garbage; what is, is collected once the
collector runs again.

Shutdown runs the other way: systemd hears STOPPING=1, the gossip host closes, the peers are
kept for the next start, then the interface is removed and ``wireguard-go`` stopped.

This module imports neither libp2p nor the gossip host.
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio

from meshd.daemon import early_signals, kept_peers
from meshd.daemon.config import DaemonConfig
from meshd.daemon.early_keys import EarlyKeys
from meshd.daemon.last_endpoints import first_paths
from meshd.daemon.lifecycle import stop_on_down, stop_when_revoked
from meshd.daemon.metrics import MetricsServer, MetricsSlot, open_metrics
from meshd.daemon.notify import Notifier, inform_systemd
from meshd.daemon.rekey import finish_cut_short
from meshd.daemon.relaying import early_forwarding
from meshd.daemon.reload import Reloader, report
from meshd.daemon.startup import lock_state_dir
from meshd.daemon.state import NodeState
from meshd.daemon.wireguard import WireGuardMesh
from meshd.daemon.wireguard_open import current_underlay, open_mesh
from meshd.node.statedir import NodeDir

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


def _load_service() -> Any:
    from meshd.daemon.service import serve

    return serve


async def run(
    config: DaemonConfig,
    node: NodeDir,
    *,
    task_status: TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a node for an opened state dir until cancelled; reports the Daemon when started."""
    collecting = gc.isenabled()
    gc.disable()  # until WireGuard is programmed (see above)
    try:
        await _run(config, node, collecting, task_status)
    finally:
        if collecting:
            gc.enable()


async def _run(
    config: DaemonConfig, node: NodeDir, collecting: bool, task_status: TaskStatus[Any]
) -> None:
    kept = kept_peers.read(node)  # before the load, which may write the store
    async with open_metrics(config) as metrics, open_mesh(config, node) as mesh:
        # Where our WireGuard last saw peers behind NATs: initiate back through their mappings.
        mesh.paths = first_paths(node.paths.root, mesh.overlay_prefix, config.keepalive or 25)
        state = await _load(config, node, mesh, kept)
        finish_cut_short(state)
        try:
            await _serve(config, node, state, mesh, metrics, collecting, task_status)
        finally:  # a stop (SIGTERM, `meshd down`, an error): for the next start
            if kept_peers.threaded(mesh) is not None and mesh.kind != "none":
                _keep_peers(node, state, mesh)


async def _load(
    config: DaemonConfig, node: NodeDir, mesh: WireGuardMesh, kept: bytes | None
) -> NodeState:
    """The store loaded (in this thread: CPU) while the peers ``kept`` at the last stop are
    set from a worker thread, if the backend can (meshd.daemon.kept_peers); without them,
    the keys of the members it judged admitted are set from a worker thread once it is
    loaded, while the first round is planned (meshd.daemon.early_keys)."""
    writing = None
    if kept is not None and mesh.kind != "none":
        peers = kept_peers.usable(kept, int(time.time()), mesh.overlay_prefix)
        writing = kept_peers.KeptWrite.start(mesh, kept_peers.along(peers, mesh.paths))
    # Without kept peers (with them, one that failed leaves the first round to read the
    # device): the admitted members' keys, as soon as the store is judged.
    early = None
    if writing is None and mesh.kind != "none":
        early = partial(EarlyKeys.start, mesh)
    try:
        return NodeState(node, announce_ttl=config.announce_ttl, judged=early)
    finally:
        if writing is not None:
            await writing.finish()


def _keep_peers(node: NodeDir, state: NodeState, mesh: WireGuardMesh) -> None:
    """What :func:`kept_peers.keep` keeps; a bug there is logged, never raised over what
    stopped the daemon."""
    try:
        kept = kept_peers.keep(
            node,
            state.membership,
            own_node_key=mesh.own_node_key,
            own_wg_key=mesh.own_wg_key,
            underlay=mesh.underlay,
            now=int(time.time()),
        )
    except Exception:
        log.exception("keeping the peers for the next start failed (a bug in meshd)")
        return
    if kept is not None:
        log.info("WireGuard %s: %d peers kept for the next start", mesh.ifname, kept)


async def _serve(
    config: DaemonConfig,
    node: NodeDir,
    state: NodeState,
    mesh: WireGuardMesh,
    metrics: MetricsServer | None,
    collecting: bool,
    task_status: TaskStatus[Any],
) -> None:
    async with early_forwarding(config, relays=mesh.kind != "none") as forwarding:
        mesh.set_underlay(await current_underlay([config.interface, "lo"]))
        members = state.feed.subscribe()
        mesh.set_members(members.latest.members)
        async with trio.open_nursery() as nursery:
            await nursery.start(state.feed.run)
            await nursery.start(state.disk.run)  # fsyncs the store off the event loop
            nursery.start_soon(mesh.follow, members)
            if mesh.kind != "none":
                # With no backend there is nothing to program: no reconcile loop, which
                # would recompute the desired peers on every membership event.
                await nursery.start(mesh.run)
                log.info("WireGuard %s: programmed from the store", mesh.ifname)
            if collecting:
                gc.enable()
            serve = await trio.to_thread.run_sync(_load_service)
            daemon = await nursery.start(serve, config, state, mesh, forwarding)
            await nursery.start(inform_systemd, Notifier(), daemon._control)
            # Served from here on, and moved, turned on or off by a SIGHUP (live_config).
            daemon.metrics = MetricsSlot(metrics)
            await nursery.start(daemon.metrics.run, daemon)
            task_status.started(daemon)


async def run_until_signalled(
    config: DaemonConfig, node: NodeDir, reloader: Reloader | None = None
) -> int | None:
    """Run in the foreground; SIGINT or SIGTERM (or `meshd down`) shuts down within the
    configured deadline, and a revocation of this node ends it (NodeRevoked). SIGHUP reads
    the options again (``reloader``, meshd.daemon.reload); SIGUSR1 and SIGUSR2 are noted
    and ignored, where nothing else handles them. Returns the signal that stopped it, if
    one did."""
    if reloader is None:
        reloader = Reloader(None, {}, None, "this daemon was not started as `meshd up`")
    received: list[int] = []
    lock = lock_state_dir(node.paths.root)  # before the store is loaded: a second daemon
    try:  # for this state dir stops here, having changed nothing
        await _run_until_signalled(config, node, received, reloader)
    finally:
        lock.release()
    return received[0] if received else None


#: Signals whose default would end the daemon at once, without its goodbye: taken, unless
#: the program that runs the daemon handles them itself (a benchmark's heap dump).
NOTED: Final = (signal.SIGUSR1, signal.SIGUSR2)


async def _run_until_signalled(
    config: DaemonConfig, node: NodeDir, received: list[int], reloader: Reloader
) -> None:
    noted = [s for s in NOTED if early_signals.unhandled(s)]
    reloading = trio.Lock()  # one SIGHUP at a time, early ones among them
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP, *noted) as signals:
        async with trio.open_nursery() as nursery:

            async def handle(signum: int) -> None:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    async with reloading:
                        reload = partial(reloader.reload_now, time.time())
                        report(await trio.to_thread.run_sync(reload))
                    return
                if signum in noted:
                    log.info("%s: not used by meshd, ignored", name)
                    return
                log.info("%s: shutting down", name)
                received.append(signum)
                nursery.cancel_scope.cancel()

            async def wait_for_signal() -> None:
                async for signum in signals:
                    await handle(signum)

            nursery.start_soon(wait_for_signal)
            nursery.start_soon(stop_on_down, node.paths.root, nursery.cancel_scope)
            daemon = await nursery.start(run, config, node)
            daemon.reloader = reloader  # what SIGHUPs did, for meshd status and the metrics
            # What the running services take of a SIGHUP's options, in this thread.
            reloader.apply_live = partial(trio.from_thread.run, daemon.reconfigure)
            nursery.start_soon(stop_when_revoked, daemon.state.standing, node.paths.root)
            for signum in early_signals.taken():  # came while it started: handled now
                log.info("%s came during the start", signal.Signals(signum).name)
                await handle(signum)
