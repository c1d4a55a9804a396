"""A scrape that fails on a bug of ours is answered 500 and logged in full; the endpoint (and
the daemon whose nursery it runs in) goes on serving."""

from __future__ import annotations

import logging

import pytest
import trio

from meshd.daemon.metrics import MetricsServer, bind
from meshd.metrics.snapshot import Snapshot
from tests.daemon.support import free_port


async def _get(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while data := await stream.receive_some(65536):
            answer += data
    return answer


def test_a_failing_scrape_is_answered_500_and_the_next_one_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sock = bind(f"127.0.0.1:{free_port()}")
    server = MetricsServer(sock)
    calls = 0

    async def gather() -> Snapshot:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("route")  # a bug in taking the views
        return Snapshot(1.0, {"name": "n0"})

    answers = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, gather)
            port = server.address[1]
            answers.append(await _get(port))
            answers.append(await _get(port))
            nursery.cancel_scope.cancel()

    with sock, caplog.at_level(logging.ERROR, logger="meshd.daemon.metrics"):
        trio.run(main)
    assert answers[0].startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert answers[0].endswith(b"internal error: a bug in meshd, see its log\n")
    assert answers[1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'meshd_info{name="n0"' in answers[1]
    assert (server.failed, server.scrapes) == (1, 1)
    failure = [r for r in caplog.records if "a scrape failed" in r.getMessage()]
    assert failure
    assert failure[0].exc_info is not None
