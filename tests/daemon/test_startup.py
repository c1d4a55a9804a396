"""Safe start-up and stopping, with real daemons: each failure is one line and its exit status,
and a daemon that fails to start touches nothing of another's."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.daemon.startup import interface_taken
from tests.daemon.support import FAST, ROOT, Daemon, _env, daemons, free_port, meshd, wait_for

pytestmark = pytest.mark.timeout(180)


def the_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("meshd: ")]
    assert "Traceback" not in err
    assert lines, err
    return lines[-1]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Daemon]:
    with daemons(tmp_path, "alpha") as (alpha,):
        alpha.init()
        alpha.up()
        yield alpha


def test_a_second_daemon_for_the_same_state_dir_fails_and_leaves_the_first_alone(
    running: Daemon,
) -> None:
    before = running.ask("status")
    done = meshd(
        "up",
        "--listen",
        f"/ip4/127.0.0.1/tcp/{free_port()}",
        *FAST,
        "--state-dir",
        str(running.state_dir),
    )
    assert done.returncode == 4
    assert running.process is not None
    assert the_line(done.stderr) == (
        f"meshd: a meshd daemon already runs for {running.state_dir} (pid {running.process.pid}); "
        f"stop it first (`meshd down --state-dir {running.state_dir}`), or use another --state-dir"
    )
    # Before the lock, nothing: no store loaded, no WireGuard line, no socket replaced.
    assert "loaded" not in done.stderr
    assert "WireGuard" not in done.stderr
    after = running.ask("status")
    assert after["node_id"] == before["node_id"]
    assert after["listen_addrs"] == before["listen_addrs"]


def test_a_second_daemon_on_a_port_in_use_fails_at_start(running: Daemon, tmp_path: Path) -> None:
    other = Daemon("beta", tmp_path / "beta", port=running.port)
    other.init()
    done = meshd("up", "--listen", other.listen, *FAST, "--state-dir", str(other.state_dir))
    assert done.returncode == 6
    assert the_line(done.stderr) == (
        f"meshd: --listen {other.listen}: TCP port {running.port} is already in use; stop what "
        "listens there (see `ss -ltnp`), or choose another port"
    )
    running.ask("status")


def test_the_listen_port_is_not_shared(running: Daemon) -> None:
    """py-libp2p listens with SO_REUSEPORT: another socket asking for it shared the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as intruder:
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError, match="in use") as refused:
            intruder.bind(("127.0.0.1", running.port))
        assert refused.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize("any_port", [False, True], ids=["a-port", "port-0"])
def test_an_address_this_host_lacks_is_a_start_up_error(tmp_path: Path, any_port: bool) -> None:
    """Port 0 as well: before, its address was not tried until libp2p listened, after the
    WireGuard interface was set up, and libp2p's own error line came first."""
    node = Daemon("gamma", tmp_path / "gamma")
    node.init()
    port = 0 if any_port else node.port
    listen = f"/ip4/192.0.2.1/tcp/{port}"  # TEST-NET-1: on no interface here
    done = meshd("up", "--listen", listen, *FAST, "--state-dir", str(node.state_dir))
    assert done.returncode == 6
    assert the_line(done.stderr) == (
        f"meshd: --listen {listen}: this host has no such address; use one of its addresses "
        "(`ip addr`), or 0.0.0.0 for all"
    )
    assert "listening on" not in done.stderr
    assert "WireGuard" not in done.stderr  # checked before anything was set up
    assert "libp2p" not in done.stderr


def test_the_kernel_backend_without_its_module(tmp_path: Path) -> None:
    from meshd.wg.backend_kernel import kernel_module_available

    if kernel_module_available():
        pytest.skip("this kernel has the wireguard module")
    node = Daemon("delta", tmp_path / "delta")
    node.init()
    done = meshd(
        "up", "--listen", node.listen, "--wg-backend", "kernel", "--state-dir", str(node.state_dir)
    )
    assert done.returncode == 7
    assert the_line(done.stderr).startswith(
        "meshd: the kernel has no WireGuard module; use a kernel with the wireguard module"
    )


# --- as root, with wireguard-go -----------------------------------------------------------

needs_wireguard = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("wireguard-go") is None,
    reason="needs root and wireguard-go",
)


def _ifname(tag: str) -> str:
    return f"mst{tag}{os.getpid() % 10000}"


def _link_exists(name: str) -> bool:
    return (
        subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode
        == 0
    )


@pytest.mark.root
@needs_wireguard
def test_the_wireguard_port_in_use_fails_before_the_interface_exists(tmp_path: Path) -> None:
    node = Daemon("eps", tmp_path / "eps")
    node.init()
    ifname = _ifname("u")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        done = meshd(
            "up",
            "--listen",
            node.listen,
            "--wg-backend",
            "userspace",
            "--interface",
            ifname,
            "--listen-port",
            str(port),
            "--state-dir",
            str(node.state_dir),
        )
    assert done.returncode == 6
    assert the_line(done.stderr) == (
        f"meshd: WireGuard's UDP port {port} is already in use; choose another --listen-port, "
        f"or stop what uses it (`ss -ulpn 'sport = :{port}'`)"
    )
    assert not _link_exists(ifname)


