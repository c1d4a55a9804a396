"""What a daemon runs with (``meshd up`` and ``meshd join`` options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from meshd.babel.options import BabelConfig
from meshd.daemon.bootstrap import check_bootstrap, check_public_addr, first_tcp_port
from meshd.daemon.startup import listen_endpoint
from meshd.errors import CommandLineError
from meshd.gossip.names import check_host_name
from meshd.metrics.http import parse_address
from meshd.wg.backend import MAX_IFNAME
from meshd.wg.model import parse_endpoint

DEFAULT_LISTEN: Final = ("/ip4/0.0.0.0/tcp/7100",)
WG_BACKENDS: Final = ("none", "auto", "kernel", "userspace")
DEFAULT_INTERFACE: Final = "meshd0"
DEFAULT_LISTEN_PORT: Final = 51820
#: The WireGuard interface's MTU, as wg-quick and the kernel's default: 1500 less WireGuard's
#: 80 bytes over IPv6. The overlay is IPv6: 1280 at least.
DEFAULT_MTU: Final = 1420
MIN_MTU: Final = 1280
MAX_MTU: Final = 65535
RELAY_MODES: Final = ("auto", "on", "off")


ENDPOINT_HINT = "write ADDRESS:PORT, [ADDRESS]:PORT for IPv6"


def check_endpoint(text: str) -> None:
    """An ``--endpoint`` value is an IP address and a port; else a one-line CommandLineError
    (:func:`refuse_host_name` for a name)."""
    try:
        parse_endpoint(text)
    except ValueError as exc:
        refuse_host_name(text)
        raise CommandLineError(f"--endpoint {text!r}: {exc}", hint=ENDPOINT_HINT) from None


def refuse_host_name(text: str) -> None:
    """A CommandLineError saying why if ``text`` (an endpoint that is not an address) names a
    host: members program WireGuard with what we announce, and no member looks up a name
    another announces (meshd.gossip.names)."""
    try:
        check_host_name(text.rpartition(":")[0])
    except ValueError:
        return
    raise CommandLineError(
        f"--endpoint {text!r}: a host name; members are told addresses, never names",
        hint="give the address, or no --endpoint: members tell this node where they see it "
        "(meshd netcheck), a changed address included",
    )


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """Options of one daemon run; times are in seconds."""

    state_dir: Path
    listen: tuple[str, ...] = DEFAULT_LISTEN
    wg_backend: str = "none"
    interface: str = DEFAULT_INTERFACE
    listen_port: int = DEFAULT_LISTEN_PORT
    mtu: int | None = None  # None: derived from the underlay at the start (meshd.mesh.mtu)
    endpoints: tuple[str, ...] = ()  # announced WireGuard endpoints; () = the underlay's
    reconcile_interval: float = 5.0
    keepalive: int = 25
    # A refresh every two hours; a change (endpoints, addresses, prefixes) is announced at once, and
    # liveness between refreshes is what this node sees itself (meshd.daemon.liveness).
    announce_interval: float = 7200.0
    announce_ttl: int = 3 * 7200
    degree: int = 6
    sync_interval: float = 10.0
    tick_interval: float = 1.0
    connect_interval: float = 1.0
    non_member_grace: float = 10.0  # a peer that is not a member may stay this long...
    enrollment_grace: float = 30.0  # ...or this long once it opens an enrollment stream
    enrollment_attempts: int = 3  # enrollment streams per peer per grace window
    grace_cooldown: float = 300.0  # after the grace, reconnects get none for this long
    max_backoff: float = 60.0
    shutdown_timeout: float = 5.0
    stream_timeout: float = 10.0
    dial_timeout: float = 5.0
    babel: BabelConfig = field(default_factory=BabelConfig)
    metrics: str | None = None  # --metrics HOST:PORT, the Prometheus endpoint; None: off
    auto_renew: bool = False  # renew members ending within renew_window, once a day
    renew_window: int = 30 * 86400
    renew_for: int = 365 * 86400
    relay: str = "auto"  # --relay: forward between members (docs/nat.md, "Relays")
    public_addrs: tuple[str, ...] = ()  # --public-addr: where outsiders reach our libp2p port
    bootstrap: tuple[str, ...] = ()  # join --bootstrap: multiaddrs dialled besides the invite's

    def __post_init__(self) -> None:
        if self.metrics is not None:
            parse_address(self.metrics)
        if self.wg_backend not in WG_BACKENDS:
            raise CommandLineError(
                f"unknown WireGuard backend {self.wg_backend!r}",
                hint="use one of " + ", ".join(WG_BACKENDS),
            )
        if not 0 < len(self.interface) <= MAX_IFNAME or not all(
            c.isalnum() or c in "-_." for c in self.interface
        ):
            raise CommandLineError(
                f"--interface {self.interface!r} is not a usable interface name",
                hint=f"use 1 to {MAX_IFNAME} of [A-Za-z0-9._-]",
            )
        if not 0 < self.listen_port < 65536:
            raise CommandLineError(f"--listen-port {self.listen_port} is out of range (1-65535)")
        if self.mtu is not None and not MIN_MTU <= self.mtu <= MAX_MTU:
            raise CommandLineError(
                f"--mtu {self.mtu} is out of range ({MIN_MTU}-{MAX_MTU})",
                hint="the overlay is IPv6, which needs 1280; 1420 suits a 1500-byte underlay",
            )
        for endpoint in self.endpoints:
            check_endpoint(endpoint)
        if not self.listen:
            raise CommandLineError("give at least one --listen address")
        for addr in self.listen:
            listen_endpoint(addr)
        check_reachability(self)
        if self.degree < 1:
            raise CommandLineError("--degree must be at least 1")
        if self.announce_ttl <= self.announce_interval:
            raise CommandLineError(
                "--announce-ttl must be longer than --announce-interval",
                hint="members would expire between two of their announcements",
            )


def check_reachability(config: DaemonConfig) -> None:
    """``--relay``, ``--public-addr`` and ``--bootstrap`` (meshd.daemon.bootstrap)."""
    if config.relay not in RELAY_MODES:
        raise CommandLineError(
            f"--relay {config.relay!r} is not a relay mode", hint="use auto, on or off"
        )
    for addr in config.public_addrs:
        check_public_addr(addr, first_tcp_port(config.listen))
    for addr in config.bootstrap:
        check_bootstrap(addr)


def topic_of(network_id: str) -> str:
    """The gossip topic of a network, by its id (the root key's fingerprint)."""
    return f"/meshd/{network_id}/1"
