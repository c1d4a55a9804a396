"""Admin key rotation between real daemons on loopback (``--wg-backend none``)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.daemon.support import Daemon, daemons, meshd, wait_for

pytestmark = pytest.mark.slow


def _admitted(nodes: list[Daemon], names: list[str]) -> bool:
    for node in nodes:
        states = node.states()
        if any(states.get(name) not in ("admitted", "self") for name in names):
            return False
    return True


def test_admin_rotate_through_the_daemon_keeps_what_the_old_key_issued(tmp_path: Path) -> None:
    """b holds an admin key and invited c; the root (a, its daemon running) replaces b's key:
    the hand-over floods, c stays admitted everywhere, and an invite the old key signs
    afterwards is refused by the sponsor (one of the new key is admitted: offline tests)."""
    with daemons(tmp_path, "a", "b", "c") as nodes:
        a, b, c = nodes
        a.init()
        a.up()
        b.join(a.invite("--name", "b"))
        made = tmp_path / "admin"
        result = meshd("admin", "create", "--out", str(made), "--state-dir", str(a.state_dir))
        assert result.returncode == 0, result.stderr
        for name in ("admin.key", "admin.cert"):
            shutil.copy(made / name, b.state_dir / name)
        c.join(b.invite("--name", "c"))
        wait_for(lambda: _admitted([a, b, c], ["a", "b", "c"]), 30, "c admitted")
        names = ("admin.key", "admin.cert")
        old_files = {name: (b.state_dir / name).read_bytes() for name in names}

        result = meshd(
            "admin", "rotate", "--admin-dir", str(b.state_dir), "--json",
            "--state-dir", str(a.state_dir),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert info["where"] == "stored and flooded by the running daemon"
        took = wait_for(
            lambda: len({n.ask("status")["digest"] for n in (a, b, c)}) == 1,
            30,
            "the hand-over everywhere",
        )
        print(f"admin hand-over seen by every daemon {took:.2f} s after `meshd admin rotate`")
        assert _admitted([a, b, c], ["a", "b", "c"])

        # The old key (kept by someone) signs an invite afterwards: no sponsor admits it.
        # Records carry whole seconds, and what the old key dates at the cut-off second itself
        # still stands: "afterwards" is the next second.
        time.sleep(1.1)
        new_files = {name: (b.state_dir / name).read_bytes() for name in old_files}
        for name, raw in old_files.items():
            (b.state_dir / name).write_bytes(raw)
        try:
            token = b.invite("--name", "e")
        finally:
            for name, raw in new_files.items():
                (b.state_dir / name).write_bytes(raw)
        result = meshd(
            "join", "--invite", token, "--name", "e", "--no-up",
            "--state-dir", str(tmp_path / "e"), timeout=60,
        )  # fmt: skip
        assert result.returncode != 0
        assert "replaced" in result.stderr, result.stderr
