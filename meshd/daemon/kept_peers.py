"""The peers kept at a clean stop, programmed at the next start while the store loads.

The list's format and the rules that make it safe are :mod:`meshd.mesh.kept_peers`'s; the
store holds it (:meth:`meshd.node.store.Store.keep_peers`) and deletes it whenever the
record set changes. At a start, :func:`read` takes it from the store before the load,
:func:`usable` decodes it and keeps the peers a start may program now, and
:class:`KeptWrite` sets them from a worker thread (its socket waits let the load run) while
the event loop's own thread loads the store; once both are done, the mesh's first round
plans from them (:meth:`meshd.daemon.wireguard.WireGuardMesh.assume_programmed`) and
corrects whatever the judged store says otherwise. At a stop, :func:`keep` writes the list
from the membership as it is then.

Only a backend that can set from a thread does this (the UAPI of ``wireguard-go``, where
taking 10,000 peers costs about a second: a Curve25519 product a peer). A list that cannot
be read, decoded or set costs nothing but the time it would have saved: it is logged at
WARNING and the first round programs WireGuard from the judged store, as without one.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import trio

from meshd.daemon.device_reads import threaded_sets
from meshd.errors import BackendError, DecodeError, StoreError
from meshd.membership import MemberState
from meshd.mesh.candidates import check_endpoint
from meshd.mesh.desired import desired_peers
from meshd.mesh.kept_peers import (
    KeptPeer,
    KeptPeers,
    decode_kept_peers_untrusted,
    encode_kept_peers,
)
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.backend import ThreadedSet
from meshd.wg.model import PeerConfig, UpdatePeer

if TYPE_CHECKING:
    from meshd.daemon.wireguard import WireGuardMesh
    from meshd.membership.queries import MemberQueries
    from meshd.mesh.desired import Underlay
    from meshd.mesh.paths import Path
    from meshd.node.statedir import NodeDir

log = logging.getLogger(__name__)


def read(node: NodeDir) -> bytes | None:
    """The list the last clean stop kept, if the record set is as it was then."""
    try:
        return node.store.kept_peers()
    except StoreError as exc:
        log.warning("%s: starting without the peers kept at the last stop", exc)
        return None


def usable(data: bytes, now: int, overlay: ipaddress.IPv6Network) -> list[PeerConfig]:
    """The peers of ``data`` a start at ``now`` may program before its store is judged."""
    try:
        kept = decode_kept_peers_untrusted(data)
    except DecodeError as exc:
        log.warning("the peers kept at the last stop are damaged (%s): not used", exc)
        return []
    return [peer.config() for peer in kept.usable(now, overlay)]


def along(peers: list[PeerConfig], paths: Mapping[bytes, Path]) -> list[PeerConfig]:
    """``peers`` with the endpoint of each one's path (``wg-endpoints``: where our WireGuard
    last saw the peer behind a NAT), as the first round gives it: the round then finds it
    set and leaves it."""
    out = []
    for peer in peers:
        path = paths.get(peer.public_key)
        endpoint = path[0] if path is not None else None
        if endpoint is not None and endpoint != peer.endpoint:
            peer = PeerConfig.derived(peer.public_key, endpoint, peer.allowed_ips, None)
        out.append(peer)
    return out


def threaded(mesh: WireGuardMesh) -> ThreadedSet | None:
    """The mesh's backend, if it can set from a worker thread (the UAPI backend, and the
    in-memory one)."""
    return threaded_sets(mesh.backend)


class SetInThread:
    """One prepared set sent from a worker thread (:meth:`begin`) while the event loop's
    thread goes on, until :meth:`joined`: the kept peers (:class:`KeptWrite`) and the
    admitted members' keys (:class:`meshd.daemon.early_keys.EarlyKeys`). ``what`` names
    what it sets and ``otherwise`` what the first round does if it failed, for the log."""

    what = ""
    otherwise = ""

    def __init__(self, mesh: WireGuardMesh, send: Callable[[], None], name: str) -> None:
        self.mesh = mesh
        self._send = send
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._write, name=name, daemon=True)

    def begin(self) -> None:
        self._thread.start()

    def _write(self) -> None:
        try:
            self._send()
        except Exception as exc:  # noqa: BLE001 (a refusal, or a bug: the first round programs it)
            self._error = exc

    async def joined(self) -> bool:
        """Wait for the thread; False if the device did not take the whole set (counted as
        the mesh's error; a refusal logged at WARNING, anything else as a bug at ERROR)."""
        await trio.to_thread.run_sync(self._thread.join)  # not abandoned if cancelled
        error = self._error
        if error is None:
            return True
        mesh = self.mesh
        mesh.errors += 1
        mesh.last_error = str(error)
        if isinstance(error, BackendError):
            log.warning("WireGuard %s: %s (%s)", mesh.ifname, error, self.otherwise)
        else:
            log.error(
                "WireGuard %s: setting %s raised %s (a bug in meshd; %s)",
                mesh.ifname,
                self.what,
                type(error).__name__,
                self.otherwise,
                exc_info=error,
            )
        return False


class KeptWrite(SetInThread):
    """Kept peers being set from a worker thread (:meth:`start`), until :meth:`finish`."""

    what = "the kept peers"
    otherwise = "the first round programs it"

    def __init__(
        self, mesh: WireGuardMesh, peers: Sequence[PeerConfig], send: Callable[[], None]
    ) -> None:
        super().__init__(mesh, send, "meshd-kept-peers")
        self.peers = peers

    @classmethod
    def start(cls, mesh: WireGuardMesh, peers: Sequence[PeerConfig]) -> KeptWrite | None:
        """Begin setting ``peers`` (new peers on a device that has none yet, without their
        keepalives: the first round sets those), in one request made here and sent from a
        worker thread; None if there are none or the backend cannot set from a thread."""
        backend = threaded(mesh)
        if not peers or backend is None:
            return None
        ops = [
            UpdatePeer.derived(
                peer.public_key,
                endpoint=peer.endpoint,
                replace_allowed_ips=True,
                allowed_ips=peer.allowed_ips,
            )
            for peer in peers
        ]
        writing = cls(mesh, peers, backend.prepared_set(ops))
        del ops  # the request holds what is sent
        writing.begin()
        return writing

    async def finish(self) -> bool:
        """Wait for the thread; then, if the device took every peer, the mesh's first round
        plans from these peers. False (logged) if it did not: the first round reads the
        device and plans from what it holds."""
        if not await self.joined():
            return False
        mesh = self.mesh
        mesh.assume_programmed(self.peers)
        log.info(
            "WireGuard %s: %d peers set as the last stop kept them, while the store loaded "
            "(the first round corrects what it says otherwise)",
            mesh.ifname,
            len(self.peers),
        )
        return True


def keep(
    node: NodeDir,
    membership: MemberQueries,
    *,
    own_node_key: NodeKey,
    own_wg_key: WgKey,
    underlay: Underlay,
    now: int,
) -> int | None:
    """Keep the peers the membership gives at the stop, for the next start; how many, or
    None when nothing is kept (this node is not an admitted member, the membership's states
    are not judged for ``now``, the store has no seal key or cannot be written: logged).

    The list is valid only until the membership's judgements may change by time alone
    (:meth:`~meshd.membership.queries.MemberQueries.judged_window`: a credential's end, a
    silence limit, a retiring root's end) and our own standing ends, whichever is first:
    a start after that programs WireGuard from the judged store, as without a list."""
    since, until = membership.judged_window()
    if not since <= now < until:
        return None
    members = membership.members(now)
    own = next((m for m in members if m.node_key == own_node_key), None)
    if own is None or own.state is not MemberState.ADMITTED or own.not_after <= now:
        return None
    overlay = node.anchor.overlay
    assert isinstance(overlay, ipaddress.IPv6Network)
    desired = desired_peers(
        members,
        own_node_key=own_node_key,
        own_wg_key=own_wg_key,
        underlay=underlay,
        keepalive=None,
    )
    peers = tuple(
        KeptPeer(member.wg_key, member.not_after, int(member.overlay), _kept(peer, overlay))
        for member in desired.programmed
        if (peer := desired.peers.get(member.wg_key)) is not None
    )
    data = encode_kept_peers(KeptPeers(overlay, min(own.not_after, until), now, peers))
    try:
        if not node.store.keep_peers(data):
            return None
    except StoreError as exc:
        log.warning("%s: the next start programs WireGuard once its store is judged", exc)
        return None
    return len(peers)


def _kept(peer: PeerConfig, overlay: ipaddress.IPv6Network) -> str | None:
    """A peer's endpoint as the list keeps it: one the next start's decoder takes (as an
    announced endpoint is checked), else none (the first round sets it)."""
    endpoint = peer.endpoint
    if endpoint is None or isinstance(check_endpoint(endpoint, overlay, allow_loopback=True), str):
        return None
    return endpoint
