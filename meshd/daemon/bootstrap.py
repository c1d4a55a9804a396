"""Bootstrap addresses: checking the ones a user gives, and those an invite carries (pure).

* :func:`check_bootstrap`: ``meshd join --bootstrap MULTIADDR`` takes
  ``/ip4|ip6/ADDRESS/tcp/PORT/p2p/PEER_ID`` (the peer id names the member that must answer,
  as ``meshd status`` prints its addresses) or ``/dns|dns4|dns6/NAME/tcp/PORT/p2p/PEER_ID``
  (the name looked up at each dial: :mod:`meshd.gossip.names`); anything else is a one-line
  CommandLineError;
* :func:`check_public_addr` and :func:`public_multiaddrs`: ``--public-addr`` (``ADDRESS``,
  ``NAME``, either with ``:PORT``, ``[IPv6]:PORT``, or a ``/ip4|ip6|dns|dns4|dns6/../tcp/PORT``
  multiaddr) is where members outside this node's network reach its libp2p port (a port
  forward on a NAT, a cloud machine's public IP, a name that follows a changing address);
  the port defaults to the first TCP listen port;
* :func:`invite_bootstrap`: what an invite carries: the public addresses first, then the
  listen addresses, each once. A joiner dials them all and keeps those that answer.

No libp2p here (``meshd up`` checks its options before libp2p is imported): a peer id is
checked by decoding its base58 text to an Ed25519 identity multihash.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final, Protocol

from meshd.errors import CommandLineError
from meshd.gossip.names import check_host_name, named_addr

MAX_ADDRS: Final = 16  # --bootstrap and --public-addr values kept, each
MAX_MULTIADDR: Final = 200  # characters
BOOTSTRAP_HINT: Final = (
    "write /ip4/ADDRESS/tcp/PORT/p2p/PEER_ID (or /ip6/...), as `meshd status` on a member "
    "shows, or /dns/NAME/tcp/PORT/p2p/PEER_ID"
)
PUBLIC_HINT: Final = (
    "write ADDRESS, NAME, ADDRESS:PORT, NAME:PORT, [IPv6]:PORT or /ip4/ADDRESS/tcp/PORT"
)

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
#: An Ed25519 peer id: identity multihash (0x00, length 36) of the protobuf public key
#: (field 1 = 1: Ed25519; field 2: 32 bytes).
_ED25519_PEER_ID_HEAD = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])


def peer_key(peer_id: str) -> bytes | None:
    """The Ed25519 key an identity peer id (``12D3KooW..``) embeds; None for anything else."""
    if not 0 < len(peer_id) <= 64:
        return None
    number = 0
    for char in peer_id:
        digit = _B58.find(char)
        if digit < 0:
            return None
        number = number * 58 + digit
    zeros = len(peer_id) - len(peer_id.lstrip("1"))
    raw = b"\0" * zeros + (
        number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    )
    if len(raw) != len(_ED25519_PEER_ID_HEAD) + 32 or not raw.startswith(_ED25519_PEER_ID_HEAD):
        return None
    return raw[len(_ED25519_PEER_ID_HEAD) :]


def _ip_tcp(parts: Sequence[str]) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """(address, port) of ``['', 'ip4'|'ip6', ADDRESS, 'tcp', PORT, ...]``; ValueError else."""
    if len(parts) < 5 or parts[0] or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        raise ValueError("not /ip4|ip6/ADDRESS/tcp/PORT")
    address = ipaddress.ip_address(parts[2])
    if address.version != int(parts[1][2]):
        raise ValueError(f"{parts[2]} is not an {parts[1]} address")
    if not parts[4].isdigit() or not 0 < int(parts[4]) < 65536:
        raise ValueError(f"port {parts[4]!r} is not 1-65535")
    if address.is_unspecified or address.is_multicast:
        raise ValueError(f"{address} names no host")
    return address, int(parts[4])


def check_bootstrap(text: str, option: str = "--bootstrap") -> str:
    """``text`` if it is a dialable multiaddr naming its member; else a CommandLineError."""
    parts = text.strip().split("/")
    try:
        if len(text) > MAX_MULTIADDR:
            raise ValueError(f"longer than {MAX_MULTIADDR} characters")
        if named_addr(text.strip()) is None:
            _ip_tcp(parts)
        if len(parts) != 7 or parts[5] != "p2p":
            raise ValueError("it must end in /p2p/PEER_ID")
        if peer_key(parts[6]) is None:
            raise ValueError(f"{parts[6][:60]!r} is not an Ed25519 peer id")
    except ValueError as exc:
        raise CommandLineError(f"{option} {text[:80]!r}: {exc}", hint=BOOTSTRAP_HINT) from None
    return text.strip()


def check_public_addr(text: str, default_port: int) -> tuple[str, int]:
    """(address or host name, TCP port) of a ``--public-addr`` value; a CommandLineError if
    unusable."""
    value = text.strip()
    try:
        if len(value) > MAX_MULTIADDR:
            raise ValueError(f"longer than {MAX_MULTIADDR} characters")
        if value.startswith("/"):
            parts = value.split("/")
            if len(parts) != 5:
                raise ValueError("a multiaddr here is /ip4|ip6|dns/ADDRESS/tcp/PORT, nothing after")
            named = named_addr(value)
            if named is not None:
                return named.name, named.port
            address, port = _ip_tcp(parts)
        else:
            host, port = value, default_port
            if value.startswith("["):
                host, sep, rest = value[1:].partition("]")
                if not sep or (rest and not rest.startswith(":")):
                    raise ValueError("an IPv6 address with a port is [ADDRESS]:PORT")
                if rest:
                    port = _port(rest[1:])
            elif value.count(":") == 1:
                host, _, port_text = value.partition(":")
                port = _port(port_text)
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                if ":" in host or value.startswith("["):
                    raise
                return check_host_name(host), port  # a name: looked up by whoever dials it
            if address.is_unspecified or address.is_multicast or address.is_loopback:
                raise ValueError(f"{address} is not an address others can reach")
    except ValueError as exc:
        raise CommandLineError(f"--public-addr {text[:80]!r}: {exc}", hint=PUBLIC_HINT) from None
    return str(address), port


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"port {text!r} is not 1-65535")
    return int(text)


def public_multiaddrs(public: Iterable[tuple[str, int]], peer_id: str) -> list[str]:
    """``/ip4|ip6/ADDRESS/tcp/PORT/p2p/PEER_ID`` for each checked public address, and
    ``/dns/NAME/tcp/PORT/p2p/PEER_ID`` for each host name (either IP version)."""
    out: list[str] = []
    for address, port in public:
        try:
            protocol = f"ip{ipaddress.ip_address(address).version}"
        except ValueError:
            protocol = "dns"
        addr = f"/{protocol}/{address}/tcp/{port}/p2p/{peer_id}"
        if addr not in out:
            out.append(addr)
    return out


def invite_bootstrap(public: Sequence[str], listen: Sequence[str]) -> list[str]:
    """What an invite carries: the public multiaddrs first, then the listen ones, each once,
    wildcards (``0.0.0.0``, ``::``) left out, at most :data:`MAX_ADDRS`."""
    out: list[str] = []
    for addr in [*public, *listen]:
        if "/0.0.0.0/" in addr or "/::/" in addr or addr in out:
            continue
        out.append(addr)
    return out[:MAX_ADDRS]


def first_tcp_port(listen: Sequence[str]) -> int:
    """The TCP port of the first listen multiaddr (7100 when none names one)."""
    for addr in listen:
        parts = addr.split("/")
        if len(parts) >= 5 and parts[3] == "tcp" and parts[4].isdigit():
            return int(parts[4])
    return 7100


class _MetaStore(Protocol):
    def get_meta(self, key: str) -> bytes | None: ...


class _Node(Protocol):
    @property
    def store(self) -> _MetaStore: ...


def stored_bootstrap(node: _Node) -> list[str]:
    """The bootstrap addresses this node joined with (``meshd join`` keeps them)."""
    raw = node.store.get_meta("bootstrap") or b""
    return [a for a in raw.decode(errors="replace").split("\n") if a][:MAX_ADDRS]


def peer_id_text(key: bytes) -> str:
    """The libp2p peer id of an Ed25519 key (``12D3KooW..``), as :func:`peer_key` reads it."""
    raw = _ED25519_PEER_ID_HEAD + key
    number = int.from_bytes(raw, "big")
    digits = ""
    while number:
        number, digit = divmod(number, 58)
        digits = _B58[digit] + digits
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + digits


def stored_public(node: _Node) -> list[str]:
    """The ``--public-addr`` values ``meshd init`` or the last ``meshd up`` kept."""
    raw = node.store.get_meta("public_addrs") or b""
    return [a for a in raw.decode(errors="replace").split("\n") if a][:MAX_ADDRS]


def invite_addrs(public: Sequence[str], listen: Sequence[str], node_key: bytes) -> list[str]:
    """What an invite of this node carries: its ``--public-addr`` values (checked, with the
    first listen port by default), then its listen addresses (:func:`invite_bootstrap`)."""
    port = first_tcp_port(listen)
    checked = []
    for addr in public:
        with contextlib.suppress(CommandLineError):  # checked when given; a stored one
            checked.append(check_public_addr(addr, port))  # edited since is left out
    return invite_bootstrap(public_multiaddrs(checked, peer_id_text(node_key)), listen)
