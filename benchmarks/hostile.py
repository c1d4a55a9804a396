"""A daemon under attack: its resources and its honest service during each flood, against none.

Three daemons on loopback (``--wg-backend none``, separate processes, their soft fd limit
lowered to 1024 as under systemd): the **target** (the founder, which every flood aims at),
a **witness** member, and, per scenario, a fresh **joiner**. Each scenario starts one attacker
process (``python -m benchmarks.hostile attack KIND``), lets it ramp up for a moment, then, while
the flood runs:

- times ``meshd peers --json`` against the target (a separate process, spawn to exit);
- times an honest join through the target (the joiner's ``meshd join`` starting -> the witness
  lists the joiner as admitted);
- times an honest revocation at the target (``meshd revoke`` starting -> the witness lists the
  joiner as revoked);

and samples the target's RSS, CPU (utime + stime over wall time) and open fds every 0.2 s.
The scenarios (every flood is bounded in count and in time, and aims only at loopback):

- ``none``: nothing, the reference, in the same run;
- ``gossip``: a non-member libp2p peer publishes self-signed announcements from fresh keys
  (each would wait in the pending pool) and garbage, as fast as it can;
- ``sync``: a non-member opens anti-entropy sessions, 4 at a time, each message listing
  ~62,000 random record ids;
- ``enroll``: a non-member re-opens the enrollment protocol every second with garbage, to stay
  connected;
- ``connect``: plain TCP connections from 127.0.0.2 that never start Noise, re-opened as fast
  as they close (at most 256 open at once);
- ``control``: 1,100 idle connections to the control socket, held.

    .venv/bin/python -m benchmarks.hostile [--seconds 20] [--floods none gossip ...] [--keep]

Results go to ``benchmarks/results/hostile.json``. The Babel neighbour flood needs a LAN
interface in network namespaces and is measured by the Babel core's tests instead.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.floods import connect_flood, control_flood
from tests.daemon.support import ROOT, Daemon, meshd, wait_for

RESULTS = ROOT / "benchmarks" / "results"
FLOODS = ("none", "gossip", "sync", "enroll", "connect", "control")
FD_LIMIT = 1024  # systemd's default soft limit
RAMP_S = 3.0
CONTROL_CONNECTIONS = 1100
CONNECT_MAX_OPEN = 256
CONNECT_MAX_TOTAL = 200_000
CONNECT_HOLD_S = 2.0  # a connection the daemon keeps is closed and opened again after this
GOSSIP_MAX_MESSAGES = 50_000
SYNC_IDS = 62_000


# -- the attacker process ---------------------------------------------------------------------


def _attack(kind: str, target: dict[str, Any], sock: str, seconds: float) -> dict[str, Any]:
    counts: dict[str, int] = {}
    if kind == "connect":
        _connect_flood(target, seconds, counts)
    elif kind == "control":
        _control_flood(sock, seconds, counts)
    else:
        import trio

        trio.run(_libp2p_attack, kind, target, seconds, counts)
    return counts


def _tcp_port(addrs: list[str]) -> int:
    for addr in addrs:
        parts = addr.split("/")
        if parts[1:2] == ["ip4"] and parts[2] == "127.0.0.1":
            return int(parts[4])
    raise SystemExit(f"no 127.0.0.1 listen address in {addrs}")


def _connect_flood(target: dict[str, Any], seconds: float, counts: dict[str, int]) -> None:
    """Plain TCP connections from 127.0.0.2 that never speak: at most 256 open, each opened
    again as soon as the daemon closes it or after CONNECT_HOLD_S."""
    port = _tcp_port(target["listen_addrs"])
    counts.update(
        connect_flood(
            port,
            "127.0.0.2",
            concurrent=CONNECT_MAX_OPEN,
            total=CONNECT_MAX_TOTAL,
            seconds=seconds,
            hold=CONNECT_HOLD_S,
        )
    )


def _control_flood(sock: str, seconds: float, counts: dict[str, int]) -> None:
    """Keep 1,100 idle connections to the control socket open until the end."""
    counts.update(control_flood(sock, connections=CONTROL_CONNECTIONS, seconds=seconds))


def _accept_all(*message: object) -> bool:
    return True


async def _libp2p_attack(
    kind: str, target: dict[str, Any], seconds: float, counts: dict[str, int]
) -> None:
    import trio

    from meshd.gossip import enroll, sync
    from meshd.gossip.host import GossipHost, HostConfig
    from meshd.records import make_announcement
    from meshd.trust.keys import SigningKey

    config = HostConfig(
        identity_seed=os.urandom(32),
        listen_addrs=("/ip4/127.0.0.1/tcp/0",),
        topic=target["topic"],
        max_message_size=256 * 1024,
        shutdown_timeout=3.0,
    )
    text = target["network_id"].upper()
    network_id = base64.b32decode(text + "=" * (-len(text) % 8))
    counts.update(sent=0, errors=0, reconnects=0)
    async with GossipHost(config, _accept_all) as host:
        peer: str | None = None

        async def ensure_connected() -> str:
            nonlocal peer
            if peer is not None and peer in host.connected_peers():
                return peer
            result = await host.connect_any(target["listen_addrs"])
            if not result or not result[0].ok:
                raise OSError(f"connect failed: {result}")
            counts["reconnects"] += 1
            peer = str(result[0].peer_id)
            return peer

        with trio.move_on_after(seconds):
            if kind == "gossip":
                while counts["sent"] < GOSSIP_MAX_MESSAGES:
                    try:
                        await ensure_connected()
                        if counts["sent"] % 4 == 3:
                            data = os.urandom(random.randrange(1, 600))
                        else:
                            data = make_announcement(
                                SigningKey.generate(),
                                network_id=network_id,
                                seq=1,
                                issued_at=int(time.time()),
                            ).raw
                        await host.publish(data)
                        counts["sent"] += 1
                    except Exception:  # noqa: BLE001 - the attacker keeps going, counting
                        counts["errors"] += 1
                        await trio.sleep(0.05)
            elif kind == "sync":

                async def session() -> None:
                    while True:
                        try:
                            stream = await host.open_stream(
                                await ensure_connected(), sync.PROTOCOL_ID
                            )
                            for _ in range(sync.MAX_ROUNDS):
                                ids = tuple(
                                    sorted(os.urandom(sync.ID_LEN) for _ in range(SYNC_IDS))
                                )
                                message = sync.Message(ids=((sync.ROOT, ids),))
                                await stream.send_frame(sync.encode_message(message))
                                counts["sent"] += 1
                                await stream.receive_frame()
                        except Exception:  # noqa: BLE001 - the attacker keeps going, counting
                            counts["errors"] += 1
                            await trio.sleep(0.05)

                async with trio.open_nursery() as nursery:
                    for _ in range(4):
                        nursery.start_soon(session)
            elif kind == "enroll":
                while True:
                    try:
                        stream = await host.open_stream(
                            await ensure_connected(), enroll.PROTOCOL_ID
                        )
                        await stream.send_frame(os.urandom(200))
                        counts["sent"] += 1
                        with trio.move_on_after(2):
                            await stream.receive_frame()
                    except Exception:  # noqa: BLE001 - the attacker keeps going, counting
                        counts["errors"] += 1
                    await trio.sleep(1.0)
        counts["connected_at_end"] = int(peer is not None and peer in host.connected_peers())


# -- measuring the target ---------------------------------------------------------------------


def _proc_sample(pid: int) -> tuple[float, float, int]:
    """RSS in MiB, CPU seconds so far, open fds."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, cpu, fds


