"""What UAPI requests and replies share: the dialects, the lines and how each value is read.

WireGuard's cross-platform configuration protocol (https://www.wireguard.com/xplatform/) is
line based: a request is ``get=1`` or ``set=1`` followed by ``key=value`` lines and an empty
line; the reply is ``key=value`` lines ending with ``errno=N`` and an empty line. Keys are
hex on the wire.

Two dialects are understood:

* **wireguard-go** (and the Linux ``wg`` tool's view of it): ``private_key=`` in ``get``,
  ``last_handshake_time_sec`` is Unix time (0 for never), ``errno`` is negative, every peer
  carries ``preshared_key``, ``protocol_version`` and ``persistent_keepalive_interval``.
* **boringtun**: ``own_public_key=`` instead of the private key, ``last_handshake_time_sec``
  is the age of the handshake (absent for never), ``errno`` is positive, no ``update_only``
  (an update of a missing peer creates it), lines that have no value are left out.

Requests are :mod:`meshd.wg.uapi_request`, replies :mod:`meshd.wg.uapi_reply`. What is read
here is untrusted: :func:`split_reply_untrusted` and the ``parse_*`` value readers raise only
:class:`~meshd.wg.errors.UapiDecodeError`, never ValueError or IndexError.
"""

from __future__ import annotations

import enum
import ipaddress
import re

from meshd.addressing import held, interned
from meshd.wg.errors import UapiDecodeError
from meshd.wg.model import IPNetwork, canonical_endpoint

#: Replies larger than this are refused (about 40,000 peers with a few prefixes each).
MAX_REPLY_BYTES = 16 * 1024 * 1024

_LINE = re.compile(r"([a-z_]{1,64})=([\x21-\x7e]{0,256})")
MAX_LINE = 64 + 1 + 256  # the longest line _LINE matches
_ERRNO = re.compile(r"-?[0-9]{1,10}")
# Bound once for the reader of each line in another module (meshd.wg.uapi_reply): Python
# compiles ``NAME.fullmatch(...)`` on a NAME bound by an import as an attribute load, a new
# bound method on every call, where a module's own pattern gets LOAD_METHOD and no object.
match_line = _LINE.fullmatch
match_errno = _ERRNO.fullmatch
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_UINT = re.compile(r"[0-9]{1,20}")
# An IPv6 address as WireGuard implementations write one: lower-case groups of 1-4 digits,
# eight of them or fewer around one "::" (captured: the groups before it, those after it).
_IPV6 = re.compile(
    r"[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}"
    r"|((?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?)::((?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?)"
)


class Dialect(enum.Enum):
    """Which implementation is on the other end of the socket."""

    WIREGUARD_GO = "wireguard-go"
    BORINGTUN = "boringtun"


def split_reply_untrusted(data: bytes) -> tuple[list[tuple[str, str]], int]:
    """Split a complete reply into its ``key=value`` lines and its (positive) errno.

    The reply must be ASCII lines, end with ``errno=N`` and one empty line, and hold no
    other empty line.
    """
    if len(data) > MAX_REPLY_BYTES:
        raise UapiDecodeError(f"UAPI reply of {len(data)} bytes is too large")
    if not data.endswith(b"\n\n"):
        raise UapiDecodeError("UAPI reply is truncated (no empty line at the end)")
    try:
        text = data[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise UapiDecodeError("UAPI reply is not ASCII") from None
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        match = _LINE.fullmatch(line)
        if match is None:
            raise UapiDecodeError(f"UAPI reply line {number} is not key=value: {line[:80]!r}")
        pairs.append((match[1], match[2]))
    key, value = pairs.pop()
    if key != "errno":
        raise UapiDecodeError("UAPI reply does not end with errno=")
    if _ERRNO.fullmatch(value) is None:
        raise UapiDecodeError(f"UAPI errno {value!r} is not a number")
    return pairs, abs(int(value))


# -- values --------------------------------------------------------------------------------


def parse_endpoint(value: str) -> str:
    try:
        return canonical_endpoint(value)
    except ValueError:
        raise UapiDecodeError(f"UAPI endpoint {value[:64]!r} is malformed") from None


def parse_network(value: str) -> IPNetwork:
    """The network ``value`` names: the one meshd already holds if any (found from the text
    alone), else a new one, interned."""
    address, _, length = value.partition("/")
    if length.isdigit() and len(length) <= 3 and int(length) <= 128:
        # An address is 56 bytes, a network with its address and dict ~500. Most allowed-ips
        # are IPv6 and read the way _ipv6_packed reads quickly (ipaddress: ~14 us each).
        packed = _ipv6_packed(address)
        try:
            if packed is None:
                kind = ipaddress.IPv6Address if ":" in address else ipaddress.IPv4Address
                packed = kind(address).packed
            found = held(packed, int(length))
        except ValueError:
            found = None
        if found is not None:
            return found
    try:
        return interned(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise UapiDecodeError(f"UAPI allowed_ip {value[:64]!r} is malformed") from None


def _ipv6_packed(text: str) -> bytes | None:
    """The 16 bytes of the IPv6 address ``text`` if it is written as WireGuard
    implementations write one (lower-case, at most one ``::``), else None: any other form,
    and anything that is no address, is left to :mod:`ipaddress`."""
    match = _IPV6.fullmatch(text)
    if match is None:
        return None
    before, after = match.groups()
    if before is None:  # eight groups
        groups = text.split(":")
    else:
        head = before.split(":") if before else []
        tail = after.split(":") if after else []
        missing = 8 - len(head) - len(tail)
        if missing < 1:
            return None
        groups = [*head, *("0" * missing), *tail]
    return bytes.fromhex("".join([group.zfill(4) for group in groups]))


def parse_hex_key(key: str, value: str) -> bytes:
    if _HEX_KEY.fullmatch(value) is None:
        raise UapiDecodeError(f"UAPI {key} is not 64 hex digits")
    return bytes.fromhex(value)


def parse_uint(key: str, value: str, maximum: int) -> int:
    if _UINT.fullmatch(value) is None or int(value) > maximum:
        raise UapiDecodeError(f"UAPI {key}={value[:24]} is not a number up to {maximum}")
    return int(value)
