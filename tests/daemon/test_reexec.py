"""``meshd up`` runs its daemon in a fresh interpreter in its own place (meshd/daemon/reexec.py):
same PID and command line, no pydantic (which typer's parse loaded) in the daemon, exit
statuses as before, the options carried across (here: the listen address and the log format)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from meshd.daemon import reexec
from tests.daemon.support import FAST, ROOT, _env, free_port, meshd, wait_for


def test_up_replaces_itself_with_a_daemon_without_pydantic(tmp_path: Path) -> None:
    state_dir = tmp_path / "n0"
    done = meshd("init", "--network", "unitnet", "--name", "n0", "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    port = free_port()
    command = [sys.executable, "-m", "meshd", "up", "--listen", f"/ip4/127.0.0.1/tcp/{port}",
               *FAST, "--state-dir", str(state_dir), "--log-format", "json"]  # fmt: skip
    log_path = tmp_path / "n0.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT
        )
    try:
        wait_for(lambda: "meshd up: node" in log_path.read_text(), 60, "meshd up")
        pid = process.pid
        assert (state_dir / "meshd.lock").read_text().strip() == str(pid)  # the same process
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        assert [part.decode() for part in cmdline[1:]] == command[1:]
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "pydantic_core" not in maps  # typer's parse stayed behind
        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line]
        assert all(line["level"] in ("info", "warning") for line in lines)
        up = next(line for line in lines if "meshd up: node" in line["message"])
        assert f"/tcp/{port}/p2p/" in up["message"]  # the options crossed the exec
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130  # interrupted, as before
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_up_called_in_process_runs_in_place() -> None:
    # pytest is not `meshd up`: up() called in-process (the CLI tests) never execs.
    assert not reexec.started_as_up()
    assert not reexec.passed()


def test_trio_is_imported_without_ldconfig() -> None:
    # trio's thread cache looks libpthread up at import (ctypes.util.find_library runs
    # `ldconfig -p`); the daemon's import names glibc's library instead, and trio still names
    # its worker threads. Any subprocess during the import fails this test.
    code = """
import ctypes.util, subprocess, sys
def refuse(*args, **kwargs):
    raise AssertionError("a subprocess ran during trio's import")
subprocess.Popen = refuse
from meshd.daemon.reexec import import_trio
import_trio()
from trio._core import _thread_cache
assert _thread_cache.set_os_thread_name is not None
assert ctypes.util.find_library.__module__ == "ctypes.util"  # put back
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_collector_is_paused_until_wireguard_is_programmed(tmp_path: Path) -> None:
    # The daemon makes ~1M objects at a 10,000-member start; the collector walked them all
    # again and again (meshd/daemon/launch.py). Paused for the start, running once started.
    code = f"""
import gc, logging, trio
from pathlib import Path
from meshd.daemon.config import DaemonConfig
from meshd.daemon.launch import run
from meshd.node.statedir import NodeDir
seen = []
class Watch(logging.Handler):
    def emit(self, record):
        if "loaded " in record.getMessage():
            seen.append(("loaded", gc.isenabled()))
logging.getLogger("meshd").addHandler(Watch())
logging.getLogger("meshd").setLevel(logging.INFO)
async def main():
    node = NodeDir.open(Path({str(tmp_path / "n0")!r}))
    config = DaemonConfig(state_dir=node.paths.root, listen=("/ip4/127.0.0.1/tcp/0",))
    async with trio.open_nursery() as nursery:
        await nursery.start(run, config, node)
        seen.append(("started", gc.isenabled()))
        nursery.cancel_scope.cancel()
    seen.append(("stopped", gc.isenabled()))
trio.run(main)
print(seen)
"""
    done = meshd(
        "init", "--network", "unitnet", "--name", "n0", "--state-dir", str(tmp_path / "n0")
    )
    assert done.returncode == 0, done.stderr
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == str([("loaded", False), ("started", True), ("stopped", True)])
