"""The little HTTP a Prometheus scrape needs: the metrics address, the request head (untrusted
bytes) and the response. Pure: the endpoint's sockets are in :mod:`meshd.daemon.metrics`.

Only ``GET`` and ``HEAD`` are served: ``/metrics`` the exposition, ``/`` a pointer to it,
anything else 404. A request head is at most :data:`MAX_HEAD` bytes; its headers are not
needed and are skipped (the body of a GET is none, and the connection is closed after one
answer).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from meshd.errors import CommandLineError, DecodeError

MAX_HEAD: Final = 8192
METHODS: Final = ("GET", "HEAD")
REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query


def parse_address(text: str, *, option: str = "--metrics") -> tuple[str, int]:
    """``HOST:PORT`` (an IP address or ``localhost``), ``[IPV6]:PORT`` or ``:PORT`` (every
    address) as the host and port to bind."""
    hint = "write HOST:PORT, [IPV6]:PORT or :PORT, e.g. 127.0.0.1:9101"
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CommandLineError(f"{option} {text!r} is not an address with a port", hint=hint)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise CommandLineError(f"{option} {text!r}: brackets are for IPv6 addresses", hint=hint)
    elif ":" in host:
        raise CommandLineError(f"{option} {text!r}: an IPv6 address goes in brackets", hint=hint)
    if host not in ("", "localhost"):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise CommandLineError(
                f"{option} {text!r}: {host!r} is not an IP address", hint=hint
            ) from None
    return host, int(port_text)


def head_length(buffer: bytes) -> int | None:
    """How many bytes of ``buffer`` the request head takes, or None if it is not whole yet."""
    for end in (b"\r\n\r\n", b"\n\n"):
        at = buffer.find(end)
        if at >= 0:
            return at + len(end)
    return None


def decode_scrape_untrusted(head: bytes) -> Request:
    """The method and path of a request head; DecodeError if it is not HTTP/1.x."""
    if len(head) > MAX_HEAD:
        raise DecodeError(f"request head longer than {MAX_HEAD} bytes")
    line, _, _ = head.partition(b"\n")
    try:
        text = line.rstrip(b"\r").decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("request line is not ASCII") from None
    parts = text.split(" ")
    if len(parts) != 3:
        raise DecodeError("request line is not METHOD TARGET VERSION")
    method, target, version = parts
    if not version.startswith("HTTP/1.") or not method.isalpha() or not method.isupper():
        raise DecodeError("not an HTTP/1.x request")
    if not target.startswith("/") or not target.isprintable():
        raise DecodeError("request target is not a path")
    return Request(method, target.partition("?")[0])


def encode_scrape(request: Request) -> bytes:
    """A request head for ``request`` (what a scraper sends, less its headers)."""
    return f"{request.method} {request.path} HTTP/1.1\r\n\r\n".encode("ascii")


def response(
    status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", *, head: bool = False
) -> bytes:
    """A whole HTTP/1.1 response that closes the connection (no body for HEAD)."""
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 405:
        lines.append("Allow: " + ", ".join(METHODS))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body)


def route(request: Request) -> int:
    """The status a request gets before any metrics are read (200: serve ``request.path``)."""
    if request.method not in METHODS:
        return 405
    return 200 if request.path in ("/", "/metrics") else 404


INDEX: Final = b"meshd metrics: /metrics\n"
