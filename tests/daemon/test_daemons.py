"""Daemons as separate processes on loopback: join, revoke, restart, kill -9, invite races."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from meshd.node.statedir import NodeDir
from meshd.records import make_invite
from meshd.trust.invites import decode_token_untrusted, encode_token
from meshd.trust.keys import SigningKey
from tests.daemon.support import Daemon, daemons, free_port, meshd, wait_for

OTHERS = ("node1", "node2", "node3", "node4")


def _all_admitted(nodes: list[Daemon], names: list[str]) -> bool:
    for node in nodes:
        states = node.states()
        if any(states.get(n) != "admitted" for n in names if n != node.name):
            return False
    return True


def _same_digest(nodes: list[Daemon]) -> bool:
    return len({n.ask("status")["digest"] for n in nodes}) == 1


def test_five_daemons_join_revoke_and_restart(tmp_path: Path) -> None:
    with daemons(tmp_path, "founder", *OTHERS, "node5") as nodes:
        founder, n1, n2, n3, n4, n5 = nodes
        founder.init()
        founder.up()
        tokens = [founder.invite("--name", n.name) for n in (n1, n2, n3, n4)]
        for node, token in zip((n1, n2, n3, n4), tokens, strict=True):
            node.join(token)
        live = nodes[:5]
        names = [n.name for n in live]
        took = wait_for(lambda: _all_admitted(live, names), 30, "everyone admitted everywhere")
        print(f"all 5 admitted everywhere {took:.2f} s after the last join answered")
        wait_for(lambda: _same_digest(live), 15, "equal digests")

        # A revocation issued at the founder reaches every other daemon.
        result = meshd("revoke", "node4", "--reason", "test", "--state-dir", str(founder.state_dir))
        assert result.returncode == 0, result.stderr
        took = wait_for(
            lambda: all(n.states()["node4"] == "revoked" for n in (n1, n2, n3)), 10, "revocation"
        )
        print(f"revocation applied on all others {took:.2f} s after `meshd revoke` returned")
        assert took < 5
        # The revoked member is disconnected everywhere and stays so.
        wait_for(
            lambda: not any(n.peers()["node4"]["connected"] for n in (founder, n1, n2, n3)),
            10,
            "node4 disconnected",
        )

        # It cannot rejoin with its invite ...
        again = meshd(
            "join", "--invite", tokens[3], "--no-up", "--wg-backend", "none",
            "--state-dir", str(tmp_path / "again"),
        )  # fmt: skip
        assert again.returncode == 1
        # Progress lines, then the failure in one line.
        assert again.stderr.strip().splitlines()[-1] == (
            "meshd: the invite has been used up; ask for a new invite"
        )
        # ... nor with its keys under a new invite.
        reuse = tmp_path / "reuse"
        reuse.mkdir(mode=0o700)
        for key in ("node.key", "wg.key"):
            shutil.copy2(n4.state_dir / key, reuse / key)
        fresh = founder.invite("--name", "node4")
        again = meshd(
            "join", "--invite", fresh, "--no-up", "--wg-backend", "none",
            "--state-dir", str(reuse),
        )  # fmt: skip
        assert again.returncode == 1
        assert "revoked" in again.stderr.splitlines()[-1]
        n4.stop()

        # A member that is down while a revocation and an admission happen learns both when
        # it comes back.
        n3.stop()
        assert meshd("revoke", "node2", "--state-dir", str(founder.state_dir)).returncode == 0
        n5.join(founder.invite("--name", "node5"))
        wait_for(lambda: n1.states().get("node5") == "admitted", 15, "node5 admitted")
        n3.up()
        took = wait_for(
            lambda: (
                n3.states().get("node2") == "revoked" and n3.states().get("node5") == "admitted"
            ),
            20,
            "the restarted member to catch up",
        )
        print(f"restarted member caught up in {took:.2f} s")

        # kill -9 loses nothing: what the daemon reported is what its store holds.
        wait_for(lambda: _same_digest([founder, n1, n3, n5]), 20, "quiet, equal digests")
        before = n1.ask("status")["digest"]
        n1.kill9()
        stored = NodeDir.open(n1.state_dir)
        try:
            assert stored.membership().digest().hex() == before
        finally:
            stored.close()
        n1.up()
        wait_for(lambda: _same_digest([founder, n1, n3, n5]), 20, "convergence after restart")

        # SIGTERM shuts down cleanly and promptly.
        for daemon in (founder, n1, n3, n5):
            assert daemon.stop() < 8
            assert not (daemon.state_dir / "meshd.sock").exists()


def test_single_use_invite_redeemed_at_two_partitioned_sponsors(tmp_path: Path) -> None:
    with daemons(tmp_path, "founder", "s1", "s2", "j1", "j2") as nodes:
        founder, s1, s2, j1, j2 = nodes
        founder.init()
        founder.up()
        for sponsor in (s1, s2):
            sponsor.enroll(founder.invite("--name", sponsor.name))
        # One single-use invite, handed out twice with different bootstrap addresses.
        token = founder.invite("--uses", "1")
        founder.stop()
        s1.up()
        s2.up()
        assert s1.states().get("s2") in (None, "admitted")
        assert not s1.peers()["founder"]["connected"]
        invite = decode_token_untrusted(token)
        key = SigningKey(invite.secret)
        addr = {s: f"{s.listen}/p2p/{s.ask('status')['peer_id']}" for s in (s1, s2)}
        tokens = {
            s: encode_token(
                make_invite(
                    key, network=invite.network, certificate=invite.certificate, bootstrap=[a]
                )
            )
            for s, a in addr.items()
        }
        j1.join(tokens[s1])
        j2.join(tokens[s2])
        assert s1.states()["j1"] == "admitted"
        assert s2.states()["j2"] == "admitted"
        assert "j2" not in s1.states()
        # The partition heals: s1 dials s2.
        assert s1.ask("connect", {"addrs": [addr[s2]]})[0]["error"] is None
        everyone = [s1, s2, j1, j2]

        def decided() -> bool:
            # The loser's own daemon stops once it learns it lost (exit 10, revoked): the
            # decision is read from the daemons still running, one of which may be it.
            running = [n for n in everyone if n.process is None or n.process.poll() is None]
            views = {
                tuple(
                    "admitted" if state == "self" else state
                    for state in (n.states().get("j1", ""), n.states().get("j2", ""))
                )
                for n in running
            }
            return len(views) == 1 and set(views.pop()) == {"admitted", "revoked"}

        took = wait_for(
            decided,
            20,
            "one decision everywhere",
            lambda: [
                (n.name, n.states(), n.ask("status")["digest"])
                for n in everyone
                if n.process is None or n.process.poll() is None
            ],
        )
        print(f"the invite race was decided everywhere in {took:.2f} s")
        states = s1.states()
        winner = "j1" if states["j1"] == "admitted" else "j2"
        loser = "j2" if winner == "j1" else "j1"
        assert s1.peers()[loser]["reason"] == "invite-used-up"
        assert states[winner] == "admitted"
        lost = j1 if loser == "j1" else j2
        assert lost.process is not None
        assert lost.process.wait(30) == 10  # the loser's daemon stops as revoked
        wait_for(lambda: _same_digest([s1, s2]), 15, "equal digests")


def _failed_join(token: str, state_dir: Path) -> str:
    """``meshd join --no-up`` with ``token`` that fails (exit status 1): its last line."""
    result = meshd("join", "--invite", token, "--no-up", "--state-dir", str(state_dir))
    assert result.returncode == 1
    last: str = result.stderr.strip().splitlines()[-1]
    return last


def test_join_failures_say_which(tmp_path: Path) -> None:
    with daemons(tmp_path, "founder") as (founder,):
        founder.init()
        token = founder.invite("--name", "x")
        # Nobody listens at the bootstrap address.
        peer = "12D3KooWHwyUKko53tSAuiTN9K8NFR6MqVxENqwQzGWbmQSsD9R6"
        dead = f"/ip4/127.0.0.1/tcp/{founder.port}/p2p/{peer}"
        fresh = founder.invite("--name", "x", "--bootstrap", dead)
        last = _failed_join(fresh, tmp_path / "j")
        assert "no bootstrap address is reachable" in last
        assert dead in last
        assert token.startswith("meshd1")
        # A token naming no address at all.
        result = meshd("join", "--invite", token, "--no-up", "--state-dir", str(tmp_path / "k"))
        assert result.returncode == 1
        assert "bootstrap" in result.stderr
        # Garbage.
        result = meshd(
            "join", "--invite", "meshd1AAAA", "--no-up", "--state-dir", str(tmp_path / "l")
        )
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1
        # An invite that expired before it was redeemed.
        founder.up()
        expired = founder.invite("--name", "late", "--expires", "1s")
        time.sleep(1.5)
        result = meshd("join", "--invite", expired, "--no-up", "--state-dir", str(tmp_path / "m"))
        assert result.returncode == 1
        assert "the invite has expired" in result.stderr.strip().splitlines()[-1]
        founder.stop()
        # And a daemon that is not running is said so.
        result = meshd("peers", "--state-dir", str(founder.state_dir))
        assert result.returncode == 3  # README, exit status: no daemon running
        assert "no meshd daemon is running" in result.stderr


def test_the_daemon_answers_what_a_revocation_lists_as_the_store_does(tmp_path: Path) -> None:
    """`meshd revoke` asks the running daemon what a revocation of its target lists
    (``sponsored``) instead of loading the store: the answer must be the store's."""
    import base64

    from meshd.errors import MeshdError
    from meshd.node.statedir import now

    with daemons(tmp_path, "founder", "node1") as (founder, n1):
        founder.init()
        founder.up()
        n1.join(founder.invite("--name", "node1"))
        wait_for(lambda: founder.states().get("node1") == "admitted", 10, "node1 admitted")
        keys = {r["name"]: base64.b64decode(r["node_key"]) for r in founder.ask("peers")}
        answers = {
            name: founder.ask("sponsored", {"target": key.hex()}) for name, key in keys.items()
        }
        assert len(answers["founder"]["sponsored"]) == 1  # node1's enrollment
        assert answers["node1"] == {"sponsored": [], "legacy_only": False}
        for bad in ("", "zz" * 32, keys["node1"].hex()[:-2], 7):
            with pytest.raises(MeshdError, match=r"sponsored needs args\.target|sponsored: target"):
                founder.ask("sponsored", {"target": bad})
        founder.stop()
        node = NodeDir.open(founder.state_dir)
        try:
            state = node.membership(now())
            for name, key in keys.items():
                assert [r.hex() for r in state.sponsored_by(key)] == answers[name]["sponsored"]
        finally:
            node.close()


