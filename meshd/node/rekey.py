"""Replacing this node's WireGuard key: the new key file first, then its signed rotation.

``meshd rotate wg`` (through the daemon when one runs, else offline) and the daemon's
start-up both come here. The order is what keeps a node reachable through a crash:

1. a fresh key is written to ``wg.key`` (0600, atomically:
   :func:`meshd.trust.keyfiles.replace_secret`);
2. only then is its rotation record made, signed by the node key, and merged and stored;
3. the caller switches the interface and floods the record.

A node that stops between 1 and 2 starts with a ``wg.key`` the network does not know as its
key: :func:`pending_rotation` notices and makes the rotation then.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from meshd.errors import DecodeError
from meshd.membership import Membership
from meshd.records import Handover, Kind, WgRotation, decode_record_untrusted, make_wg_rotation
from meshd.trust.keyfiles import read_secret, replace_secret
from meshd.trust.keys import SigningKey, WireGuardKey

if TYPE_CHECKING:
    from meshd.node.statedir import NodeDir
    from meshd.node.store import Store


def next_counter(state: Membership, node_key: bytes, at: int) -> int:
    """The next rotation counter: above the member's newest known, and at least ``at`` (the
    clock, in seconds), so that a node whose store was lost still counts past its old
    rotations (as announcements' ``seq`` do)."""
    current = state.wg_rotation(node_key)
    return max((current.counter if current is not None else 0) + 1, at)


def sign_rotation(node: NodeDir, state: Membership, key: WireGuardKey, at: int) -> WgRotation:
    return make_wg_rotation(
        node.node_key,
        network_id=node.anchor.network_id,
        counter=next_counter(state, node.node_key.public, at),
        issued_at=at,
        wg_key=key.public,
    )


def rotate_wg_key(node: NodeDir, state: Membership, at: int) -> tuple[WireGuardKey, WgRotation]:
    """Write a fresh WireGuard key to ``wg.key`` and sign its rotation (not merged yet)."""
    key = WireGuardKey.generate()
    replace_secret(node.paths.wg_key, key.secret)
    node.wg_key = key
    return key, sign_rotation(node, state, key, at)


def pending_rotation(node: NodeDir, state: Membership, at: int) -> WgRotation | None:
    """The rotation to ``wg.key``'s key if this member stands under another WireGuard key
    (a rotation cut short after the key file was written); None otherwise."""
    member = state.member(node.node_key.public, at)
    if member is None or member.wg_key == node.wg_key.public:
        return None
    if not state.grants(node.node_key.public):  # it does not stand: nothing to rotate
        return None
    return sign_rotation(node, state, node.wg_key, at)


NEXT_NODE_KEY = "node.key.next"


def finish_node_rotation(root: Path, store: Store) -> bool:
    """If ``meshd rotate node`` stopped after storing its hand-over and before putting the new
    key in place, put it in place now (the store names it as the new key). Returns whether
    it did; a ``node.key.next`` the store does not name is left alone."""
    pending = root / NEXT_NODE_KEY
    if not pending.exists():
        return False
    new = SigningKey(read_secret(pending)).public
    for _, raw in store.rows([Kind.HANDOVER]):
        try:
            record = decode_record_untrusted(raw)
        except DecodeError:
            continue
        if isinstance(record, Handover) and record.new_key == new:
            os.replace(pending, root / "node.key")
            return True
    return False
