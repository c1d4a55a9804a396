"""The UAPI client against a fake device: a trio unix-socket server in the test."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio

from meshd.trust.keys import WgKey
from meshd.wg.errors import UapiConnectionError, UapiDecodeError, UapiErrnoError, UapiError
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus, UpdatePeer
from meshd.wg.reconcile import apply_operations, plan
from meshd.wg.uapi import UapiClient
from meshd.wg.uapi_reply import encode_errno_reply, encode_get_reply
from meshd.wg.uapi_request import parse_set_request_untrusted
from meshd.wg.uapi_syntax import Dialect

Handler = Callable[[bytes], Awaitable[bytes | None]]
KEYS = [WgKey(bytes([n]) * 32) for n in range(1, 4)]


async def _serve_one(handler: Handler, stream: trio.SocketStream) -> None:
    async with stream:
        request = b""
        while b"\n\n" not in request:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            request += chunk
        reply = await handler(request)
        if reply is not None:
            await stream.send_all(reply)


def run_against(path: Path, handler: Handler, client_side: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(str(path))
        sock.listen()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                trio.serve_listeners, partial(_serve_one, handler), [trio.SocketListener(sock)]
            )
            await client_side()
            nursery.cancel_scope.cancel()

    trio.run(main)


class FakeDevice:
    """Applies set requests with WireGuard's semantics; can fail one request half way."""

    def __init__(self, fail_at_op: int | None = None) -> None:
        self.state = DeviceState()
        self.fail_at_op = fail_at_op
        self.sets = 0

    async def __call__(self, request: bytes) -> bytes:
        if request == b"get=1\n\n":
            return encode_get_reply(self.state)
        self.sets += 1
        for index, op in enumerate(parse_set_request_untrusted(request)):
            if index == self.fail_at_op and isinstance(op, UpdatePeer):
                # Like wireguard-go with a bad allowed_ip: the peer exists, the rest is lost.
                self.fail_at_op = None
                partial_op = replace(op, replace_allowed_ips=False, allowed_ips=())
                self.state = apply_operations(self.state, [partial_op])
                return encode_errno_reply(22)
            self.state = apply_operations(self.state, [op])
        return encode_errno_reply(0)


def test_failed_set_then_reread_converges(tmp_path: Path) -> None:
    path = tmp_path / "wg0.sock"
    device = FakeDevice(fail_at_op=1)
    desired = {
        key: PeerConfig(key, f"192.0.2.{n}:51820", (ipaddress.ip_network(f"10.{n}.0.0/16"),))
        for n, key in enumerate(KEYS, start=1)
    }

    async def client_side() -> None:
        client = UapiClient(str(path))
        previous: dict[WgKey, PeerConfig] | None = None
        errnos = []
        for _ in range(3):
            try:
                await client.set(plan(desired, await client.get(), previous))
            except UapiErrnoError as exc:
                errnos.append(exc.errno)
                continue  # re-read and plan again
            previous = desired
        assert errnos == [22]
        final = await client.get()
        assert final.peer_configs() == desired
        assert plan(desired, final, previous) == []

    run_against(path, device, client_side)
    assert device.sets == 2  # the failed one and the one that finished the job


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"errno=-22\n\n", UapiErrnoError),  # wireguard-go
        (b"errno=22\n\n", UapiErrnoError),  # boringtun
        (b"listen_port=1\n", UapiDecodeError),  # truncated, then closed
        (b"\x00\xffgarbage\n\n", UapiDecodeError),
        (b"listen_port=1\nerrno=0\n\n", UapiDecodeError),  # a set reply with content
        (None, UapiConnectionError),  # closed with no reply (unknown operation)
    ],
)
def test_set_error_replies(tmp_path: Path, reply: bytes | None, error: type[UapiError]) -> None:
    async def handler(request: bytes) -> bytes | None:
        return reply

    async def client_side() -> None:
        with pytest.raises(error) as info:
            await UapiClient(str(tmp_path / "s")).set([UpdatePeer(KEYS[0])])
        if isinstance(info.value, UapiErrnoError):
            assert info.value.errno == 22

    run_against(tmp_path / "s", handler, client_side)


def test_boringtun_reply(tmp_path: Path) -> None:
    async def handler(request: bytes) -> bytes:
        assert request == b"get=1\n\n"
        return (
            b"own_public_key=" + KEYS[2].hex().encode() + b"\nlisten_port=51820\n"
            b"public_key=" + KEYS[0].hex().encode() + b"\nendpoint=[::1]:7\n"
            b"allowed_ip=fd00::/64\nlast_handshake_time_sec=5\nlast_handshake_time_nsec=0\n"
            b"rx_bytes=1\ntx_bytes=2\nerrno=0\n\n"
        )

    async def client_side() -> None:
        client = UapiClient(str(tmp_path / "b"), dialect=Dialect.BORINGTUN, clock=lambda: 100.0)
        state = await client.get()
        assert state.public_key == KEYS[2]
        (peer,) = state.peers
        assert peer.last_handshake == 95.0
        assert peer.config.endpoint == "[::1]:7"

    run_against(tmp_path / "b", handler, client_side)


def test_timeout_and_missing_socket(tmp_path: Path) -> None:
    async def silent(request: bytes) -> None:
        await trio.sleep_forever()

    async def client_side() -> None:
        client = UapiClient(str(tmp_path / "t"), timeout=0.05)
        with pytest.raises(UapiConnectionError, match="no reply within"):
            await client.get()
        with pytest.raises(UapiConnectionError, match="cannot connect") as info:
            await UapiClient(str(tmp_path / "absent")).get()
        assert "interface up" in info.value.one_line()

    run_against(tmp_path / "t", silent, client_side)


