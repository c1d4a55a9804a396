"""The datagrams that start handshakes go out once the round that created the peers has let
go of what only it needed: its device read and its operations (at a start from the store,
~2 operations a member, held while ~1,000 datagrams were sent one by one)."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from meshd.daemon import wireguard
from meshd.wg.backend_none import NullBackend
from meshd.wg.model import DeviceState, RemovePeer, UpdatePeer
from tests.mesh import shell_support
from tests.mesh.shell_support import run
from tests.mesh.support import member


def _round_objects(value: Any) -> bool:
    if isinstance(value, DeviceState):
        return True
    items = value if isinstance(value, list | tuple) else ()
    return any(isinstance(v, UpdatePeer | RemovePeer | list) for v in items)


def test_new_peers_are_poked_with_nothing_of_their_round_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    members = [member(n) for n in range(1, 40)]
    sent: list[list[Any]] = []
    callers: list[str] = []
    held: list[tuple[str, str]] = []

    async def send_pokes(targets: list[Any]) -> None:
        sent.append(list(targets))
        frame: types.FrameType | None = sys._getframe(1)
        while frame is not None and "reconcile" not in callers:  # the mesh's frames
            callers.append(frame.f_code.co_name)
            held.extend(
                (frame.f_code.co_name, name)
                for name, value in frame.f_locals.items()
                if _round_objects(value)
            )
            frame = frame.f_back

    monkeypatch.setattr(wireguard, "send_pokes", send_pokes)
    mesh, backend = shell_support.make_mesh(NullBackend, members, "mpoke0", keepalive=None)
    mesh._poke = True

    async def main() -> None:
        assert await mesh.reconcile()  # every peer created, with its endpoint
        assert await mesh.reconcile()  # nothing to do: nothing sent

    run(main)
    assert len(backend.state.peers) == len(members)
    assert len(sent) == 1
    assert sorted(sent[0]) == sorted(m.overlay for m in members)
    assert "reconcile" in callers
    assert held == []
