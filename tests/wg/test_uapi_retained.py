"""What a device read holds on to: no piece of a reply already parsed while the next one is
awaited, no copy of the piece it parses, and for a peer read otherwise than expected, what
it shares with the expected one."""

from __future__ import annotations

import copy
import pickle
import tracemalloc
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from meshd.trust.keys import WgKey
from meshd.wg.model import DeviceState, PeerStatus
from meshd.wg.uapi import UapiClient
from meshd.wg.uapi_reply import GetReplyParser, parse_get_reply_untrusted
from tests.wg.test_uapi_expected import peers, reply_of


def _frames(coro: Any) -> list[types.FrameType]:
    """The frames of a suspended task, outermost first (coroutines awaiting coroutines)."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def test_a_get_in_flight_holds_no_piece_of_the_reply_it_has_parsed(tmp_path: Path) -> None:
    """A read of 10,000 peers is ~4 MB, taken in pieces of up to 64 KiB: while the next piece
    is awaited the last one is parsed already and not kept (it was, in the loop's frame)."""
    reply = reply_of(peers(300))
    half = reply.index(b"public_key=", len(reply) // 2)
    go_on = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            while b"\n\n" not in await stream.receive_some(65536):
                pass
            await stream.send_all(reply[:half])
            await go_on.wait()
            await stream.send_all(reply[half:])

    async def main() -> None:
        path = str(tmp_path / "wg0.sock")
        listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await listener.bind(path)
        listener.listen()
        client = UapiClient(path)
        states: list[DeviceState] = []
        tasks: list[trio.lowlevel.Task] = []

        async def get() -> None:
            tasks.append(trio.lowlevel.current_task())
            states.append(await client.get())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, handler, [trio.SocketListener(listener)])
            nursery.start_soon(get)
            await trio.sleep(0.2)  # the first half read and parsed; the rest awaited
            frames = _frames(tasks[0].coro)
            held = [
                value
                for frame in frames
                for value in frame.f_locals.values()
                if isinstance(value, bytes | bytearray) and len(value) > 1000
            ]
            assert any(f.f_code.co_name == "_exchange_unbounded" for f in frames)
            assert held == []
            go_on.set()
            await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
        assert states == [parse_get_reply_untrusted(reply)]

    trio.run(main)


def test_a_peer_whose_keepalive_alone_differs_shares_the_expected_texts(
    tmp_path: Path,
) -> None:
    """A first round's peers are created without their keepalive (set at the next round):
    read back, each is a configuration of its own, its endpoint and allowed-ips the very
    objects the expected one holds."""
    expected = peers(20)
    device = {k: replace(c, persistent_keepalive=None) for k, c in expected.items()}
    state = parse_get_reply_untrusted(reply_of(device), expected=expected)
    assert len(state.peers) == 20
    for peer in state.peers:
        want = expected[WgKey(peer.public_key)]
        assert peer.config == device[WgKey(peer.public_key)]
        assert peer.config.endpoint is want.endpoint
        assert peer.config.same_nets(want)
        assert peer.public_key is want.public_key
    # A peer that roamed holds the device's text.
    roamed = {k: replace(c, endpoint="203.0.113.9:4000") for k, c in expected.items()}
    moved = parse_get_reply_untrusted(reply_of(roamed), expected=expected)
    assert {p.config.endpoint for p in moved.peers} == {"203.0.113.9:4000"}
    assert all(isinstance(p, PeerStatus) for p in moved.peers)


def test_a_piece_of_a_reply_is_read_where_it_is_not_copied() -> None:
    """A piece that ends the line the last one left unfinished is read in place: it was
    copied whole (64 KiB more) to join the two while it was parsed."""
    expected = peers(300)
    reply = reply_of(expected)
    for first in (0, 1000):  # a piece that starts the reply, or one after a cut line
        parser = GetReplyParser(expected=expected)
        parser.receive_untrusted(reply[:first])
        piece = reply[first : first + 65536]
        tracemalloc.start()
        try:
            parser.receive_untrusted(piece)
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - kept < len(piece)
    rest = parser.receive_untrusted(reply[first + 65536 :])
    assert rest
    assert parser.finish() == parse_get_reply_untrusted(reply)


def test_every_reader_of_a_state_shares_one_table_of_its_peers_by_key() -> None:
    # A round, the punching step, a handshake check and a view each asked a state read once
    # for its peers by key, and each got a table of its own (~0.3 MB at 10,000 peers).
    state = parse_get_reply_untrusted(reply_of(peers(50)))
    table = state.peers_by_key()
    assert table == state.peers_by_key()
    first = state.peers[0].public_key
    assert table.get(first) is state.peers_by_key().get(first)
    assert state._by_key is not None  # made once, kept with the state
    kept = state._by_key
    state.peers_by_key()
    assert state._by_key is kept
    assert list(table) == [p.public_key for p in state.peers]
    assert all(table[p.public_key] is p for p in state.peers)
    with pytest.raises(TypeError):  # no reader changes the table every other reader shares
        table[b"\x00" * 32] = state.peers[0]  # type: ignore[index]
    assert state == replace(state)
    assert hash(state) == hash(replace(state))
    assert copy.deepcopy(state) == state  # a value still: copied and pickled as one
    assert pickle.loads(pickle.dumps(state)) == state
    assert replace(state, peers=state.peers[:1]).peers_by_key().keys() == {
        state.peers[0].public_key
    }
