"""The daemon services' policies, pure, on a fake clock (``now`` is an argument).

Dial backoff, grace for non-members, dropping revoked peers, how many members are dialled,
resync rules, announcement timing. Expiry by silence runs on trio's MockClock in
tests/daemon/test_services.py.
"""

from __future__ import annotations

import ast
import ipaddress
import itertools
import random
import re
from pathlib import Path

import pytest

from meshd.daemon.announce_policy import AnnouncePolicy
from meshd.daemon.connect_policy import REVOKED_GRACE, ConnectionPolicy, Peer, Standing
from meshd.daemon.sync_policy import MAX_RESYNC, SyncPolicy
from meshd.gossip.backoff import DialBackoff
from meshd.gossip.enroll import GracePolicy
from meshd.membership import Member, MemberState
from meshd.records import Announcement
from meshd.trust.keys import NodeKey, WgKey

ROOT = Path(__file__).resolve().parents[2]
PURE = ["meshd/daemon/connect_policy.py", "meshd/daemon/sync_policy.py",
        "meshd/daemon/announce_policy.py", "meshd/gossip/backoff.py",
        "meshd/daemon/rejoin_policy.py", "meshd/daemon/bootstrap.py"]  # fmt: skip
SHELLS = {"trio", "time", "socket", "libp2p", "sqlite3", "pyroute2", "random"}


