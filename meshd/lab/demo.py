"""``meshd demo``: a 5-node WireGuard mesh in network namespaces, used, then a node revoked.

:class:`LabMesh` runs meshd (with wireguard-go) on the hosts of a :class:`meshd.lab.Lab`:
one ``meshd init``, invites, ``meshd join`` on each other host, each with its own state dir
and a WireGuard interface name that is unique on the machine. The demo, the root tests in
tests/lab_mesh/ and benchmarks/wireguard.py all drive meshd through it, as a user would:
every node is a separate ``meshd`` process inside its host's namespace, and everything is
read back through ``meshd``'s control socket and ``wg``.

Durations are measured with ``time.perf_counter`` (an interval clock; nothing here is a
protocol core).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshd.control.client import request
from meshd.errors import MeshdError
from meshd.lab import Lab

NEEDS = ("ip", "wireguard-go", "wg", "ping")
REQUIREMENT = (
    "meshd demo needs root (network namespaces) and ip, wireguard-go, wg and ping: "
    "run `sudo bash scripts/demo.sh`, which installs them"
)


def missing_requirements() -> str:
    """Why the demo cannot run here, in one line; empty when it can."""
    if os.geteuid() != 0:
        return "not root"
    missing = [tool for tool in NEEDS if shutil.which(tool) is None]
    if missing:
        return "missing " + ", ".join(missing)
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return ""


class MeshTimeout(AssertionError):
    """A condition on the lab mesh did not hold in time."""


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, *, interval: float = 0.02
) -> float:
    """Poll ``condition`` until it holds; return how long that took (raise MeshTimeout)."""
    start = time.perf_counter()
    while True:
        try:
            if condition():
                return time.perf_counter() - start
        except (MeshdError, subprocess.SubprocessError, OSError, KeyError, ValueError):
            pass
        if time.perf_counter() - start > timeout:
            raise MeshTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True, slots=True)
class WgPeer:
    """One peer as ``wg show IFNAME dump`` reports it."""

    public_key: str  # base64
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    latest_handshake: int  # Unix seconds, 0 = never
    rx_bytes: int
    tx_bytes: int


@dataclass(eq=False)
class LabNode:
    """meshd on one lab host: its state dir, its interface, and its daemon while it runs."""

    host: str
    state_dir: Path
    ifname: str
    name: str = ""  # the member's name; the host's by default
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()
    identity: dict[str, Any] = field(default_factory=dict)  # own row, kept once known

    @property
    def socket(self) -> Path:
        return self.state_dir / "meshd.sock"

    def ask(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        return request(self.socket, cmd, args or {}, timeout=5.0)

    def peers(self) -> list[dict[str, Any]]:
        rows = self.ask("peers")
        assert isinstance(rows, list)
        return rows

    def me(self) -> dict[str, Any]:
        """This node's own row (remembered: a revoked node no longer reports one)."""
        if not self.identity:
            self.identity = next(r for r in self.peers() if r["state"] == "self")
        return self.identity


