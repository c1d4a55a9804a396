"""Key rotation and root rollover between real daemons on loopback (``--wg-backend none``)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.daemon.support import Daemon, daemons, meshd, wait_for


def _admitted(nodes: list[Daemon], names: list[str]) -> bool:
    for node in nodes:
        states = node.states()
        if any(states.get(name) not in ("admitted", "self") for name in names):
            return False
    return True


def test_rotate_wg_through_the_daemon_reaches_every_member(tmp_path: Path) -> None:
    with daemons(tmp_path, "a", "b", "c") as nodes:
        a, b, c = nodes
        a.init()
        a.up()
        b.join(a.invite("--name", "b"))
        c.join(a.invite("--name", "c"))
        names = ["a", "b", "c"]
        wait_for(lambda: _admitted(nodes, names), 30, "everyone admitted everywhere")
        old = a.peers()["b"]["wg_public_key"]
        result = meshd("rotate", "wg", "--json", "--state-dir", str(b.state_dir))
        assert result.returncode == 0, result.stderr
        new = json.loads(result.stdout)["wg_public_key"]
        assert new != old
        took = wait_for(
            lambda: all(n.peers()["b"]["wg_public_key"] == new for n in (a, c)),
            10,
            "the new key everywhere",
        )
        print(f"rotated key seen by every other daemon {took:.2f} s after `meshd rotate wg`")
        assert b.ask("status")["wireguard"]["public_key"] == new
        # Restarted, b keeps the new key; the others still hold it.
        b.stop()
        b.up()
        assert b.ask("status")["wireguard"]["public_key"] == new
        assert a.peers()["b"]["wg_public_key"] == new


def test_root_rollover_through_the_daemon_and_a_node_offline_through_it(tmp_path: Path) -> None:
    """The root rolls over while c is down; d joins with an invite of the new root; c comes
    back and takes the rollover and d's admission from the others."""
    with daemons(tmp_path, "a", "b", "c", "d") as nodes:
        a, b, c, d = nodes
        a.init()
        a.up()
        b.join(a.invite("--name", "b"))
        c.join(a.invite("--name", "c"))
        wait_for(lambda: _admitted([a, b, c], ["a", "b", "c"]), 30, "a, b, c admitted")
        c.stop()
        result = meshd(
            "root", "rollover", "--overlap", "7d", "--json", "--state-dir", str(a.state_dir)
        )
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert info["members_certified_again"] == 3
        d.join(a.invite("--name", "d"))
        wait_for(lambda: b.states().get("d") == "admitted", 30, "d admitted at b")
        c.up()
        took = wait_for(lambda: c.states().get("d") == "admitted", 30, "d admitted at c")
        print(f"the node that was down took the rollover and d's admission in {took:.2f} s")
        assert _admitted([a, b, c, d], ["a", "b", "c", "d"])


def test_rotate_node_through_the_daemon_keeps_the_member_and_its_address(
    tmp_path: Path,
) -> None:
    with daemons(tmp_path, "a", "b", "c") as nodes:
        a, b, c = nodes
        a.init()
        a.up()
        b.join(a.invite("--name", "b"))
        c.join(a.invite("--name", "c"))
        wait_for(lambda: _admitted(nodes, ["a", "b", "c"]), 30, "everyone admitted everywhere")
        before = a.peers()["b"]
        result = meshd("rotate", "node", "--json", "--state-dir", str(b.state_dir))
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["overlay_ip"] == before["overlay_ip"]
        assert b.process is not None
        # The daemon stopped after flooding the hand-over, with the status that a supervisor
        # (systemd's Restart=on-failure) restarts: 75, to start again under the new key.
        assert b.process.wait(10) == 75
        assert "meshd: this node's key was handed over" in b.log.read_text()
        b.up()
        me = next(p for p in b.ask("peers") if p["state"] == "self")
        assert me["node_id"] == answer["node_id"]
        assert me["overlay_ip"] == before["overlay_ip"]

        def seen(node: Daemon) -> bool:
            rows = [p for p in node.ask("peers") if p["name"] == "b"]
            by_id = {p["node_id"]: p for p in rows}
            new = by_id.get(answer["node_id"])
            old = by_id.get(before["node_id"])
            return (
                new is not None
                and new["state"] == "admitted"
                and new["overlay_ip"] == before["overlay_ip"]
                and old is not None
                and old["state"] == "revoked"
            )

        took = wait_for(lambda: seen(a) and seen(c), 30, "the new key admitted everywhere")
        print(f"b under its new node key admitted everywhere {took:.2f} s after its restart")
