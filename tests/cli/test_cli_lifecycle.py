"""``meshd renew`` and ``meshd leave`` offline, and the daemon's renewal, warning and departure
services driven on a fake clock over a real state dir (no network)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from meshd.daemon.renewer import AutoRenew, Departure, ExpiryWarner, add_expiry, expiring_view
from meshd.daemon.state import NodeState
from meshd.daemon.state_views import peers_view
from meshd.errors import UsageError
from meshd.membership import MemberState
from meshd.node.statedir import NodeDir, now
from meshd.records import make_leave
from meshd.trust.invites import decode_token_untrusted, enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.cli.test_cli import one_line_error, run

DAY = 86400


@pytest.fixture
def founder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    state = tmp_path / "a"
    code, _, _ = run(
        capsys, "init", "--network", "barnet", "--name", "alpha", "--state-dir", str(state)
    )
    assert code == 0
    return state


def _member(state_dir: Path, capsys: pytest.CaptureFixture[str], name: str, ttl: str) -> bytes:
    code, out, _ = run(capsys, "invite", "--member-ttl", ttl, "--state-dir", str(state_dir))
    assert code == 0
    invite = decode_token_untrusted(out.strip())
    node = NodeDir.open(state_dir)
    try:
        state = node.membership()
        key, wg = SigningKey.generate(), WireGuardKey.generate()
        enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name=name, now=now())
        admission = state.sponsor(node.node_key, enrollment, now())
        node.store.apply([state.ingest(admission, now())])
    finally:
        node.close()
    return key.public


def _end(state_dir: Path, key: bytes) -> int:
    node = NodeDir.open(state_dir)
    try:
        return node.membership().credentials_end(key)
    finally:
        node.close()


def test_renew_offline_extends_a_member(founder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = _member(founder, capsys, "carol", "10d")
    before = _end(founder, key)
    assert before <= now() + 10 * DAY
    code, out, _ = run(
        capsys, "renew", "carol", "--for", "400d", "--json", "--state-dir", str(founder)
    )
    assert code == 0
    info = json.loads(out)
    assert [r["name"] for r in info["renewed"]] == ["carol"]
    after = _end(founder, key)
    assert after == info["until"]
    assert now() + 399 * DAY < after <= now() + 400 * DAY
    # Renewing again for less changes nothing.
    code, out, _ = run(capsys, "renew", "--all", "--for", "30d", "--state-dir", str(founder))
    assert (code, out.strip()) == (0, "nothing to renew")
    assert _end(founder, key) == after


def test_renew_refuses_what_it_cannot_do(founder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _member(founder, capsys, "carol", "10d")
    code, _, err = run(capsys, "renew", "--state-dir", str(founder))
    one_line_error(code, err)
    code, _, err = run(capsys, "renew", "carol", "--all", "--state-dir", str(founder))
    one_line_error(code, err)
    code, _, err = run(capsys, "revoke", "carol", "--state-dir", str(founder))
    assert code == 0
    code, _, err = run(capsys, "renew", "carol", "--state-dir", str(founder))
    one_line_error(code, err)
    assert "revoked" in err
    (founder / "root.key").rename(founder.parent / "root.key")
    code, _, err = run(capsys, "renew", "--all", "--state-dir", str(founder))
    one_line_error(code, err)
    assert "neither the root key nor an admin key" in err


def test_leave_needs_a_running_daemon(founder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "leave", "--state-dir", str(founder))
    one_line_error(code, err)
    assert "no daemon runs" in err
    assert (founder / "node.key").exists()
    code, _, err = run(capsys, "leave", "--purge", "--state-dir", str(founder))
    one_line_error(code, err)
    assert "root.key" in err


def test_a_state_dir_marked_left_is_refused(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (founder / "left").write_bytes(b"")
    for argv in (("up", "--wg-backend", "none"), ("invite",), ("renew", "--all")):
        code, _, err = run(capsys, *argv, "--state-dir", str(founder))
        one_line_error(code, err)
        assert "left its network" in err


# --- the daemon's services, on a fake clock --------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = now()

    def __call__(self) -> int:
        return self.now


def test_auto_renew_renews_once_a_day_within_the_window(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = _member(founder, capsys, "carol", "40d")
    node = NodeDir.open(founder)
    clock = Clock()
    try:
        state = NodeState(node, announce_ttl=None, clock=clock)
        service = AutoRenew(
            state, node.issuer(), _no_flood, window=30 * DAY, period=365 * DAY, clock=clock
        )
        assert service.step(clock.now) == []  # ends in 40 days: not due
        clock.now += 11 * DAY  # 29 days left
        made = service.step(clock.now)
        assert len(made) == 1
        assert state.membership.credentials_end(key) == clock.now + 365 * DAY
        assert service.step(clock.now + DAY) == []  # renewed: no longer due
        # The renewal is in the store: a restart sees it.
        assert NodeDir.open(founder).membership(clock.now).credentials_end(key) > clock.now
    finally:
        node.close()


async def _no_flood(raw: bytes) -> None:
    pass


def test_expiry_warnings_once_a_day_and_in_the_views(
    founder: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    _member(founder, capsys, "carol", "20d")
    node = NodeDir.open(founder)
    clock = Clock()
    clock.now += 60  # a minute after the enrollment: 19 whole days and some left
    try:
        state = NodeState(node, announce_ttl=None, clock=clock)
        warner = ExpiryWarner(state, clock=clock)
        with caplog.at_level(logging.WARNING, logger="meshd.daemon.renewer"):
            assert warner.step(clock.now) == 1
            assert warner.step(clock.now + 3600) == 0
            assert warner.step(clock.now + DAY) == 1
        assert "member carol expires in 19 days" in caplog.text
        view = expiring_view(state, clock.now)
        assert [(e["kind"], e["name"], e["expires"]) for e in view] == [
            ("member", "carol", "expires in 19 days")
        ]
        rows = peers_view(state, set())
        add_expiry(rows, clock.now)
        expires = {r["name"]: r["expires"] for r in rows}
        assert expires["carol"] == "expires in 19 days"
        assert expires["alpha"] is None  # the founder's certificate lasts ten years
    finally:
        node.close()


def test_departure_sees_this_nodes_own_leave(founder: Path) -> None:
    node = NodeDir.open(founder)
    try:
        state = NodeState(node, announce_ttl=None)
        departure = Departure(state)
        assert not departure.left()
        leave = make_leave(node.node_key, network_id=node.anchor.network_id, issued_at=now())
        state.add_local(leave)
        assert departure.left()
        me = state.member(node.node_key.public)
        assert me is not None
        assert (me.state, me.reason) == (MemberState.REVOKED, "left")
    finally:
        node.close()


def test_auto_renew_needs_a_key_that_may_renew(founder: Path) -> None:
    from meshd.daemon.config import DaemonConfig
    from meshd.daemon.renew_slot import AutoRenewSlot

    (founder / "root.key").rename(founder.parent / "root.key")
    node = NodeDir.open(founder)
    try:
        state = NodeState(node, announce_ttl=None)
        config = DaemonConfig(state_dir=founder, auto_renew=True)
        with pytest.raises(UsageError, match="neither the root key nor an admin key"):
            AutoRenewSlot(state, _no_flood, config)
        slot = AutoRenewSlot(state, _no_flood, DaemonConfig(state_dir=founder))
        assert slot.renew is None
        # Turned on by a SIGHUP: refused alike, nothing changed.
        with pytest.raises(UsageError, match="neither the root key nor an admin key"):
            slot.check(config)
        assert slot.renew is None
    finally:
        node.close()


def test_a_sighup_turns_auto_renew_on_and_off_and_new_terms_renew_at_once(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The slot a daemon runs: off, nothing renewed; turned on, the member ending within the
    window is renewed at once; a wider window covers a second member, renewed at once (not
    the next day); turned off, its task ends."""
    import trio
    import trio.testing

    from meshd.daemon.config import DaemonConfig
    from meshd.daemon.renew_slot import AutoRenewSlot

    carol = _member(founder, capsys, "carol", "20d")
    dave = _member(founder, capsys, "dave", "50d")
    node = NodeDir.open(founder)
    clock = Clock()
    flooded: list[bytes] = []

    async def flood(raw: bytes) -> None:
        flooded.append(raw)

    def ends(key: bytes) -> int:
        return state.membership.credentials_end(key)

    try:
        state = NodeState(node, announce_ttl=None, clock=clock)
        off = DaemonConfig(state_dir=founder)
        slot = AutoRenewSlot(state, flood, off)
        on = DaemonConfig(state_dir=founder, auto_renew=True, renew_window=30 * DAY)
        wider = DaemonConfig(state_dir=founder, auto_renew=True, renew_window=60 * DAY)
        carol_end, dave_end = ends(carol), ends(dave)

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                await nursery.start(slot.run)
                await trio.sleep(3600)
                assert flooded == []  # off
                slot.check(on)
                slot.reconfigure(on)
                await trio.sleep(1)
                assert len(flooded) == 1
                assert ends(carol) > carol_end
                assert ends(dave) == dave_end  # 50 days left: outside 30
                slot.reconfigure(on)  # the same terms: nothing again
                await trio.sleep(1)
                assert len(flooded) == 1
                slot.reconfigure(wider)
                await trio.sleep(1)
                assert len(flooded) == 2  # the same day, under the new window
                assert ends(dave) > dave_end
                slot.reconfigure(off)
                assert slot.renew is None
                await trio.sleep(1)
                nursery.cancel_scope.cancel()

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        node.close()