@pytest.mark.root
@needs_wireguard
def test_without_cap_net_admin(tmp_path: Path) -> None:
    node = Daemon("zeta", tmp_path / "zeta")
    node.init()
    ifname = _ifname("c")
    done = subprocess.run(
        [
            "setpriv",
            "--bounding-set",
            "-net_admin",
            sys.executable,
            "-m",
            "meshd",
            "up",
            "--listen",
            node.listen,
            "--wg-backend",
            "userspace",
            "--interface",
            ifname,
            "--state-dir",
            str(node.state_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=_env(),
        cwd=ROOT,
    )
    assert done.returncode == 5
    assert the_line(done.stderr) == (
        "meshd: creating the WireGuard interface needs root or CAP_NET_ADMIN; run as root, or "
        "with CAP_NET_ADMIN (the systemd unit grants it), or with --wg-backend none for "
        "membership only"
    )
    assert not _link_exists(ifname)


@pytest.mark.root
@needs_wireguard
def test_an_interface_another_process_serves_is_left_alone(tmp_path: Path) -> None:
    ifname = _ifname("o")
    other = subprocess.Popen(
        ["wireguard-go", ifname],
        env={**os.environ, "WG_PROCESS_FOREGROUND": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock = Path(f"/var/run/wireguard/{ifname}.sock")
    try:
        wait_for(sock.exists, 10, "wireguard-go's socket")
        node = Daemon("eta", tmp_path / "eta")
        node.init()
        done = meshd(
            "up",
            "--listen",
            node.listen,
            "--wg-backend",
            "userspace",
            "--interface",
            ifname,
            "--state-dir",
            str(node.state_dir),
        )
        assert done.returncode == 4
        assert the_line(done.stderr) == (
            f"meshd: interface {ifname} is already run by another process ({sock} answers); "
            "choose another --interface, or stop the process that runs it"
        )
        assert other.poll() is None
        assert sock.exists()
        assert _link_exists(ifname)
    finally:
        other.terminate()
        other.wait(10)


@pytest.mark.root
@needs_wireguard
def test_wireguard_go_failing_to_start(tmp_path: Path) -> None:
    """wireguard-go that exits at once (as it does without /dev/net/tun): exit 7, one line."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "wireguard-go").write_text("#!/bin/sh\nexit 1\n")
    (fake / "wireguard-go").chmod(0o755)
    node = Daemon("theta", tmp_path / "theta")
    node.init()
    ifname = _ifname("f")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshd",
            "up",
            "--listen",
            node.listen,
            "--wg-backend",
            "userspace",
            "--interface",
            ifname,
            "--listen-port",
            str(free_port()),
            "--state-dir",
            str(node.state_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=ROOT,
        env={**_env(), "PATH": f"{fake}:{os.environ['PATH']}"},
    )
    assert done.returncode == 7
    assert the_line(done.stderr) == (
        f"meshd: wireguard-go for {ifname} exited with 1; run `wireguard-go -f {ifname}` as root "
        "to see why"
    )
    assert not _link_exists(ifname)


# --- stopping ------------------------------------------------------------------------------


def test_down_stops_the_daemon_and_waits_for_it(running: Daemon) -> None:
    started = time.monotonic()
    done = meshd("down", "--state-dir", str(running.state_dir))
    assert done.returncode == 0, done.stderr
    assert running.process is not None
    # Its lock is free, so its interface and socket are gone; the process ends just after.
    assert running.process.wait(5) == 0
    assert time.monotonic() - started < 15
    assert not (running.state_dir / "meshd.sock").exists()
    again = meshd("down", "--state-dir", str(running.state_dir))
    assert again.returncode == 3


def test_ctrl_c_stops_the_daemon_with_130(running: Daemon) -> None:
    assert running.stop(signal.SIGINT) < 10
    assert running.process is not None
    assert running.process.returncode == 130
    assert running.log.read_text().rstrip().splitlines()[-1] == "meshd: interrupted"


def test_a_revoked_node_stops_with_one_line_and_status_says_why(tmp_path: Path) -> None:
    with daemons(tmp_path, "root", "lost") as (root, lost):
        root.init()
        root.up()
        lost.join(root.invite())
        wait_for(lambda: root.states().get("lost") == "admitted", 30, "lost admitted")
        done = meshd(
            "revoke", "lost", "--reason", "laptop stolen", "--state-dir", str(root.state_dir)
        )
        assert done.returncode == 0, done.stderr
        assert lost.process is not None
        lost.process.wait(30)
        assert lost.process.returncode == 10
        line = (
            "meshd: this node is revoked (laptop stolen); its daemon stopped; ask an admin of the "
            "network for a new invite and join again with another --state-dir"
        )
        assert lost.log.read_text().rstrip().splitlines()[-1] == line
        status = meshd("status", "--state-dir", str(lost.state_dir))
        assert (status.returncode, status.stderr.strip()) == (10, line)
        row = root.peers()["lost"]
        assert row["state"] == "revoked"
        assert row["revocation_reason"] == "laptop stolen"
        peers = meshd("peers", "--state-dir", str(root.state_dir))
        assert "revoked (laptop stolen)" in peers.stdout


def test_an_interface_that_exists_is_refused_and_only_a_tunnel_is_offered_for_deletion(
    tmp_path: Path,
) -> None:
    for name, kind in (("eth0", "1\n"), ("lo", "772\n"), ("ib0", "32\n"), ("meshd0", "65534\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "type").write_text(kind)
    nic = interface_taken("eth0", tmp_path).one_line()
    assert nic.startswith("network interface eth0 already exists: it is an Ethernet interface")
    assert "ip link del" not in nic  # never offered for a NIC
    assert "choose another --interface" in nic
    assert "the loopback interface" in interface_taken("lo", tmp_path).one_line()
    assert "not a tunnel (link type 32)" in interface_taken("ib0", tmp_path).one_line()
    for leftover in ("meshd0", "unreadable"):  # a tunnel, or nothing known: as a leftover
        line = interface_taken(leftover, tmp_path).one_line()
        assert f"`ip link del {leftover}`" in line
        assert "left over from a meshd that crashed" in line
