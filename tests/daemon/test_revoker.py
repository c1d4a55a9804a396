"""``meshd revoke`` done by the running daemon: who may have it sign, and what it tells.

The daemon signs with the state dir's root or admin key only for a caller that could read the
key file itself (root or its owner), as the control socket tells it (SO_PEERCRED).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

from meshd.control.client import request
from meshd.control.server import caller_uid, serve
from meshd.daemon.revoker import may_sign


def test_only_root_or_the_key_files_owner_may_have_the_daemon_sign(tmp_path: Path) -> None:
    key = tmp_path / "root.key"
    key.write_bytes(b"k")
    os.chown(key, 4242, 4242)
    assert may_sign(0, key)
    assert may_sign(4242, key)
    assert not may_sign(4243, key)
    assert not may_sign(None, key)  # the kernel did not say who asks
    assert not may_sign(4242, tmp_path / "absent.key")


def test_the_control_server_tells_a_handler_who_asks(tmp_path: Path) -> None:
    path = tmp_path / "meshd.sock"
    seen: dict[str, Any] = {}

    async def handler(cmd: str, args: dict[str, Any]) -> Any:
        return {"uid": caller_uid()}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: serve(path, handler, task_status=task_status))
            seen["answer"] = await trio.to_thread.run_sync(request, path, "who", {})
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert seen["answer"] == {"uid": os.getuid()}
    assert caller_uid() is None  # outside a request