@dataclass(eq=False)
class LabMesh:
    """meshd nodes on the hosts of a built lab."""

    lab: Lab
    network: str = "demo"
    announce_interval: str = "30s"
    meshd: tuple[str, ...] = (sys.executable, "-m", "meshd")
    nodes: dict[str, LabNode] = field(default_factory=dict)

    def node(self, host: str) -> LabNode:
        found = self.nodes.get(host)
        if found is None:
            state_dir = self.lab.state_dir(host) / "meshd"
            found = self.nodes[host] = LabNode(host, state_dir, self.lab.wg_ifname(host), host)
        return found

    def fresh(self, host: str, name: str) -> LabNode:
        """Start over on ``host``: a new, empty state dir for a member called ``name``."""
        self.stop(host)
        state_dir = self.lab.state_dir(host) / name
        node = self.nodes[host] = LabNode(host, state_dir, self.lab.wg_ifname(host), name)
        return node

    def run(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one meshd command to completion in ``host``'s namespace."""
        node = self.node(host)
        done = self.lab.exec(
            host, [*self.meshd, *args, "--state-dir", str(node.state_dir)], check=False
        )
        if check and done.returncode != 0:
            raise MeshdError(f"meshd {args[0]} on {host} failed: {done.stderr.strip()}")
        return done

    def _daemon_args(self, host: str) -> list[str]:
        node = self.node(host)
        return [
            "--wg-backend",
            "userspace",
            "--interface",
            node.ifname,
            "--announce-interval",
            self.announce_interval,
            "--state-dir",
            str(node.state_dir),
            *node.extra,
        ]

    def _spawn(self, host: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        node = self.node(host)
        # Their logs at INFO unless the lab's owner asks for another level (MESHD_LOG_LEVEL).
        level = os.environ.get("MESHD_LOG_LEVEL") or "info"
        node.process = self.lab.spawn(host, [*self.meshd, *args], env={"MESHD_LOG_LEVEL": level})
        return node.process

    def init(self, host: str) -> None:
        self.run(host, "init", "--network", self.network, "--name", host)

    def up(self, host: str, *, wait: bool = True) -> subprocess.Popen[bytes]:
        process = self._spawn(host, ["up", *self._daemon_args(host)])
        if wait:
            self.wait_ready(host)
        return process

    def invite(self, sponsor: str, name: str) -> str:
        done = self.run(sponsor, "invite", "--name", name, "--expires", "1h")
        return done.stdout.strip().splitlines()[-1]

    def join(self, host: str, token: str, *, wait: bool = True) -> subprocess.Popen[bytes]:
        name = self.node(host).name
        args = ["join", "--invite", token, "--name", name, *self._daemon_args(host)]
        process = self._spawn(host, args)
        if wait:
            self.wait_ready(host)
        return process

    def join_all(self, founder: str, others: Sequence[str], timeout: float = 30.0) -> float:
        """Invite and join ``others`` at once; wait until every WireGuard peer list holds every
        member. Returns how long that agreement took after the last join answered."""
        for host in others:
            self.join(host, self.invite(founder, host), wait=False)
        for host in others:
            self.wait_ready(host)
        names = [founder, *others]
        return wait_for(
            lambda: self.wg_matches_membership(names, names),
            timeout,
            "every WireGuard peer list to hold every other member",
        )

    def wait_ready(self, host: str, timeout: float = 30.0) -> float:
        node = self.node(host)

        def ready() -> bool:
            if node.process is not None and node.process.poll() is not None:
                raise MeshTimeout(f"meshd on {host} exited with {node.process.returncode}")
            node.ask("status")
            return True

        return wait_for(ready, timeout, f"meshd on {host} to answer")

    def stop(self, host: str, timeout: float = 10.0) -> None:
        node = self.node(host)
        if node.process is not None:
            self.lab.stop(node.process, timeout)
            node.process = None

    # --- what the nodes see ----------------------------------------------------------------

    def running(self) -> list[str]:
        return [h for h, n in self.nodes.items() if n.process and n.process.poll() is None]

    def holder(self, host: str, target: str, hosts: Sequence[str]) -> str | None:
        """The host (of ``hosts``; else its WireGuard key) whose peer at ``host`` holds
        ``target``'s overlay /128: ``target`` itself when direct, a relay when relayed."""
        overlay = f"{self.overlay_ip(target)}/128"
        for key, peer in self.wg_peers(host).items():
            if overlay in peer.allowed_ips:
                return next((h for h in hosts if self.node(h).me()["wg_public_key"] == key), key)
        return None

    def wg_peers(self, host: str) -> dict[str, WgPeer]:
        """The peers of ``host``'s WireGuard interface, by base64 key (from ``wg``)."""
        node = self.node(host)
        done = self.lab.exec(host, ["wg", "show", node.ifname, "dump"], check=True, timeout=5)
        peers: dict[str, WgPeer] = {}
        for line in done.stdout.splitlines()[1:]:
            key, _psk, endpoint, allowed, handshake, rx, tx, *_ = line.split("\t")
            peers[key] = WgPeer(
                key,
                None if endpoint == "(none)" else endpoint,
                tuple(a for a in allowed.split(",") if a and a != "(none)"),
                int(handshake),
                int(rx),
                int(tx),
            )
        return peers

    def admitted_keys(self, host: str) -> set[str]:
        """WireGuard keys of the members ``host`` holds admitted (itself excluded)."""
        return {r["wg_public_key"] for r in self.node(host).peers() if r["state"] == "admitted"}

    def wg_matches_membership(self, hosts: Iterable[str], members: Iterable[str]) -> bool:
        """Each host's WireGuard peers are exactly the other ``members``' keys."""
        wanted = set(members)
        keys = {h: self.node(h).me()["wg_public_key"] for h in wanted}
        for host in hosts:
            expect = {keys[m] for m in wanted if m != host}
            if set(self.wg_peers(host)) != expect or self.admitted_keys(host) != expect:
                return False
        return True

    def handshakes_done(self, hosts: Iterable[str]) -> bool:
        """Every WireGuard peer of each host has completed a handshake.

        A guard: first handshakes that cross (two members that joined together) complete
        only when WireGuard tries again 5 s later; the mesh breaks that tie by key
        (docs/mesh.md, "First handshakes"), and this wait is then a few hundredths of a second.
        """
        return all(
            peer.latest_handshake > 0 for host in hosts for peer in self.wg_peers(host).values()
        )

    def routes_direct(self, hosts: Iterable[str]) -> bool:
        """Babel on each host routes every other admitted member directly, not via a relay.

        Traffic does not wait for this: until Babel has heard a new direct neighbour, its
        overlay address stays on its own WireGuard peer (docs/mesh.md, "New direct
        neighbours").
        """
        for host in hosts:
            for row in self.node(host).peers():
                if row["state"] == "admitted" and row.get("route") != "direct":
                    return False
        return True

    def overlay_ip(self, host: str) -> str:
        return str(self.node(host).me()["overlay_ip"])

    def ping_pairs(
        self, pairs: Sequence[tuple[str, str]], *, wait: float = 1.0, count: int = 1
    ) -> dict[tuple[str, str], bool]:
        """Ping each (source, destination) over the overlay, all at once."""
        targets = {h: self.overlay_ip(h) for pair in pairs for h in pair}
        running = {
            (a, b): self.lab.spawn(
                a,
                ["ping", "-6", "-n", "-q", "-c", str(count), "-W", f"{wait:g}", targets[b]],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for a, b in pairs
        }
        return {pair: process.wait(wait * count + 10) == 0 for pair, process in running.items()}

    def close(self) -> None:
        for host in list(self.running()):
            self.stop(host)


def all_pairs(hosts: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for a in hosts for b in hosts if a != b]


# --- the demo ------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, flush=True)


def _step(text: str) -> float:
    _say(f"\n== {text}")
    return time.perf_counter()


def _took(start: float) -> str:
    return f"{time.perf_counter() - start:.2f} s"


def _matrix(hosts: Sequence[str], results: dict[tuple[str, str], bool]) -> None:
    _say("      " + " ".join(f"{h:>4}" for h in hosts))
    for a in hosts:
        cells = ["  - " if a == b else ("  ok" if results[(a, b)] else "FAIL") for b in hosts]
        _say(f"  {a:>3} " + " ".join(cells))


def run_demo(hosts: int = 5, revoke: str | None = None) -> int:
    """Build the mesh, use it, revoke one node, tear down. Returns the exit status."""
    names = [f"h{i}" for i in range(1, hosts + 1)]
    victim = revoke or names[-1]
    founder, others = names[0], names[1:]
    begin = _step(f"building a lab of {hosts} hosts (network namespaces behind a router)")
    with Lab(hosts) as lab:
        mesh = LabMesh(lab)
        try:
            _say(f"   lab {lab.run_id} ready in {_took(begin)}")
            start = _step(
                f"{founder}: meshd init, meshd up (wireguard-go on {mesh.node(founder).ifname})"
            )
            mesh.init(founder)
            mesh.up(founder)
            _say(f"   founder up in {_took(start)}")
            start = _step(f"inviting {', '.join(others)}; each runs `meshd join --invite TOKEN`")
            took = mesh.join_all(founder, others)
            _say(f"   {len(names)} members, each a WireGuard peer of every other: {_took(start)}")
            _say(f"   (membership and WireGuard agreed {took:.2f} s after the last join answered)")
            start = _step("waiting for a WireGuard handshake between every pair")
            wait_for(lambda: mesh.handshakes_done(names), 30, "a handshake between every pair")
            _say(f"   every pair has a WireGuard session: {_took(start)}")

            _step(f"meshd peers, as {founder} sees it")
            _say(mesh.run(founder, "peers").stdout.rstrip())

            start = _step("ping over the IPv6 overlay, every pair")
            results = mesh.ping_pairs(all_pairs(names))
            _matrix(names, results)
            ok = sum(results.values())
            _say(f"   {ok}/{len(results)} pairs answered ({_took(start)})")

            start = _step(f"revoking {victim} (meshd revoke on {founder})")
            victim_key = mesh.node(victim).me()["wg_public_key"]
            mesh.run(founder, "revoke", victim, "--reason", "demo")
            rest = [h for h in names if h != victim]
            took = wait_for(
                lambda: all(victim_key not in mesh.wg_peers(h) for h in rest),
                15,
                f"{victim} to leave every WireGuard interface",
            )
            _say(f"   {victim} left every WireGuard interface {took:.2f} s after `meshd revoke`")
            for host in rest:
                row = next(r for r in mesh.node(host).peers() if r["name"] == victim)
                in_wg = victim_key in mesh.wg_peers(host)
                _say(
                    f"   {host}: {victim} is {row['state']}; WireGuard peers: "
                    f"{len(mesh.wg_peers(host))} ({victim} {'still there' if in_wg else 'gone'})"
                )
            after = mesh.ping_pairs([(h, victim) for h in rest] + [(victim, h) for h in rest])
            failed = sum(not v for v in after.values())
            _say(f"   pings to and from {victim}: {failed}/{len(after)} fail, as they must")
            remaining = mesh.ping_pairs(all_pairs(rest))
            _say(
                f"   the other {len(rest)}: {sum(remaining.values())}/{len(remaining)} pairs "
                "still answer"
            )
            good = ok == len(results) and failed == len(after) and all(remaining.values())
        finally:
            start = _step("tearing down (meshd daemons, wireguard-go, namespaces)")
            mesh.close()
    _say(f"   done in {_took(start)}; nothing left behind")
    _say(f"\n{'demo complete' if good else 'demo FAILED'} in {_took(begin)}")
    return 0 if good else 1


def main() -> int:
    """The demo from the command line: a one-line refusal when it cannot run here."""
    why = missing_requirements()
    if why:
        print(f"meshd: {REQUIREMENT} ({why})", file=sys.stderr)
        return 1
    try:
        return run_demo()
    except KeyboardInterrupt:
        print("meshd: demo interrupted; the lab was torn down", file=sys.stderr)
        return 130
    except (MeshTimeout, MeshdError, subprocess.SubprocessError) as exc:
        print(f"meshd: demo failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