def test_a_joiner_finds_the_network_by_a_host_name(tmp_path: Path) -> None:
    # The way in an admin hands out is a name (a member whose address its provider
    # changes): the joiner looks it up when it dials, and keeps the name for its redials.
    with daemons(tmp_path, "founder", "j") as (founder, joiner):
        founder.init()
        founder.up()
        peer = founder.ask("status")["peer_id"]
        named = f"/dns4/localhost/tcp/{founder.port}/p2p/{peer}"
        joiner.join(founder.invite("--name", "j", "--bootstrap", named))
        wait_for(lambda: _all_admitted([founder, joiner], ["founder", "j"]), 20, "admitted")
        joiner.stop()
        node = NodeDir.open(joiner.state_dir)
        try:
            assert node.store.get_meta("bootstrap") == named.encode()
        finally:
            node.close()
        # A name nobody can look up: the join's one line says so.
        nowhere = f"/dns4/nothing.invalid/tcp/{founder.port}/p2p/{peer}"
        token = founder.invite("--name", "x", "--bootstrap", nowhere)
        last = _failed_join(token, tmp_path / "x")
        assert "no bootstrap address is reachable" in last
        assert "looking up nothing.invalid failed" in last


def test_a_member_whose_kept_addresses_went_stale_finds_the_network_by_its_bootstrap_option(
    tmp_path: Path,
) -> None:
    # Years on, every address a node joined with or last heard of has changed: the way in
    # given to `meshd up` (here a name; a config file's `bootstrap` the same) is dialled
    # with those join kept, while no member is connected.
    with daemons(tmp_path, "founder", "j") as (founder, joiner):
        founder.init()
        founder.up()
        joiner.join(founder.invite("--name", "j"))
        wait_for(lambda: _all_admitted([founder, joiner], ["founder", "j"]), 20, "admitted")
        peer = founder.ask("status")["peer_id"]
        joiner.stop()
        founder.stop()
        kept = f"{founder.listen}/p2p/{peer}"  # what the invite carried, join kept
        founder.port = free_port()  # the founder moved, and so did the joiner (so that only
        joiner.port = free_port()  # the joiner's dial can bring them together)
        named = f"/dns4/localhost/tcp/{founder.port}/p2p/{peer}"
        joiner.up("--bootstrap", named)  # the founder not back yet: alone
        wait_for(lambda: joiner.ask("status")["isolated_since"] is not None, 15, "isolated")
        assert joiner.ask("status")["bootstrap"] == [named, kept]  # the option's first
        shown = meshd("status", "--state-dir", str(joiner.state_dir)).stdout
        line = next(ln for ln in shown.splitlines() if ln.startswith("isolated"))
        assert "no member connected for" in line
        assert "and 2 bootstrap address(es)" in line
        founder.up()
        took = wait_for(lambda: joiner.peers()["founder"]["connected"], 30, "reconnected")
        print(f"found the moved founder by its name {took:.2f} s after it was back")
        wait_for(lambda: joiner.ask("status")["isolated_since"] is None, 15, "no longer alone")


def test_a_state_dir_deeper_than_a_socket_address_holds_runs_a_daemon(tmp_path: Path) -> None:
    # A state dir in a container's overlay or a nested checkout: its meshd.sock has a path
    # longer than the 107 bytes a socket address holds. Before, the daemon ended right after
    # it started (`AF_UNIX path too long`) and nothing could ask it anything.
    deep = tmp_path
    while len(str(deep / "founder" / "meshd.sock")) <= 120:
        deep = deep / ("d" * 40)
    with daemons(deep, "founder", "j") as (founder, joiner):
        founder.init()
        founder.up()
        joiner.join(founder.invite("--name", "j"))
        wait_for(lambda: _all_admitted([founder, joiner], ["founder", "j"]), 20, "admitted")
        shown = meshd("peers", "--state-dir", str(joiner.state_dir))
        assert shown.returncode == 0, shown.stderr
        assert "founder" in shown.stdout
        assert founder.stop() < 8.0
        assert not (founder.state_dir / "meshd.sock").exists()  # removed on the way out
