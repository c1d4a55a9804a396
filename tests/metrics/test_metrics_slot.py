"""The metrics endpoint of a running daemon turned on, moved and turned off by a SIGHUP
(:class:`meshd.daemon.metrics.MetricsSlot`), on real loopback sockets; an address it
cannot listen on leaves the endpoint as it was."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from meshd.daemon.metrics import MetricsServer, MetricsSlot, bind
from meshd.errors import AddressUnavailable
from tests.daemon.support import free_port


async def answers(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` serves the endpoint's index page."""
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError:
        return False
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while data := await stream.receive_some(65536):
            answer += data
    return answer.startswith(b"HTTP/1.1 200")


def test_a_slot_moves_turns_off_and_on_and_keeps_its_endpoint_when_refused() -> None:
    first, second, third, busy = (free_port() for _ in range(4))
    daemon: Any = SimpleNamespace(state=SimpleNamespace(traffic=None))
    slot = MetricsSlot(MetricsServer(bind(f"127.0.0.1:{first}")))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(slot.run, daemon)
            assert await answers(first)
            await slot.move(f"127.0.0.1:{second}")
            assert not await answers(first)  # the old port closed
            assert await answers(second)
            await slot.move(None)
            assert slot.server is None
            assert not await answers(second)
            await slot.move(f"127.0.0.1:{third}")
            assert await answers(third)
            # A port another program listens on: refused, the endpoint as it was.
            with (
                socket.create_server(("127.0.0.1", busy)),
                pytest.raises(AddressUnavailable, match=f"--metrics 127.0.0.1:{busy}"),
            ):
                await slot.move(f"127.0.0.1:{busy}")
            assert await answers(third)
            # The same port on every address: the old endpoint held it, so it goes first.
            await slot.move(f"0.0.0.0:{third}")
            assert slot.server is not None
            assert slot.server.address == ("0.0.0.0", third)
            assert await answers(third)
            nursery.cancel_scope.cancel()
        assert not await answers(third)  # closed on the way out

    trio.run(main)


def test_a_refused_move_to_the_same_port_brings_the_old_endpoint_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Moved to the same port on another address, the old endpoint lets go of the port
    first; if the new one still cannot listen (another program took the port on that
    address), the old one listens again."""
    from meshd.daemon import metrics

    port = free_port()
    daemon: Any = SimpleNamespace(state=SimpleNamespace(traffic=None))
    slot = MetricsSlot(MetricsServer(bind(f"127.0.0.1:{port}")))
    real_bind = metrics.bind

    def bind_taken_on_every_address(address: str) -> socket.socket:
        if address.startswith("0.0.0.0:"):
            raise metrics.PortInUse(f"--metrics {address}: cannot listen: in use")
        return real_bind(address)

    monkeypatch.setattr(metrics, "bind", bind_taken_on_every_address)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(slot.run, daemon)
            with pytest.raises(AddressUnavailable, match="cannot listen"):
                await slot.move(f"0.0.0.0:{port}")
            assert slot.server is not None
            assert slot.server.listening == f"127.0.0.1:{port}"
            assert await answers(port)
            nursery.cancel_scope.cancel()

    trio.run(main)
