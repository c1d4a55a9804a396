"""Churn soak: members join, leave, restart and are revoked for minutes; do the daemons leak?

In a lab of ``--hosts`` hosts (network namespaces, 7 by default; needs root), every member a
separate ``meshd`` process with its own wireguard-go. h1 (the founder, holding the root key)
and h2 run the whole time; each other host is a slot for one member at a time. Every
``--interval`` seconds one slot, picked at random (``--seed``), changes:

- an empty slot: a new member joins under a new name (``meshd invite`` on h1, ``meshd join``);
- a running member: leaves (its daemon stops), restarts (stop, then ``meshd up`` on its
  store), or is revoked (``meshd revoke`` on h1, then its daemon stops; the slot is empty);
- a stopped member: comes back (``meshd up``) or is revoked while away.

Every ``--sample`` seconds, for every running daemon: RSS, open fds (``/proc/PID/fd``),
threads (``/proc/PID/status``) and live trio tasks (``meshd status``'s ``tasks``), and the
RSS and fds of its wireguard-go. At the end the churn stops, every stopped member comes back,
and the run waits (``--settle-timeout``) until every running daemon shows the same membership
digest, admits exactly the running members, and has a WireGuard interface whose peers are
exactly the other running members (keys known to this harness, not taken from the daemons):
a peer that is not a standing member, or a standing member that is no peer, is *stuck*. That
agreement must hold: it is read again once every daemon has made its second announcement
after its start (``STARTED``; a read that catches a refresh in flight, again until they agree,
for ``IN_FLIGHT`` seconds at most).

Per daemon process and metric: the least-squares slope per minute over its samples after
``--warmup`` seconds of its life (processes sampled for less than a minute after warm-up are
listed, their slopes are not fitted). The long-lived daemons (h1, h2) are the ones whose
slopes say whether something grows with churn.

    sudo .venv/bin/python -m benchmarks.soak [--minutes 10] [--interval 4] [--sample 5]

Results: printed, and saved to benchmarks/results/soak.json (``--out``). tests/lab_mesh/
test_root_soak.py runs one minute of it in CI.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.fixtures import sigterm_unwinds
from benchmarks.soak_figures import (
    STABLE,
    Process,
    fit,
    machine,
    print_table,
    progress,
    read_process,
)
from meshd.daemon.announce_policy import ADDRESS_CHECK
from meshd.errors import MeshdError
from meshd.lab import Lab
from meshd.lab.demo import LabMesh, MeshTimeout, missing_requirements, wait_for

RESULTS = Path(__file__).parent / "results" / "soak.json"
FOUNDER = "h1"
# Once the daemons agree after the churn, only an announcement moves a digest (the announcer
# logs each, with why), and in this lab only two kinds come then:
# - a daemon's second announcement after its start: what members observed of it by then (its
#   reflexive candidate, its ``--relay auto`` decision) goes out at the relay decision's next
#   look (5 s) or the announcer's (ADDRESS_CHECK, 10 s); measured 5.0 s after every start, so
#   the last member to come back announces again seconds after an agreement on its first;
# - a refresh, every ``announce_interval`` (the lab's 30 s: 7 members refresh about every 4 s).
# So the final read waits until every running daemon has been up ``STARTED`` seconds, and a
# read that catches a refresh in flight (the digests differ for the ~0.1 s it floods) is made
# again until the daemons agree, for ``IN_FLIGHT`` seconds at most: a divergence that lasts
# is a failure.
STARTED = ADDRESS_CHECK + 2.0
IN_FLIGHT = 5.0


# --- the churn ---------------------------------------------------------------------------------


@dataclass
class Slot:
    """A host that runs one member at a time."""

    host: str
    name: str = ""  # the member's name; "" when the slot is empty
    running: bool = False
    members: int = 0  # how many members this slot has had


@dataclass
class Soak:
    mesh: LabMesh
    rng: random.Random
    begin: float
    slots: dict[str, Slot]
    processes: dict[int, Process] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    revoked_keys: set[str] = field(default_factory=set)
    log: list[dict[str, Any]] = field(default_factory=list)
    # What every daemon showed when they last all agreed (digests, WireGuard peers).
    agreement: dict[str, Any] | None = None

    def now(self) -> float:
        return time.monotonic() - self.begin

    def note(self, action: str, host: str, name: str, took: float) -> None:
        self.actions[action] = self.actions.get(action, 0) + 1
        self.log.append(
            {
                "t": round(self.now(), 2),
                "action": action,
                "host": host,
                "name": name,
                "took": round(took, 3),
            }
        )

    def track(self, host: str) -> None:
        node = self.mesh.node(host)
        assert node.process is not None
        pid = node.process.pid
        self.processes[pid] = Process(host, node.name, pid, self.now())

    def running_hosts(self) -> list[str]:
        return self.mesh.running()

    def youngest(self) -> float:
        """When the most recently started running daemon started (seconds since the run's
        start)."""
        started = [0.0]
        for host in self.running_hosts():
            process = self.mesh.node(host).process
            if process is not None and process.pid in self.processes:
                started.append(self.processes[process.pid].started)
        return max(started)

    def check_exits(self) -> None:
        """A daemon that exited on its own is a finding: record it; its slot counts as stopped."""
        for host, node in self.mesh.nodes.items():
            if node.process is not None and node.process.poll() is not None:
                code = node.process.returncode
                self.failures.append(f"{self.now():.1f} s: meshd on {host} exited with {code}")
                print(f"  ! {self.failures[-1]}", flush=True)
                self.mesh.stop(host)
                if host in self.slots:
                    self.slots[host].running = False

    # --- actions ---

    def up(self, host: str) -> None:
        self.mesh.up(host)
        self.track(host)

    def join(self, slot: Slot, *, wait: bool = True) -> None:
        slot.members += 1
        name = f"{slot.host}m{slot.members}"
        self.mesh.fresh(slot.host, name)
        token = self.mesh.invite(FOUNDER, name)
        self.mesh.join(slot.host, token, wait=False)
        slot.name = name
        if wait:
            self.joined(slot)

    def joined(self, slot: Slot) -> None:
        """Wait for a joining member's daemon to answer, and start sampling it."""
        self.mesh.wait_ready(slot.host)
        self.track(slot.host)
        self.mesh.node(slot.host).me()  # remember its keys while it stands
        slot.running = True

    def revoke(self, slot: Slot) -> None:
        key = self.mesh.node(slot.host).me()["wg_public_key"]
        self.mesh.run(FOUNDER, "revoke", slot.name, "--reason", "soak")
        self.revoked_keys.add(key)
        self.mesh.stop(slot.host)
        slot.name, slot.running = "", False

    def step(self) -> None:
        """One change to one slot, picked at random."""
        self.check_exits()
        slot = self.rng.choice(list(self.slots.values()))
        start = time.monotonic()
        if not slot.name:
            action = "join"
        elif slot.running:
            action = self.rng.choice(["leave", "restart", "revoke"])
        else:
            action = self.rng.choice(["come back", "come back", "revoke"])
        name = slot.name
        try:
            if action == "join":
                self.join(slot)
                name = slot.name
            elif action == "leave":
                self.mesh.stop(slot.host)
                slot.running = False
            elif action == "restart":
                self.mesh.stop(slot.host)
                self.up(slot.host)
            elif action == "come back":
                self.up(slot.host)
                slot.running = True
            else:
                self.revoke(slot)
        except (MeshdError, MeshTimeout, OSError) as exc:
            # A failed step is recorded, and the slot is emptied so that the run goes on.
            self.failures.append(f"{self.now():.1f} s: {action} {slot.host} {name}: {exc}")
            print(f"  ! {self.failures[-1]}", flush=True)
            self.mesh.stop(slot.host)
            slot.running = False
            return
        self.note(action, slot.host, name, time.monotonic() - start)

    # --- samples ---

    def sample(self) -> None:
        self.check_exits()
        t = self.now()
        for host in self.running_hosts():
            node = self.mesh.node(host)
            if node.process is None or node.process.pid not in self.processes:
                continue
            pid = node.process.pid
            try:
                tasks = int(node.ask("status")["tasks"])
                row = {"t": round(t, 2), **read_process(pid, tasks)}
            except (OSError, MeshdError, KeyError, ValueError):
                continue  # it is stopping; the next sample will tell
            self.processes[pid].samples.append(row)

    # --- the end ---

    def expected_peers(self) -> dict[str, set[str]]:
        running = self.running_hosts()
        keys = {h: self.mesh.node(h).me()["wg_public_key"] for h in running}
        return {h: {k for o, k in keys.items() if o != h} for h in running}

    def digests(self, hosts: list[str]) -> dict[str, str]:
        """The daemons' digests, read back to back (a few ms each) before anything slower: an
        announcement flooding meanwhile splits them only while it floods (~0.1 s), not for as
        long as reading every WireGuard interface takes."""
        return {host: self.mesh.node(host).ask("status")["digest"] for host in hosts}

    def differences(self) -> dict[str, Any]:
        """Per running host: digest, stuck and missing WireGuard peers, admitted mismatch."""
        out: dict[str, Any] = {}
        expected_peers = self.expected_peers()
        digests = self.digests(list(expected_peers))
        for host, expected in expected_peers.items():
            peers = set(self.mesh.wg_peers(host))
            admitted = self.mesh.admitted_keys(host)
            out[host] = {
                "digest": digests[host],
                "stuck": sorted(peers - expected),
                "missing": sorted(expected - peers),
                "admitted_not_running": sorted(admitted - expected),
                "running_not_admitted": sorted(expected - admitted),
                "revoked_peers": sorted(peers & self.revoked_keys),
            }
        return out

    @staticmethod
    def same_and_clean(diff: dict[str, Any]) -> bool:
        """Every daemon shows one digest, and WireGuard peers and admissions as running."""
        same = len({d["digest"] for d in diff.values()}) == 1
        clean = all(
            not (d["stuck"] or d["missing"] or d["admitted_not_running"])
            and not d["running_not_admitted"]
            for d in diff.values()
        )
        return same and clean

    def agreed(self) -> bool:
        diff = self.differences()
        if not self.same_and_clean(diff):
            return False
        self.agreement = diff
        return True


