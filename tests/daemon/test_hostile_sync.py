"""Hostile peers against a real daemon (run in this process, so its budgets can be scaled down
and its state read): sync floods, an enrollment stream re-opened forever, and a flood of
records that have to wait in the pending pool.

Each attacker is a raw libp2p peer: valid at the libp2p level (Noise, Yamux, gossipsub with
strict signing), holding a member's key or none.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

from meshd.daemon import launch
from meshd.daemon.config import DaemonConfig, topic_of
from meshd.daemon.state import (
    MAX_STRANGER_SESSIONS,
    NON_MEMBERS,
    SYNC_MEMBER_BURST,
    SYNC_STARTS_BURST,
    SYNC_STRANGER_BURST,
    SYNC_STRANGER_RATE,
    SYNC_STRANGERS_BURST,
    NodeState,
    SyncSessions,
)
from meshd.errors import MeshdError
from meshd.gossip import enroll
from meshd.gossip import sync as sync_protocol
from meshd.gossip.host import GossipHost, HostConfig
from meshd.gossip.libp2p_workarounds.router import wait_for_queue_room
from meshd.membership.pending import PendingPool
from meshd.node.statedir import NodeDir, init_network, now
from meshd.records import Certificate, Record, Role, make_announcement, make_certificate
from meshd.trust.keys import SigningKey, WireGuardKey, fingerprint

Body = Callable[..., Any]


def _accept_all(*args: Any) -> bool:
    return True


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _network(tmp_path: Path) -> tuple[NodeDir, SigningKey]:
    node = init_network(
        tmp_path / "founder", network_name="testnet", node_name="founder", root_key_path=None,
        at=now(),
    )  # fmt: skip
    return node, node.issuer().key


def _member_certificate(node: NodeDir, root: SigningKey, key: SigningKey, name: str) -> Certificate:
    at = now()
    return make_certificate(
        root,
        network_id=node.anchor.network_id,
        subject=key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=at - 60,
        not_after=at + 3600,
        name=name,
        wg_key=WireGuardKey.generate().public,
    )


@asynccontextmanager
async def _daemon(tmp_path: Path, node: NodeDir, **options: Any) -> AsyncIterator[Any]:
    """``meshd up`` in this process (no WireGuard), on loopback."""
    node.close()
    config = DaemonConfig(
        state_dir=tmp_path / "founder",
        listen=("/ip4/127.0.0.1/tcp/0",),
        wg_backend="none",
        announce_interval=60.0,
        announce_ttl=600,
        **options,
    )
    async with trio.open_nursery() as nursery:
        opened = NodeDir.open(config.state_dir)
        try:
            daemon = await nursery.start(launch.run, config, opened)
            yield daemon
        finally:
            nursery.cancel_scope.cancel()
            opened.close()


@asynccontextmanager
async def _raw_peer(daemon: Any, key: SigningKey) -> AsyncIterator[GossipHost]:
    config = HostConfig(
        identity_seed=key.seed,
        listen_addrs=("/ip4/127.0.0.1/tcp/0",),
        topic=topic_of(fingerprint(daemon.state.node.anchor.root_key)),
        max_message_size=256 * 1024,
        shutdown_timeout=3.0,
    )
    async with GossipHost(config, _accept_all) as raw:
        results = await raw.connect_any(daemon.listen_addrs())
        assert any(r.ok for r in results), results
        yield raw


def _run(body: Callable[[], Any], timeout: float = 90.0) -> None:
    async def bounded() -> None:
        with trio.fail_after(timeout):
            await body()

    trio.run(bounded)


# --- attack 4: sync floods ------------------------------------------------------------------


def _id_floods(count: int) -> list[bytes]:
    rng = random.Random(4)
    floods = []
    for _ in range(count):
        ids = tuple(sorted(rng.randbytes(16) for _ in range(62_000)))
        message = sync_protocol.Message(ids=((sync_protocol.Range(0, 0), ids),))
        floods.append(sync_protocol.encode_message(message))
    return floods


def test_a_strangers_sync_flood_is_held_to_its_budgets(tmp_path: Path) -> None:
    """Attack 4, scaled: a peer that is not a member opens a sync session and sends message
    after message of ~62,000 random record ids (1 MB each), then a message of 2,000 forged
    announcements. The daemon's memory stays flat (before: every id was kept until the
    session ended) and it verifies no more records than a stranger's budget."""
    node, _ = _network(tmp_path)
    floods = _id_floods(16)
    stranger = SigningKey.generate()
    forged = []
    for seq in range(2000):
        raw = make_announcement(stranger, network_id=node.anchor.network_id, seq=seq + 1,
                                issued_at=now()).raw  # fmt: skip
        forged.append(raw[:-1] + bytes([raw[-1] ^ 1]))
    pushes = sync_protocol.encode_message(sync_protocol.Message(records=tuple(forged)))
    growth: list[float] = []

    async def body() -> None:
        async with (
            _daemon(tmp_path, node, non_member_grace=60.0) as daemon,
            _raw_peer(daemon, stranger) as raw,
        ):
            target = daemon.host.peer_id
            await trio.sleep(0.5)  # the daemon's own sync with us comes and goes
            stream = await raw.open_stream(target, sync_protocol.PROTOCOL_ID)
            before = _rss_mib()
            for wire in floods:
                await stream.send_frame(wire)
                await stream.receive_frame()
            growth.append(_rss_mib() - before)
            await stream.send_frame(pushes)
            with contextlib.suppress(MeshdError):
                await stream.receive_frame()
            await stream.reset()
            await trio.sleep(0.5)
            reasons = dict(daemon.state.reject_reasons)
            verified = sum(n for reason, n in reasons.items() if reason != "rate-limited")
            growth.append(verified)

    _run(body)
    rss, verified = growth
    print(f"RSS growth under 16 MB of ids: {rss:.1f} MiB; forged records verified: {verified}")
    assert rss < 40, f"the daemon grew by {rss:.0f} MiB under the flood"
    assert verified <= 250, f"the daemon verified {verified} records a stranger pushed"


