"""``meshd up`` runs its daemon without pydantic, in its own process: on the quick path
(meshd/cli/quick_up.py) in the interpreter that read the command line, which never imported
typer; on typer's (a line only typer reads) in a fresh interpreter exec'd in its own place
(meshd/daemon/reexec.py). Either way: same PID and command line, no pydantic in the daemon,
exit statuses as before, the options carried through (here: the listen address and the log
format)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from meshd.daemon import reexec
from tests.daemon.support import FAST, ROOT, _env, free_port, meshd, wait_for


@pytest.mark.parametrize(
    ("extra", "exec_d"),
    [
        ([], False),  # the quick path: one interpreter
        (["--degree", "+6"], True),  # typer reads '+6', the quick path leaves it: re-exec
    ],
)
def test_up_runs_its_daemon_without_pydantic(
    tmp_path: Path, extra: list[str], exec_d: bool
) -> None:
    state_dir = tmp_path / "n0"
    done = meshd("init", "--network", "unitnet", "--name", "n0", "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    port = free_port()
    command = [sys.executable, "-m", "meshd", "up", "--listen", f"/ip4/127.0.0.1/tcp/{port}",
               *FAST, "--state-dir", str(state_dir), "--log-format", "json", *extra]  # fmt: skip
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
        # The environment this program image started with: the pipe's number is in it only
        # when the typer path exec'd a fresh interpreter.
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert any(v.startswith(reexec.ENV.encode() + b"=") for v in environ) == exec_d
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "pydantic_core" not in maps  # typer's parse stayed behind, or never came
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
