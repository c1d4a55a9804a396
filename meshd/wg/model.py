"""WireGuard values: peers, device state and the operations that change a device.

Keys are raw 32-byte values everywhere inside meshd. They become base64 only for people
(``wg`` prints base64) and hex only on the UAPI wire. Every value here is a frozen, slotted
dataclass that validates and canonicalises itself in its constructor, so two values that mean
the same thing compare equal: allowed-ips are sorted and de-duplicated, endpoints are written
in one form (``192.0.2.1:51820``, ``[2001:db8::1]:51820``).

Wrong arguments raise ``ValueError``; these constructors are for values meshd builds itself.
Bytes from a device go through :mod:`meshd.wg.uapi_reply`, which turns every problem into a
:class:`meshd.wg.errors.UapiError`.

:meth:`PeerConfig.derived` and :meth:`UpdatePeer.derived` check nothing: they are for the
cores that derive a value from values already validated and canonical (the desired peers
from members' views and the endpoints :func:`canonical_endpoint` wrote, the plan from
those peers), where checking again cost 37 us a peer, three times a peer at a 10,000-member
start (docs/footprint.md). Anything from the network, the store, a device or a person
goes through the validating constructors.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias

from meshd.addressing import interned

KEY_LEN = 32
MAX_KEEPALIVE = 65535

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- keys ----------------------------------------------------------------------------------


def check_key(key: bytes, what: str = "key") -> bytes:
    """Return ``key`` as ``bytes`` if it is 32 bytes long, else raise ValueError."""
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_LEN:
        raise ValueError(f"a WireGuard {what} is {KEY_LEN} bytes")
    return bytes(key)


def key_to_base64(key: bytes) -> str:
    """The form ``wg`` prints and people paste."""
    return base64.b64encode(check_key(key)).decode("ascii")


def key_from_base64(text: str) -> bytes:
    """Parse a key as ``wg`` prints it; raise ValueError if it is not 32 bytes of base64."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a WireGuard key is 44 characters of base64") from exc
    return check_key(raw)


def key_to_hex(key: bytes) -> str:
    """The form the UAPI uses on the wire (lower-case hex)."""
    return check_key(key).hex()


def key_from_hex(text: str) -> bytes:
    """Parse a 64-digit hex key; raise ValueError otherwise."""
    if len(text) != 2 * KEY_LEN:
        raise ValueError("a WireGuard key is 64 hex digits")
    return check_key(bytes.fromhex(text))


def clamp_private_key(key: bytes) -> bytes:
    """Clamp an X25519 private key the way WireGuard stores it.

    WireGuard implementations store (and report) the clamped form; clamping at generation
    makes the key we keep compare equal with the one the device reports.
    """
    raw = bytearray(check_key(key, "private key"))
    raw[0] &= 248
    raw[31] = (raw[31] & 127) | 64
    return bytes(raw)


def short_key(key: bytes) -> str:
    """The first 8 base64 characters, enough to tell peers apart in logs."""
    return key_to_base64(key)[:8]


# -- endpoints -----------------------------------------------------------------------------


def parse_endpoint(text: str) -> tuple[IPAddress, int]:
    """Split ``host:port`` (IPv6 in brackets) into an address and a port.

    The host must be an IP literal: the UAPI takes no names. Raises ValueError.
    """
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"endpoint {text!r}: IPv6 endpoints are written [address]:port")
        address: IPAddress = ipaddress.IPv6Address(host)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"endpoint {text!r} has no port")
        address = ipaddress.IPv4Address(host)
    if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise ValueError(f"endpoint {text!r} has no valid port")
    return address, int(port_text)


def format_endpoint(address: IPAddress, port: int) -> str:
    """Write an endpoint the canonical way: ``a.b.c.d:port`` or ``[v6]:port``."""
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    if isinstance(address, ipaddress.IPv6Address):
        return f"[{address}]:{port}"
    return f"{address}:{port}"


