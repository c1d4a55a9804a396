"""What every part of a lab reads: its state, its temporary directory and its names.

:class:`LabState` holds a lab's arguments and what building it made (run id, hosts, NATs,
processes, blocked pairs) and answers the names: namespaces, hosts and their addresses,
WireGuard interface names, per-host directories. :class:`meshd.lab.lab.Lab` is built on it,
with meshd.lab.topology (hosts and NATs), meshd.lab.processes and meshd.lab.faults.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from meshd.lab import naming
from meshd.lab.commands import LabError
from meshd.lab.filters import Address, UdpFilter
from meshd.lab.nat import Nat
from meshd.lab.plumbing import Host

STOP_TIMEOUT = 5.0
MANIFEST = "lab.json"

Family = Literal[4, 6]


def lab_dir(run_id: str) -> Path:
    """The temporary directory of a run: ``$TMPDIR/meshdlab-RUNID``."""
    return Path(tempfile.gettempdir()) / f"{naming.NETNS_PREFIX}{run_id}"


class LabState:
    """A lab's arguments, what it made so far, and the names of its parts."""

    def __init__(
        self,
        hosts: int = 3,
        *,
        udp_filter: str = "auto",
        stop_timeout: float = STOP_TIMEOUT,
        public: bool = False,
    ) -> None:
        if not 1 <= hosts <= naming.MAX_HOSTS:
            raise ValueError(f"a lab has 1 to {naming.MAX_HOSTS} hosts, not {hosts}")
        if public and hosts > naming.MAX_PUBLIC_HOSTS:
            raise ValueError(f"a lab with public=True has at most {naming.MAX_PUBLIC_HOSTS} hosts")
        #: Public hosts and NAT WANs in documentation ranges (which meshd counts as public
        #: addresses) instead of 10.77/10.78: see docs/lab.md.
        self.public = public
        self._size = hosts
        self._filter_name = udp_filter
        self.stop_timeout = stop_timeout
        self.run_id = ""
        self.hosts: tuple[Host, ...] = ()
        self._filter: UdpFilter | None = None
        self._blocked: set[frozenset[str]] = set()
        self._parted: set[frozenset[str]] = set()
        self._processes: list[subprocess.Popen[bytes]] = []
        self._wg_names: set[str] = set()
        self._log_count = 0
        self._nats: dict[str, Nat] = {}
        self._lan_slots: dict[str, int] = {}
        self._remaps: dict[str, int] = {}
        self._state: Literal["new", "built", "closed"] = "new"

    def _check_built(self) -> None:
        if self._state != "built":
            raise LabError(f"lab {self.run_id or '(not built)'} is {self._state}")

    # -- names --------------------------------------------------------------------------

    @property
    def netns_prefix(self) -> str:
        return naming.netns_prefix(self.run_id)

    @property
    def router_netns(self) -> str:
        return naming.router_netns(self.run_id)

    @property
    def dir(self) -> Path:
        """The lab's temporary directory (removed by ``close()``)."""
        return lab_dir(self.run_id)

    def host(self, host: str | Host) -> Host:
        """A host by name (``h1``...) or the host itself."""
        if isinstance(host, Host):
            return host
        for candidate in self.hosts:
            if candidate.name == host:
                return candidate
        raise LabError(f"no host {host!r} in lab {self.run_id or '(not built)'}")

    def address_of(self, host: str | Host, family: Family = 4) -> Address:
        """A host's underlay address in the given family."""
        h = self.host(host)
        if family == 4:
            return h.ipv4.ip
        if family == 6:
            return h.ipv6.ip
        raise ValueError(f"family is 4 or 6, not {family!r}")

    def wg_ifname(self, host: str | Host) -> str:
        """The WireGuard interface name for a host, unique on the machine.

        ``close()`` removes the wireguard-go socket of every name handed out here.
        """
        name = self.host(host).wg_ifname
        self._wg_names.add(name)
        return name

    def state_dir(self, host: str | Host) -> Path:
        """A private directory for a host (e.g. meshd's state dir), inside the lab's."""
        path = self.dir / "hosts" / self.host(host).name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