def test_up_with_auto_renew_needs_a_key_that_may_renew_before_it_starts(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (founder / "root.key").rename(founder.parent / "root.key")
    code, _, err = run(
        capsys, "up", "--auto-renew", "--wg-backend", "none", "--state-dir", str(founder)
    )
    one_line_error(code, err)
    assert "neither the root key nor an admin key" in err
    assert not (founder / "meshd.sock").exists()


def test_departure_signals_only_a_process_that_handles_sigterm(founder: Path) -> None:
    import signal

    import trio

    # A process that does not handle SIGTERM (the test run's own handler put aside: it
    # ends the run on SIGTERM, tests/conftest.py).
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    node = NodeDir.open(founder)
    try:
        state = NodeState(node, announce_ttl=None)
        state.add_local(
            make_leave(node.node_key, network_id=node.anchor.network_id, issued_at=now())
        )
        trio.run(Departure(state, grace=0).run)  # returns; the process lives on
    finally:
        node.close()
        signal.signal(signal.SIGTERM, previous)


def test_inspect_checks_a_renewal_and_a_leave(
    founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from meshd.records import make_renewal
    from meshd.trust.keyfiles import read_secret

    node = NodeDir.open(founder)
    try:
        root = SigningKey(read_secret(node.paths.root_key))
        nid, me = node.anchor.network_id, node.node_key.public
        renewal = make_renewal(root, network_id=nid, subject=me, issued_at=now(), not_after=now())
        forged = make_renewal(
            SigningKey.generate(), network_id=nid, subject=me, issued_at=now(), not_after=now()
        )
        leave = make_leave(node.node_key, network_id=nid, issued_at=now(), reason="moving")
    finally:
        node.close()
    for name, record, verdict in (
        ("renewal", renewal, "ok"),
        ("forged", forged, "FAILED"),
        ("leave", leave, "ok"),
    ):
        path = tmp_path / name
        path.write_bytes(record.raw)
        code, out, _ = run(capsys, "inspect", str(path), "--json", "--state-dir", str(founder))
        assert code == 0
        assert json.loads(out)["signatures"].startswith(verdict), (name, out)


def test_inspect_checks_rotations_and_rollovers(
    founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every record kind is verified by `inspect`: a WireGuard key rotation with a damaged
    signature, or a root rollover signed by a key that is no root, says FAILED (both said
    "ok" unchecked before)."""
    from meshd.records import make_rollover, make_wg_rotation
    from meshd.trust.keyfiles import read_secret

    node = NodeDir.open(founder)
    try:
        root = SigningKey(read_secret(node.paths.root_key))
        nid, t = node.anchor.network_id, now()
        wg = SigningKey.generate().public  # 32 bytes, as a WireGuard public key
        rotation = make_wg_rotation(
            node.node_key, network_id=nid, counter=1, issued_at=t, wg_key=wg
        )
        stranger = SigningKey.generate()
        new_root = SigningKey.generate().public
        rollover = make_rollover(
            root, network_id=nid, new_root=new_root, issued_at=t, overlap_until=t + 86400
        )
        forged_rollover = make_rollover(
            stranger, network_id=nid, new_root=new_root, issued_at=t, overlap_until=t + 86400
        )
    finally:
        node.close()

    class Raw:  # a rotation whose signature was damaged on the way
        raw = rotation.raw[:-1] + bytes([rotation.raw[-1] ^ 1])

    forged_rotation = Raw()
    for name, record, verdict in (
        ("rotation", rotation, "ok"),
        ("forged-rotation", forged_rotation, "FAILED"),
        ("rollover", rollover, "ok"),
        ("forged-rollover", forged_rollover, "FAILED"),
    ):
        path = tmp_path / name
        path.write_bytes(record.raw)
        code, out, _ = run(capsys, "inspect", str(path), "--json", "--state-dir", str(founder))
        assert code == 0
        assert json.loads(out)["signatures"].startswith(verdict), (name, out)