def canonical_endpoint(text: str) -> str:
    """Parse and re-format an endpoint so that equal endpoints compare equal as strings.

    ``text`` itself when it is already canonical: a peer's endpoint is then the string its
    member's announcement holds, not a copy made every round.
    """
    canonical = format_endpoint(*parse_endpoint(text))
    return text if canonical == text and type(text) is str else canonical


def canonical_networks(networks: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    """Sort and de-duplicate networks (IPv4 first), the order every value here uses; each
    one interned (:func:`meshd.addressing.interned`), so that the peers planned, kept and
    read back from the device share one object per prefix. A tuple that is canonical
    already is returned itself: a peer remade from another one's allowed-ips (a path's
    endpoint laid over a desired peer) holds its networks, not copies."""
    unique = set(networks)
    for net in unique:
        if not isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
            raise ValueError(f"{net!r} is not an ipaddress network")
    if len(unique) == 1:
        canonical: tuple[IPNetwork, ...] = (interned(unique.pop()),)
    else:
        ordered = sorted(unique, key=lambda n: (n.version, n.network_address, n.prefixlen))
        canonical = tuple(map(interned, ordered))
    if (
        type(networks) is tuple
        and len(networks) == len(canonical)
        and all(a is b for a, b in zip(networks, canonical, strict=True))
    ):
        return networks
    return canonical


# -- peers and devices ---------------------------------------------------------------------

_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """What we want (or what a device has) for one peer.

    ``persistent_keepalive`` is seconds, or None for off (the UAPI's 0).

    ``allowed_ips`` is a tuple when read, but a peer of one or two networks (every member's
    peer: its link-local and overlay /128s, or its link-local alone while a relay carries
    the overlay) keeps the networks themselves in its own slots (:func:`_store_nets`), not
    in a tuple (56 bytes a peer of two, 48 of one; the peer 8 bytes more): the tuple is made
    when read (~0.1 us)."""

    public_key: bytes
    endpoint: str | None = None
    allowed_ips: tuple[IPNetwork, ...] = ()
    persistent_keepalive: int | None = None
    # The second of two networks, _ONE for one (in the ``allowed_ips`` slot), or None for a
    # tuple of any other length (in that slot); set with ``allowed_ips``, never alone.
    _second: object = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", check_key(self.public_key, "public key"))
        if self.endpoint is not None:
            object.__setattr__(self, "endpoint", canonical_endpoint(self.endpoint))
        object.__setattr__(self, "allowed_ips", canonical_networks(self.allowed_ips))
        keepalive = self.persistent_keepalive
        if keepalive is not None and not 0 < keepalive <= MAX_KEEPALIVE:
            raise ValueError("persistent_keepalive is 1..65535 seconds, or None for off")

    @classmethod
    def derived(
        cls,
        public_key: bytes,
        endpoint: str | None,
        allowed_ips: tuple[IPNetwork, ...],
        persistent_keepalive: int | None,
    ) -> PeerConfig:
        """A peer made of values already in their checked, canonical form, not checked
        again: a 32-byte key (``bytes``), an endpoint as :func:`canonical_endpoint` returns
        it, allowed-ips as :func:`canonical_networks` returns them, a keepalive of 1..65535
        or None. Only for values meshd derived from validated ones (:mod:`meshd.mesh.desired`);
        anything else goes through ``PeerConfig(...)``."""
        peer = _new(cls)
        _set(peer, "public_key", public_key)
        _set(peer, "endpoint", endpoint)
        _set(peer, "allowed_ips", allowed_ips)
        _set(peer, "persistent_keepalive", persistent_keepalive)
        return peer

    def same_nets(self, other: PeerConfig) -> bool:
        """Whether the two peers hold the same (interned) networks in the same order,
        read from their slots (no tuple made)."""
        return _first_of(self) is _first_of(other) and _second_of(self) is _second_of(other)

    def __repr__(self) -> str:
        return (
            f"PeerConfig({short_key(self.public_key)}, endpoint={self.endpoint}, "
            f"allowed_ips=[{', '.join(map(str, self.allowed_ips))}], "
            f"keepalive={self.persistent_keepalive})"
        )


_ONE = object()  # PeerConfig._second of a peer of one network
# The slots under the field ``allowed_ips`` (the first network, or the tuple) and _second,
# read and written past the property that stands for the field.
_first_slot = PeerConfig.__dict__["allowed_ips"]
_first_of = _first_slot.__get__
_set_first = _first_slot.__set__
_second_of = PeerConfig.__dict__["_second"].__get__
_set_second = PeerConfig.__dict__["_second"].__set__


def _nets_of(peer: PeerConfig) -> tuple[IPNetwork, ...]:
    second = _second_of(peer)
    if second is None:
        nets: tuple[IPNetwork, ...] = _first_of(peer)
        return nets
    if second is _ONE:
        return (_first_of(peer),)
    return (_first_of(peer), second)


def _store_nets(peer: PeerConfig, nets: tuple[IPNetwork, ...]) -> None:
    if type(nets) is not tuple:  # any iterable, as the field took (canonical: a tuple)
        nets = tuple(nets)
    count = len(nets)
    if count == 2:
        _set_first(peer, nets[0])
        _set_second(peer, nets[1])
    elif count == 1:
        _set_first(peer, nets[0])
        _set_second(peer, _ONE)
    else:
        _set_first(peer, nets)
        _set_second(peer, None)


# The field reads and writes through the slots: the dataclass's __init__, __eq__, __hash__,
# replace() and pickling go through it as through the slot it stands for.
type.__setattr__(PeerConfig, "allowed_ips", property(_nets_of, _store_nets))


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A peer as a device reports it: its configuration plus counters.

    ``last_handshake`` is Unix time in seconds, or None if there has been none.
    """

    config: PeerConfig
    last_handshake: float | None = None
    rx_bytes: int = 0
    tx_bytes: int = 0

    @property
    def public_key(self) -> bytes:
        return self.config.public_key


@dataclass(frozen=True, slots=True, weakref_slot=True)
class DeviceState:
    """One WireGuard interface as read back from its backend.

    The private key itself is never kept here (states end up in logs); ``has_private_key``
    says whether one is set and ``public_key`` is the key it implies. ``peers`` is sorted by
    public key; a key appears at most once.
    """

    public_key: bytes | None = None
    has_private_key: bool = False
    listen_port: int | None = None
    fwmark: int | None = None
    peers: tuple[PeerStatus, ...] = ()
    _by_key: dict[bytes, PeerStatus] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.public_key is not None:
            object.__setattr__(self, "public_key", check_key(self.public_key, "public key"))
        peers = tuple(sorted(self.peers, key=lambda p: p.public_key))
        for left, right in itertools.pairwise(peers):
            if left.public_key == right.public_key:
                raise ValueError(f"peer {short_key(left.public_key)} appears twice")
        object.__setattr__(self, "peers", peers)

    def peers_by_key(self) -> Mapping[bytes, PeerStatus]:
        """The peers by public key: one table for every reader of this state (a round, the
        punching step, a handshake check and a view read the same state; at 10,000 peers
        each made its own, ~0.3 MB)."""
        found = self._by_key
        if found is None:
            found = {peer.public_key: peer for peer in self.peers}
            object.__setattr__(self, "_by_key", found)
        return MappingProxyType(found)  # read-only for each (the state copies and pickles)

    def peer_configs(self) -> dict[bytes, PeerConfig]:
        return {peer.public_key: peer.config for peer in self.peers}


# -- operations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetPrivateKey:
    """Set the interface's private key (kept out of repr)."""

    private_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "private_key", check_key(self.private_key, "private key"))


