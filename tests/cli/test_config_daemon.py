"""A config file drives a real ``meshd up``: the file, then MESHD_* variables, then flags win.

One node on loopback (``--wg-backend none``), started three times from the same file: the
listen address it reports comes from the file, then from MESHD_LISTEN over the file, then
from ``--listen`` over both; the file's ``log_format = "json"`` makes every line of its log an
object.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.daemon.support import Daemon, daemons, free_port

pytestmark = pytest.mark.slow


def _listening(node: Daemon) -> list[str]:
    return [a.split("/p2p/")[0] for a in node.ask("status")["listen_addrs"]]


def test_flags_beat_the_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = [free_port() for _ in range(3)]
    addrs = [f"/ip4/127.0.0.1/tcp/{port}" for port in ports]
    with daemons(tmp_path, "cfg") as [node]:
        node.init()
        config = tmp_path / "meshd.toml"
        config.write_text(
            f'state_dir = "{node.state_dir}"\n'
            'wg_backend = "none"\n'
            f'listen = ["{addrs[0]}"]\n'
            'announce_interval = "60s"\n'
            'announce_ttl = "10m"\n'
            'log_format = "json"\n'
        )
        node._spawn(["up", "--config", str(config)])
        node.wait_ready()
        assert _listening(node) == [addrs[0]]
        node.stop()

        monkeypatch.setenv("MESHD_LISTEN", addrs[1])
        node._spawn(["up", "--config", str(config)])
        node.wait_ready()
        assert _listening(node) == [addrs[1]]
        node.stop()

        monkeypatch.setenv("MESHD_CONFIG", str(config))
        node._spawn(["up", "--listen", addrs[2]])
        node.wait_ready()
        assert _listening(node) == [addrs[2]]
        node.stop()

    runs = [line for line in node.log.read_text().splitlines() if not line.startswith("--- run")]
    events = [json.loads(line) for line in runs]
    assert {"time", "level", "logger", "message"} <= set(events[0])
    started = [e for e in events if e["message"].startswith("meshd up:")]
    assert len(started) == 3
    named = [e["config"] for e in events if e["logger"] == "meshd.config"]
    assert named == [str(config)] * 3
