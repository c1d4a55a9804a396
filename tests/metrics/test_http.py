"""The metrics endpoint's HTTP: the address, the request head, the response (pure)."""

from __future__ import annotations

import pytest

from meshd.errors import DecodeError, UsageError
from meshd.metrics.http import (
    MAX_HEAD,
    Request,
    decode_scrape_untrusted,
    encode_scrape,
    head_length,
    parse_address,
    response,
    route,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9101", ("127.0.0.1", 9101)),
        ("localhost:9101", ("localhost", 9101)),
        ("[::1]:9101", ("::1", 9101)),
        (":9101", ("", 9101)),
        ("[fd00::1]:1", ("fd00::1", 1)),
    ],
)
def test_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("9101", "not an address with a port"),
        ("127.0.0.1", "not an address with a port"),
        ("127.0.0.1:0", "not an address with a port"),
        ("127.0.0.1:65536", "not an address with a port"),
        ("127.0.0.1:http", "not an address with a port"),
        ("::1:9101", "an IPv6 address goes in brackets"),
        ("[127.0.0.1]:9101", "brackets are for IPv6 addresses"),
        ("example.org:9101", "'example.org' is not an IP address"),
        ("/ip4/127.0.0.1/tcp/9101", "not an address with a port"),
    ],
)
def test_wrong_addresses_are_one_line_with_a_hint(text: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_address(text)
    line = caught.value.one_line()
    assert line.startswith(f"--metrics {text!r}")
    assert says in line
    assert "HOST:PORT" in line
    assert "\n" not in line


def test_request_heads() -> None:
    head = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nleftover"
    length = head_length(head)
    assert length == len(head) - len(b"leftover")
    assert decode_scrape_untrusted(head[:length]) == Request("GET", "/metrics")
    assert head_length(b"GET / HTTP/1.0\n\n") == len(b"GET / HTTP/1.0\n\n")
    assert head_length(b"GET / HTTP/1.1\r\nHost: a\r\n") is None
    request = Request("HEAD", "/")
    assert decode_scrape_untrusted(encode_scrape(request)) == request


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/2\r\n\r\n",
        b"get /metrics HTTP/1.1\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"GET /m\x00 HTTP/1.1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\n\r\n",
        b"GET /" + b"a" * MAX_HEAD + b" HTTP/1.1\r\n\r\n",
    ],
)
def test_bad_heads_are_decode_errors(head: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_scrape_untrusted(head)


def test_routes_and_responses() -> None:
    assert route(Request("GET", "/metrics")) == 200
    assert route(Request("HEAD", "/")) == 200
    assert route(Request("GET", "/other")) == 404
    assert route(Request("POST", "/metrics")) == 405
    whole = response(200, b"abc", "text/plain")
    assert whole.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 3\r\n" in whole
    assert b"Connection: close\r\n" in whole
    assert whole.endswith(b"\r\n\r\nabc")
    assert response(200, b"abc", head=True).endswith(b"\r\n\r\n")
    assert b"Allow: GET, HEAD\r\n" in response(405, b"")
