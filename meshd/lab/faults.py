"""The faults a lab makes: a host cut off, UDP blocked between two hosts, a partition.

:class:`LabFaults` is the part of :class:`meshd.lab.lab.Lab` that breaks and mends the
network: ``cut``/``heal`` take a host's link down and up; ``block_udp``, ``partition`` and
their undoing drop packets in the router through the lab's :class:`meshd.lab.filters.UdpFilter`
(nft, iptables or ip rules), and remember what they dropped so undoing is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshd.lab.commands import LabError, ip
from meshd.lab.filters import Pairs
from meshd.lab.plumbing import Host
from meshd.lab.state import LabState


class LabFaults(LabState):
    """Cutting hosts off, blocking UDP between two of them, partitioning the network."""

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