def test_a_sets_deadline_grows_with_the_peers_it_carries(tmp_path: Path) -> None:
    """wireguard-go may take ~0.5 ms a peer inside a set (a keepalive makes a handshake
    initiation): a set of many peers gets longer than the base deadline, a get does not."""

    async def slow(request: bytes) -> bytes:
        if request.count(b"public_key=") < 100:
            await trio.sleep_forever()  # the client gives up first
        await trio.sleep(0.3)
        return b"errno=0\n\n"

    async def client_side() -> None:
        client = UapiClient(str(tmp_path / "d"), timeout=0.1, set_timeout_per_peer=0.01)
        with pytest.raises(UapiConnectionError, match=r"no reply within 0\.11 s"):
            await client.set([UpdatePeer(KEYS[0])])  # 0.1 s + 1 peer
        with pytest.raises(UapiConnectionError, match=r"no reply within 0\.1 s"):
            await client.get()
        await client.set([UpdatePeer(bytes([1, n]) + bytes(30)) for n in range(100)])  # 1.1 s

    run_against(tmp_path / "d", slow, client_side)


def test_a_reply_that_came_while_this_process_was_busy_is_taken(tmp_path: Path) -> None:
    """The device answers within the deadline, but the event loop is busy elsewhere (a
    synchronous pass) until after it: the reply is there, so the set succeeded. It was
    refused as "no reply within 5 s" when a long pass in the daemon outlasted the deadline."""
    path = str(tmp_path / "busy")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()

    def device() -> None:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\n\n" not in request:
                request += conn.recv(65536)
            time.sleep(0.05)  # within the client's 0.1 s
            conn.sendall(b"errno=0\n\n")

    thread = threading.Thread(target=device, daemon=True)
    thread.start()

    async def main() -> None:
        client = UapiClient(path, timeout=0.1, set_timeout_per_peer=0.0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.set, [UpdatePeer(KEYS[0])])
            await trio.sleep(0.02)  # the client waits for the reply
            time.sleep(0.3)  # noqa: ASYNC251  # the loop busy past the deadline

    try:
        trio.run(main)
    finally:
        thread.join(5)
        listener.close()


def test_a_reply_is_read_in_pieces_of_at_most_16_kib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 KiB at 9cc260b: a piece read waits for the event loop, in hand, while other work
    # runs (two reads at a time held ~130 bytes a member at 1,000)
    peers = [PeerStatus(PeerConfig(bytes([n % 251 + 1, n // 251]) * 16)) for n in range(600)]
    reply = encode_get_reply(DeviceState(peers=tuple(peers)))
    assert len(reply) > 4 * 16384
    asked: list[int | None] = []
    real = trio.SocketStream.receive_some

    async def receive_some(self: trio.SocketStream, max_bytes: int | None = None) -> bytes:
        if not self.socket.getsockname():  # the client's end (the server's is bound)
            asked.append(max_bytes)
        return await real(self, max_bytes)

    async def handler(request: bytes) -> bytes:
        return reply

    read: list[DeviceState] = []

    async def client() -> None:
        monkeypatch.setattr(trio.SocketStream, "receive_some", receive_some)
        read.append(await UapiClient(str(tmp_path / "wg.sock")).get())
        monkeypatch.undo()

    run_against(tmp_path / "wg.sock", handler, client)
    assert len(read[0].peers) == len(peers)
    assert asked
    assert max(n or 0 for n in asked) <= 16384


# --- a set prepared here and sent from a worker thread (meshd.daemon.kept_peers) -----------


def _from_a_thread(send: Callable[[], None]) -> Awaitable[None]:
    return trio.to_thread.run_sync(send)


def test_a_prepared_set_sent_from_a_thread_applies_the_request(tmp_path: Path) -> None:
    device = FakeDevice()
    ops = [UpdatePeer(key, endpoint="192.0.2.1:51820") for key in KEYS]

    async def client_side() -> None:
        send = UapiClient(str(tmp_path / "p")).prepared_set(ops)
        await _from_a_thread(send)
        assert {p.public_key for p in device.state.peers} == set(KEYS)
        await _from_a_thread(UapiClient(str(tmp_path / "p")).prepared_set([]))  # sends nothing

    run_against(tmp_path / "p", device, client_side)
    assert device.sets == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"errno=-22\n\n", UapiErrnoError),
        (b"\x00\xffgarbage\n\n", UapiDecodeError),
        (None, UapiConnectionError),  # closed with no reply
    ],
)
def test_a_prepared_sets_errors_are_the_clients_own(
    tmp_path: Path, reply: bytes | None, error: type[UapiError]
) -> None:
    async def handler(request: bytes) -> bytes | None:
        return reply

    async def client_side() -> None:
        send = UapiClient(str(tmp_path / "e")).prepared_set([UpdatePeer(KEYS[0])])
        with pytest.raises(error):
            await _from_a_thread(send)

    run_against(tmp_path / "e", handler, client_side)


def test_a_prepared_set_without_a_reply_in_time_or_without_a_socket(tmp_path: Path) -> None:
    async def silent(request: bytes) -> None:
        await trio.sleep_forever()

    async def client_side() -> None:
        client = UapiClient(str(tmp_path / "q"), timeout=0.05, set_timeout_per_peer=0.0)
        with pytest.raises(UapiConnectionError, match="no reply in time"):
            await _from_a_thread(client.prepared_set([UpdatePeer(KEYS[0])]))
        absent = UapiClient(str(tmp_path / "absent")).prepared_set([UpdatePeer(KEYS[0])])
        with pytest.raises(UapiConnectionError, match="cannot connect"):
            await _from_a_thread(absent)

    run_against(tmp_path / "q", silent, client_side)