def run_soak(
    *,
    minutes: float,
    hosts: int = 7,
    interval: float = 4.0,
    sample: float = 5.0,
    warmup: float = 30.0,
    min_span: float = 60.0,
    settle_timeout: float = 90.0,
    seed: int = 1,
    quiet: bool = False,
    keep_logs: Path | None = None,
) -> dict[str, Any]:
    """Build the lab, churn for ``minutes``, settle, and return every figure (see above)."""

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    if hosts < len(STABLE) + 1:
        raise ValueError(f"a soak needs at least {len(STABLE) + 1} hosts")
    names = [f"h{i}" for i in range(1, hosts + 1)]
    with sigterm_unwinds(), Lab(hosts) as lab:
        mesh = LabMesh(lab, network="soak")
        try:
            begin = time.monotonic()
            soak = Soak(
                mesh,
                random.Random(seed),
                begin,
                {h: Slot(h) for h in names if h not in STABLE},
            )
            mesh.init(FOUNDER)
            soak.up(FOUNDER)
            mesh.join(STABLE[1], mesh.invite(FOUNDER, STABLE[1]))
            soak.track(STABLE[1])
            for slot in soak.slots.values():
                soak.join(slot, wait=False)
            for slot in soak.slots.values():
                soak.joined(slot)
            wait_for(soak.agreed, 60, "the mesh to form")
            formed = soak.now()
            say(
                f"lab {lab.run_id}: {hosts} members up in {soak.now():.1f} s; churn for "
                f"{minutes:g} min, a change every {interval:g} s, samples every {sample:g} s"
            )
            soak.sample()
            churn_end = soak.now() + minutes * 60.0
            next_sample = soak.now() + sample
            next_step = soak.now() + interval
            next_report = soak.now() + 60.0
            while soak.now() < churn_end:
                if soak.now() >= next_sample:
                    soak.sample()
                    next_sample += sample
                    while next_sample <= soak.now():
                        next_sample += sample
                if soak.now() >= next_step:
                    soak.step()
                    next_step = soak.now() + interval
                if soak.now() >= next_report:
                    next_report += 60.0
                    changes, figures = sum(soak.actions.values()), progress(soak.processes)
                    say(f"  {soak.now() / 60:.1f} min: {changes} changes; {figures}")
                time.sleep(max(0.0, min(next_sample, next_step) - soak.now()))
            # The end: every stopped member comes back; then all must agree.
            for slot in soak.slots.values():
                if slot.name and not slot.running:
                    try:
                        soak.up(slot.host)
                        slot.running = True
                    except (MeshdError, MeshTimeout, OSError) as exc:
                        soak.failures.append(f"{soak.now():.1f} s: come back {slot.host}: {exc}")
            settle_start = soak.now()
            try:
                settled: float | None = wait_for(
                    soak.agreed, settle_timeout, "agreement after the churn", interval=0.2
                )
            except MeshTimeout:
                settled = None
            if settled is not None:  # past every daemon's second announcement (STARTED)
                time.sleep(max(0.0, soak.youngest() + STARTED - soak.now()))
            soak.sample()
            final = soak.differences()
            in_flight = settled is not None and not Soak.same_and_clean(final)
            first_read = {h: d["digest"] for h, d in final.items()} if in_flight else None
            if in_flight:
                # A refresh in flight (STARTED, IN_FLIGHT): they must agree again.
                try:
                    wait_for(
                        soak.agreed, IN_FLIGHT, "agreement again after the churn", interval=0.2
                    )
                    final = soak.agreement or final
                except MeshTimeout:
                    final = soak.differences()
            when = "NEVER" if settled is None else f"in {settled:.1f} s"
            say(f"settled {when} after {soak.now() - settle_start:.1f} s")
        finally:
            mesh.close()
            if keep_logs is not None and (lab.dir / "logs").exists():
                shutil.copytree(lab.dir / "logs", keep_logs, dirs_exist_ok=True)
    digests = {h: d["digest"] for h, d in final.items()}
    stuck = {h: d for h, d in final.items() if any(v for k, v in d.items() if k != "digest")}
    return {
        "benchmark": "soak",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "setup": {
            "lab_hosts": hosts,
            "backend": "userspace (wireguard-go), in network namespaces",
            "stable": list(STABLE),
            "minutes": minutes,
            "interval_s": interval,
            "sample_s": sample,
            "warmup_s": warmup,
            "min_fitted_span_s": min_span,
            "seed": seed,
        },
        "mesh_formed_s": round(formed, 1),
        "actions": soak.actions,
        "failures": soak.failures,
        "settled_s": None if settled is None else round(settled, 2),
        "digests_identical": len(set(digests.values())) == 1,
        "digests": digests,
        # Whether the read after the agreement differed (a record in flight) and the
        # daemons were then waited for to agree again; the digests that read showed.
        "read_again": in_flight,
        "first_read_digests": first_read,
        "logs": None if keep_logs is None else str(keep_logs),
        "stuck": stuck,
        "daemons": [fit(p, warmup, min_span) for p in soak.processes.values()],
        "steps": soak.log,
        "raw": {str(p.pid): p.samples for p in soak.processes.values()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the churn runs")
    parser.add_argument("--hosts", type=int, default=7, help="lab hosts (members at most)")
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between changes")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds not fitted")
    parser.add_argument("--settle-timeout", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep-logs", type=Path, help="copy the daemons' logs here")
    args = parser.parse_args()
    why = missing_requirements()
    if why:
        print(f"benchmarks.soak needs root, ip, wireguard-go, wg and ping ({why})")
        return 1

    result = run_soak(
        minutes=args.minutes,
        hosts=args.hosts,
        interval=args.interval,
        sample=args.sample,
        warmup=args.warmup,
        settle_timeout=args.settle_timeout,
        seed=args.seed,
        keep_logs=args.keep_logs,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print_table(result)
    print(f"saved to {args.out}")
    ok = result["digests_identical"] and not result["stuck"] and result["settled_s"] is not None
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
