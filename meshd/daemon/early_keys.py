"""At a start without the peers a clean stop kept: the admitted members' keys set on
WireGuard from a worker thread while the first round is planned.

What a new peer costs ``wireguard-go`` is mostly its key: a Curve25519 product (the
precomputed static-static secret), its queues and its goroutines; about 0.6-0.8 s for 10,000
peers on two cores. Its endpoint and allowed-ips are nothing beside that (10,000 of each set
on existing peers in ~0.03-0.1 s). So once the store is judged, before the first round's
desired peers, plan and request are made (~0.3 s at 10,000 members, in the event loop's own
thread), the keys of the members judged admitted
(:meth:`~meshd.membership.queries.MemberQueries.admitted_wg_keys`) are sent in one request
from a worker thread over a blocking socket, and ``wireguard-go`` takes them on the other
core meanwhile. The first round then waits for that request before it sends its own, and
plans as for the empty device (:meth:`~meshd.daemon.wireguard.WireGuardMesh.assume_created`):
each peer it wants is made whole, and a key it does not want (a member judged otherwise by
then) is removed.

A peer with only its key has no allowed-ips: WireGuard routes no packet to it and drops any
it decrypts from it. Only the keys of members this node judged admitted are set, and only for
the moments until the first round. A device that refuses the request, or a bug in the thread,
costs only the time it would have saved (logged): the first round's operations are right for
the device whatever part of it was set.

Only a backend that can set from a thread does this (``wireguard-go``'s UAPI, where taking a
peer is slow); the kernel's are quick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from meshd.daemon.kept_peers import SetInThread, threaded
from meshd.wg.model import UpdatePeer

if TYPE_CHECKING:
    from meshd.daemon.wireguard import WireGuardMesh
    from meshd.membership.queries import MemberQueries

log = logging.getLogger(__name__)


class EarlyKeys(SetInThread):
    """Admitted members' keys being set from a worker thread (:meth:`start`), until the
    first round awaits :meth:`finish`."""

    what = "the admitted members' keys"
    otherwise = "the first round sets every peer"

    def __init__(self, mesh: WireGuardMesh, count: int, send: Callable[[], None]) -> None:
        super().__init__(mesh, send, "meshd-early-keys")
        self.count = count

    @classmethod
    def start(cls, mesh: WireGuardMesh, membership: MemberQueries, now: int) -> EarlyKeys | None:
        """Begin setting the keys of the members ``membership`` judged admitted (this
        node's own left out), in one request made here and sent from a worker thread, and
        tell the mesh's first round (:meth:`WireGuardMesh.assume_created`). None, and nothing
        done, if the backend cannot set from a thread, the judgements do not hold at
        ``now``, or no member is admitted."""
        backend = threaded(mesh)
        if backend is None:
            return None
        try:
            keys = membership.admitted_wg_keys(now)
            if not keys:
                return None
            own = mesh.own_wg_key
            wanted = {key for key in keys if key != own}
            del keys
            if not wanted:
                return None
            ops = [UpdatePeer.derived(key) for key in sorted(wanted)]
            writing = cls(mesh, len(ops), backend.prepared_set(ops))
            del ops  # the request holds what is sent
            writing.begin()
        except Exception:  # an optimisation's bug must not stop the start: the round sets all
            log.exception(
                "WireGuard %s: the admitted members' keys were not set early "
                "(a bug in meshd; the first round sets every peer)",
                mesh.ifname,
            )
            return None
        mesh.assume_created(wanted, writing.finish)
        return writing

    async def finish(self) -> bool:
        """Wait for the thread (the first round, before its own sets); False (logged) if
        the device did not take every key."""
        if not await self.joined():
            return False
        log.info(
            "WireGuard %s: %d admitted members' keys set while the first round was planned",
            self.mesh.ifname,
            self.count,
        )
        return True
