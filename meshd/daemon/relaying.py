"""Which members relay (``--relay auto|on|off``), and IP forwarding only where one does.

A member relays for two others that cannot reach each other directly (two symmetric NATs,
UDP blocked between them): Babel routes one's overlay address through it, and its kernel
forwards the packets from one WireGuard peer to the other. That needs the host's IP
forwarding, which is a host-wide setting: so it is turned on only where relaying is, said
once at WARNING with what changed, and put back at shutdown.

* :func:`relay_decision` (pure): ``on`` and ``off`` are the operator's word; ``auto`` relays
  when this member has a public endpoint: a configured ``--endpoint`` (the operator says
  where members reach us); else not when members see us behind a NAT; else when members
  see our WireGuard at our own address (they reach us as we are: a public machine, or a
  LAN without NAT), or, before any member has said, when an interface has a global
  address;
* a member that does not relay announces on the mesh only its own routes (its overlay /128,
  what it originates as a gateway), never a route it learnt from another member, so that
  Babel never routes through it (:meth:`meshd.daemon.babel.BabelService.set_relaying`);
* :class:`Forwarding` turns forwarding on (relaying, or a gateway to ``--babel-interface``
  links, which forwards between the mesh and the site by definition) and restores what it
  changed;
* :class:`Relaying`, the service: decides at start and again every ``interval`` (``auto``
  follows our addresses and what members observe), and tells Babel, the kernel and the
  announcer (every member learns from our signed announcement whether we relay: a change
  wakes :class:`meshd.daemon.announcer.Announcer`, so it goes out at once);
* :func:`early_forwarding`: the first decision's forwarding, taken as soon as WireGuard is
  open, before the gossip side (and this service) has loaded: a relay whose daemon restarts
  forwards between the members it relays for as soon as their WireGuard sessions are back,
  not a second or more later. The service takes the same :class:`Forwarding` over.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, Protocol

import trio

from meshd.daemon.wireguard_open import local_addresses
from meshd.errors import MeshdError
from meshd.mesh.candidates import is_public
from meshd.mesh.underlay import usable_addresses
from meshd.wg.model import IPAddress, parse_endpoint

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from meshd.daemon.config import DaemonConfig

log = logging.getLogger(__name__)

FORWARDING: Final = (
    ("net.ipv6.conf.all.forwarding", "/proc/sys/net/ipv6/conf/all/forwarding"),
    ("net.ipv4.conf.all.forwarding", "/proc/sys/net/ipv4/conf/all/forwarding"),
)
RECHECK: Final = 5.0  # seconds between two decisions of --relay auto


#: What members' observations of our WireGuard say (meshd.daemon.endpoints): seen at an
#: address none of our interfaces holds, only at our own addresses, or nothing yet.
BEHIND_NAT: Final = "behind-nat"
OWN_ADDRESS: Final = "own-address"


def relay_decision(
    mode: str,
    configured: Sequence[str],
    addresses: Iterable[IPAddress],
    seen: str | None,
) -> tuple[bool, str]:
    """Whether this member relays, and why (for the log). ``seen``: :data:`BEHIND_NAT`,
    :data:`OWN_ADDRESS` or None (no observation yet)."""
    if mode == "on":
        return True, "--relay on"
    if mode == "off":
        return False, "--relay off"
    for endpoint in configured:
        try:
            parse_endpoint(endpoint)
        except ValueError:
            continue
        return True, f"--relay auto: a configured endpoint ({endpoint})"
    if seen == BEHIND_NAT:
        return False, "--relay auto: members see this node behind a NAT"
    if seen == OWN_ADDRESS:
        return True, "--relay auto: members reach this node at its own address"
    for address in addresses:
        if is_public(address):
            return True, f"--relay auto: a global address ({address})"
    return False, "--relay auto: no public endpoint (no --endpoint, no global address)"


class Forwarding:
    """The host's IP forwarding: on while wanted, put back to what it was when not."""

    def __init__(self, sysctls: Sequence[tuple[str, str]] = FORWARDING) -> None:
        self.sysctls = tuple(sysctls)
        self.saved: dict[str, str] = {}  # sysctl name -> the value we replaced
        self._on = False
        self._warned = False

    def want(self, on: bool, why: str) -> None:
        if on == self._on:
            return
        self._on = on
        if not on:
            self.release()
            return
        changed: list[str] = []
        for name, path in self.sysctls:
            try:
                with open(path) as f:
                    old = f.read().strip()
                if old != "1":
                    with open(path, "w") as f:
                        f.write("1\n")
                    self.saved[name] = old
                    changed.append(f"{name} {old} -> 1")
            except OSError as exc:
                log.warning("cannot turn IP forwarding on (%s): relaying will not work", exc)
        if changed and not self._warned:
            self._warned = True
            log.warning(
                "IP forwarding turned on for the whole host (%s) to forward between members "
                "(%s); it is put back at shutdown",
                ", ".join(changed),
                why,
            )
        elif changed:
            log.info("IP forwarding on again (%s)", ", ".join(changed))

    def release(self) -> None:
        """Put back every value we changed."""
        self._on = False
        paths = dict(self.sysctls)
        for name, value in list(self.saved.items()):
            try:
                with open(paths[name], "w") as f:
                    f.write(value + "\n")
                del self.saved[name]
                log.info("IP forwarding: %s back to %s", name, value)
            except OSError as exc:
                log.warning("cannot put %s back to %s: %s", name, value, exc)


