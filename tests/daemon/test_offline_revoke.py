"""A revocation written while the daemon was down reaches the other nodes once it starts.

There is one channel from the CLI to a running daemon, its control socket. With no daemon
answering, `meshd revoke` writes the revocation to the store; the daemon reads the store at
start, and anti-entropy with each member that connects hands them what they lack.
"""

from __future__ import annotations

from pathlib import Path

from tests.daemon.support import daemons, meshd, wait_for


def test_a_revocation_made_offline_reaches_the_others_after_the_daemon_starts(
    tmp_path: Path,
) -> None:
    with daemons(tmp_path, "founder", "node1", "node2") as nodes:
        founder, n1, n2 = nodes
        founder.init()
        founder.up()
        for node in (n1, n2):
            node.join(founder.invite("--name", node.name))
        wait_for(lambda: n1.states().get("node2") == "admitted", 30, "node2 admitted at node1")
        founder.stop()
        result = meshd("revoke", "node2", "--reason", "offline", *founder._dir())
        assert result.returncode == 0, result.stderr
        assert "when it runs" in result.stderr  # stored only: nothing answered
        assert n1.states()["node2"] == "admitted"  # no daemon told anyone
        founder.up()
        took = wait_for(lambda: n1.states()["node2"] == "revoked", 30, "node1 to hear of it")
        print(f"revocation made offline applied at node1 {took:.2f} s after the founder answered")
        assert founder.states()["node2"] == "revoked"
