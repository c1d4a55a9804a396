"""A lab's hosts and NATs: making a host, adding hosts and NATs to a built lab, finding them.

:class:`LabTopology` is the part of :class:`meshd.lab.lab.Lab` that decides where a host or
a NAT goes (on the router or behind which NAT, with which addresses) and keeps the list;
making them is meshd.lab.plumbing (hosts) and meshd.lab.nat (NAT routers and their rules).
"""

from __future__ import annotations

import ipaddress
import logging

from meshd.lab import naming, plumbing
from meshd.lab import nat as natlib
from meshd.lab.commands import LabError
from meshd.lab.filters import Address
from meshd.lab.nat import Nat, Ports
from meshd.lab.plumbing import Host
from meshd.lab.state import Family, LabState

log = logging.getLogger("meshd.lab")


class LabTopology(LabState):
    """Hosts on the router and behind NATs, and the NATs themselves."""

    def _add_host(self, host: Host) -> None:
        """Make a host on the router: ``build()`` makes each of the first hosts with this."""
        plumbing.add_host(host, self.router_netns, self.public)

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
            host = plumbing.describe_host(self.run_id, index, self.public)
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
        plumbing.add_host_behind(host, nat)
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
