"""Announcing on change, and liveness without floods.

A member announces at start, at once when its addresses change and otherwise only on a slow
refresh (AnnouncePolicy, on a fake clock). Between refreshes, what keeps it alive in a node's
view is what that node sees itself: a libp2p connection with it, or a fresh WireGuard handshake
with its key (liveness_policy.heard, pure; Membership.heard). Nothing a member sends about
another counts: not a replayed announcement, not a WireGuard key it claims as its own.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from meshd.cli.asking import _seen
from meshd.control.commands import PeerRow
from meshd.daemon.announce_policy import ADDRESS_CHECK, AnnouncePolicy, check_every
from meshd.daemon.config import DaemonConfig
from meshd.daemon.liveness_policy import FRESH, heard
from meshd.errors import VerifyError
from meshd.gossip.peers import peer_id_of
from meshd.membership import Admitted, Event, Expired, Member, MemberState
from meshd.node.statedir import NodeDir, now
from meshd.records import make_announcement
from meshd.trust.keys import NodeKey, WgKey
from tests.daemon.fakes import (
    TTL,
    NewMember,
    announced,
    fake_now,
    peers,
    run_on_fake_clock,
    running,
)
from tests.factory import T0, Net

if TYPE_CHECKING:
    from meshd.daemon.service import Daemon

HOUR = 3600.0


# --- when to announce (pure) -------------------------------------------------------------------


def test_the_defaults_refresh_every_two_hours_and_outlive_two_lost_refreshes() -> None:
    config = DaemonConfig.__dataclass_fields__
    interval = config["announce_interval"].default
    ttl = config["announce_ttl"].default
    assert interval == 2 * HOUR
    assert ttl == 3 * interval  # two refreshes may be lost (sync repairs them) before expiry
    assert check_every(interval) == ADDRESS_CHECK  # a change goes out within 10 s
    assert check_every(2.0) == 2.0  # a lab's short interval is looked at as often


def test_announcements_at_start_on_a_change_and_on_the_hourly_refresh_only() -> None:
    policy = AnnouncePolicy(interval=HOUR, check=check_every(HOUR))
    here = (("192.0.2.1:51820",), ("/ip4/192.0.2.1/tcp/7100",))
    moved = (("192.0.2.9:51820",), here[1])
    assert policy.due(0.0, here)  # at start
    policy.announced(0.0, here)
    looks = [t * ADDRESS_CHECK for t in range(1, 360)]  # every look within the hour
    assert not any(policy.due(t, here) for t in looks)
    assert all(policy.wait(t) <= ADDRESS_CHECK for t in looks)
    assert policy.due(1234.0, moved)  # a change: at once
    policy.announced(1234.0, moved)
    assert not policy.due(1234.0 + HOUR - 1, moved)  # the refresh counts from the change
    assert policy.due(1234.0 + HOUR, moved)


# --- who counts as heard (pure) ----------------------------------------------------------------


def _member(n: int, wg: int | None = None, state: MemberState = MemberState.ADMITTED) -> Member:
    return Member(
        NodeKey(bytes([n]) * 32),
        f"id{n}",
        f"m{n}",
        WgKey(bytes([100 + (n if wg is None else wg)]) * 32),
        ipaddress.IPv6Address(f"fd00::{n}"),
        state,
        "",
        T0,
        T0 + 86400,
        None,
        None,
    )


NOW = T0 + 1000
ME, A, B, C = _member(0), _member(1), _member(2), _member(3)


def test_a_connection_or_a_fresh_handshake_counts_as_heard() -> None:
    members = [ME, A, B, C]
    handshakes: dict[bytes, float] = {B.wg_key: NOW - 100.5, C.wg_key: NOW - FRESH - 1}
    seen = heard(NOW, members, ME.node_key, [A.node_key], handshakes)
    assert seen == {A.node_key: NOW, B.node_key: NOW - 101}  # C's handshake is stale
    # a handshake dated ahead of our clock counts as now, not later
    assert heard(NOW, members, ME.node_key, [], {B.wg_key: NOW + 50.0}) == {B.node_key: NOW}
    # a connection wins over an older handshake
    assert heard(NOW, members, ME.node_key, [B.node_key], handshakes)[B.node_key] == NOW


def test_this_node_revoked_members_and_strangers_are_never_heard() -> None:
    revoked = _member(4, state=MemberState.REVOKED)
    members = [ME, revoked]
    stranger = bytes([9]) * 32
    connected = [ME.node_key, revoked.node_key, stranger]
    handshakes: dict[bytes, float] = {ME.wg_key: NOW, revoked.wg_key: NOW, bytes([99]) * 32: NOW}
    assert heard(NOW, members, ME.node_key, connected, handshakes) == {}


def test_a_wireguard_key_a_hostile_member_claims_counts_for_nobody() -> None:
    """H says A's WireGuard key is its own: a handshake with that key proves neither, so it
    keeps neither alive (and H cannot borrow A's handshakes to look alive)."""
    hostile = _member(5, wg=1)  # carries A's WireGuard key
    members = [ME, A, hostile]
    assert hostile.wg_key == A.wg_key
    assert heard(NOW, members, ME.node_key, [], {A.wg_key: float(NOW)}) == {}
    # H's own connection still counts for H alone
    assert heard(NOW, members, ME.node_key, [hostile.node_key], {}) == {hostile.node_key: NOW}


# --- the membership: local sightings end a silence; nobody else's records do -------------------


def test_a_member_heard_locally_does_not_expire_and_a_replay_does_not_revive_it() -> None:
    net = Net()
    founder = net.founder()
    other = net.founder("other")  # a second member, silent after one announcement
    state = net.state(announce_ttl=3600)
    state.ingest(founder.credential, T0)
    state.ingest(other.credential, T0)
    last = other.announce(net, T0 + 10)
    state.ingest(last, T0 + 10)
    events: list[Event] = []
    for t in range(T0 + 600, T0 + 3 * 3600, 600):  # we hear the founder all along
        state.heard(founder.key.public, t, t)
        events += state.tick(t)
    assert [(type(e), e.member.name) for e in events] == [(Expired, "other")]
    member = state.member(founder.key.public, T0 + 3 * 3600)
    assert member is not None
    assert member.state is MemberState.ADMITTED
    assert member.last_seen == T0 + 3 * 3600 - 600
    # a hostile member replays the silent member's last announcement, or an older one: not new
    # (ignored) or refused; it stays expired
    later = T0 + 3 * 3600
    replay = state.ingest(last, later)
    assert not replay.new
    assert replay.events == ()
    older = make_announcement(
        other.key, network_id=net.anchor.network_id, seq=0, issued_at=T0, endpoints=()
    )
    with pytest.raises(VerifyError):
        state.ingest(older, later)
    assert state.tick(later) == ()
    gone = state.member(other.key.public, later)
    assert gone is not None
    assert gone.state is MemberState.EXPIRED
    # nor does a sighting of someone who is not a member make an entry
    state.heard(bytes(32), later, later)
    assert state.member(bytes(32), later) is None
    # once this node itself hears from it (a handshake a minute ago), it is back
    state.heard(other.key.public, later - 60, later)
    [back] = state.tick(later)
    assert isinstance(back, Admitted)
    assert back.member.last_seen == later - 60


# --- the daemon: the liveness service on the fake transport and device -------------------------


def _state(daemon: Daemon, member: NewMember) -> MemberState:
    current = daemon.state.feed.current.members
    return next(m.state for m in current if m.node_key == member.key.public)


def test_the_daemon_keeps_members_it_is_connected_to_or_handshakes_with(node: NodeDir) -> None:
    """Three members announce once and fall silent. m1 stays connected (libp2p), m2 keeps
    handshaking with our WireGuard, m3 does neither: only m3 expires after the TTL, while
    the others stay admitted and WireGuard peers for three TTLs; m2 expires a TTL after its
    last handshake."""
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, transport, backend):
            m1, m2, m3 = (announced(node, transport, fake_now(base), f"m{i}") for i in (1, 2, 3))
            transport.connect(peer_id_of(m1.key.public))

            def handshake_with(wg: bytes, at: float) -> None:
                backend.state = dataclasses.replace(
                    backend.state,
                    peers=tuple(
                        dataclasses.replace(p, last_handshake=at) if p.public_key == wg else p
                        for p in backend.state.peers
                    ),
                )

            await trio.testing.wait_all_tasks_blocked()
            assert {m1.wg, m2.wg, m3.wg} <= peers(backend)
            for _ in range(3 * TTL // 60):  # a handshake every minute, as keepalives make
                handshake_with(m2.wg, base + trio.current_time())
                await trio.sleep(60)
            assert _state(daemon, m1) is MemberState.ADMITTED
            assert _state(daemon, m2) is MemberState.ADMITTED
            assert _state(daemon, m3) is MemberState.EXPIRED
            assert {m1.wg, m2.wg} <= peers(backend)
            assert m3.wg not in peers(backend)
            # m2 stops handshaking: it expires a TTL after its last one, not before
            await trio.sleep(TTL - 70)
            assert _state(daemon, m2) is MemberState.ADMITTED
            await trio.sleep(30)
            assert _state(daemon, m2) is MemberState.EXPIRED
            assert _state(daemon, m1) is MemberState.ADMITTED

    run_on_fake_clock(main)


# --- what `meshd peers` says ---------------------------------------------------------------------


def _row(**kw: object) -> PeerRow:
    fields: dict[str, object] = {
        "name": "m1",
        "node_id": "id",
        "node_key": "",
        "state": "admitted",
        "reason": "",
        "overlay_ip": "fd00::1",
        "link_local": "fe80::1",
        "wg_public_key": "",
        "endpoints": (),
        "addrs": (),
        "last_seen": None,
        "admitted_at": 0,
        "not_after": 0,
        "credentials_end": 0,
        "connected": False,
        "wg_peer": True,
        "wg_endpoint": None,
        "last_handshake": None,
        "rx_bytes": 0,
        "tx_bytes": 0,
    }
    fields.update(kw)
    return PeerRow(**fields)  # type: ignore[arg-type]


def test_peers_says_online_while_this_node_hears_the_member_itself() -> None:
    wall = time.time()
    assert _seen(_row(connected=True, last_seen=int(wall) - 5000)) == "online"
    assert _seen(_row(last_handshake=wall - 100)) == "online"
    assert _seen(_row(last_handshake=wall - 200, last_seen=int(wall) - 200)) == "3m ago"
    assert _seen(_row(last_seen=int(wall) - 2 * 3600 - 30)) == "2h ago"
    assert _seen(_row()) == "never"
    assert _seen(_row(state="self", connected=True)) == "-"
