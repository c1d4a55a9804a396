"""The Babel service's mesh side: what we ask the relays for, and where each /128 goes.

On the WireGuard mesh (:mod:`meshd.daemon.babel`), another member's overlay /128 needs a
Babel route only where no direct path covers it. :class:`MeshRoutes` holds the daemon's
:class:`~meshd.daemon.babel_wants.Wants` (the Route Requests for the /128s we lack a direct
path to) and places every selected route's prefix on its next hop's WireGuard peer
(:meth:`MeshSeam.set_extra_prefixes`). A member we do not speak Babel with
(:mod:`meshd.daemon.babel_peers`) has no Babel route of its own: its /128 stays on its own
peer while the punching service says its direct path works, and is asked of the relays,
and routed through one, while it does not.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final, Protocol

import trio

from meshd.babel.core import BabelCore
from meshd.babel.shell import BabelShell
from meshd.babel.sources import IPNetwork
from meshd.daemon.babel_peers import MeshMembers
from meshd.daemon.babel_wants import Wants
from meshd.trust.keys import WgKey

WANT_AFTER: Final = 0.0
"""A member's /128 is asked of the relays this long after it is admitted, if no direct route
covers it by then: at once (a direct path not up yet is covered through a relay meanwhile;
the direct route, of lower metric, takes over when it comes)."""
REDISCOVER: Final = 4
"""Ask every neighbour which of them relays at most once every this many update intervals."""


class MeshSeam(Protocol):
    """What Babel needs of the WireGuard side to run on the mesh interface."""

    @property
    def ifname(self) -> str: ...

    def set_extra_prefixes(self, extra: Mapping[WgKey, Sequence[IPNetwork]]) -> None:
        """Route these prefixes through these peers (by WireGuard key) from now on."""
        ...

    def follow_babel(self, hello_interval: float) -> None:
        """Babel runs on the interface from now on, with this Hello interval (new direct
        neighbours keep their overlay address on their own peer for a few Hellos)."""
        ...


class MeshRoutes:
    """The asks and the placement of routes on the mesh; see the module documentation."""

    def __init__(
        self,
        mesh: MeshSeam,
        hello_interval: float,
        members: Callable[[], MeshMembers],
        direct: Callable[[], Collection[WgKey]],
    ) -> None:
        self.mesh = mesh
        self.period = 4 * hello_interval  # Babel's update interval
        self._members = members
        self._direct = direct  # the peers whose direct path works (the punching service)
        self.wants = self._new_wants()
        self._queued = False

    def _new_wants(self) -> Wants:
        return Wants(
            self.mesh.ifname,
            hold=WANT_AFTER,
            period=self.period,
            rediscover=REDISCOVER * self.period,
        )

    def set_hello_interval(self, hello_interval: float) -> None:
        """Babel's Hello interval changed (a SIGHUP): the asks' pace follows it from the
        next shell on (:meth:`restart`)."""
        self.period = 4 * hello_interval

    def restart(self) -> None:
        """A new shell (a new WireGuard key, new Babel options): nothing asked yet, no round
        queued."""
        self.wants = self._new_wants()
        self._queued = False

    async def loop(self, shell: BabelShell) -> None:
        """Ask for the routes we lack a direct path for every update interval (which keeps
        the relays' interest alive); the core's events and the members ask at once
        (:meth:`ask_soon`)."""
        while True:
            shell.submit(self._ask)  # not through ask_soon: never held up by a lost round
            await trio.sleep(self.period)

    def ask_soon(self, shell: BabelShell) -> None:
        """Run a round of :class:`Wants` on the core at its next turn: a burst of events
        (every route of a full update) makes one round, and a round sends only what is due."""
        if self._queued:
            return
        self._queued = True
        shell.submit(self._ask)

    def _ask(self, core: BabelCore, now: float) -> None:
        self._queued = False
        wants = self.wants
        view = self._members()
        # The relays are known from their signed announcements, alike at both ends of a
        # pair; asking every neighbour (discovery) finds any other.
        wants.relays |= view.relays & wants.appeared.keys()
        wants.ask(core, now, view, self.covered())

    def covered(self) -> set[IPNetwork]:
        """The overlay /128s of the members we do not speak Babel with whose direct path
        works: no relay is asked for them, and they stay on their own peers."""
        direct = self._direct()
        return {p for p, m in self._members().quiet_members() if m.wg_key in direct}

    def covers(self, prefix: IPNetwork) -> bool:
        """Whether ``prefix`` is in :meth:`covered` (one member's, without the others)."""
        member = self._members().quiet(prefix)
        return member is not None and member.wg_key in self._direct()

    def place(self, core: BabelCore) -> None:
        """Give each selected route's prefix to its next hop's WireGuard peer; a member we
        do not speak Babel with stays on its own peer while its direct path works."""
        covered = self.covered()
        view = self._members()
        ifname = self.mesh.ifname
        extra: dict[WgKey, list[IPNetwork]] = {}
        for route in core.routes():
            if not route.selected or route.neighbour is None or route.source is not None:
                continue
            if route.neighbour.interface != ifname or route.prefix in covered:
                continue
            member = view.peers.get(route.neighbour.address)  # type: ignore[arg-type]
            if member is not None:
                extra.setdefault(member.wg_key, []).append(route.prefix)
        for prefix in covered:  # routed directly, as Babel would with Hellos between us
            extra.setdefault(view.member_of_overlay[prefix].wg_key, []).append(prefix)
        self.mesh.set_extra_prefixes(extra)
