"""What ``meshd peers`` and ``meshd status`` show of the membership this node holds."""

from __future__ import annotations

import binascii
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from meshd.daemon.lifecycle import revocation_text
from meshd.daemon.root_view import root_view
from meshd.errors import UsageError
from meshd.membership import Member, MemberState, node_ids
from meshd.mesh.announced import plain_endpoints
from meshd.trust.keys import fingerprint
from meshd.wg.addresses import link_local_from_wg_key, link_local_packed
from meshd.wg.model import PeerStatus, key_from_base64

if TYPE_CHECKING:
    from meshd.daemon.state import NodeState


def peers_view(
    state: NodeState,
    connected: set[bytes],
    wireguard: Mapping[bytes, PeerStatus] | None = None,
    members: Sequence[Member] | None = None,
) -> list[dict[str, Any]]:
    """One row per member (``members``: ``state.members()`` if not given); ``wireguard``
    (the device's peers by key) fills the ``wg_peer``, ``wg_endpoint``,
    ``last_handshake``, ``rx_bytes`` and ``tx_bytes`` columns.

    Each member's fields are read once (each is a property of its view), and what every row
    asks of the node and the membership is looked up once for the call (10,000 rows)."""
    rows = []
    device = wireguard or {}
    own = state.key
    membership = state.membership
    credentials_end = membership.credentials_end
    root_bound = membership.root_bound
    if members is None:
        members = state.members()
    for m, node_id in zip(members, node_ids(members), strict=True):
        key = m.node_key
        wg_key = m.wg_key
        status = m.state
        ann = m.announcement
        admitted = status is _ADMITTED
        peer = device.get(wg_key) if device and key != own else None
        rows.append(
            {
                "name": m.name,
                "node_id": node_id,
                "node_key": _b64(key),
                "state": _label(key, status, own),
                "reason": m.reason,
                "revocation_reason": (
                    revocation_text(membership, m) if status is _REVOKED else None
                ),
                "overlay_ip": ipv6_text(m.overlay),
                "link_local": _ntop(_AF_INET6, link_local_packed(wg_key)),
                "wg_public_key": _b64(wg_key),
                "endpoints": plain_endpoints(ann.endpoints) if ann else [],
                "addrs": list(ann.addrs) if ann else [],
                "last_seen": m.last_seen,
                "admitted_at": m.admitted_at,
                "not_after": m.not_after,
                "credentials_end": credentials_end(key),
                "retiring_root": True if admitted and root_bound(key) else None,
                "connected": key in connected,
                "wg_peer": peer is not None,
                "wg_endpoint": peer.config.endpoint if peer is not None else None,
                "last_handshake": peer.last_handshake if peer is not None else None,
                "rx_bytes": peer.rx_bytes if peer is not None else None,
                "tx_bytes": peer.tx_bytes if peer is not None else None,
            }
        )
    return rows


_ADMITTED = MemberState.ADMITTED
_REVOKED = MemberState.REVOKED
_AF_INET6 = socket.AF_INET6
_ntop = socket.inet_ntop


def _b64(key: bytes) -> str:
    """``base64.b64encode(key).decode("ascii")``: a key as ``wg`` prints it."""
    return binascii.b2a_base64(key, newline=False).decode("ascii")


def select_members(members: Sequence[Member], ref: str) -> list[Member]:
    """The members ``ref`` names (``meshd peers MEMBER``), as ``tailscale whois`` finds one:
    an overlay or link-local address (``fd..``, ``fe80::..``), a WireGuard or node key
    (base64), a name (every member of that name), else a node id or its first characters
    (at least 4). A UsageError if it names none."""
    text = ref.strip()
    found: list[Member] = []
    try:
        address = ipaddress.IPv6Address(text.split("%")[0])
    except ValueError:
        address = None
    if address is not None:
        found = [
            m
            for m in members
            if m.overlay == address or link_local_from_wg_key(m.wg_key) == address
        ]
    else:
        key = _key_of(text)
        if key is not None:
            found = [m for m in members if key in (m.wg_key, m.node_key)]
        found = found or [m for m in members if m.name == text]
        if not found and len(text) >= 4:
            prefix = text.lower()
            found = [m for m in members if m.node_id.startswith(prefix)]
    if not found:
        raise UsageError(
            f"no member matches {ref!r}",
            hint="give a name, a node id (or its first characters), a WireGuard key, or an"
            " overlay or link-local address; `meshd peers` lists them all",
        )
    return found


def _key_of(text: str) -> bytes | None:
    """The 32 bytes of a base64 key, or None if ``text`` is not one."""
    try:
        return key_from_base64(text)
    except ValueError:
        return None


def ipv6_text(address: ipaddress.IPv6Address) -> str:
    """``str(address)``, written by the C library (a tenth of the time: two columns of
    10,000 rows). The two differ only for an address whose first 16 bits are zero, where
    the C library writes an IPv4 address embedded in it as one (``::ffff:192.0.2.1``): those
    are written by ``str`` (members' overlay and link-local addresses are never such)."""
    packed = address.packed
    if packed[0] or packed[1]:
        return socket.inet_ntop(socket.AF_INET6, packed)
    return str(address)


def status_view(state: NodeState) -> dict[str, Any]:
    """The node's part of ``meshd status``: who it is, the membership it holds, what it refused,
    and its network's roots."""
    view = node_view(state)
    view["root"] = root_view(state.membership, state.node.anchor.network.created_at, state.clock())
    return view


def node_view(state: NodeState) -> dict[str, Any]:
    """:func:`status_view` but the roots (what a scrape of the metrics reads). The members
    are counted by state, not each viewed (Membership.state_counts: ~2 ms at 10,000)."""
    states = state.membership.state_counts(state.clock())
    anchor = state.node.anchor
    return {
        "node_id": fingerprint(state.key),
        "name": state.node.name,
        "network": anchor.network.name,
        "network_id": fingerprint(anchor.root_key),
        "members": states[MemberState.ADMITTED],
        "expired": states[MemberState.EXPIRED],
        "revoked": states[MemberState.REVOKED],
        "records": len(state.membership),
        "pending": state.membership.pending_count,
        "pending_evicted": state.membership.pending_evicted,
        "store_unwritten": state.unwritten_rows,
        "digest": state.membership.digest().hex(),
        "accepted": state.accepted,
        "rejected": dict(state.reject_reasons),
    }


def state_label(member: Member, own_key: bytes) -> str:
    """``self`` for this node while it stands; its true state once it does not."""
    return _label(member.node_key, member.state, own_key)


def _label(key: bytes, state: MemberState, own_key: bytes) -> str:
    """:func:`state_label` of the member with this key and state (read once for its row)."""
    return "self" if key == own_key and state is _ADMITTED else state.value
