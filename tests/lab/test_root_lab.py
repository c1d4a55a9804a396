"""The lab itself, as root: reachability, faults, teardown, isolation of concurrent runs.

Traffic is only ever sent inside the namespaces the tests build. Every test builds its own
small lab (building one takes tens of milliseconds) and checks afterwards that nothing with
its run id is left on the machine.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.lab import Host, Lab, LabError, list_runs
from meshd.lab.filters import available_filters
from meshd.lab.state import lab_dir
from meshd.lab.teardown import WG_SOCKET_DIR

pytestmark = pytest.mark.root

ECHO_PORT = 7007

#: A dual-stack UDP echo server; says "ready" once bound.
ECHO_SERVER = f"""
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", {ECHO_PORT}))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""

#: Send one datagram to argv[1] and exit 0 if it comes back; two tries of 0.3 s.
ECHO_CLIENT = f"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(0.3)
for _ in range(2):
    s.sendto(b"hello", (sys.argv[1], {ECHO_PORT}))
    try:
        sys.exit(0 if s.recv(2048) == b"hello" else 2)
    except TimeoutError:
        pass
sys.exit(1)
"""


def ping(lab: Lab, src: str, dst: str, family: int, *, wait: int = 1) -> bool:
    target = str(lab.address_of(dst, 4 if family == 4 else 6))
    done = lab.exec(src, ["ping", "-n", "-q", "-c1", f"-W{wait}", target], check=False)
    return done.returncode == 0


def eventually_pings(lab: Lab, src: str, dst: str, family: int) -> bool:
    """Ping until it works, for up to 3 s (a link that just came up may need a moment)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if ping(lab, src, dst, family):
            return True
    return False


