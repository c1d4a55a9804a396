"""A real restart with wireguard-go: the peers a clean stop kept are set while the store
loads, and a revocation stored while the daemon was down (``meshd revoke`` offline) deletes
them, so that the revoked member is never set at the next start. A start without them sets
the keys of the members the store judged admitted while its first round is planned
(meshd.daemon.early_keys): the revoked member's is not among them, and every peer is whole
once WireGuard is programmed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from benchmarks.measured_daemon import namespace, stop_with_wireguard, up_command
from benchmarks.synthetic_store import build_store
from meshd.daemon.state import NodeState
from meshd.node.statedir import NodeDir
from meshd.wg.uapi import UapiClient

pytestmark = pytest.mark.root

MEMBERS = 12
KEPT = "peers set as the last stop kept them"
EARLY = "admitted members' keys set while the first round was planned"
PROGRAMMED = "programmed from the store"
UP = "meshd up: node "


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if os.geteuid() != 0 or shutil.which("wireguard-go") is None:
        pytest.fail("needs root and wireguard-go (CI runs as root and installs it)")
    state_dir = tmp_path / "node"
    build_store(state_dir, MEMBERS)
    with namespace(f"meshd-kept-{os.getpid()}") as netns:
        yield netns, state_dir


def start(netns: str, state_dir: Path, ifname: str, log: Path) -> list[str]:
    """``meshd up`` until it serves with WireGuard programmed; its log, and the keys on
    the device then; stopped (SIGTERM, as a service manager does) before returning."""
    command = up_command(sys.executable, netns, state_dir, "userspace", ifname, 51820)
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while UP not in (text := log.read_text(errors="replace")):
            assert process.poll() is None, text[-3000:]
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.05)
        keys = trio.run(_keys, f"/var/run/wireguard/{ifname}.sock")
    finally:
        stop_with_wireguard(process, ifname)
    return [*log.read_text(errors="replace").splitlines(), *keys]


async def _keys(path: str) -> list[str]:
    """A line for each peer on the device: ``KEY`` and its key, and ``BARE`` and its key
    for one without allowed-ips or endpoint (a key set early that no round made whole)."""
    state = await UapiClient(path).get()
    lines = [f"KEY {p.public_key.hex()}" for p in state.peers]
    bare = [p for p in state.peers if not p.config.allowed_ips or p.config.endpoint is None]
    return sorted(lines) + [f"BARE {p.public_key.hex()}" for p in bare]


def keys_of(lines: list[str]) -> set[str]:
    return {line.split(" ", 1)[1] for line in lines if line.startswith("KEY ")}


def test_a_restart_sets_the_kept_peers_and_an_offline_revocation_deletes_them(
    lab: tuple[str, Path], tmp_path: Path
) -> None:
    netns, state_dir = lab
    ifname = f"mkp{os.getpid() % 100000}"
    first = start(netns, state_dir, ifname, tmp_path / "first.log")
    assert not any(KEPT in line for line in first)  # a store never run: nothing kept
    assert any(f"{MEMBERS - 1} {EARLY}" in line for line in first), first[-20:]
    assert not any(line.startswith("BARE ") for line in first), first[-20:]
    assert any("peers kept for the next start" in line for line in first), first[-20:]
    everyone = keys_of(first)
    assert len(everyone) == MEMBERS - 1

    second = start(netns, state_dir, ifname, tmp_path / "second.log")
    assert any(f"{MEMBERS - 1} {KEPT}" in line for line in second), second[-20:]
    assert keys_of(second) == everyone
    assert not any(EARLY in line for line in second)  # the kept peers instead
    kept_at = next(i for i, line in enumerate(second) if KEPT in line)
    programmed_at = next(i for i, line in enumerate(second) if PROGRAMMED in line)
    assert kept_at < programmed_at

    # While it is down, the operator revokes a member: the store changes, the list goes.
    node = NodeDir.open(state_dir)
    members = NodeState(node, announce_ttl=3600).membership.members(int(time.time()))
    victim = next(m for m in members if m.name == "m3")
    node.store.close()
    revoked = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshd",
            "revoke",
            victim.node_id,
            "--state-dir",
            str(state_dir),
            "--reason",
            "left the company",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert revoked.returncode == 0, revoked.stderr

    third = start(netns, state_dir, ifname, tmp_path / "third.log")
    assert not any(KEPT in line for line in third), "a stale list was used"
    assert any(f"{MEMBERS - 2} {EARLY}" in line for line in third), third[-20:]
    assert keys_of(third) == everyone - {victim.wg_key.hex()}
    assert not any(line.startswith("BARE ") for line in third), third[-20:]
