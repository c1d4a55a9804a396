"""Which members this node has heard from itself (pure: ``now`` is given).

Members announce only at start, on a change and on a slow refresh (two hours by default), so
their announcements no longer say that they are alive. What does, without a flood: what this
node sees of a member *itself*, authenticated by the member's own keys:

* a libp2p connection with it: Noise proved the peer holds the member's node key;
* a WireGuard handshake with it within ``FRESH`` seconds: only the holder of the member's
  WireGuard private key completes one.

Such a sighting ends the member's silence in this node's view only (``Membership.heard``): it
is never flooded, nor signed, nor taken from anyone else, so no member (a hostile one
included) can keep another alive in a third party's view, nor make one look dead. A
WireGuard key that more than one member carries (a member announcing another's key is
refused WireGuard programming: meshd.mesh.desired) counts for nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from meshd.membership import Member, MemberState

# WireGuard's REJECT_AFTER_TIME: a session's keys are dropped 180 s after its handshake, and a
# peer with traffic or keepalives handshakes again every 120 s (REKEY_AFTER_TIME).
FRESH: Final = 180.0


def heard(
    now: int,
    members: Sequence[Member],
    own_key: bytes,
    connected: Iterable[bytes],
    handshakes: Mapping[bytes, float],
    fresh: float = FRESH,
) -> dict[bytes, int]:
    """When this node last heard each member itself, by node key: ``now`` for the members
    connected to it (by their node keys), the handshake's time (whole seconds, never after
    ``now``) for members with a handshake within ``fresh`` seconds (``handshakes``: Unix time of
    the latest handshake by WireGuard public key, as the device reports it). Revoked members
    and this node are left out."""
    # Only what the handshakes and connections name is looked for among the members: no
    # table of every member a call (~150 bytes a member while it ran, at every pass).
    recent = {wg: at for wg, at in handshakes.items() if at and now - at <= fresh}
    connected = list(connected)
    wanted = set(connected)
    out: dict[bytes, int] = {}
    if not recent and not wanted:
        return out
    owner: dict[bytes, bytes] = {}  # b"": claimed by more than one member
    found: set[bytes] = set()
    for member in members:
        if member.state is MemberState.REVOKED:
            continue
        node = member.node_key
        if node == own_key:
            continue
        if node in wanted:
            found.add(node)
        wg_key = member.wg_key
        if wg_key in recent:
            held = owner.get(wg_key)
            if held is None:
                owner[wg_key] = node
            elif held != node:
                owner[wg_key] = b""
    for shaken, at in recent.items():
        holder = owner.get(shaken, b"")
        if holder:
            out[holder] = min(now, int(at))
    for key in connected:
        if key in found:
            out[key] = now
    return out
