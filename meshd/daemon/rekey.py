"""The running daemon's side of ``meshd rotate wg`` (control command ``rotate-wg``).

1. a fresh key is written to ``wg.key`` (0600, atomically) and its rotation signed
   (:mod:`meshd.node.rekey`);
2. the rotation is merged and stored (durable before anything leaves the node);
3. our interface takes the new private key and its link-local address;
4. the rotation is flooded: every peer replaces our old key by the new one and, creating the
   new peer, initiates a handshake we already answer; Babel on the mesh starts again from
   the new link-local address.

Between 3 and 4 our peers and we disagree for the time the record takes to reach them and
their reconcile round: about one handshake (docs/wireguard.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from meshd.daemon.state import NodeState
from meshd.errors import UsageError, VerifyError
from meshd.node.rekey import pending_rotation, rotate_wg_key
from meshd.records import WgRotation, record_id
from meshd.wg.model import key_to_base64

log = logging.getLogger(__name__)


class Rekeyable(Protocol):
    async def rekey(self, private_key: bytes) -> None: ...


class BabelRekey(Protocol):
    def rekey(self, own_wg_key: bytes) -> None: ...


async def rotate_wg(
    state: NodeState,
    mesh: Rekeyable,
    flood: Callable[[bytes], Awaitable[None]],
    babel: BabelRekey | None = None,
) -> dict[str, Any]:
    """Rotate this node's WireGuard key now; what ``meshd rotate wg`` prints."""
    node = state.node
    if not state.membership.grants(node.node_key.public):
        raise UsageError(
            "this node is not a standing member: it has no WireGuard key in the network to rotate",
            hint="check `meshd status`",
        )
    key, rotation = rotate_wg_key(node, state.membership, state.clock())
    try:
        state.add_local(rotation)
    except VerifyError as exc:
        raise UsageError(f"the rotation was refused: {exc}", hint="check the clock") from None
    log.info(
        "WireGuard key rotated to %s (rotation %d)", key_to_base64(key.public), rotation.counter
    )
    # Our interface first, then the others: a peer that learns the new key initiates a
    # handshake with it at once, and we must already answer under it.
    await mesh.rekey(key.secret)
    await flood(rotation.raw)
    if babel is not None:
        babel.rekey(key.public)
    return view(rotation)


def view(rotation: WgRotation) -> dict[str, Any]:
    return {
        "wg_public_key": key_to_base64(rotation.wg_key),
        "counter": rotation.counter,
        "record_id": record_id(rotation.raw).hex(),
    }


def finish_cut_short(state: NodeState) -> WgRotation | None:
    """At start-up: if ``wg.key`` holds a key the network does not know as ours (a rotation
    stopped after writing the key file), sign and store its rotation now; the daemon's
    anti-entropy carries it to the others."""
    rotation = pending_rotation(state.node, state.membership, state.clock())
    if rotation is None:
        return None
    state.add_local(rotation)
    log.warning(
        "wg.key holds a key the network did not know yet; announced its rotation %d",
        rotation.counter,
    )
    return rotation
