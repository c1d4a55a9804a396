"""Load only the parts of pyroute2 that meshd runs: rtnetlink and WireGuard's generic netlink.

pyroute2's package ``__init__`` imports every socket family and tool it has (NDB and IPDB
with their SQL and event machinery, conntrack, nftables, IPVS, IPset, nl80211, devlink,
ethtool, taskstats, plan9, network-namespace helpers): 232 modules and 11.5 MiB, where
meshd uses ``IPRoute`` (links, addresses, routes) and, for the kernel backend, ``WireGuard``.
While meshd imports pyroute2, the modules of :data:`DEFERRED` are deferred
(:mod:`meshd.deferred`: a placeholder, loaded for real the moment a name taken from it is
used). Nothing in pyroute2 is changed; what meshd runs is pyroute2's own code.

**Importing this module imports pyroute2 that way** (once per process); the modules of
meshd that import pyroute2 import this one first, in an import block of its own.
"""

from __future__ import annotations

from typing import Final

from meshd.deferred import import_lean, imported_lean

__all__ = ["DEFERRED", "is_lean", "lean_pyroute2"]

DEFERRED: Final[dict[str, str]] = {
    # module (and its submodules) -> why meshd never reaches it
    "pyroute2.ndb": "NDB, pyroute2's network database (SQLite, event sources): IPRoute only",
    "pyroute2.ipdb": "IPDB, the older network database: IPRoute only",
    "pyroute2.conntrack": "conntrack: not used",
    "pyroute2.netlink.nfnetlink": "nftables, conntrack sockets: not used",
    "pyroute2.devlink": "devlink: not used",
    "pyroute2.netlink.devlink": "devlink sockets: not used",
    "pyroute2.ethtool": "ethtool: not used",
    "pyroute2.netlink.generic.ethtool": "ethtool over netlink: not used",
    "pyroute2.ipset": "IPset: not used",
    "pyroute2.ipvs": "IPVS: not used",
    "pyroute2.netlink.generic.ipvs": "IPVS sockets: not used",
    "pyroute2.iwutil": "wireless tools: not used",
    "pyroute2.netlink.nl80211": "nl80211: not used",
    "pyroute2.netlink.generic.l2tp": "L2TP: not used",
    "pyroute2.netlink.generic.mptcp": "MPTCP: not used",
    "pyroute2.netlink.connector": "process events: not used",
    "pyroute2.netlink.diag": "socket diagnostics (psutil): not used",
    "pyroute2.netlink.event": "ACPI, thermal and quota events: not used",
    "pyroute2.netlink.ipq": "IPQ: not used",
    "pyroute2.netlink.taskstats": "taskstats: not used",
    "pyroute2.netlink.uevent": "uevents: not used",
    "pyroute2.nslink": "NSPopen: meshd enters namespaces through IPRoute(netns=...)",
    "pyroute2.plan9": "plan9 sockets: not used",
    "pyroute2.wiset": "WiSet: not used",
}
"""pyroute2 0.9 modules meshd defers, and why it never reaches them."""


def lean_pyroute2() -> bool:
    """Import pyroute2 with :data:`DEFERRED` deferred; True if the import was lean.

    Idempotent. False (and nothing deferred) when ``pyroute2`` was already imported.
    """
    return import_lean("pyroute2", DEFERRED)


def is_lean() -> bool:
    """Whether pyroute2 was imported by :func:`lean_pyroute2` with its deferrals."""
    return imported_lean("pyroute2")


lean_pyroute2()
