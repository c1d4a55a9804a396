"""Renewal and leaving between real daemons on loopback (--wg-backend none)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.daemon.support import daemons, meshd, wait_for

DAY = 86400

pytestmark = pytest.mark.slow


def test_auto_renew_at_start_and_a_member_leaving(tmp_path: Path) -> None:
    with daemons(tmp_path, "founder", "node1", "node2") as nodes:
        founder, n1, n2 = nodes
        founder.init()
        founder.up()
        for node in (n1, n2):
            node.join(founder.invite("--name", node.name, "--member-ttl", "20d"))
        names = ["founder", "node1", "node2"]
        wait_for(
            lambda: all(n.states().get(m) in ("admitted", "self") for n in nodes for m in names),
            30,
            "everyone admitted everywhere",
        )
        row = n2.peers()["node1"]
        assert row["credentials_end"] <= time.time() + 20 * DAY
        assert row["expires"].startswith("expires in 19 days")

        # The founder holds the root key: restarted with --auto-renew, it renews at once every
        # member ending within 30 days; node1 hears it by gossip, node2, down meanwhile, by
        # anti-entropy when it is back.
        founder.stop()
        n2.stop()
        founder.up("--auto-renew")
        wait_for(
            lambda: n1.peers()["node2"]["credentials_end"] > time.time() + 360 * DAY,
            40,
            "node2's renewal seen at node1",
        )
        n2.up()
        wait_for(
            lambda: n2.peers()["node1"]["credentials_end"] > time.time() + 360 * DAY,
            40,
            "node1's renewal seen at node2 after its restart",
        )
        assert n2.peers()["node1"]["expires"] is None
        assert "auto-renew: renewed node1" in founder.log.read_text()

        # node1 leaves: one line, exit 0; its daemon stops (exit 0); everyone sees it left.
        result = meshd("leave", "--state-dir", str(n1.state_dir))
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.strip().splitlines()) == 1
        assert result.stdout.startswith("left network testnet as node1")
        assert n1.process is not None
        assert n1.process.wait(10) == 0
        for node in (founder, n2):
            wait_for(lambda node=node: node.states()["node1"] == "revoked", 30, "leave seen")  # type: ignore[misc]
            assert node.peers()["node1"]["reason"] == "left"
        wait_for(
            lambda: not any(n.peers()["node1"]["connected"] for n in (founder, n2)),
            30,
            "node1 disconnected",
        )
        assert (n1.state_dir / "left").exists()
        assert not (n1.state_dir / "node.key").exists()
        again = meshd("up", "--wg-backend", "none", "--state-dir", str(n1.state_dir))
        assert again.returncode == 1
        assert "left its network" in again.stderr

        # node2 leaves and removes its state dir.
        result = meshd("leave", "--purge", "--json", "--state-dir", str(n2.state_dir))
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert (info["name"], info["state_dir"], info["daemon_stopped"]) == (
            "node2",
            "removed",
            True,
        )
        assert not n2.state_dir.exists()
        wait_for(lambda: founder.states()["node2"] == "revoked", 30, "node2's leave seen")