# --- attack 5: a stranger re-opening the enrollment protocol ---------------------------------


def test_reopening_enrollment_does_not_keep_a_stranger_connected(tmp_path: Path) -> None:
    """Attack 5, with graces of 1 s (connected) and 3 s (enrolling): a peer that is not a
    member re-opens the enrollment protocol every 0.5 s. It is dropped once its grace has run
    out (before: each stream refreshed it, forever), and a reconnect gets no new grace."""
    node, _ = _network(tmp_path)
    stayed: list[float] = []

    async def body() -> None:
        async with _daemon(tmp_path, node, non_member_grace=1.0, enrollment_grace=3.0) as daemon:
            target = daemon.host.peer_id
            async with _raw_peer(daemon, SigningKey.generate()) as raw:

                async def enroll_again() -> None:
                    with contextlib.suppress(MeshdError):
                        stream = await raw.open_stream(target, enroll.PROTOCOL_ID)
                        await stream.send_frame(b"\x92not an enrollment")
                        with trio.move_on_after(1.0):
                            await stream.receive_frame()
                        await stream.close()

                start = trio.current_time()
                with trio.move_on_after(10.0):
                    while target in raw.connected_peers():
                        await enroll_again()
                        await trio.sleep(0.5)
                stayed.append(trio.current_time() - start)
                # Back at once: the grace was given already.
                results = await raw.connect_any(daemon.listen_addrs())
                start = trio.current_time()
                with trio.move_on_after(10.0):
                    while any(r.ok for r in results) and target in raw.connected_peers():
                        await enroll_again()
                        await trio.sleep(0.5)
                stayed.append(trio.current_time() - start)

    _run(body)
    first, again = stayed
    print(f"connected {first:.1f} s, then {again:.1f} s after reconnecting")
    assert first < 5.5, f"the stranger stayed connected {first:.1f} s"
    assert again < 3.5, f"the stranger, back, stayed connected {again:.1f} s more"