def udp_echo(lab: Lab, src: str, dst: str, family: int) -> bool:
    target = str(lab.address_of(dst, 4 if family == 4 else 6))
    done = lab.exec(src, [sys.executable, "-c", ECHO_CLIENT, target], check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


def start_echo_server(lab: Lab, host: str) -> subprocess.Popen[bytes]:
    server = lab.spawn(host, [sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE)
    assert server.stdout is not None
    assert server.stdout.readline() == b"ready\n"
    return server


def traces(run_id: str) -> list[str]:
    """Everything on the machine that carries this run id."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    found += [line for line in netns.stdout.splitlines() if run_id in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    found += [line for line in links.stdout.splitlines() if run_id in line]
    if os.path.isdir(WG_SOCKET_DIR):
        found += [name for name in os.listdir(WG_SOCKET_DIR) if run_id in name]
    if lab_dir(run_id).exists():
        found.append(str(lab_dir(run_id)))
    return found


def alive(pid: int) -> bool:
    """Whether a PID exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(3) as built:
        yield built
    assert traces(built.run_id) == []


def test_every_host_reaches_every_other_over_both_families(lab: Lab) -> None:
    assert [h.name for h in lab.hosts] == ["h1", "h2", "h3"]
    for src, dst in itertools.permutations(["h1", "h2", "h3"], 2):
        for family in (4, 6):
            assert ping(lab, src, dst, family), f"{src} -> {dst} over IPv{family}"
    # Through the router: one hop, so the TTL seen is one less than the sender's 64.
    done = lab.exec("h1", ["ping", "-n", "-c1", "-W1", str(lab.address_of("h3"))])
    assert "ttl=63" in done.stdout


def test_names_and_addresses(lab: Lab) -> None:
    h2 = lab.host("h2")
    assert isinstance(h2, Host)
    assert lab.host(h2) is h2
    assert str(lab.address_of("h2", 4)) == "10.77.2.2"
    assert str(lab.address_of(h2, 6)) == "fd6c:6162:0:2::2"
    assert lab.wg_ifname("h2") == h2.wg_ifname
    names = [lab.router_netns]
    for h in lab.hosts:
        names += [h.netns, h.ifname, h.router_ifname, h.wg_ifname]
        assert len(h.ifname) <= 15
        assert len(h.wg_ifname) <= 15
    assert all(lab.run_id in name for name in names)
    assert len(set(names)) == len(names)
    with pytest.raises(LabError, match="no host"):
        lab.host("h4")
    done = lab.exec("h2", ["ip", "-o", "address", "show", "dev", h2.ifname])
    assert "10.77.2.2/24" in done.stdout
    assert "fd6c:6162:0:2::2/64" in done.stdout
    state = lab.state_dir("h2")
    assert state.is_dir()
    assert state.is_relative_to(lab.dir)


def test_cut_and_heal(lab: Lab) -> None:
    lab.cut("h2")
    for family in (4, 6):
        assert not ping(lab, "h1", "h2", family)
        assert not ping(lab, "h2", "h3", family)
        assert ping(lab, "h1", "h3", family), "only h2 is cut"
    lab.heal("h2")
    for family in (4, 6):
        assert eventually_pings(lab, "h1", "h2", family)
        assert eventually_pings(lab, "h2", "h3", family)


def filter_or_skip(name: str) -> str:
    if name in available_filters():
        return name
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs {name} for the lab (scripts/setup.sh installs it, see docs/lab.md)")
    pytest.skip(f"{name} is not installed")


@pytest.mark.parametrize("method", ["nft", "iptables", "iprule"])
def test_block_udp_between_two_hosts_only(method: str) -> None:
    with Lab(3, udp_filter=filter_or_skip(method)) as lab:
        assert lab.udp_filter == method
        for host in ("h1", "h2", "h3"):
            start_echo_server(lab, host)
        for family in (4, 6):
            assert udp_echo(lab, "h1", "h2", family)

        lab.block_udp("h1", "h2")
        lab.block_udp("h2", "h1")  # the same pair: no second rule
        for family in (4, 6):
            assert not udp_echo(lab, "h1", "h2", family), f"IPv{family} h1 -> h2"
            assert not udp_echo(lab, "h2", "h1", family), f"IPv{family} h2 -> h1"
            assert udp_echo(lab, "h1", "h3", family)
            assert udp_echo(lab, "h3", "h2", family)
            assert ping(lab, "h1", "h2", family), "only UDP is blocked"

        lab.unblock_udp("h2", "h1")
        lab.unblock_udp("h1", "h2")  # already unblocked: nothing to do
        for family in (4, 6):
            assert udp_echo(lab, "h1", "h2", family)
            assert udp_echo(lab, "h2", "h1", family)
        run_id = lab.run_id
    assert traces(run_id) == []


def test_teardown_leaves_no_namespace_link_process_socket_or_file() -> None:
    lab = Lab(3, stop_timeout=0.5).build()
    run_id = lab.run_id
    sleeper = lab.spawn("h1", ["sleep", "600"])
    stubborn = lab.spawn(
        "h2",
        [sys.executable, "-c", "import signal, time\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
         "time.sleep(600)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline() == b"ready\n"
    # A process that left the lab's process tree: only the namespace sweep finds it.
    done = lab.exec("h3", ["sh", "-c", "setsid sleep 600 >/dev/null 2>&1 < /dev/null & echo $!"])
    stray = int(done.stdout)
    # wireguard-go as meshd starts it, and a socket as a SIGKILLed wireguard-go leaves it.
    wg = lab.spawn("h1", ["wireguard-go", lab.wg_ifname("h1")], env={"WG_PROCESS_FOREGROUND": "1"})
    wg_socket = Path(WG_SOCKET_DIR, f"{lab.wg_ifname('h1')}.sock")
    deadline = time.monotonic() + 5
    while not wg_socket.exists():
        assert time.monotonic() < deadline, "wireguard-go did not open its socket"
        assert wg.poll() is None, "wireguard-go exited"
        time.sleep(0.01)
    stale_socket = Path(WG_SOCKET_DIR, f"{lab.wg_ifname('h2')}.sock")
    stale_socket.touch()
    pids = [sleeper.pid, stubborn.pid, wg.pid, stray]
    assert sorted(lab.pids) == sorted(pids[:3])
    assert all(alive(pid) for pid in pids)
    assert len(traces(run_id)) > 5

    started = time.monotonic()
    assert lab.close() == []
    assert time.monotonic() - started < 5
    assert traces(run_id) == []
    assert not any(alive(pid) for pid in pids)
    assert stubborn.returncode == -signal.SIGKILL
    assert sleeper.returncode == -signal.SIGTERM
    assert lab.pids == []
    assert lab.close() == []  # idempotent
    with pytest.raises(LabError, match="closed"):
        lab.exec("h1", ["true"])


def test_two_labs_at_once_do_not_collide() -> None:
    with Lab(2) as first, Lab(2) as second:
        assert first.run_id != second.run_id
        names_first = {first.router_netns} | {h.netns for h in first.hosts}
        names_second = {second.router_netns} | {h.netns for h in second.hosts}
        assert not names_first & names_second
        assert {h.ifname for h in first.hosts}.isdisjoint(h.ifname for h in second.hosts)
        assert first.wg_ifname("h1") != second.wg_ifname("h1")
        # The same address plan in both, each in its own namespaces.
        assert first.address_of("h2") == second.address_of("h2")
        for lab in (first, second):
            assert ping(lab, "h1", "h2", 6)
        first.close()
        assert traces(first.run_id) == []
        assert ping(second, "h1", "h2", 4)
        assert ping(second, "h2", "h1", 6)
    assert traces(second.run_id) == []


def test_a_build_that_fails_half_way_is_torn_down(monkeypatch: pytest.MonkeyPatch) -> None:
    add_host = Lab._add_host
    seen: list[str] = []

    def add_then_fail_on_h2(self: Lab, host: Host) -> None:
        seen.append(self.run_id)
        add_host(self, host)  # h2's namespace and veth exist when the failure comes
        if host.name == "h2":
            raise LabError("injected failure")

    monkeypatch.setattr(Lab, "_add_host", add_then_fail_on_h2)
    with pytest.raises(LabError, match="injected"), Lab(3):
        pytest.fail("the build should have failed")
    run_id = seen[0]
    assert traces(run_id) == []
    assert run_id not in {run.run_id for run in list_runs()}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshd.lab", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=Path(__file__).parents[2],
    )


def test_cli_up_keep_list_down() -> None:
    up = run_cli("up", "--hosts", "2", "--keep", "--json")
    assert up.returncode == 0, up.stderr
    run_id = json.loads(up.stdout)["run_id"]
    try:
        listed = json.loads(run_cli("list", "--json").stdout)
        (mine,) = [run for run in listed if run["run_id"] == run_id]
        assert len(mine["namespaces"]) == 3
        assert mine["owner_alive"] is False
        down = run_cli("down", run_id)
        assert down.returncode == 0, down.stderr
        assert traces(run_id) == []
        assert run_cli("down", "not-an-id").returncode == 2
    finally:
        run_cli("down", run_id)


def test_cli_up_tears_down_on_sigterm() -> None:
    run_id = ""
    with subprocess.Popen(
        [sys.executable, "-m", "meshd.lab", "up", "--hosts", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    ) as up:
        assert up.stdout is not None
        assert up.stderr is not None
        try:
            text = ""
            line = ""
            while line != "}\n":  # the end of the indented JSON document
                line = up.stdout.readline()
                assert line, up.stderr.read()
                text += line
            run_id = json.loads(text)["run_id"]
            assert traces(run_id)
            # Wait until it waits, then ask it to stop as a service manager would.
            while "Ctrl-C" not in up.stderr.readline():
                pass
            up.send_signal(signal.SIGTERM)
            assert up.wait(10) == 0
        finally:
            if up.poll() is None:
                up.kill()
            if run_id and up.wait() != 0:
                run_cli("down", run_id)
    assert traces(run_id) == []


def test_down_is_harmless_for_an_unknown_run() -> None:
    down = run_cli("down", "000000")
    assert down.returncode == 0
    assert down.stdout == "000000: removed\n"


def test_sigterm_to_a_process_holding_a_lab_tears_the_lab_down() -> None:
    # ``timeout 60 meshd demo``, a job's time limit, a plain kill: the lab (namespaces,
    # spawned processes in sessions of their own) goes with the process, as on Ctrl-C.
    script = (
        "import time\n"
        "from meshd.lab import Lab\n"
        "with Lab(2) as lab:\n"
        "    sleeper = lab.spawn('h1', ['sleep', '600'])\n"
        "    print(lab.run_id, sleeper.pid, flush=True)\n"
        "    time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert holder.stdout is not None
        run_id, pid = holder.stdout.readline().split()
        assert traces(run_id.decode())
        holder.send_signal(signal.SIGTERM)
        holder.wait(30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert traces(run_id.decode()) == []
    assert not alive(int(pid))
    assert holder.returncode != 0
