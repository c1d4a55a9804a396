"""What the punching service lays over the desired peers, read from its peers (no table).

The reconcile loop (:meth:`meshd.daemon.wireguard.WireGuardMesh`) reads each peer's path
(endpoint, keepalive, when its round began: :data:`meshd.mesh.paths.Path`) and the peers
a relay may carry now (``relay_now``). A step of :class:`meshd.daemon.punching.Punching`
used to build both as a table keyed by WireGuard key (~130 bytes a member, made anew at
each step); here each peer keeps what the last step laid in three fields of its own
(``laid_*``, on :class:`meshd.daemon.punch_peer._Peer`), written all at once at the end of
a step (no await in between: the reconcile loop never sees half a step), and these views
read them by WireGuard key through the members the step went over.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Set
from typing import TYPE_CHECKING

from meshd.mesh.paths import Path
from meshd.trust.keys import WgKey

if TYPE_CHECKING:
    from meshd.daemon.punch_peer import _Peer
    from meshd.membership import Member

#: ``laid_how`` of a peer no step has laid yet (else its keepalive and whether a relay may
#: carry it now, as :meth:`meshd.mesh.punch.DirectPath.last_action` keeps them: 2 * keepalive
#: + relay, relay never set on a direct path).
UNLAID = -1


class LaidPaths(Mapping[bytes, Path]):
    """The paths the last step laid, by WireGuard key: what ``WireGuardMesh.paths`` was
    as a table (endpoint, keepalive or None for off, Unix time its round began or None)."""

    __slots__ = ("_members", "_peers")

    def __init__(self, peers: MutableMapping[bytes, _Peer]) -> None:
        self._peers = peers  # by node key
        self._members: Mapping[WgKey, Member] = {}  # as of the last step that laid

    def peer(self, key: bytes) -> _Peer | None:
        """The laid peer of WireGuard key ``key``, if any."""
        member = self._members.get(key)  # type: ignore[call-overload]
        if member is None:
            return None
        peer = self._peers.get(member.node_key)
        if peer is None or peer.member.wg_key != key or peer.laid_how == UNLAID:
            return None
        return peer

    def lay(self, members: Mapping[WgKey, Member]) -> bool:
        """Lay every peer's path as its last update left it (the step's actions); whether
        any changed, or ``members`` are other peers than the laid ones."""
        peers = self._peers
        changed = False
        for member in members.values():
            changed = peers[member.node_key].lay() or changed
        laid, self._members = self._members, members
        return changed or (members is not laid and members.keys() != laid.keys())

    def __getitem__(self, key: bytes) -> Path:
        peer = self.peer(key)
        if peer is None:
            raise KeyError(key)
        return (peer.laid_endpoint, peer.laid_how >> 1 or None, peer.laid_since)

    def __iter__(self) -> Iterator[bytes]:
        return (key for key in self._members if self.peer(key) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:  # at the first laid peer, not a count of all
        return any(True for _ in self)


class LaidRelays(Set[bytes]):
    """The peers (WireGuard keys) a relay may carry now, as the last step laid them (the
    path not direct): what ``WireGuardMesh.relay_now`` was as a set."""

    __slots__ = ("_paths",)

    def __init__(self, paths: LaidPaths) -> None:
        self._paths = paths

    def __contains__(self, key: object) -> bool:
        peer = self._paths.peer(key) if isinstance(key, bytes) else None
        return peer is not None and bool(peer.laid_how & 1)

    def __iter__(self) -> Iterator[bytes]:
        return (key for key in self._paths if key in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)
