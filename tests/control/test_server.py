"""The control server under hostile local clients: idle connections, no file descriptors left."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from meshd.control.client import request
from meshd.control.server import ControlStats, serve
from tests.control.serving import with_server

ROOT = Path(__file__).resolve().parents[2]


async def _echo(cmd: str, args: dict[str, Any]) -> Any:
    return {"cmd": cmd, "args": args}


def _idle(path: Path, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5.0)
        sock.connect(str(path))
        held.append(sock)
    return held


def test_idle_connections_past_the_limit_do_not_lock_a_client_out(tmp_path: Path) -> None:
    path = tmp_path / "meshd.sock"
    stats = ControlStats()
    seen: dict[str, Any] = {}

    def clients() -> None:
        held = _idle(path, 50)
        try:
            time.sleep(0.3)  # let the server accept them all
            seen["open"] = stats.open
            seen["answer"] = request(path, "status", {"n": 1})
            seen["shed"] = stats.shed
        finally:
            for sock in held:
                sock.close()

    with_server(path, _echo, clients, max_connections=8, stats=stats)
    assert seen["answer"] == {"cmd": "status", "args": {"n": 1}}
    assert seen["open"] <= 8 + 1
    assert seen["shed"] >= 50 - 8


def test_a_connection_that_sends_nothing_is_closed_after_the_read_timeout(tmp_path: Path) -> None:
    path = tmp_path / "meshd.sock"
    stats = ControlStats()
    took: list[float] = []

    def client() -> None:
        (sock,) = _idle(path, 1)
        started = time.monotonic()
        assert sock.recv(1) == b""
        took.append(time.monotonic() - started)
        sock.close()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve(
                    path, _echo, read_timeout=0.5, stats=stats, task_status=task_status
                )
            )
            await trio.to_thread.run_sync(client)
            with trio.fail_after(2.0):
                while stats.idle == 0:  # noqa: ASYNC110 (a counter, no event to wait on)
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert 0.4 < took[0] < 3.0
    assert stats.idle == 1
    assert stats.open == 0


_OUT_OF_FDS = textwrap.dedent(
    """
    import logging, os, resource, sys
    from pathlib import Path
    import trio
    from meshd.control.server import serve

    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    path = Path(sys.argv[1])

    async def echo(cmd, args):
        return cmd

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, path, echo)
            # From here on accept() has 20 descriptors left.
            open_now = len(os.listdir("/proc/self/fd"))
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 20, hard))
            print("READY", flush=True)
            await trio.to_thread.run_sync(sys.stdin.readline)  # until the test is done
            nursery.cancel_scope.cancel()
        print("STOPPED", flush=True)

    trio.run(main)
    """
)


def test_accept_out_of_file_descriptors_is_shed_and_the_server_goes_on(tmp_path: Path) -> None:
    # The server's process has 20 descriptors left; 60 idle clients (in this process, which
    # has plenty) wait in its listen queue, so accept() runs out (EMFILE) while they are held.
    # It used to raise out of the server and end it.
    path = tmp_path / "meshd.sock"
    server = subprocess.Popen(
        [sys.executable, "-c", _OUT_OF_FDS, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        assert server.stdin is not None
        assert server.stdout.readline().strip() == "READY"
        held = _idle(path, 60)
        time.sleep(1.0)  # the server meets EMFILE, pauses, tries again
        assert server.poll() is None, "the server ended while out of descriptors"
        for sock in held:
            sock.close()
        # Descriptors free again: the server answers (it may first close idle ones).
        assert request(path, "status", {}, timeout=15.0) == "status"
        server.stdin.write("\n")
        server.stdin.flush()
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, out[-3000:]
    assert "STOPPED" in out
    assert "accept() failed: Too many open files" in out


def test_a_client_waits_for_room_in_a_full_listen_queue(tmp_path: Path) -> None:
    # A unix socket whose listen queue is full refuses connect() at once (EAGAIN); the
    # client retries until its timeout instead of failing with "[Errno 11]".
    from meshd.control.protocol import Response, encode_response
    from meshd.errors import ControlError

    path = str(tmp_path / "busy.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    fillers = []
    while True:
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler.setblocking(False)
        try:
            filler.connect(path)
        except BlockingIOError:
            filler.close()
            break
        fillers.append(filler)
    try:
        with pytest.raises(ControlError, match="accepted no connection within"):
            request(Path(path), "status", {}, timeout=0.3)

        def make_room_then_answer() -> None:
            time.sleep(0.3)
            for _ in fillers:
                listener.accept()[0].close()
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(encode_response(Response(result="ok")))

        helper = threading.Thread(target=make_room_then_answer)
        helper.start()
        assert request(Path(path), "status", {}, timeout=3.0) == "ok"
        helper.join()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