@dataclass
class Sampler:
    pid: int
    samples: list[tuple[float, float, float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(0.2):
            with suppress(OSError, ValueError):
                self.samples.append((time.monotonic(), *_proc_sample(self.pid)))

    @contextmanager
    def running(self) -> Iterator[None]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def summary(self) -> dict[str, Any]:
        if len(self.samples) < 2:
            return {}
        (t0, _, c0, _), (t1, _, c1, _) = self.samples[0], self.samples[-1]
        return {
            "rss_mib_max": round(max(s[1] for s in self.samples), 1),
            "rss_mib_end": round(self.samples[-1][1], 1),
            "cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 1),
            "fds_max": max(s[3] for s in self.samples),
            "fds_end": self.samples[-1][3],
        }


def _timed(args: list[str], timeout: float = 30.0) -> tuple[float, int]:
    start = time.monotonic()
    result = meshd(*args, timeout=timeout)
    return time.monotonic() - start, result.returncode


@dataclass
class Mesh:
    target: Daemon
    witness: Daemon
    tmp: Path
    joined: int = 0

    def honest_join(self, timeout: float = 60.0) -> tuple[float | None, Daemon]:
        self.joined += 1
        joiner = Daemon(f"j{self.joined}", self.tmp / f"j{self.joined}")
        token = self.target.invite("--name", joiner.name)
        start = time.monotonic()
        args = ["join", "--invite", token, "--name", joiner.name, "--listen", joiner.listen]
        joiner._spawn([*args, "--wg-backend", "none", *joiner._dir()])
        try:
            wait_for(
                lambda: self.witness.states().get(joiner.name) == "admitted",
                timeout,
                f"{joiner.name} admitted at the witness",
            )
        except AssertionError:
            return None, joiner
        return time.monotonic() - start, joiner

    def honest_revoke(self, joiner: Daemon, timeout: float = 60.0) -> float | None:
        start = time.monotonic()
        result = meshd("revoke", joiner.name, *self.target._dir(), timeout=timeout)
        if result.returncode != 0:
            return None
        try:
            wait_for(
                lambda: self.witness.states().get(joiner.name) == "revoked",
                timeout,
                f"{joiner.name} revoked at the witness",
            )
        except AssertionError:
            return None
        return time.monotonic() - start


def scenario(mesh: Mesh, kind: str, seconds: float) -> dict[str, Any]:
    target = mesh.target
    assert target.process is not None
    status = target.ask("status")
    info = {
        "listen_addrs": status["listen_addrs"],
        "network_id": status["network_id"],
        "topic": f"/meshd/{status['network_id']}/1",
    }
    sampler = Sampler(target.process.pid)
    attacker: subprocess.Popen[str] | None = None
    out: dict[str, Any] = {"flood": kind}
    with sampler.running():
        if kind != "none":
            attacker = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.hostile", "attack", kind,
                 "--target", json.dumps(info), "--sock", str(target.state_dir / "meshd.sock"),
                 "--seconds", str(seconds)],
                stdout=subprocess.PIPE, text=True, cwd=ROOT,
            )  # fmt: skip
        time.sleep(RAMP_S)
        peers = [_timed(["peers", "--json", *target._dir()]) for _ in range(5)]
        join_s, joiner = mesh.honest_join()
        revoke_s = mesh.honest_revoke(joiner) if join_s is not None else None
        joiner.stop()
        peers += [_timed(["peers", "--json", *target._dir()]) for _ in range(5)]
        if attacker is not None:
            stdout, _ = attacker.communicate(timeout=seconds + 60)
            out["attacker"] = json.loads(stdout.strip().splitlines()[-1]) if stdout else {}
    out.update(sampler.summary())
    ok = [t for t, rc in peers if rc == 0]
    out["peers_s_median"] = round(statistics.median(ok), 3) if ok else None
    out["peers_failed"] = sum(1 for _, rc in peers if rc != 0)
    out["join_s"] = None if join_s is None else round(join_s, 2)
    out["revoke_s"] = None if revoke_s is None else round(revoke_s, 2)
    out["target_alive"] = target.process.poll() is None
    with suppress(Exception):
        out["rejected"] = target.ask("status").get("rejected", {})
    return out


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _lower_fd_limit() -> None:
    """Children (the daemons) inherit systemd's default soft limit of 1024."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(FD_LIMIT, hard), hard))


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    if sys.argv[1:2] == ["attack"]:
        parser = argparse.ArgumentParser(prog="benchmarks.hostile attack")
        parser.add_argument("kind", choices=FLOODS[1:])
        parser.add_argument("--target", required=True)
        parser.add_argument("--sock", required=True)
        parser.add_argument("--seconds", type=float, required=True)
        a = parser.parse_args(sys.argv[2:])
        _raise_fd_limit()
        print(json.dumps(_attack(a.kind, json.loads(a.target), a.sock, a.seconds)), flush=True)
        return 0
    parser = argparse.ArgumentParser(prog="benchmarks.hostile", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each flood")
    parser.add_argument("--floods", nargs="+", choices=FLOODS, default=list(FLOODS))
    parser.add_argument("--keep", action="store_true", help="keep the state dirs and logs")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    _lower_fd_limit()
    tmp = Path(tempfile.mkdtemp(prefix="meshd-hostile-"))
    target, witness = Daemon("target", tmp / "target"), Daemon("witness", tmp / "witness")
    results: list[dict[str, Any]] = []
    try:
        target.init("hostile")
        target.up()
        witness.join(target.invite("--name", "witness"))
        wait_for(lambda: target.states().get("witness") == "admitted", 30, "witness admitted")
        mesh = Mesh(target, witness, tmp)
        for kind in args.floods:
            if target.process is None or target.process.poll() is not None:
                results.append({"flood": kind, "target_alive": False})
                break
            print(f"== flood: {kind} ({args.seconds:g} s)", flush=True)
            row = scenario(mesh, kind, args.seconds)
            print(json.dumps(row), flush=True)
            results.append(row)
            time.sleep(2.0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for node in (target, witness):
            with suppress(AssertionError):
                node.stop()
        if args.keep:
            print(f"kept: {tmp}")
        else:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    _print_table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "hostile",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seconds_per_flood": args.seconds,
        "fd_soft_limit": FD_LIMIT,
        "scenarios": results,
    }
    (RESULTS / "hostile.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(r.get("target_alive") for r in results) else 1


def _print_table(results: list[dict[str, Any]]) -> None:
    cols = [
        ("flood", "flood"),
        ("rss_mib_max", "RSS max MiB"),
        ("cpu_percent", "CPU %"),
        ("fds_max", "fds max"),
        ("peers_s_median", "peers s"),
        ("join_s", "join s"),
        ("revoke_s", "revoke s"),
        ("target_alive", "alive"),
    ]
    print("  ".join(f"{title:>12}" for _, title in cols))
    for row in results:
        print("  ".join(f"{row.get(key)!s:>12}" for key, _ in cols))


if __name__ == "__main__":
    sys.exit(main())