# --- attack 6: pending-pool churn from one connection --------------------------------------


def _meshed(daemon: Any, *raws: GossipHost) -> bool:
    """Whether the daemon and every raw peer see each other as gossip peers."""
    theirs = set(daemon.host.gossip_peers())
    mine = daemon.host.peer_id
    return all(raw.peer_id in theirs and mine in raw.gossip_peers() for raw in raws)


def _forged_author_message(topic: str, data: bytes) -> rpc_pb2.Message:
    """A gossip message signed by a fresh libp2p key: one per message, as a flooder can."""
    pair = create_new_key_pair(os.urandom(32))
    msg = rpc_pb2.Message(
        data=data,
        topicIDs=[topic],
        from_id=ID.from_pubkey(pair.public_key).to_bytes(),
        seqno=os.urandom(8),
    )
    msg.signature = pair.private_key.sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
    msg.key = pair.public_key.serialize()
    return msg


def test_a_flood_of_parked_records_from_one_connection_leaves_honest_ones(
    tmp_path: Path,
) -> None:
    """Attack 6, with a pool of 512: a member delivers by gossip the announcements of 20 new
    members before their credentials (they wait in the pending pool). Then one connection
    floods 800 self-signed announcements, each in a gossip message under a fresh author, so
    no per-author limit sees it. The honest records are still waiting afterwards: when the
    credentials come, all 20 members have their announcement (before: the flood pushed them
    out of the pool, oldest first)."""
    node, root = _network(tmp_path)
    honest = SigningKey.generate()
    honest_cert = _member_certificate(node, root, honest, "honest")
    joiners = [SigningKey.generate() for _ in range(20)]
    network_id = node.anchor.network_id
    early = [
        make_announcement(k, network_id=network_id, seq=1, issued_at=now(),
                          endpoints=("192.0.2.7:51820",)).raw
        for k in joiners
    ]  # fmt: skip
    credentials = [_member_certificate(node, root, k, f"j{i}").raw for i, k in enumerate(joiners)]
    flood = [
        make_announcement(SigningKey.generate(), network_id=network_id, seq=1, issued_at=now()).raw
        for _ in range(800)
    ]
    seen: dict[str, Any] = {}

    async def body() -> None:
        async with _daemon(tmp_path, node) as daemon:
            state = daemon.state
            state.membership._pending = PendingPool(512)
            state.add_local(honest_cert)
            async with (
                _raw_peer(daemon, honest) as member,
                _raw_peer(daemon, SigningKey.generate()) as flooder,
            ):
                with trio.fail_after(10):
                    while not _meshed(daemon, member, flooder):  # noqa: ASYNC110
                        await trio.sleep(0.05)
                for raw in early:
                    await member.publish(raw)
                with trio.fail_after(10):
                    while state.membership.pending_count < len(early):  # noqa: ASYNC110
                        await trio.sleep(0.05)
                pubsub = flooder._pubsub
                assert pubsub is not None
                topic = flooder._config.topic
                for raw in flood:
                    await wait_for_queue_room(pubsub, 2.0)
                    await pubsub.push_msg(pubsub.my_id, _forged_author_message(topic, raw))
                await trio.sleep(1.0)
                seen["pending"] = state.membership.pending_count
                for raw in credentials:
                    await member.publish(raw)
                with trio.move_on_after(10):
                    while sum(state.is_member(k.public) for k in joiners) < len(joiners):  # noqa: ASYNC110
                        await trio.sleep(0.05)
                seen["announced"] = sum(
                    (m := state.member(k.public)) is not None and m.announcement is not None
                    for k in joiners
                )
                seen["rejected"] = dict(state.reject_reasons)

    _run(body)
    print(seen)
    assert seen["announced"] == len(joiners), seen


# --- the budgets themselves (fake clock) ----------------------------------------------------


