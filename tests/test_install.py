"""meshd installs like a program: a wheel built from the source, installed into a fresh venv,
gives a ``meshd`` that works outside the repository.

The wheel is built from a copy of the package (so that nothing is written into the work tree)
by pip with build isolation, as ``pipx install .`` does. It is installed with ``--no-deps``
into a fresh venv that sees this venv's site-packages through a ``.pth`` line for its
dependencies: fetching libp2p and the rest from the registry takes minutes, and would test the
registry rather than meshd. The venv's own site-packages come first on sys.path, so ``import
meshd`` there is the wheel's, which the test checks. Then, from a directory outside the
repository: ``meshd --version``, ``meshd config check`` on a good and a bad file, the systemd
units as package data, and a daemon run from a config file that answers ``meshd status``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from meshd import __version__
from tests.daemon.support import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120.0) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result.stdout


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MESHD_"))}
    env["HOME"] = str(home)
    env["MESHD_CONFIG"] = "/dev/null"  # not this machine's /etc/meshd/meshd.toml
    return env


def test_a_built_wheel_installs_a_working_meshd_outside_the_repository(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "meshd", source / "meshd", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = _clean_env(tmp_path)

    started = time.monotonic()
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        outside,
        env,
        timeout=600,
    )
    [wheel] = dist.glob("meshd-*.whl")
    built = time.monotonic() - started

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], outside, env)
    python = venv / "bin" / "python"
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        outside,
        env,
    ).strip()
    Path(site, "meshd-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--ignore-installed",
            str(wheel),
        ],
        outside,
        env,
        timeout=300,
    )
    installed = time.monotonic() - started - built
    print(f"wheel built in {built:.1f} s, installed in {installed:.1f} s")

    meshd = str(venv / "bin" / "meshd")
    assert _run([meshd, "--version"], outside, env) == f"meshd {__version__}\n"
    where = _run([str(python), "-c", "import meshd; print(meshd.__file__)"], outside, env)
    assert where.startswith(site), where
    units = _run(
        [
            str(python),
            "-c",
            "import importlib.resources as r; d = r.files('meshd') / 'data' / 'systemd';"
            "print(sorted(p.name for p in d.iterdir()))",
        ],
        outside,
        env,
    )
    assert "meshd.service" in units
    assert "meshd@.service" in units

    port = free_port()
    state = tmp_path / "node"
    good = outside / "meshd.toml"
    good.write_text(
        f'state_dir = "{state}"\nwg_backend = "none"\nlisten = ["/ip4/127.0.0.1/tcp/{port}"]\n'
    )
    assert _run([meshd, "config", "check", str(good)], outside, env).startswith(f"{good}: ok")
    bad = outside / "bad.toml"
    bad.write_text('wg_backend = "none"\nlisten = [\n')
    result = subprocess.run(
        [meshd, "config", "check", str(bad)], cwd=outside, env=env, capture_output=True, text=True
    )
    assert result.returncode == 78
    assert result.stdout.startswith(f"{bad}:2: TOML syntax")

    _run([meshd, "init", "--network", "installed", "--state-dir", str(state)], outside, env)
    daemon = subprocess.Popen(
        [meshd, "up", "--config", str(good)],
        cwd=outside,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            status = subprocess.run(
                [meshd, "status", "--json", "--state-dir", str(state)],
                cwd=outside,
                env=env,
                capture_output=True,
                text=True,
            )
            if status.returncode == 0:
                break
            assert daemon.poll() is None, daemon.communicate()[1]
            assert time.monotonic() < deadline, status.stderr
            time.sleep(0.2)
        assert json.loads(status.stdout)["network"] == "installed"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
