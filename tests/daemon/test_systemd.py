"""meshd under systemd: READY=1 once the node serves, STOPPING=1 at shutdown (a real
``meshd up`` with a NOTIFY_SOCKET); the shipped units verify with systemd-analyze."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.control.client import request
from tests.daemon.support import FAST, ROOT, free_port, meshd


def _receive(sock: socket.socket, timeout: float) -> dict[str, str]:
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield sock, str(path)
    finally:
        sock.close()


def test_up_says_ready_once_it_serves_and_stopping_when_it_stops(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    state_dir = tmp_path / "n0"
    done = meshd("init", "--network", "unitnet", "--name", "n0", "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": path, "MESHD_LOG": "INFO"}
    env["WATCHDOG_USEC"] = "400000"  # WatchdogSec=0.4s: WATCHDOG=1 every 0.2 s
    env.pop("MESHD_STATE_DIR", None)
    log = (tmp_path / "n0.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "meshd", "up", "--listen", f"/ip4/127.0.0.1/tcp/{port}", *FAST,
         "--state-dir", str(state_dir)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        ready = _receive(sock, 60)
        # The first word to systemd is READY=1, and by then the node serves: the control
        # socket answers and the gossip side accepts connections.
        assert ready["READY"] == "1", ready
        assert ready["MAINPID"] == str(process.pid)
        view = request(state_dir / "meshd.sock", "status", {}, timeout=5.0)
        with socket.create_connection(("127.0.0.1", port), timeout=5.0):
            pass
        assert ready["STATUS"] == "1 members admitted, 0 connected"
        assert view["members"] == 1

        # The event loop feeds the watchdog while it runs.
        pings = 0
        while pings < 5:
            message = _receive(sock, 2)
            assert "READY" not in message
            pings += message.get("WATCHDOG") == "1"

        process.send_signal(signal.SIGTERM)
        stopping = _receive(sock, 10)
        while "STOPPING" not in stopping:  # a STATUS= or WATCHDOG= may come first
            assert "READY" not in stopping
            stopping = _receive(sock, 10)
        assert stopping["STOPPING"] == "1"
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        log.close()


UNITS = ROOT / "meshd" / "data" / "systemd"
HARDENING = {
    "CapabilityBoundingSet": "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelModules": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "DevicePolicy": "closed",
    "DeviceAllow": "/dev/net/tun rw",
}


def unit_settings(path: Path) -> dict[str, str]:
    settings = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


@pytest.mark.parametrize("name", ["meshd.service", "meshd@.service"])
def test_the_units_run_meshd_up_as_a_notify_service_with_hardening(name: str) -> None:
    unit = unit_settings(UNITS / name)
    assert unit["Type"] == "notify"
    assert unit["ExecStart"].startswith("/usr/bin/meshd up")  # the check's sed rewrites it
    assert unit["Restart"] == "on-failure"
    assert unit["StateDirectory"].startswith("meshd")
    for key, value in HARDENING.items():
        assert unit[key] == value, key
    # The watchdog is fed at half of WatchdogSec from the event loop (meshd.daemon.notify).
    assert unit["WatchdogSec"].endswith("s")


def test_the_template_gives_each_instance_its_state_config_and_interface() -> None:
    unit = unit_settings(UNITS / "meshd@.service")
    assert unit["StateDirectory"] == "meshd/%i"
    start = unit["ExecStart"].split()
    assert start[start.index("--state-dir") + 1] == "/var/lib/meshd/%i"
    assert start[start.index("--config") + 1] == "/etc/meshd/%i.toml"
    assert start[start.index("--interface") + 1] == "%i"


def test_the_units_are_in_the_package_data() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["meshd"]
    shipped = {p.name for pattern in patterns for p in (ROOT / "meshd").glob(pattern)}
    assert {"meshd.service", "meshd@.service"} <= shipped


@pytest.mark.parametrize("name", ["meshd.service", "meshd@.service", "meshd@office.service"])
def test_systemd_analyze_verifies_the_units(tmp_path: Path, name: str) -> None:
    # No skip: scripts/setup.sh installs systemd, so a missing systemd-analyze is a failure.
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: run scripts/setup.sh as root"
    executable = shutil.which("meshd") or str(Path(sys.executable).parent / "meshd")
    assert Path(executable).exists(), "no meshd executable: pip install -e . first"
    source = UNITS / ("meshd@.service" if "@" in name else name)
    text = re.sub(r"(?m)^ExecStart=\S*meshd", f"ExecStart={executable}", source.read_text())
    unit = tmp_path / name
    unit.write_text(text)
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # verify reports unknown or misspelt settings on stderr without failing: none here.
    assert done.stderr.strip() == "", done.stderr