@pytest.mark.parametrize("path", PURE)
def test_policies_read_no_clock_and_do_no_io(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    # random.Random is taken as a seeded generator, never the module's global state
    assert not (imported & (SHELLS - {"random"})), imported
    assert not re.search(r"(?<!self\.)random\.(random|choice|sample)\(", (ROOT / path).read_text())


class _Ann:
    def __init__(self, addrs: tuple[str, ...]) -> None:
        self.addrs = addrs


def _member(i: int, *, state: MemberState = MemberState.ADMITTED, addrs: bool = True) -> Member:
    key = bytes([i]) * 32
    announcement = _Ann((f"/ip4/10.0.0.{i}/tcp/7100/p2p/peer{i}",)) if addrs else None
    return Member(
        node_key=NodeKey(key),
        node_id=f"id{i}",
        name=f"m{i}",
        wg_key=WgKey(bytes([i + 100]) * 32),
        overlay=ipaddress.IPv6Address(f"fd00::{i}"),
        state=state,
        reason="",
        admitted_at=0,
        not_after=10**10,
        announcement=announcement,  # type: ignore[arg-type]
        last_seen=0,
    )


def _policy(degree: int = 2, grace: float = 10.0) -> ConnectionPolicy:
    return ConnectionPolicy(
        GracePolicy(connect=grace, enroll=30.0, attempts=3, cooldown=300.0),
        DialBackoff(cap=60.0),
        degree,
        lambda key: f"peer{key[0]}",
        random.Random(1),
    )


OWN = bytes([0]) * 32


def test_dial_backoff_doubles_is_capped_and_resets_when_the_addresses_change() -> None:
    policy = _policy(degree=2)
    m = _member(1)
    # Another member is connected: isolated nodes dial on (tests/daemon/test_rejoin_policy.py).
    other = [Peer("peer9", Standing.MEMBER, _member(9).node_key)]
    addrs = m.announcement.addrs  # type: ignore[union-attr]
    assert policy.sweep(0.0, other, [m], OWN).dial == ((m.node_key, addrs),)
    assert policy.sweep(0.0, other, [m], OWN).dial == ()  # being dialled: not twice
    delays = []
    now = 0.0
    for _ in range(8):
        delay = policy.dialled(m.node_key, addrs, False, now)
        delays.append(delay)
        assert policy.sweep(now + delay * 0.99, other, [m], OWN).dial == ()
        assert policy.sweep(now + delay, other, [m], OWN).dial != ()
        now += delay
    assert all(b > a for a, b in itertools.pairwise(delays[:6]))  # doubling
    assert max(delays) <= 60.0 * 1.5  # capped (times the jitter, at most 1.5)
    policy.dialled(m.node_key, addrs, False, now)
    moved = _member(1)
    object.__setattr__(moved, "announcement", _Ann(("/ip4/10.9.9.9/tcp/1/p2p/peer1",)))
    assert policy.sweep(now, other, [moved], OWN).dial != ()  # at once at new addresses
    assert policy.dialled(m.node_key, addrs, True, now) == 0.0


def test_only_the_members_missing_from_the_degree_are_dialled() -> None:
    policy = _policy(degree=3)
    members = [_member(i) for i in range(1, 10)]
    connected = [Peer("peer1", Standing.MEMBER, members[0].node_key)]
    first = policy.sweep(0.0, connected, members, OWN)
    assert len(first.dial) == 2
    assert all(key != members[0].node_key for key, _ in first.dial)  # connected: not dialled
    assert policy.sweep(0.0, connected, members, OWN).dial == ()  # two dials running
    others = [_member(11, state=MemberState.REVOKED), _member(12, addrs=False), _member(0)]
    assert _policy(degree=6).sweep(0.0, [], others, OWN).dial == ()  # none can be dialled


def test_a_non_member_is_dropped_after_its_grace_and_a_member_never() -> None:
    policy = _policy(grace=10.0)
    stranger = Peer("s", Standing.STRANGER, b"s" * 32)
    member = Peer("m", Standing.MEMBER, b"m" * 32)
    policy.connected("s", 0.0)
    policy.grace.connected("s", 0.0)
    policy.connected("m", 0.0)
    assert policy.sweep(9.9, [stranger, member], [], OWN).drop == ()
    assert policy.sweep(10.0, [stranger, member], [], OWN).drop == (("s", "not a member"),)
    assert policy.sweep(1000.0, [member], [], OWN).drop == ()


def test_a_revoked_peer_is_kept_a_moment_to_hear_why_or_dropped_once_told() -> None:
    policy = _policy()
    revoked = Peer("r", Standing.REFUSED, b"r" * 32)
    policy.connected("r", 5.0)
    assert policy.sweep(5.0 + REVOKED_GRACE * 0.9, [revoked], [], OWN).drop == ()
    assert policy.sweep(5.0 + REVOKED_GRACE, [revoked], [], OWN).drop == (("r", "revoked"),)
    policy.disconnected("r")
    policy.connected("r", 20.0)
    policy.told("r")
    assert policy.sweep(20.0, [revoked], [], OWN).drop == (("r", "revoked"),)


def test_resync_runs_again_while_new_records_come_at_most_max_resync_in_a_row() -> None:
    policy = SyncPolicy(interval=10.0, random=random.Random(1))
    assert policy.start("p")
    assert not policy.start("p")  # one sync with a peer at a time
    assert policy.again(1, 5)
    assert not policy.again(1, 0)
    assert not policy.again(1, None)  # failed
    assert not policy.again(MAX_RESYNC, 5)
    policy.done("p")
    assert policy.start("p")


def test_the_periodic_sync_picks_a_connected_member_once_per_interval() -> None:
    policy = SyncPolicy(interval=10.0, random=random.Random(1))
    assert policy.periodic(0.0, ["a", "b"]) in {"a", "b"}
    assert policy.periodic(9.9, ["a", "b"]) is None
    assert policy.next_due(9.9) == pytest.approx(0.1)
    assert policy.periodic(10.0, []) is None  # due, but no one connected
    assert policy.periodic(15.0, ["a"]) is None
    assert policy.periodic(20.0, ["a"]) == "a"


def test_announcements_at_start_on_address_changes_and_every_interval() -> None:
    policy = AnnouncePolicy(interval=30.0, check=5.0)
    here = (("192.0.2.1:51820",), ("/ip4/192.0.2.1/tcp/7100",))
    moved = (("192.0.2.9:51820",), here[1])
    assert policy.wait(0.0) == 0.0
    assert policy.due(0.0, here)
    policy.announced(0.0, here)
    assert not policy.due(29.9, here)
    assert policy.due(29.9, moved)  # new addresses: at once
    assert policy.changed(moved)
    assert not policy.changed(here)
    assert policy.due(30.0, here)
    assert policy.wait(1.0) == 5.0
    assert policy.wait(28.0) == pytest.approx(2.0)


def test_an_announcement_due_says_why() -> None:
    policy = AnnouncePolicy(interval=30.0, check=5.0)
    here = (("192.0.2.1:51820",), ("/ip4/192.0.2.1/tcp/7100",))
    moved = (("192.0.2.9:51820",), here[1])
    assert policy.why(0.0, here) == "start"
    policy.announced(0.0, here)
    assert policy.why(10.0, here) is None
    assert policy.why(10.0, moved) == "addresses changed"
    assert policy.why(10.0, here, relays=True) == "relay decision changed"
    policy.renew()
    assert policy.why(10.0, here) == "back after an outage"
    policy.announced(10.0, here)
    assert policy.why(39.9, here) is None
    assert policy.why(40.0, here) == "refresh"


def test_announcement_type_is_what_members_carry() -> None:
    # the fakes above stand for Announcement's addrs; keep them honest
    # (a decoded announcement reads them from its bytes when asked: a property)
    assert isinstance(vars(Announcement).get("addrs"), property)


def test_peers_whose_disconnection_was_never_heard_leave_the_tables_at_a_pass() -> None:
    """The peer events' channel sheds when full (a busy loop): a dropped disconnection left
    its peer's first-seen time and told mark behind for good (20,000 connections made and
    ended: over a thousand left)."""
    policy = _policy()
    for n in range(5000):
        policy.connected(f"gone{n}", float(n))
        policy.told(f"gone{n}")
    policy.connected("here", 1.0)
    policy.sweep(6000.0, [Peer("here", Standing.STRANGER)], [], b"\x00" * 32)
    assert set(policy._first_seen) == {"here"}
    assert policy._told == set()
