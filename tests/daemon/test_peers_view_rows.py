"""``meshd peers``' rows as the daemon builds them (meshd/daemon/state_views.py, peers_view):
each member's fields read once, the node ids' base32 written together, the link-local
addresses written without their /128s; the same rows, value for value and key for key, as
the view that read every field where its column asked for it, for a mix of members."""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.synthetic_store import build_store
from meshd.daemon.lifecycle import revocation_text
from meshd.daemon.state import NodeState
from meshd.daemon.state_views import ipv6_text, peers_view, state_label
from meshd.encoding import b32, b32_each
from meshd.membership import Member, MemberState, node_ids
from meshd.mesh.announced import plain_endpoints
from meshd.node.statedir import NodeDir
from meshd.trust.keys import NodeKey, WgKey, fingerprint, fingerprints
from meshd.wg.addresses import link_local_from_wg_key, link_local_packed
from meshd.wg.model import PeerConfig, PeerStatus


def _each_field_read_by_its_column(
    state: NodeState,
    connected: set[bytes],
    device: Mapping[bytes, PeerStatus],
    members: Sequence[Member],
) -> list[dict[str, Any]]:
    """The view as it was: every field read, every address made, a row at a time."""
    rows = []
    for m in members:
        ann = m.announcement
        peer = device.get(m.wg_key) if m.node_key != state.key else None
        bound = m.state is MemberState.ADMITTED and state.membership.root_bound(m.node_key)
        rows.append(
            {
                "name": m.name,
                "node_id": m.node_id,
                "node_key": base64.b64encode(m.node_key).decode("ascii"),
                "state": state_label(m, state.key),
                "reason": m.reason,
                "revocation_reason": revocation_text(state.membership, m),
                "overlay_ip": ipv6_text(m.overlay),
                "link_local": ipv6_text(link_local_from_wg_key(m.wg_key)),
                "wg_public_key": base64.b64encode(m.wg_key).decode("ascii"),
                "endpoints": plain_endpoints(ann.endpoints) if ann else [],
                "addrs": list(ann.addrs) if ann else [],
                "last_seen": m.last_seen,
                "admitted_at": m.admitted_at,
                "not_after": m.not_after,
                "credentials_end": state.membership.credentials_end(m.node_key),
                "retiring_root": True if bound else None,
                "connected": m.node_key in connected,
                "wg_peer": peer is not None,
                "wg_endpoint": peer.config.endpoint if peer is not None else None,
                "last_handshake": peer.last_handshake if peer is not None else None,
                "rx_bytes": peer.rx_bytes if peer is not None else None,
                "tx_bytes": peer.tx_bytes if peer is not None else None,
            }
        )
    return rows


def _given(n: int, state: MemberState, reason: str, **more: Any) -> Member:
    """A member made by its constructor (as tests and ``dataclasses.replace`` make them)."""
    fields: dict[str, Any] = {
        "node_key": NodeKey(os.urandom(32)),
        "node_id": None,
        "name": f"given{n}",
        "wg_key": WgKey(os.urandom(32)),
        "overlay": ipaddress.IPv6Address(f"fd00::{n + 1:x}"),
        "state": state,
        "reason": reason,
        "admitted_at": 100 + n,
        "not_after": 200 + n,
        "announcement": None,
        "last_seen": None,
    }
    fields.update(more)
    return Member(**fields)


def test_rows_are_those_of_the_view_that_read_each_field_for_its_column(tmp_path: Path) -> None:
    build_store(tmp_path / "n", 12)
    node = NodeDir.open(tmp_path / "n")
    try:
        state = NodeState(node, announce_ttl=None)
        stored = state.members()
        own = next(m for m in stored if m.node_key == state.key)
        members = [
            *stored,
            _given(1, MemberState.REVOKED, "revoked"),
            _given(2, MemberState.REVOKED, "left"),
            _given(3, MemberState.EXPIRED, ""),
            _given(4, MemberState.ADMITTED, "", node_id="a-given-node-id", last_seen=7),
            _given(5, MemberState.ADMITTED, "", wg_counter=2, wg_since=50),
            _given(6, MemberState.ADMITTED, "", overlay=ipaddress.IPv6Address("::ffff:c000:201")),
            _given(7, MemberState.ADMITTED, "", name=""),
        ]
        peers = [stored[1], stored[2], stored[3], members[-4], own]
        device: dict[bytes, PeerStatus] = {
            m.wg_key: PeerStatus(
                PeerConfig(m.wg_key, endpoint=f"198.51.100.{n}:51820" if n % 2 else None),
                last_handshake=None if n == 1 else 1000.5 + n,
                rx_bytes=n * 1000,
                tx_bytes=n,
            )
            for n, m in enumerate(peers)
        }
        connected = {stored[2].node_key, stored[4].node_key, state.key}
        for wireguard in (device, {}, None):
            for chosen in (members, members[::-1], members[:1], []):
                expected = _each_field_read_by_its_column(state, connected, wireguard or {}, chosen)
                rows = peers_view(state, connected, wireguard, chosen)
                assert rows == expected
                assert [list(r.items()) for r in rows] == [list(r.items()) for r in expected]
        assert peers_view(state, set()) == _each_field_read_by_its_column(
            state, set(), {}, state.members()
        )
    finally:
        node.close()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 23).flatmap(lambda size: st.lists(st.binary(min_size=size, max_size=size))))
def test_base32_written_together_is_each_items(items: list[bytes]) -> None:
    assert b32_each(items) == [b32(item) for item in items]


def test_fingerprints_node_ids_and_link_local_addresses_are_each_ones() -> None:
    keys = [os.urandom(32) for _ in range(50)]
    assert fingerprints(keys) == [fingerprint(key) for key in keys]
    assert fingerprints([]) == []
    members = [
        _given(n, MemberState.ADMITTED, "", node_id="given" if n % 3 == 0 else None)
        for n in range(20)
    ]
    assert node_ids(members) == [m.node_id for m in members]
    assert node_ids(members)[0] == "given"
    for key in keys:
        assert link_local_packed(key) == link_local_from_wg_key(key).packed
