"""Host names in the addresses a node dials to find its network (pure).

A network's stable way in is often a name rather than an address: a member at home whose
provider changes its address, a cloud machine made again with a new one. ``--public-addr
NAME[:PORT]`` has invites carry ``/dns/NAME/tcp/PORT/p2p/PEER_ID``, and ``--bootstrap``
takes ``/dns/``, ``/dns4/`` or ``/dns6/NAME/tcp/PORT/p2p/PEER_ID`` (libp2p's own way of
writing them). The name is looked up each time it is dialled (``meshd join``, and a node
that lost every member dialling its bootstrap addresses again), by the host's resolver
(``/etc/hosts``, then the name servers it is configured with): where the name points now is
what is dialled. The peer id still names the member that must answer: a name that points
elsewhere reaches nobody who can pass for it.

Only names an operator wrote are looked up: the addresses members announce stay IP
addresses (``/ip4``, ``/ip6``), so no member can make the others look up names of its
choosing.

:func:`check_host_name` is the rule for a name, :func:`named_addr` reads a multiaddr that
holds one, :func:`resolved_multiaddrs` writes the ``/ip4``/``/ip6`` ones to dial from what
the resolver found (the looking up itself is the dialling shell's:
:func:`meshd.gossip.dialling.resolve`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

#: The multiaddr protocols that hold a host name, and the IP versions each may resolve to.
DNS_PROTOCOLS: Final[dict[str, tuple[int, ...]]] = {"dns": (4, 6), "dns4": (4,), "dns6": (6,)}
MAX_NAME: Final = 253  # characters, as DNS allows (RFC 1035 with dots, no final one)
MAX_LABEL: Final = 63
#: Addresses of one name dialled at most (a name with more is cut to its first ones).
MAX_RESOLVED: Final = 8

_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def check_host_name(name: str) -> str:
    """``name`` without a final dot if it is a host name (RFC 1123: dot-separated labels of
    letters, digits and hyphens, 1-63 characters each, none beginning or ending with a
    hyphen, at most 253 characters, the last label not all digits, so that no IPv4 address
    passes for one); else ValueError saying why."""
    text = name[:-1] if name.endswith(".") else name
    if not text:
        raise ValueError("an empty host name")
    if len(text) > MAX_NAME:
        raise ValueError(f"a host name is at most {MAX_NAME} characters")
    if not text.isascii():
        raise ValueError(
            f"{text[:80]!r}: write a name with letters of other scripts in its ASCII form "
            "(IDNA: xn--...)"
        )
    labels = text.split(".")
    for label in labels:
        if not 0 < len(label) <= MAX_LABEL:
            raise ValueError(f"{text[:80]!r}: each part of a host name is 1-{MAX_LABEL} characters")
        if not _LABEL_CHARS.issuperset(label) or label[0] == "-" or label[-1] == "-":
            raise ValueError(
                f"{text[:80]!r} is not a host name (letters, digits and inner hyphens, "
                "between dots)"
            )
    if labels[-1].isdigit():
        raise ValueError(f"{text[:80]!r} is neither an IP address nor a host name")
    return text


@dataclass(frozen=True, slots=True)
class NamedAddr:
    """A multiaddr that names its host: ``/PROTOCOL/NAME/tcp/PORT`` and what follows it
    (``tail``: ``/p2p/PEER_ID``, or empty)."""

    protocol: str  # dns, dns4 or dns6
    name: str
    port: int
    tail: str

    @property
    def versions(self) -> tuple[int, ...]:
        """The IP versions its name may resolve to."""
        return DNS_PROTOCOLS[self.protocol]

    def __str__(self) -> str:
        return f"/{self.protocol}/{self.name}/tcp/{self.port}{self.tail}"


def is_named(addr: str) -> bool:
    """Whether ``addr`` begins with a protocol that holds a host name."""
    return addr.split("/", 2)[1:2] in (["dns"], ["dns4"], ["dns6"])


def named_addr(addr: str) -> NamedAddr | None:
    """``addr`` read as ``/dns|dns4|dns6/NAME/tcp/PORT[/p2p/PEER_ID]``; None for a multiaddr
    of another protocol; ValueError for one of these that is not written so."""
    if not is_named(addr):
        return None
    parts = addr.split("/")
    if len(parts) < 5 or parts[3] != "tcp":
        raise ValueError(f"not /{parts[1]}/NAME/tcp/PORT")
    name = check_host_name(parts[2])
    port = parts[4]
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"port {port[:20]!r} is not 1-65535")
    tail = "/".join(["", *parts[5:]]) if len(parts) > 5 else ""
    return NamedAddr(parts[1], name, int(port), tail)


def resolved_multiaddrs(named: NamedAddr, found: Iterable[tuple[int, str]]) -> list[str]:
    """The ``/ip4``/``/ip6`` multiaddrs to dial for ``named`` from what its name resolved to
    (``found``: IP version and address text, in the resolver's order): those of the
    versions its protocol allows, each once, never an unspecified or multicast address, at
    most :data:`MAX_RESOLVED`."""
    out: list[str] = []
    for version, text in found:
        if version not in named.versions:
            continue
        if "%" in text:  # a link-local address with its zone: not dialled from a name
            continue
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address.version != version or address.is_unspecified or address.is_multicast:
            continue
        addr = f"/ip{version}/{address}/tcp/{named.port}{named.tail}"
        if addr not in out:
            out.append(addr)
            if len(out) == MAX_RESOLVED:
                break
    return out
