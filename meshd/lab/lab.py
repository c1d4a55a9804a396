"""The lab: N hosts, each in its own network namespace, joined through one router namespace.

::

    with Lab(3) as lab:
        lab.exec("h1", ["ping", "-c1", str(lab.address_of("h2", 6))])
        wg = lab.spawn("h2", ["wireguard-go", lab.wg_ifname("h2")],
                       env={"WG_PROCESS_FOREGROUND": "1"})
        lab.cut("h3"); ...; lab.heal("h3")
        lab.block_udp("h1", "h2")
        lab.partition(["h1", "h2"], ["h3"]); ...; lab.heal_partition()

Building reserves a run id (by creating the lab's temporary directory, which fails if it
exists), then makes the router, then each host. ``close()`` undoes all of it and can be
called at any point, any number of times: after a build that failed half way too. It never
raises; what it cannot remove it logs. See docs/lab.md.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from meshd.lab import naming
from meshd.lab import nat as natlib
from meshd.lab.commands import (
    LabError,
    attempt,
    in_netns,
    ip,
    ip_batch,
    list_links,
    list_netns,
    netns_pids,
    sysctl,
)
from meshd.lab.filters import Address, Pairs, UdpFilter, choose_filter
from meshd.lab.nat import Nat, Ports

log = logging.getLogger("meshd.lab")

STOP_TIMEOUT = 5.0
EXEC_TIMEOUT = 30.0
WG_SOCKET_DIR = "/var/run/wireguard"
MANIFEST = "lab.json"

Stream = int | IO[Any] | None
Family = Literal[4, 6]

#: Set in every namespace before its interfaces exist: addresses are usable at once (no
#: duplicate address detection to wait for) and survive ``ip link set down``.
NETNS_SYSCTLS = {
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.keep_addr_on_down": "1",
    "net.ipv6.conf.default.keep_addr_on_down": "1",
}
ROUTER_SYSCTLS = {
    **NETNS_SYSCTLS,
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
}


@dataclass(frozen=True, slots=True)
class Host:
    """One lab host: its namespace, its uplink to the router and its addresses."""

    name: str
    index: int
    netns: str
    ifname: str
    router_ifname: str
    wg_ifname: str
    ipv4: ipaddress.IPv4Interface
    ipv6: ipaddress.IPv6Interface
    gateway4: ipaddress.IPv4Address
    gateway6: ipaddress.IPv6Address
    #: The NAT the host is behind (its name), or None for a host on the router.
    behind: str | None = None
    #: The namespace of ``router_ifname``: the router's, or that of the NAT it is behind.
    upstream_netns: str = ""


def lab_dir(run_id: str) -> Path:
    """The temporary directory of a run: ``$TMPDIR/meshdlab-RUNID``."""
    return Path(tempfile.gettempdir()) / f"{naming.NETNS_PREFIX}{run_id}"


class Lab:
    """A lab of ``hosts`` hosts behind one router. Build it with ``with`` or ``build()``."""

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

    # -- building -----------------------------------------------------------------------

    def build(self) -> Lab:
        """Make the namespaces, links, addresses and routes; on failure tear down and raise."""
        if self._state != "new":
            raise LabError("a lab is built once")
        self._state = "built"
        atexit.register(self.close)
        try:
            self._reserve()
            self._add_router()
            for host in self.hosts:
                self._add_host(host)
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Lab:
        return self.build()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _reserve(self) -> None:
        """Pick a run id nobody uses; creating its directory is what claims it."""
        taken = {naming.run_id_of_netns(name) for name in list_netns()}
        for _ in range(100):
            run_id = naming.new_run_id()
            if run_id in taken:
                continue
            try:
                lab_dir(run_id).mkdir(mode=0o700)
            except FileExistsError:
                continue
            break
        else:
            raise LabError("no free lab run id found; run `python -m meshd.lab down --all`")
        self.run_id = run_id
        self.hosts = tuple(self._describe(i) for i in range(1, self._size + 1))
        manifest = {
            "run_id": run_id,
            "pid": os.getpid(),
            "created": time.time(),
            "hosts": [host.name for host in self.hosts],
        }
        (self.dir / MANIFEST).write_text(json.dumps(manifest) + "\n")
        log.info("lab %s: %d hosts in %s*", run_id, self._size, self.netns_prefix)

    def _describe(self, index: int) -> Host:
        subnet = naming.subnet(index, self.public)
        return Host(
            name=naming.host_name(index),
            index=index,
            netns=naming.host_netns(self.run_id, index),
            ifname=naming.host_ifname(self.run_id, index),
            router_ifname=naming.router_ifname(self.run_id, index),
            wg_ifname=naming.wg_ifname(self.run_id, index),
            ipv4=subnet.host4,
            ipv6=subnet.host6,
            gateway4=subnet.router4.ip,
            gateway6=subnet.router6.ip,
            upstream_netns=self.router_netns,
        )

    def _add_router(self) -> None:
        ip("netns", "add", self.router_netns)
        sysctl(self.router_netns, ROUTER_SYSCTLS)
        ip("link", "set", "lo", "up", netns=self.router_netns)
        self._filter = choose_filter(self._filter_name, self.router_netns)
        self._filter.setup()

    def _add_host(self, host: Host) -> None:
        ip("netns", "add", host.netns)
        sysctl(host.netns, NETNS_SYSCTLS)
        ip("link", "add", host.ifname, "netns", host.netns, "type", "veth",
           "peer", "name", host.router_ifname, "netns", self.router_netns)  # fmt: skip
        subnet = naming.subnet(host.index, self.public)
        ip_batch(
            [
                f"address add {subnet.router4} dev {host.router_ifname}",
                f"address add {subnet.router6} dev {host.router_ifname} nodad",
                f"link set {host.router_ifname} up",
            ],
            netns=self.router_netns,
        )
        self._host_links(host)

    def _host_links(self, host: Host) -> None:
        ip_batch(
            [
                "link set lo up",
                f"address add {host.ipv4} dev {host.ifname}",
                f"address add {host.ipv6} dev {host.ifname} nodad",
                f"link set {host.ifname} up",
                f"route add default via {host.gateway4} dev {host.ifname}",
                f"route add ::/0 via {host.gateway6} dev {host.ifname}",
            ],
            netns=host.netns,
        )

    # -- NATs and hosts added to a built lab --------------------------------------------

    def add_nat(
        self, name: str | None = None, *, kind: str = "cone", behind: str | Nat | None = None
    ) -> Nat:
        """Add a NAT router (its own namespace): on the lab's router, or behind another NAT.

        ``kind`` is ``cone`` (masquerade keeping ports: endpoint-independent mapping,
        port-restricted filtering) or ``symmetric`` (``masquerade random``: a new port per
        destination). ``name`` defaults to ``nK``. See meshd/lab/nat.py and docs/lab.md.
        """
        self._check_built()
        checked = natlib.check_kind(kind)
        index = len(self._nats) + 1
        name = natlib.check_name(name or f"n{index}")
        if name in self._nats or any(h.name == name for h in self.hosts):
            raise LabError(f"lab {self.run_id} already has a NAT or host called {name!r}")
        lan4 = natlib.lan_address(index, 1)
        if behind is None:
            wan4, wan6 = natlib.wan_subnet(index, self.public)
            outer, upstream_netns = None, self.router_netns
            addresses = (
                ipaddress.IPv4Interface(f"{wan4[2]}/{wan4.prefixlen}"),
                ipaddress.IPv6Interface(f"{wan6[2]}/{wan6.prefixlen}"),
            )
            gateways = (wan4[1], wan6[1])
        else:
            outer = self.nat(behind)
            upstream_netns = outer.netns
            addresses = self._lan_slot(outer)
            gateways = (outer.lan4.ip, outer.lan6.ip)
        made = Nat(
            name=name,
            index=index,
            kind=checked,
            netns=naming.nat_netns(self.run_id, index),
            wan_ifname=naming.nat_wan_ifname(self.run_id, index),
            upstream_ifname=naming.nat_upstream_ifname(self.run_id, index),
            upstream_netns=upstream_netns,
            lan_ifname=naming.nat_lan_ifname(self.run_id, index),
            wan4=addresses[0],
            wan6=addresses[1],
            gateway4=gateways[0],
            gateway6=gateways[1],
            lan4=lan4[0],
            lan6=lan4[1],
            behind=None if outer is None else outer.name,
        )
        self._nats[name] = made
        self._lan_slots[name] = 1
        natlib.build(made, None if outer is None else outer.lan_ifname)
        log.info("lab %s: %s NAT %s behind %s", self.run_id, kind, name, made.behind or "router")
        return made

    def _lan_slot(self, nat: Nat) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv6Interface]:
        self._lan_slots[nat.name] += 1
        return natlib.lan_address(nat.index, self._lan_slots[nat.name])

    def add_host(self, behind: str | Nat | None = None) -> Host:
        """Add a host to a built lab: on the router (public), or on a NAT's LAN.

        Hosts are numbered on from the last one (``h4`` after ``Lab(3)``). A host behind a
        NAT gets the next address of the NAT's LAN (``192.168.K.2``, ``.3``...) and the NAT
        as its gateway; hosts behind the same NAT share that LAN.
        """
        self._check_built()
        index = len(self.hosts) + 1
        if index > naming.MAX_HOSTS:
            raise LabError(f"a lab has at most {naming.MAX_HOSTS} hosts")
        if behind is None:
            host = self._describe(index)
            self.hosts = (*self.hosts, host)
            self._add_host(host)
            return host
        nat = self.nat(behind)
        addr4, addr6 = self._lan_slot(nat)
        host = Host(
            name=naming.host_name(index),
            index=index,
            netns=naming.host_netns(self.run_id, index),
            ifname=naming.host_ifname(self.run_id, index),
            router_ifname=naming.router_ifname(self.run_id, index),
            wg_ifname=naming.wg_ifname(self.run_id, index),
            ipv4=addr4,
            ipv6=addr6,
            gateway4=nat.lan4.ip,
            gateway6=nat.lan6.ip,
            behind=nat.name,
            upstream_netns=nat.netns,
        )
        self.hosts = (*self.hosts, host)
        ip("netns", "add", host.netns)
        sysctl(host.netns, NETNS_SYSCTLS)
        ip("link", "add", host.ifname, "netns", host.netns, "type", "veth",
           "peer", "name", host.router_ifname, "netns", nat.netns)  # fmt: skip
        ip_batch(
            [f"link set {host.router_ifname} master {nat.lan_ifname}",
             f"link set {host.router_ifname} up"],
            netns=nat.netns,
        )  # fmt: skip
        self._host_links(host)
        return host

    @property
    def nats(self) -> tuple[Nat, ...]:
        """The NATs added so far, in order."""
        return tuple(self._nats.values())

    def nat(self, nat: str | Nat) -> Nat:
        """A NAT by name, or the NAT itself."""
        name = nat.name if isinstance(nat, Nat) else nat
        try:
            return self._nats[name]
        except KeyError:
            raise LabError(f"no NAT {name!r} in lab {self.run_id or '(not built)'}") from None

    def public_address_of(self, host: str | Host, family: Family = 4) -> Address:
        """The address the lab's router sees a host's packets from: its own for a public
        host, else the WAN address of the outermost NAT it is behind."""
        h = self.host(host)
        if h.behind is None:
            return self.address_of(h, family)
        nat = self.nat(h.behind)
        while nat.behind is not None:
            nat = self.nat(nat.behind)
        return nat.wan4.ip if family == 4 else nat.wan6.ip

    def remap_nat(self, nat: str | Nat, ports: Ports | None = None) -> Ports:
        """Give a NAT a new public port range and make it forget every mapping.

        As when a laptop moves to another network: every flow behind the NAT (a WireGuard
        session's too) leaves from a new public port on its next packet, and the old
        mapping is gone. Without ``ports``, the next of 1,000-port ranges below 50000
        (21000-21999 first). Returns the range now in use.
        """
        self._check_built()
        n = self.nat(nat)
        self._remaps[n.name] = self._remaps.get(n.name, 0) + 1
        chosen = ports if ports is not None else natlib.next_ports(self._remaps[n.name])
        natlib.remap_ports(n, chosen)
        log.info("lab %s: NAT %s remapped to ports %d-%d", self.run_id, n.name, *chosen)
        return chosen

    def flush_nat(self, nat: str | Nat) -> None:
        """Make a NAT forget every mapping (as if they all timed out), ports unchanged."""
        self._check_built()
        natlib.flush_conntrack(self.nat(nat).netns)

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

    # -- processes ----------------------------------------------------------------------

    def _check_built(self) -> None:
        if self._state != "built":
            raise LabError(f"lab {self.run_id or '(not built)'} is {self._state}")

    def exec(
        self,
        host: str | Host,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = EXEC_TIMEOUT,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside a host's namespace and capture its output.

        ``env`` adds variables to the inherited environment. With ``check``, a non-zero exit
        raises ``subprocess.CalledProcessError``; past ``timeout`` the command is killed and
        ``subprocess.TimeoutExpired`` is raised.
        """
        self._check_built()
        return subprocess.run(
            in_netns(self.host(host).netns, argv),
            check=check,
            timeout=timeout,
            input=input,
            capture_output=True,
            text=True,
            env={**os.environ, **env} if env else None,
        )

    def spawn(
        self,
        host: str | Host,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: Stream = subprocess.DEVNULL,
        stdout: Stream = None,
        stderr: Stream = subprocess.STDOUT,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside a host's namespace; ``close()`` stops it.

        ``env`` adds variables to the inherited environment. Without ``stdout``, output goes
        to a log file in ``self.dir / "logs"`` (named in the debug log). The process gets its
        own session, so a terminal's Ctrl-C reaches only the lab's owner, which stops it.
        """
        self._check_built()
        h = self.host(host)
        log_file: IO[bytes] | None = None
        if stdout is None:
            self._log_count += 1
            logs = self.dir / "logs"
            logs.mkdir(exist_ok=True)
            program = Path(argv[0]).name
            log_file = open(logs / f"{h.name}-{self._log_count}-{program}.log", "wb")  # noqa: SIM115
            stdout = log_file
        try:
            process = subprocess.Popen(
                in_netns(h.netns, argv),
                env={**os.environ, **env} if env else None,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            if log_file is not None:
                log_file.close()
        self._processes.append(process)
        log.debug("lab %s: %s started %s as %d", self.run_id, h.name, list(argv), process.pid)
        return process

    @property
    def pids(self) -> list[int]:
        """The PIDs of the processes started with ``spawn`` that have not been reaped."""
        return [p.pid for p in self._processes if p.poll() is None]

    def stop(self, process: subprocess.Popen[bytes], timeout: float | None = None) -> int:
        """Stop one spawned process (SIGTERM, then SIGKILL after ``timeout``); its status."""
        _stop_children([process], self.stop_timeout if timeout is None else timeout)
        return process.returncode

    # -- faults -------------------------------------------------------------------------

    def cut(self, host: str | Host) -> None:
        """Cut a host off: take the router's end of its link down.

        The host's uplink loses its carrier; packets to and from it are lost, and the router
        answers other hosts with ICMP unreachable. Addresses stay (``keep_addr_on_down``).
        """
        self._check_built()
        h = self.host(host)
        ip("link", "set", h.router_ifname, "down", netns=h.upstream_netns)

    def heal(self, host: str | Host) -> None:
        """Undo ``cut``: bring the router's end of the host's link back up."""
        self._check_built()
        h = self.host(host)
        ip("link", "set", h.router_ifname, "up", netns=h.upstream_netns)

    def _pairs(self, a: str | Host, b: str | Host) -> tuple[frozenset[str], Pairs]:
        ha, hb = self.host(a), self.host(b)
        if ha == hb:
            raise LabError(f"cannot block {ha.name} from itself")
        for h in (ha, hb):
            if h.behind is not None:
                raise LabError(f"{h.name} is behind NAT {h.behind}: blocking works on public hosts")
        pairs: Pairs = []
        for x, y in ((ha, hb), (hb, ha)):
            pairs += [(x.ipv4.ip, y.ipv4.ip), (x.ipv6.ip, y.ipv6.ip)]
        return frozenset((ha.name, hb.name)), pairs

    @property
    def udp_filter(self) -> str:
        """The way UDP is blocked in this lab (``nft``, ``iptables`` or ``iprule``)."""
        self._check_built()
        assert self._filter is not None
        return self._filter.name

    def block_udp(self, a: str | Host, b: str | Host) -> None:
        """Drop UDP between two hosts, both ways and both families (idempotent)."""
        self._check_built()
        key, pairs = self._pairs(a, b)
        if key in self._blocked:
            return
        assert self._filter is not None
        self._filter.block(pairs)
        self._blocked.add(key)

    def unblock_udp(self, a: str | Host, b: str | Host) -> None:
        """Let UDP between two hosts through again (idempotent)."""
        self._check_built()
        key, pairs = self._pairs(a, b)
        if key not in self._blocked:
            return
        assert self._filter is not None
        self._filter.unblock(pairs)
        self._blocked.discard(key)

    def _block_all(self, a: str | Host, b: str | Host) -> None:
        key, pairs = self._pairs(a, b)
        if key in self._parted:
            return
        assert self._filter is not None
        self._filter.block(pairs, "all")
        self._parted.add(key)

    def partition(self, *groups: Sequence[str | Host]) -> None:
        """Split the network: drop every packet between hosts of different ``groups``.

        Both directions, both families, every protocol (TCP, UDP, ICMP), silently, in the
        router: links stay up and nobody is told, as when a WAN link fails somewhere between
        two sites. Hosts in no group still reach everyone. Adds to any partition already in
        place; ``heal_partition()`` removes it all.
        """
        self._check_built()
        names = [[self.host(h).name for h in group] for group in groups]
        seen: set[str] = set()
        for group in names:
            if seen & set(group):
                raise LabError(f"a host is in two groups of a partition: {names}")
            seen |= set(group)
        for i, group in enumerate(names):
            for other in names[i + 1 :]:
                for a in group:
                    for b in other:
                        self._block_all(a, b)

    def heal_partition(self) -> None:
        """Undo every ``partition``: packets flow between all hosts again."""
        self._check_built()
        assert self._filter is not None
        for key in sorted(self._parted, key=sorted):
            a, b = sorted(key)
            self._filter.unblock(self._pairs(a, b)[1], "all")
            self._parted.discard(key)

    @property
    def partitioned(self) -> list[tuple[str, str]]:
        """The host pairs a partition separates now, each as (lower name, higher name)."""
        return sorted((min(key), max(key)) for key in self._parted)

    # -- teardown -----------------------------------------------------------------------

    def detach(self) -> None:
        """Leave the lab running and forget it: neither ``close()`` nor atexit removes it.

        For ``python -m meshd.lab up --keep``; ``destroy_run(run_id)`` removes it later.
        Spawned processes are left running too.
        """
        self._state = "closed"
        atexit.unregister(self.close)

    def close(self) -> list[str]:
        """Remove everything the lab made; never raises. Returns what could not be removed.

        In order: the spawned processes (SIGTERM, SIGKILL after ``stop_timeout``), any
        process still inside a lab namespace, the namespaces (and with them the veths and
        the rules), leftover interfaces, wireguard-go sockets, the temporary directory.
        """
        if self._state == "closed":
            return []
        self._state = "closed"
        atexit.unregister(self.close)
        try:
            _stop_children(self._processes, self.stop_timeout)
        except Exception:  # teardown goes on whatever happens
            log.exception("lab %s: stopping processes failed", self.run_id)
        if not self.run_id:
            return []
        return destroy_run(self.run_id, extra_wg_names=self._wg_names)


def _stop_children(processes: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every live process, wait up to ``timeout`` in all, SIGKILL the rest, reap.

    Then close the pipes of every process given.
    """
    live = [p for p in processes if p.poll() is None]
    for p in live:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in live:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("lab: pid %d ignored SIGTERM for %.1f s, killing it", p.pid, timeout)
            p.kill()
            p.wait()
    for p in processes:
        # Pipes opened by spawn(stdout=PIPE...) die with the process they served.
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                stream.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_strays(run_id: str, namespaces: Sequence[str], timeout: float) -> list[str]:
    """Stop processes left inside this run's namespaces (e.g. ones that daemonised)."""
    strays: list[int] = []
    for netns in namespaces:
        try:
            found = netns_pids(netns)
        except LabError as exc:
            log.warning("lab %s: %s", run_id, exc)
            continue
        for pid in found:
            log.warning("lab %s: stopping pid %d left in %s", run_id, pid, netns)
        strays += found
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while strays and time.monotonic() < deadline:
            strays = [pid for pid in strays if _pid_alive(pid)]
            if strays:
                time.sleep(0.02)
    return [f"process {pid}" for pid in strays]


def destroy_run(run_id: str, *, extra_wg_names: Sequence[str] | set[str] = ()) -> list[str]:
    """Remove every trace of a lab run, found by its run id; never raises.

    Works from any process (``python -m meshd.lab down RUNID``): the run id names all of it.
    Returns (and logs) what could not be removed.
    """
    naming.check_run_id(run_id)
    left: list[str] = []
    try:
        prefix = naming.netns_prefix(run_id)
        namespaces = [name for name in list_netns() if name.startswith(prefix)]
        left += _stop_strays(run_id, namespaces, 2.0)
        for netns in namespaces:
            if not attempt(["ip", "netns", "del", netns]):
                left.append(f"namespace {netns}")
        for ifname in list_links():
            if naming.owns_ifname(run_id, ifname) and not attempt(["ip", "link", "del", ifname]):
                left.append(f"interface {ifname}")
    except Exception as exc:  # teardown goes on whatever happens
        log.exception("lab %s: cleanup of namespaces failed", run_id)
        left.append(f"namespaces of {run_id} ({exc})")
    left += _remove_sockets(run_id, extra_wg_names)
    directory = lab_dir(run_id)
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("lab %s: cannot remove %s: %s", run_id, directory, exc)
        left.append(f"directory {directory}")
    if left:
        log.warning("lab %s: could not remove: %s", run_id, ", ".join(left))
    return left


def _remove_sockets(run_id: str, names: Sequence[str] | set[str]) -> list[str]:
    """Remove wireguard-go sockets of this run (a killed wireguard-go leaves its socket)."""
    left = []
    socket_dir = Path(WG_SOCKET_DIR)
    try:
        found = {p.name for p in socket_dir.iterdir() if naming.owns_ifname(run_id, p.name)}
    except FileNotFoundError:
        found = set()
    except OSError as exc:
        log.warning("lab %s: cannot list %s: %s", run_id, socket_dir, exc)
        found = set()
    for name in sorted(found | {f"{n}.sock" for n in names}):
        try:
            (socket_dir / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("lab %s: cannot remove %s: %s", run_id, socket_dir / name, exc)
            left.append(f"socket {socket_dir / name}")
    return left