def test_sync_sessions_are_bounded_per_peer_in_total_and_for_strangers() -> None:
    sessions = SyncSessions()
    assert sessions.open("m", member=True, now=0.0) is None
    assert sessions.open("m", member=True, now=0.0) is None
    assert sessions.open("m", member=True, now=0.0) == "sessions-per-peer"
    sessions.close("m", member=True)
    assert sessions.open("m", member=True, now=0.0) is None
    strangers = [sessions.open(f"s{i}", member=False, now=0.0) for i in range(6)]
    assert strangers.count(None) == MAX_STRANGER_SESSIONS
    assert strangers[-1] == "sessions-of-non-members"
    # One peer opening and closing sessions as fast as it can: SYNC_STARTS_BURST, then 1/s.
    opened = 0
    for _ in range(100):
        if sessions.open("fast", member=True, now=10.0) is None:
            opened += 1
            sessions.close("fast", member=True)
    assert opened == SYNC_STARTS_BURST
    assert sessions.open("fast", member=True, now=11.0) is None
    assert sessions.open_count == 2 + MAX_STRANGER_SESSIONS + 1
    assert sessions.refused > 90


def test_sync_pushes_are_budgeted_per_peer_and_for_all_strangers(tmp_path: Path) -> None:
    node, root = _network(tmp_path)
    state = NodeState(node, announce_ttl=600)
    try:
        member = SigningKey.generate()
        state.add_local(_member_certificate(node, root, member, "m"))
        state.peer_key = lambda peer: member.public if peer == "m" else None
        ann = make_announcement(member, network_id=node.anchor.network_id, seq=1, issued_at=now())
        cert = _member_certificate(node, root, SigningKey.generate(), "x")
        batch: list[Record] = [*([ann] * 30_000), cert]
        kept = state.gate.admit_sync_records("m", batch, 0.0)
        assert len(kept) == SYNC_MEMBER_BURST
        assert kept[0] is cert  # credentials go first
        assert len(state.gate.admit_sync_records("s0", batch, 0.0)) == SYNC_STRANGER_BURST
        total = sum(len(state.gate.admit_sync_records(f"s{i}", batch, 0.0)) for i in range(1, 20))
        assert total == SYNC_STRANGERS_BURST - SYNC_STRANGER_BURST  # all strangers share it
        assert len(state.gate.admit_sync_records("s0", batch, 1.0)) == SYNC_STRANGER_RATE
        assert state.reject_reasons["rate-limited"] > 500_000
        assert state.source_of("m") == "m"
        assert state.source_of("s0") == NON_MEMBERS
    finally:
        node.close()


def test_the_syncs_we_start_with_non_members_share_their_few_sessions() -> None:
    """Every peer that connects is synced with, strangers too (one may be a member we have
    not heard of). Those sessions were not counted: 128 stranger connections had 128
    sessions, each holding a snapshot of our ids and reading what the stranger sent. Now a
    session we start counts against the same budget as one a peer opens to us."""
    from meshd.daemon.antientropy import AntiEntropy
    from meshd.daemon.sync_policy import SyncPolicy
    from meshd.gossip.enroll import GracePolicy
    from meshd.gossip.peers import peer_id_of

    strangers = [peer_id_of(SigningKey.generate().public) for _ in range(10)]
    opened: list[str] = []

    class Host:
        def set_stream_handler(self, *args: Any) -> None:
            pass

        def connected_peers(self) -> list[str]:
            return list(strangers)

        async def open_stream(self, peer: str, protocol: str) -> Any:
            opened.append(peer)
            await trio.sleep_forever()  # the stranger holds its session open

    class State:
        def is_member(self, key: bytes) -> bool:
            return False

    sessions = SyncSessions()
    service = AntiEntropy(
        Host(), State(), SyncPolicy(interval=3600.0), GracePolicy(connect=10, enroll=30),  # type: ignore[arg-type]
        sessions,
    )  # fmt: skip

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            for peer in strangers:  # what the connections service asks of each
                service.request(peer)
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert len(opened) == MAX_STRANGER_SESSIONS, opened
    assert sessions.open_count == 0  # all closed again as they ended
    assert sessions.refused == len(strangers) - MAX_STRANGER_SESSIONS
