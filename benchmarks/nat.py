"""NAT traversal timings of meshd in an 8-host lab of mixed NATs (namespaces, nftables NATs,
wireguard-go, a real daemon per host). Needs root.

The lab (meshd/lab/nat.py, docs/lab.md): two public hosts (h1 founds the network, h2), one
host behind a cone NAT (h3), one behind a cone NAT behind a carrier's cone NAT (h4: double
NAT), two behind their own symmetric NATs (h5, h6) and two behind one shared cone NAT (h7,
h8: a home LAN). Every host runs ``meshd up``/``join`` as a user would (LabMesh).

(a) cone join: from starting ``meshd join`` on h3 (afresh, under a new name each round) to a
    WireGuard handshake between h3 and h4 at h4's public (NAT) address: a direct path
    between two cone-NATed members. Target <= 2 s.
(b) symmetric relay: from starting ``meshd join`` on h6 (afresh) to the first ping from h6
    answered by h5 over the overlay. Two symmetric NATs cannot punch, so that packet goes
    through a relay (which one is recorded). Target <= 3 s.
(c) direct share: after (b), for up to ``--settle-pairs`` seconds, the pairs whose WireGuard
    sessions are direct on both sides (a fresh handshake on the member's own peer, which
    holds its overlay /128: not moved to a relay), against the pairs the NAT types allow to
    be direct (:func:`can_be_direct`: either side public; both cone-type; or the same LAN).
    Target: every pair that can be direct is direct.
(d) public restart: both public daemons stopped, then started again on their stores; from
    their start until every NATed member's ping to every other member is answered again
    (each pair's first answered ping; the figure is the last pair's). Target <= 5 s.

Each timing comes with its steps (``steps``, seconds from the same start, polled beside the
pings): for (b) when the joiner's WireGuard device exists, when it first has a session with
a public member (a relay), when it has a peer for h5, when h5's overlay address is on a
relay's peer there, when the joiner's is on a relay's peer at h5, and when both are on the
same relay (WireGuard's receive filter needs that); for (d) when both public daemons'
WireGuard devices exist, when both answer their control sockets, and when each NATed member
has a session again with each public member (and when all do). Each pair's ping sends every
50 ms until its first answer, so an answer is seen within 50 ms of the path working (one
ping at a time with a 0.5 s wait, before, could add up to 0.5 s).

The public hosts and the NATs' WAN addresses are in documentation ranges (``Lab(public=
True)``: 203.0.113.0/24, 198.51.100.0/24, 2001:db8::/32), which meshd counts as public, so
``--relay auto`` (the default) makes the public members relays from their start;
``--private-lab`` gives them the lab's private 10.77/10.78 addresses instead.

Times are wall-clock (``time.time``), as WireGuard's handshake times are; WireGuard state is
read over the UAPI sockets (shared by all namespaces) every few ms, so polling adds little.
Each measurement starts after ``--settle`` quiet seconds (2). A measurement that does not
happen within its timeout is recorded as null with what was seen; the summary counts those
rounds as missed.

    sudo .venv/bin/python -m benchmarks.nat [--rounds 3]

Results: printed, and saved to benchmarks/results/nat.json (``--out`` to write elsewhere,
e.g. a "before" run of an older commit).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.nat_layout import (
    CONE_JOINER,
    CONE_PEER,
    FOUNDER,
    LAYOUT,
    NATS,
    NATTED,
    PUBLIC,
    SYMMETRIC_JOINER,
    SYMMETRIC_PEER,
    TARGETS,
    allowed_pairs,
    median_or_none,
    pairs,
    share,
    summarise,
)
from meshd.lab import Lab
from meshd.lab.demo import LabMesh, missing_requirements, wait_for
from meshd.wg.errors import UapiError
from meshd.wg.model import key_from_base64
from meshd.wg.uapi import socket_path
from meshd.wg.uapi_reply import parse_get_reply_untrusted
from meshd.wg.uapi_request import encode_get_request

RESULTS = Path(__file__).parent / "results" / "nat.json"
FRESH = 180.0  # a handshake younger than this is a live session (WireGuard's REJECT_AFTER_TIME)
POLL = 0.005
PING_EVERY = 0.05  # seconds between the echo requests of one pair's ping (root may go under 0.2)

# --- the lab ----------------------------------------------------------------------------------


def build(lab: Lab) -> None:
    """Add the NATs and the NATed hosts of LAYOUT to a lab of the public hosts."""
    for name, (kind, behind) in NATS.items():
        lab.add_nat(name, kind=kind, behind=behind)
    for host in NATTED:
        made = lab.add_host(behind=LAYOUT[host].nats[0])
        assert made.name == host, (made.name, host)


def uapi_peers(ifname: str) -> dict[bytes, Any]:
    """The peers of a WireGuard device by key (empty if it is not there yet)."""
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
        return dict(parse_get_reply_untrusted(data).peers_by_key())
    except (OSError, UapiError):
        return {}


class Bench:
    def __init__(self, lab: Lab, mesh: LabMesh) -> None:
        self.lab, self.mesh = lab, mesh
        self.keys: dict[str, bytes] = {}
        self.overlay: dict[str, str] = {}

    def learn(self, host: str) -> None:
        node = self.mesh.node(host)
        node.identity = {}
        me = node.me()
        self.keys[host] = key_from_base64(me["wg_public_key"])
        self.overlay[host] = me["overlay_ip"]

    def host_of(self, key: bytes) -> str | None:
        return next((h for h, k in self.keys.items() if k == key), None)

    def direct(self, host: str, other: str, now: float) -> bool:
        """``host``'s WireGuard has a live session with ``other`` on ``other``'s own peer."""
        peers = uapi_peers(self.mesh.node(host).ifname)
        peer = peers.get(self.keys[other])
        if peer is None or not peer.last_handshake or now - peer.last_handshake >= FRESH:
            return False
        mine = ipaddress.ip_network(f"{self.overlay[other]}/128")
        return mine in peer.config.allowed_ips

    def holder(self, host: str, other: str) -> str | None:
        """The host whose peer at ``host`` holds ``other``'s overlay /128."""
        mine = ipaddress.ip_network(f"{self.overlay[other]}/128")
        for key, peer in uapi_peers(self.mesh.node(host).ifname).items():
            if mine in peer.config.allowed_ips:
                return self.host_of(key) or key.hex()[:8]
        return None

    def ping_until_answered(self, src: str, dst: str, deadline: float) -> subprocess.Popen[bytes]:
        """One ``ping`` that sends every ``PING_EVERY`` s until an answer (exit 0) or
        ``deadline`` (wall clock): a first answer is seen within that interval of the path
        working, not up to a whole reply timeout later, as with one ping at a time."""
        seconds = max(1, math.ceil(deadline - time.time()))
        return self.lab.spawn(
            src,
            [
                "ping",
                "-6",
                "-n",
                "-q",
                "-c",
                "1",
                "-i",
                f"{PING_EVERY:g}",
                "-w",
                str(seconds),
                self.overlay[dst],
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def first_answers(
        self,
        todo: Iterable[tuple[str, str]],
        start: float,
        timeout: float,
        watch: Callable[[], None] | None = None,
    ) -> dict[str, float | None]:
        """Ping each (src, dst) over and over, all at once; each pair's first answer (the
        moment its ping exited with an answer) minus ``start``, None if none in time.
        ``watch`` is called at every poll (a :class:`Steps`)."""
        pending = set(todo)
        got: dict[str, float | None] = {f"{a}-{b}": None for a, b in pending}
        running: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        deadline = time.time() + timeout
        while pending and time.time() < deadline:
            if watch is not None:
                watch()
            for pair in pending - set(running):
                running[pair] = self.ping_until_answered(*pair, deadline)
            time.sleep(POLL * 4)
            for pair, process in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[pair]
                if code == 0:
                    got[f"{pair[0]}-{pair[1]}"] = time.time() - start
                    pending.discard(pair)
        for process in running.values():
            process.kill()
            process.wait()
        return got

    def direct_pairs(self) -> list[tuple[str, str]]:
        now = time.time()
        return [
            (a, b) for a, b in pairs(LAYOUT) if self.direct(a, b, now) and self.direct(b, a, now)
        ]


class Steps:
    """When each of some conditions first held, in seconds after ``start`` (polled)."""

    def __init__(self, start: float, checks: Mapping[str, Callable[[], bool]]) -> None:
        self.start = start
        self.checks = dict(checks)
        self.at: dict[str, float | None] = dict.fromkeys(checks)

    def __call__(self) -> None:
        for name, check in self.checks.items():
            if self.at[name] is None and check():
                self.at[name] = time.time() - self.start

    def finish(self, timeout: float = 10.0) -> dict[str, float | None]:
        """Poll the steps not seen yet for up to ``timeout`` more seconds."""
        deadline = time.time() + timeout
        while None in self.at.values() and time.time() < deadline:
            self()
            time.sleep(POLL * 4)
        return dict(self.at)


def device_up(bench: Bench, host: str) -> bool:
    return os.path.exists(socket_path(bench.mesh.node(host).ifname))


def session_since(bench: Bench, host: str, others: Sequence[str], since: float) -> bool:
    """``host``'s WireGuard has a handshake newer than ``since`` with each of ``others``."""
    peers = uapi_peers(bench.mesh.node(host).ifname)
    for other in others:
        peer = peers.get(bench.keys[other])
        if peer is None or not peer.last_handshake or peer.last_handshake < since:
            return False
    return True


def _session_check(bench: Bench, host: str, other: str, since: float) -> Callable[[], bool]:
    return lambda: session_since(bench, host, [other], since)


def answers(bench: Bench, host: str) -> bool:
    try:
        bench.mesh.node(host).ask("status")
    except Exception:  # noqa: BLE001 - not answering yet, whatever the reason
        return False
    return True


def rejoin(bench: Bench, host: str, name: str, old: str, settle: float) -> float:
    """Revoke ``old`` (the member ``host`` ran), start ``host`` afresh as ``name``, and return
    the moment its join started."""
    mesh = bench.mesh
    mesh.stop(host)
    mesh.run(FOUNDER, "revoke", old, "--reason", "benchmark round")
    mesh.fresh(host, name)
    token = mesh.invite(FOUNDER, name)
    time.sleep(settle)
    start = time.time()
    mesh.join(host, token, wait=False)
    return start


def cone_join(bench: Bench, start: float, timeout: float) -> dict[str, Any]:
    """From ``start`` to a handshake at CONE_JOINER with CONE_PEER at its public address."""
    mesh, lab = bench.mesh, bench.lab
    ifname = mesh.node(CONE_JOINER).ifname
    public = str(lab.public_address_of(CONE_PEER))
    want = bench.keys[CONE_PEER]
    deadline = start + timeout
    last: Any = None
    while time.time() < deadline:
        peer = uapi_peers(ifname).get(want)
        last = peer
        if (
            peer is not None
            and peer.last_handshake
            and peer.last_handshake >= start
            and (peer.config.endpoint or "").rsplit(":", 1)[0] == public
        ):
            return {"direct": peer.last_handshake - start, "endpoint": peer.config.endpoint}
        time.sleep(POLL)
    return {
        "direct": None,
        "endpoint": last.config.endpoint if last is not None else None,
        "handshake": last.last_handshake if last is not None else None,
    }


def symmetric_relay(bench: Bench, start: float, timeout: float) -> dict[str, Any]:
    """From ``start`` to SYMMETRIC_JOINER's first answered ping from SYMMETRIC_PEER."""
    joiner, peer = SYMMETRIC_JOINER, SYMMETRIC_PEER
    ifname = bench.mesh.node(joiner).ifname

    def relayed() -> bool:
        return bench.holder(joiner, peer) in PUBLIC

    bench.overlay.pop(joiner, None)  # the previous round's member's

    def relayed_back() -> bool:
        if joiner not in bench.overlay:
            try:
                bench.learn(joiner)
            except Exception:  # noqa: BLE001 - not answering yet, whatever the reason
                return False
        return bench.holder(peer, joiner) in PUBLIC

    def same_relay() -> bool:
        return relayed_back() and bench.holder(peer, joiner) == bench.holder(joiner, peer)

    steps = Steps(
        start,
        {
            "device": lambda: device_up(bench, joiner),
            "relay_session": lambda: any(session_since(bench, joiner, [p], start) for p in PUBLIC),
            "peer": lambda: bench.keys[peer] in uapi_peers(ifname),
            "routed_via_relay": relayed,
            "routed_back_via_relay": relayed_back,
            "same_relay": same_relay,
        },
    )
    got = bench.first_answers([(joiner, peer)], start, timeout, watch=steps)
    first = next(iter(got.values()))
    seen = steps.finish(5.0)
    bench.mesh.wait_ready(SYMMETRIC_JOINER)
    bench.learn(SYMMETRIC_JOINER)
    return {
        "first_packet": first,
        "via": bench.holder(SYMMETRIC_JOINER, SYMMETRIC_PEER),
        "via_back": bench.holder(SYMMETRIC_PEER, SYMMETRIC_JOINER),
        "direct": bench.direct(SYMMETRIC_JOINER, SYMMETRIC_PEER, time.time()),
        "steps": seen,
    }


def direct_share(bench: Bench, timeout: float) -> dict[str, Any]:
    """Poll the direct pairs until every allowed pair is direct or ``timeout`` passes."""
    start = time.time()
    allowed = set(allowed_pairs(LAYOUT))
    while True:
        found = bench.direct_pairs()
        if allowed <= set(found) or time.time() - start >= timeout:
            return share(found, LAYOUT) | {"after": time.time() - start}
        time.sleep(0.5)


def public_restart(bench: Bench, settle: float, timeout: float) -> dict[str, Any]:
    mesh = bench.mesh
    todo = [(a, b) for a in NATTED for b in LAYOUT if b != a]
    before = bench.first_answers(todo, time.time(), 10)
    for host in PUBLIC:
        mesh.stop(host)
    time.sleep(settle)
    start = time.time()
    for host in PUBLIC:
        mesh.up(host, wait=False)
    checks: dict[str, Callable[[], bool]] = {
        "devices": lambda: all(device_up(bench, h) for h in PUBLIC),
        "answering": lambda: all(answers(bench, h) for h in PUBLIC),
    }
    for host in NATTED:
        for public in PUBLIC:
            checks[f"{host}-{public}"] = _session_check(bench, host, public, start)
    steps = Steps(start, checks)
    back = bench.first_answers(todo, start, timeout, watch=steps)
    seen = steps.finish(5.0)
    sessions = [seen[f"{h}-{p}"] for h in NATTED for p in PUBLIC]
    seen["sessions"] = None if None in sessions else max(v for v in sessions if v is not None)
    values = list(back.values())
    return {
        "all_back": None if None in values else max(v for v in values if v is not None),
        "not_back": sorted(p for p, v in back.items() if v is None),
        "not_reachable_before": sorted(p for p, v in before.items() if v is None),
        "median_pair": median_or_none(values),
        "pairs": back,
        "steps": seen,
    }


def run(
    rounds: int,
    settle: float,
    settle_pairs: float,
    extra: Sequence[str],
    public_extra: Sequence[str] = (),
    *,
    public_lab: bool = True,
    logs: Path | None = None,
) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {
        "cone_join": [],
        "symmetric_relay": [],
        "direct_share": [],
        "public_restart": [],
    }
    load_before = os.getloadavg()
    with Lab(len(PUBLIC), public=public_lab) as lab:
        build(lab)
        mesh = LabMesh(lab, network="natbench")
        bench = Bench(lab, mesh)
        try:
            for host in LAYOUT:
                mesh.node(host).extra = tuple(extra)
            for host in PUBLIC:
                mesh.node(host).extra += tuple(public_extra)
            mesh.init(FOUNDER)
            mesh.up(FOUNDER)
            hosts = list(LAYOUT)
            for host in hosts[1:]:
                mesh.join(host, mesh.invite(FOUNDER, host), wait=False)
            for host in hosts[1:]:
                mesh.wait_ready(host)
            wait_for(lambda: mesh.wg_matches_membership(hosts, hosts), 60, "the mesh")
            for host in hosts:
                bench.learn(host)
            names = {h: h for h in hosts}
            print(f"lab {lab.run_id}: {len(hosts)} members up; {rounds} rounds", flush=True)
            for index in range(rounds):
                start = rejoin(bench, CONE_JOINER, f"c{index}", names[CONE_JOINER], settle)
                names[CONE_JOINER] = f"c{index}"
                joined = cone_join(bench, start, 20)
                mesh.wait_ready(CONE_JOINER)
                bench.learn(CONE_JOINER)
                samples["cone_join"].append(joined)

                old = names[SYMMETRIC_JOINER]
                start = rejoin(bench, SYMMETRIC_JOINER, f"s{index}", old, settle)
                names[SYMMETRIC_JOINER] = f"s{index}"
                relayed = symmetric_relay(bench, start, 40)
                samples["symmetric_relay"].append(relayed)
                slow = (
                    relayed["first_packet"] is None
                    or relayed["first_packet"] > 2 * TARGETS["symmetric_relay"]
                )
                if logs is not None and slow:
                    keep_logs(lab, logs / f"round{index + 1}-symmetric")

                shared = direct_share(bench, settle_pairs)
                samples["direct_share"].append(shared)

                restarted = public_restart(bench, settle, 60)
                samples["public_restart"].append(restarted)
                if logs is not None and index == 0:
                    keep_logs(lab, logs / f"round{index + 1}-restart")
                for host in PUBLIC:
                    mesh.wait_ready(host)
                print(
                    f"  round {index + 1}: cone join {_s(joined['direct'])}, "
                    f"symmetric relay {_s(relayed['first_packet'])} via {relayed['via']}, "
                    f"direct {shared['direct']}/{shared['allowed']} "
                    f"(missing {', '.join(shared['missing']) or '-'}), "
                    f"public restart {_s(restarted['all_back'])} "
                    f"(sessions {_s(restarted['steps']['sessions'])}), "
                    f"relay steps {_fmt_steps(relayed['steps'])}"
                    + (
                        f" (not back: {len(restarted['not_back'])})"
                        if restarted["not_back"]
                        else ""
                    ),
                    flush=True,
                )
        finally:
            mesh.close()
    figures: dict[str, list[float | None]] = {
        "cone_join": [s["direct"] for s in samples["cone_join"]],
        "symmetric_relay": [s["first_packet"] for s in samples["symmetric_relay"]],
        "direct_share": [s["share"] for s in samples["direct_share"]],
        "public_restart": [s["all_back"] for s in samples["public_restart"]],
    }
    return {
        "benchmark": "nat",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _commit(),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "lab": {
            "hosts": {h: {"kind": s.kind, "nats": list(s.nats)} for h, s in LAYOUT.items()},
            "nats": {n: {"kind": k, "behind": b} for n, (k, b) in NATS.items()},
            "allowed_pairs": len(allowed_pairs(LAYOUT)),
            "pairs": len(pairs(LAYOUT)),
            "backend": "userspace (wireguard-go)",
            "extra": list(extra),
            "public_extra": list(public_extra),
            "public_addresses": public_lab,
        },
        "rounds": rounds,
        "load_average": {"start": list(load_before), "end": list(os.getloadavg())},
        "settle_s": settle,
        "timeouts_s": {"cone_join": 20, "symmetric_relay": 40, "public_restart": 60},
        "summary": summarise(figures),
        "samples": samples,
    }


def keep_logs(lab: Lab, into: Path) -> None:
    """Copy the lab's daemon logs so far (a slow round, looked at afterwards)."""
    shutil.copytree(lab.dir / "logs", into, dirs_exist_ok=True)
    print(f"  logs kept in {into}", flush=True)


def _fmt_steps(steps: Mapping[str, float | None]) -> str:
    return " ".join(f"{k}={'-' if v is None else f'{v:.2f}'}" for k, v in steps.items())


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _commit() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
        check=False,
    )
    return done.stdout.strip() or None


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--settle", type=float, default=2.0, help="quiet seconds before each measurement"
    )
    parser.add_argument(
        "--settle-pairs", type=float, default=30.0, help="seconds to wait for direct pairs"
    )
    parser.add_argument(
        "--public-arg", action="append", default=[], help="an extra option for public daemons"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--private-lab",
        action="store_true",
        help="public hosts at the lab's private 10.77/10.78 addresses (as before)",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="keep daemon logs of slow rounds here"
    )
    parser.add_argument(
        "--daemon-arg", action="append", default=[], help="an extra option for every daemon"
    )
    args = parser.parse_args()
    why = missing_requirements()
    if why:
        print(f"benchmarks.nat needs root, ip, nft, wireguard-go, wg and ping ({why})")
        return 1
    result = run(
        args.rounds,
        args.settle,
        args.settle_pairs,
        args.daemon_arg,
        args.public_arg,
        public_lab=not args.private_lab,
        logs=args.logs,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"\n{'figure':<16} {'median':>8} {'min':>8} {'max':>8} {'missed':>6} {'target':>7}  met")
    for name, row in result["summary"].items():
        cells = ["-" if row[k] is None else f"{row[k]:.2f}" for k in ("median", "min", "max")]
        print(
            f"{name:<16} {cells[0]:>8} {cells[1]:>8} {cells[2]:>8} {row['missed']:>6} "
            f"{row['target']:>7.1f}  {'yes' if row['met'] else 'NO'}"
        )
    print(f"saved to {args.out}")
    return 0 if all(r["met"] for r in result["summary"].values()) else 2


if __name__ == "__main__":
    sys.exit(main())
