"""WireGuard timings of meshd in a 5-host lab (network namespaces, wireguard-go). Needs root.

(a) join: from starting ``meshd join --invite`` on a fresh host to a first packet exchanged
    with every member over WireGuard. Target <= 1.5 s.
(b) restart: from starting ``meshd up`` on an admitted member's existing store to a first
    packet exchanged with every member. Target <= 1 s.
(c) revoke: from starting ``meshd revoke`` to the revoked peer's removal from every other
    node's WireGuard interface. Target: median <= 0.5 s.

"First packet exchanged" is a completed handshake: the node's device reports a
``last_handshake`` (nanosecond resolution, read over the UAPI socket, which is shared by
all namespaces) at or after the start, for every member. The figure is the latest of those
handshake times minus the start, so polling adds nothing to it. After each round a ping
over the overlay to every member checks that data flows.

Setup: h1 founds the network, h2-h4 join; each round (a) joins h5 afresh under a new name,
(c) then revokes it (its daemon still running), and (b) restarts h2. Each measurement starts
after ``--settle`` quiet seconds (2), so that it does not share the 2 cores with the
start-up of the daemon measured before it. Every meshd is a
separate process in its host's namespace, started as a user would (``python -m meshd``).

    .venv/bin/python -m benchmarks.wireguard [--rounds 5]

Results: printed, and saved to benchmarks/results/wireguard.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from meshd.lab import Lab
from meshd.lab.demo import LabMesh, missing_requirements, wait_for
from meshd.wg.errors import UapiError
from meshd.wg.model import DeviceState, key_from_base64
from meshd.wg.uapi import socket_path
from meshd.wg.uapi_reply import parse_get_reply_untrusted
from meshd.wg.uapi_request import encode_get_request

RESULTS = Path(__file__).parent / "results" / "wireguard.json"
TARGETS = {"join": 1.5, "restart": 1.0, "revoke": 0.5}
MEMBERS = ["h1", "h2", "h3", "h4"]
JOINER = "h5"
RESTARTED = "h2"
POLL = 0.002


def uapi_get(ifname: str) -> DeviceState | None:
    """The device behind ``ifname``'s UAPI socket, or None if it is not (yet) there."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(socket_path(ifname))
            sock.sendall(encode_get_request())
            data = b""
            while not data.endswith(b"\n\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    try:
        return parse_get_reply_untrusted(data)
    except UapiError:
        return None


def first_contact(ifname: str, keys: set[bytes], start: float, timeout: float) -> dict[str, Any]:
    """Wait until ``ifname`` has shaken hands with every key at or after ``start``.

    Returns when the peers were all programmed (as first seen by polling) and the latest
    handshake time, both relative to ``start``.
    """
    programmed: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = uapi_get(ifname)
        if state is not None:
            peers = state.peers_by_key()
            if programmed is None and keys <= set(peers):
                programmed = time.time() - start
            times = [peers[k].last_handshake for k in keys if k in peers]
            if len(times) == len(keys) and all(t is not None and t >= start for t in times):
                latest = max(t for t in times if t is not None)
                return {"first_packet_all": latest - start, "programmed_seen": programmed}
        time.sleep(POLL)
    raise TimeoutError(f"{ifname}: no handshake with every member within {timeout} s")


def removal(ifnames: list[str], key: bytes, start: float, timeout: float) -> float:
    """Seconds from ``start`` until ``key`` is no peer of any of ``ifnames``."""
    pending = set(ifnames)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ifname in list(pending):
            state = uapi_get(ifname)
            if state is not None and key not in state.peers_by_key():
                pending.discard(ifname)
        if not pending:
            return time.time() - start
        time.sleep(POLL)
    raise TimeoutError(f"still a peer of {sorted(pending)} after {timeout} s")


def wg_key(mesh: LabMesh, host: str) -> bytes:
    return key_from_base64(mesh.node(host).me()["wg_public_key"])


def ping_all(mesh: LabMesh, host: str, others: list[str]) -> bool:
    return all(mesh.ping_pairs([(host, o) for o in others]).values())


def run(rounds: int, settle: float) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {"join": [], "restart": [], "revoke": []}
    with Lab(len(MEMBERS) + 1) as lab:
        mesh = LabMesh(lab, network="bench")
        try:
            mesh.init(MEMBERS[0])
            mesh.up(MEMBERS[0])
            for host in MEMBERS[1:]:
                mesh.join(host, mesh.invite(MEMBERS[0], host), wait=False)
            for host in MEMBERS[1:]:
                mesh.wait_ready(host)
            wait_for(lambda: mesh.wg_matches_membership(MEMBERS, MEMBERS), 30, "the mesh")
            keys = {h: wg_key(mesh, h) for h in MEMBERS}
            print(f"lab {lab.run_id}: {len(MEMBERS)} members up; {rounds} rounds", flush=True)
            for index in range(rounds):
                # (a) a fresh host joins.
                name = f"j{index}"
                node = mesh.fresh(JOINER, name)
                token = mesh.invite(MEMBERS[0], name)
                time.sleep(settle)
                start = time.time()
                mesh.join(JOINER, token, wait=False)
                joined = first_contact(node.ifname, set(keys.values()), start, 20)
                mesh.wait_ready(JOINER)
                joined["ping_ok"] = ping_all(mesh, JOINER, MEMBERS)
                samples["join"].append(joined)

                # (c) it is revoked while its daemon runs.
                victim = wg_key(mesh, JOINER)
                ifnames = [mesh.node(h).ifname for h in MEMBERS]
                wait_for(
                    lambda v=victim, i=ifnames: all(  # type: ignore[misc]
                        (s := uapi_get(n)) is not None and v in s.peers_by_key() for n in i
                    ),
                    10,
                    "the joiner to be a peer everywhere",
                )
                time.sleep(settle)
                start = time.time()
                mesh.run(MEMBERS[0], "revoke", name)
                samples["revoke"].append({"removed_all": removal(ifnames, victim, start, 10)})
                mesh.stop(JOINER)

                # (b) an admitted member restarts on its store.
                mesh.stop(RESTARTED)
                others = {k for h, k in keys.items() if h != RESTARTED}
                time.sleep(settle)
                start = time.time()
                mesh.up(RESTARTED, wait=False)
                restarted = first_contact(mesh.node(RESTARTED).ifname, others, start, 20)
                mesh.wait_ready(RESTARTED)
                restarted["ping_ok"] = ping_all(
                    mesh, RESTARTED, [h for h in MEMBERS if h != RESTARTED]
                )
                samples["restart"].append(restarted)
                print(
                    f"  round {index + 1}: join {joined['first_packet_all']:.3f} s, "
                    f"revoke {samples['revoke'][-1]['removed_all']:.3f} s, "
                    f"restart {restarted['first_packet_all']:.3f} s",
                    flush=True,
                )
        finally:
            mesh.close()
    figures = {
        "join": [s["first_packet_all"] for s in samples["join"]],
        "restart": [s["first_packet_all"] for s in samples["restart"]],
        "revoke": [s["removed_all"] for s in samples["revoke"]],
    }
    summary = {
        name: {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "target": TARGETS[name],
            "target_on": "median" if name == "revoke" else "every round",
            "met": (
                statistics.median(values) <= TARGETS[name]
                if name == "revoke"
                else max(values) <= TARGETS[name]
            ),
        }
        for name, values in figures.items()
    }
    return {
        "benchmark": "wireguard",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "lab": {"hosts": len(MEMBERS) + 1, "backend": "userspace (wireguard-go)"},
        "rounds": rounds,
        "settle_s": settle,
        "summary": summary,
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--settle", type=float, default=2.0, help="quiet seconds before each measurement"
    )
    args = parser.parse_args()
    why = missing_requirements()
    if why:
        print(f"benchmarks.wireguard needs root, ip, wireguard-go, wg and ping ({why})")
        return 1
    result = run(args.rounds, args.settle)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"\n{'figure':<10} {'median':>8} {'min':>8} {'max':>8} {'target':>8}  met")
    for name, row in result["summary"].items():
        print(
            f"{name:<10} {row['median']:>7.3f}s {row['min']:>7.3f}s {row['max']:>7.3f}s "
            f"{row['target']:>7.1f}s  {'yes' if row['met'] else 'NO'} ({row['target_on']})"
        )
    print(f"saved to {RESULTS}")
    return 0 if all(r["met"] for r in result["summary"].values()) else 2


if __name__ == "__main__":
    sys.exit(main())