@dataclass(frozen=True, slots=True)
class SetListenPort:
    """Set the UDP listen port (0 lets the device choose)."""

    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"listen port {self.port} is out of range")


@dataclass(frozen=True, slots=True)
class SetFwmark:
    """Set the firewall mark on outgoing packets (0 clears it)."""

    fwmark: int

    def __post_init__(self) -> None:
        if not 0 <= self.fwmark < 2**32:
            raise ValueError(f"fwmark {self.fwmark} is out of range")


@dataclass(frozen=True, slots=True)
class ReplacePeers:
    """Remove every peer before the peer operations that follow in the same request."""


@dataclass(frozen=True, slots=True)
class UpdatePeer:
    """Create or change one peer.

    Fields left at their defaults leave the device's value alone. ``update_only`` makes the
    operation a no-op if the peer does not exist (not supported by boringtun, where it is an
    upsert). ``persistent_keepalive=0`` turns keepalives off. With ``replace_allowed_ips``
    the peer's allowed-ips become exactly ``allowed_ips``; without it they are added.
    """

    public_key: bytes
    update_only: bool = False
    endpoint: str | None = None
    persistent_keepalive: int | None = None
    replace_allowed_ips: bool = False
    allowed_ips: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", check_key(self.public_key, "public key"))
        if self.endpoint is not None:
            object.__setattr__(self, "endpoint", canonical_endpoint(self.endpoint))
        object.__setattr__(self, "allowed_ips", canonical_networks(self.allowed_ips))
        keepalive = self.persistent_keepalive
        if keepalive is not None and not 0 <= keepalive <= MAX_KEEPALIVE:
            raise ValueError("persistent_keepalive is 0..65535 seconds")

    @classmethod
    def derived(
        cls,
        public_key: bytes,
        *,
        update_only: bool = False,
        endpoint: str | None = None,
        persistent_keepalive: int | None = None,
        replace_allowed_ips: bool = False,
        allowed_ips: tuple[IPNetwork, ...] = (),
    ) -> UpdatePeer:
        """An operation made of a :class:`PeerConfig`'s fields (checked and canonical
        already), not checked again: for the plan (:mod:`meshd.wg.reconcile`) and the
        shells that adjust its operations. A keepalive is 0..65535 or None."""
        op = _new(cls)
        _set(op, "public_key", public_key)
        _set(op, "update_only", update_only)
        _set(op, "endpoint", endpoint)
        _set(op, "persistent_keepalive", persistent_keepalive)
        _set(op, "replace_allowed_ips", replace_allowed_ips)
        _set(op, "allowed_ips", allowed_ips)
        return op

    def without_keepalive(self) -> UpdatePeer:
        """The same operation leaving the keepalive alone (None)."""
        return UpdatePeer.derived(
            self.public_key,
            update_only=self.update_only,
            endpoint=self.endpoint,
            replace_allowed_ips=self.replace_allowed_ips,
            allowed_ips=self.allowed_ips,
        )

    def __repr__(self) -> str:
        parts = [short_key(self.public_key)]
        if self.update_only:
            parts.append("update_only")
        if self.endpoint is not None:
            parts.append(f"endpoint={self.endpoint}")
        if self.persistent_keepalive is not None:
            parts.append(f"keepalive={self.persistent_keepalive}")
        if self.replace_allowed_ips or self.allowed_ips:
            verb = "allowed_ips=" if self.replace_allowed_ips else "add_allowed_ips="
            parts.append(verb + "[" + ", ".join(map(str, self.allowed_ips)) + "]")
        return f"UpdatePeer({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class RemovePeer:
    """Remove one peer (a no-op if it does not exist)."""

    public_key: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", check_key(self.public_key, "public key"))

    def __repr__(self) -> str:
        return f"RemovePeer({short_key(self.public_key)})"


DeviceOperation: TypeAlias = SetPrivateKey | SetListenPort | SetFwmark | ReplacePeers
PeerOperation: TypeAlias = UpdatePeer | RemovePeer
Operation: TypeAlias = DeviceOperation | PeerOperation