async def _addresses(config: DaemonConfig) -> list[IPAddress] | None:
    """This host's usable addresses when ``--relay auto`` needs them (else none); None if
    they cannot be read now (logged)."""
    if config.relay != "auto" or config.endpoints:
        return []
    try:
        local = await local_addresses()
    except (MeshdError, OSError) as exc:
        log.warning("relay: cannot read this host's addresses (%s); deciding later", exc)
        return None
    return [a.address for a in usable_addresses(local, exclude=[config.interface, "lo"])]


@asynccontextmanager
async def early_forwarding(
    config: DaemonConfig, relays: bool, sysctls: Sequence[tuple[str, str]] = FORWARDING
) -> AsyncIterator[Forwarding]:
    """The host's forwarding as the first decision will want it (no member has said where
    it sees us yet: :func:`relay_decision` with nothing seen), turned on now if so, and put
    back at exit. ``relays``: whether a relaying service will run (Babel on the mesh)."""
    forwarding = Forwarding(sysctls)
    try:
        if relays:
            addresses = await _addresses(config)
            if addresses is not None:
                on, why = relay_decision(config.relay, config.endpoints, addresses, None)
                gateway = bool(config.babel.interfaces)
                if on or gateway:
                    forwarding.want(True, why if on else "a gateway to the --babel-interface links")
        yield forwarding
    finally:
        forwarding.release()


class RelaySeam(Protocol):
    """What this service needs of Babel (:class:`meshd.daemon.babel.BabelService`)."""

    def set_relaying(self, on: bool) -> None: ...


class Relaying:
    """The ``--relay`` service; see the module documentation."""

    def __init__(
        self,
        config: DaemonConfig,
        babel: RelaySeam,
        seen: Callable[[], str | None],
        *,
        forwarding: Forwarding | None = None,
        interval: float = RECHECK,
    ) -> None:
        self.config = config
        self.babel = babel
        self.seen = seen
        self.forwarding = forwarding or Forwarding()
        self.interval = interval
        self.relaying: bool | None = None
        self.why = ""
        # Called when the decision changes (the announcer's wake-up: follow_relaying).
        self.on_change: Callable[[], None] | None = None
        self._again = trio.Event()  # decide now (reconfigure), not at the next look

    def relays(self) -> bool:
        """Whether we relay now (False until the first decision)."""
        return self.relaying is True

    async def decide(self) -> None:
        config = self.config
        addresses = await _addresses(config)
        if addresses is None:
            return
        on, why = relay_decision(config.relay, config.endpoints, addresses, self.seen())
        changed = on != self.relaying
        self.why = why  # the reason may change while the decision stays (status shows it)
        if changed:
            self.relaying = on
            if on:
                log.info("relaying for other members (%s)", why)
            else:
                log.info("not relaying: members route around this node (%s)", why)
            self.babel.set_relaying(on)
            if self.on_change is not None:
                self.on_change()
        gateway = bool(config.babel.interfaces)
        self.forwarding.want(
            on or gateway, why if on else "a gateway to the --babel-interface links"
        )

    def view(self) -> str:
        """What ``meshd status`` shows: ``yes`` or ``no``, and why."""
        if self.relaying is None:
            return "undecided"
        return f"{'yes' if self.relaying else 'no'} ({self.why})"

    def reconfigure(self, config: DaemonConfig) -> None:
        """A new ``--relay`` or ``--endpoint`` (a SIGHUP): decided again at once."""
        self.config = config
        self._again.set()

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Decide, then again every :data:`RECHECK` s under ``auto`` (what the decision
        reads may change), and whenever :meth:`reconfigure` is called."""
        try:
            await self.decide()
            task_status.started()
            while True:
                with trio.move_on_after(self.interval if self.config.relay == "auto" else math.inf):
                    await self._again.wait()
                self._again = trio.Event()
                await self.decide()
        finally:
            self.forwarding.release()
