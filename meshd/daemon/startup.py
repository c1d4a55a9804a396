"""Safe start-up: claim the state dir, then check, before anything on the system changes.

:func:`claim` runs first in every daemon (meshd.daemon.launch). In this order:

1. the state dir's lock (``meshd.lock``, an exclusive ``flock`` held for the daemon's life):
   a second daemon for the same state dir stops here, whatever its other options, having
   touched nothing;
2. the listen addresses: each must be a TCP multiaddr whose address this host has and whose
   port is free (bound once, exclusively, and closed again; port 0 too, for its address); a
   start whose every address is ``/ip6/::`` on a host with IPv6 turned off goes on, warned
   that no member can dial it;
3. WireGuard, unless ``--wg-backend none``: the backend is there (the kernel module, or
   ``wireguard-go``), we may create interfaces (root or CAP_NET_ADMIN), no other process
   serves the interface (its UAPI socket answers) and no interface of that name exists, the
   UDP port is free, and the overlay prefix is not routed through another interface (another
   node of the network runs on this host).

Each failure is a MeshdError with its exit status (meshd.cli.failures): nothing was created,
so nothing is deleted on the way out. The checks race with other programs (a port can be
taken between the check and the bind): the bind itself still fails then, with the same kind
of error (meshd.gossip.host), but after WireGuard was set up.

:func:`rollback` is the other half for ``join``: a join that fails leaves the state dir as it
found it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from meshd.errors import (
    AddressUnavailable,
    AlreadyRunning,
    BackendError,
    CommandLineError,
    NotPermitted,
)
from meshd.node.layout import STORE_FILES
from meshd.node.permissions import state_dir_error
from meshd.wg.errors import BackendUnavailable

if TYPE_CHECKING:
    from meshd.daemon.config import DaemonConfig
    from meshd.node.statedir import NodeDir

log = logging.getLogger(__name__)

LOCK_NAME: Final = "meshd.lock"
CAP_NET_ADMIN: Final = 12
MULTIADDR_HINT: Final = "write it as a multiaddr, like /ip4/10.0.0.1/tcp/7100 or /ip6/::/tcp/7100"


class StateDirLock:
    """The exclusive lock of a state dir, held while the file descriptor is open.

    Taken again in the same process (the foreground runner, then the daemon it runs), it is
    the same lock, counted: the last release closes it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self.holders = 1

    def release(self) -> None:
        self.holders -= 1
        if self.holders > 0 or self._fd is None:
            return
        _held.pop(self.path, None)
        os.close(self._fd)  # closing drops the flock
        self._fd = None


_held: dict[Path, StateDirLock] = {}


def lock_state_dir(root: Path) -> StateDirLock:
    """Take ``root``'s lock, or fail at once (AlreadyRunning) if a daemon holds it."""
    path = root.resolve() / LOCK_NAME
    held = _held.get(path)
    if held is not None:
        held.holders += 1
        return held
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise state_dir_error(root, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_pid(fd)
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise state_dir_error(root, exc) from None
        raise AlreadyRunning(
            f"a meshd daemon already runs for {root}" + (f" (pid {holder})" if holder else ""),
            hint=f"stop it first (`meshd down --state-dir {root}`), or use another --state-dir",
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    lock = _held[path] = StateDirLock(path, fd)
    return lock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# --- listen addresses --------------------------------------------------------------------------


def listen_endpoint(text: str) -> tuple[socket.AddressFamily, str, int]:
    """The (family, address, port) of a TCP listen multiaddr, or a CommandLineError."""
    parts = text.split("/")
    if not text.startswith("/"):
        raise CommandLineError(f"--listen {text!r} is not a multiaddr", hint=MULTIADDR_HINT)
    if len(parts) < 5 or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        raise CommandLineError(
            f"--listen {text!r} is not a TCP listen address (/ip4 or /ip6, then /tcp)",
            hint=MULTIADDR_HINT,
        )
    if len(parts) > 5 and not (len(parts) == 7 and parts[5] == "p2p"):
        raise CommandLineError(
            f"--listen {text!r}: nothing may follow the port", hint=MULTIADDR_HINT
        )
    try:
        address = ipaddress.ip_address(parts[2])
        port = int(parts[4])
    except ValueError:
        raise CommandLineError(
            f"--listen {text!r} does not name an IP address and a port", hint=MULTIADDR_HINT
        ) from None
    if address.version != (4 if parts[1] == "ip4" else 6) or not 0 <= port <= 65535:
        raise CommandLineError(f"--listen {text!r} is not a valid address", hint=MULTIADDR_HINT)
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return family, str(address), port


#: Linux's switch for IPv6 on every interface (sysctl net.ipv6.conf.all.disable_ipv6).
IPV6_OFF: Final = Path("/proc/sys/net/ipv6/conf/all/disable_ipv6")


def check_listen(listen: Sequence[str], ipv6_switch: Path = IPV6_OFF) -> str | None:
    """Each listen address parses and binds now (exclusively, then released; port 0 too:
    its address must be this host's). Returns a warning where the start may go on but no
    member can dial it (:func:`unreachable_listen`; ``ipv6_switch``: the sysctl to read)."""
    for text in listen:
        family, address, port = listen_endpoint(text)
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # EAFNOSUPPORT: a kernel without IPv6 (ipv6.disable=1)
            name = "IPv6" if family == socket.AF_INET6 else "IPv4"
            raise AddressUnavailable(
                f"--listen {text}: this host has no {name} (its kernel offers none)",
                hint="listen on an address of a family it has (`ip addr`)",
            ) from None
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as exc:
                raise _bind_error(f"--listen {text}", f"TCP port {port}", exc) from None
    return unreachable_listen(listen, _is_on(ipv6_switch))


def _is_on(switch: Path) -> bool:
    try:
        return switch.read_text().strip() == "1"
    except OSError:  # no such switch: no IPv6 in this kernel, which the bind said already
        return False


def unreachable_listen(listen: Sequence[str], ipv6_off: bool) -> str | None:
    """Why no member can dial us at ``listen`` (bound, as :func:`check_listen` found),
    if none can: every address IPv6's unspecified one while IPv6 is off (``ipv6_off``),
    which no address of this host will ever stand for. None otherwise."""
    if not ipv6_off or not listen:
        return None
    for text in listen:
        family, address, _ = listen_endpoint(text)
        if family != socket.AF_INET6 or not ipaddress.ip_address(address).is_unspecified:
            return None
    port = listen_endpoint(listen[0])[2]
    return (
        f"listening on {', '.join(listen)} alone, and IPv6 is turned off on this host "
        "(net.ipv6.conf.all.disable_ipv6 = 1): this node has no address to announce, so no "
        f"member can dial it; listen on IPv4 too (--listen /ip4/0.0.0.0/tcp/{port}), or "
        "turn IPv6 on"
    )


def _bind_error(what: str, port: str, exc: OSError) -> Exception:
    if exc.errno == errno.EADDRINUSE:
        return AddressUnavailable(
            f"{what}: {port} is already in use",
            hint="stop what listens there (see `ss -ltnp`), or choose another port",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return AddressUnavailable(
            f"{what}: this host has no such address",
            hint="use one of its addresses (`ip addr`), or 0.0.0.0 for all",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return NotPermitted(
            f"{what}: no permission to bind {port}",
            hint="ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a higher one",
        )
    return AddressUnavailable(f"{what}: cannot bind: {exc.strerror or exc}")


# --- WireGuard -----------------------------------------------------------------------------------


def has_net_admin() -> bool:
    """Whether this process may create interfaces and routes (CAP_NET_ADMIN is effective)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def check_backend(kind: str) -> None:
    """The backend ``kind`` (resolved: kernel or userspace) can run here."""
    from meshd.wg.backend_kernel import INSTALL_HINT as KERNEL_HINT
    from meshd.wg.backend_kernel import kernel_module_available
    from meshd.wg.backend_userspace import INSTALL_HINT as USERSPACE_HINT

    if kind == "kernel" and not kernel_module_available():
        raise BackendUnavailable("the kernel has no WireGuard module", hint=KERNEL_HINT)
    if kind == "userspace" and shutil.which("wireguard-go") is None:
        raise BackendUnavailable("wireguard-go is not installed", hint=USERSPACE_HINT)
    if not has_net_admin():
        raise NotPermitted(
            "creating the WireGuard interface needs root or CAP_NET_ADMIN",
            hint="run as root, or with CAP_NET_ADMIN (the systemd unit grants it), "
            "or with --wg-backend none for membership only",
        )


def check_interface_free(ifname: str, socket_dir: str | None = None) -> None:
    """No other process serves ``ifname`` (a stale UAPI socket nobody answers is removed)."""
    from meshd.wg.uapi import DEFAULT_SOCKET_DIR, socket_path

    path = socket_path(ifname, socket_dir or DEFAULT_SOCKET_DIR)
    if not os.path.lexists(path):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            log.warning("removing the stale WireGuard socket %s (nobody answers on it)", path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        except OSError:
            pass
    raise AlreadyRunning(
        f"interface {ifname} is already run by another process ({path} answers)",
        hint="choose another --interface, or stop the process that runs it",
    )


def check_udp_port(port: int) -> None:
    """WireGuard's UDP port is free, on IPv4 and (if this host has it) IPv6."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):  # noqa: S104
        try:
            probe = socket.socket(family, socket.SOCK_DGRAM)
        except OSError:
            continue  # no IPv6 here
        with probe:
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6:
                    continue
                if exc.errno == errno.EADDRINUSE:
                    raise AddressUnavailable(
                        f"WireGuard's UDP port {port} is already in use",
                        hint="choose another --listen-port, or stop what uses it "
                        f"(`ss -ulpn 'sport = :{port}'`)",
                    ) from None
                raise _bind_error(f"--listen-port {port}", f"UDP port {port}", exc) from None


#: Link types (``/sys/class/net/IFNAME/type``, ARPHRD_*) a user may have named by mistake.
_LINK_TYPES = {1: "an Ethernet interface (or a veth, a bridge)", 772: "the loopback interface"}
ARPHRD_NONE = 65534  # no link-layer header: WireGuard's and every TUN device's


def interface_taken(ifname: str, sys_net: Path = Path("/sys/class/net")) -> AlreadyRunning:
    """The error for an interface ``ifname`` that exists already. Deleting it is suggested
    only for a tunnel (what a crashed meshd leaves), never for a NIC or the loopback one."""
    try:
        kind = int((sys_net / ifname / "type").read_text())
    except (OSError, ValueError):
        kind = ARPHRD_NONE  # unknown: as before
    if kind != ARPHRD_NONE:
        what = _LINK_TYPES.get(kind, f"not a tunnel (link type {kind})")
        return AlreadyRunning(
            f"network interface {ifname} already exists: it is {what}, not one meshd made",
            hint="choose another --interface for meshd's own (meshd0 by default)",
        )
    return AlreadyRunning(
        f"network interface {ifname} already exists",
        hint=f"choose another --interface, or delete it (`ip link del {ifname}`) if it is "
        "left over from a meshd that crashed",
    )


async def check_links(ifname: str, overlay: ipaddress.IPv6Network | None) -> None:
    """No interface ``ifname`` exists yet, and no other interface carries the overlay route."""
    from meshd.wg.netlink import Netlink

    netlink = Netlink()
    try:
        exists = await netlink.link_index(ifname) is not None
        routed = await netlink.route_interfaces(overlay) if overlay is not None else []
    except BackendError as exc:
        raise NotPermitted(
            f"cannot read this host's interfaces and routes: {exc}",
            hint="run as root or with CAP_NET_ADMIN",
        ) from None
    if exists:
        raise interface_taken(ifname)
    others = [name for name in routed if name != ifname]
    if others:
        raise AlreadyRunning(
            f"the overlay {overlay} is already routed through {', '.join(others)}: another "
            "node of this network runs on this host",
            hint="run one node of a network per host (or per network namespace)",
        )


async def check_wireguard(
    kind: str, ifname: str, listen_port: int, overlay: ipaddress.IPv6Network | None
) -> None:
    """Everything WireGuard needs, checked before the interface is created."""
    if kind == "none":
        return
    check_backend(kind)
    check_interface_free(ifname)
    await check_links(ifname, overlay)
    check_udp_port(listen_port)


@contextlib.asynccontextmanager
async def claim(config: DaemonConfig, node: NodeDir) -> AsyncIterator[StateDirLock]:
    """The state dir's lock, then every check; the lock is held until the body ends."""
    from meshd.daemon.wireguard_open import backend_kind

    lock = lock_state_dir(node.paths.root)
    try:
        warning = check_listen(config.listen)
        if warning is not None:
            log.warning("%s", warning)
        overlay = node.anchor.overlay
        assert isinstance(overlay, ipaddress.IPv6Network)
        kind = backend_kind(config.wg_backend)
        await check_wireguard(kind, config.interface, config.listen_port, overlay)
        yield lock
    finally:
        lock.release()


async def preflight(config: DaemonConfig) -> None:
    """The checks of :func:`claim` that need no state dir: ``join`` runs them before it
    spends a use of the invite on a node whose daemon could not start."""
    from meshd.daemon.wireguard_open import backend_kind

    check_listen(config.listen)  # its warning is said by the daemon join starts (claim)
    check_metrics(config.metrics)
    await check_wireguard(
        backend_kind(config.wg_backend), config.interface, config.listen_port, None
    )


def check_metrics(address: str | None) -> None:
    """``--metrics``' address binds (AddressUnavailable, one line, if not). ``up`` needs no
    such try: it binds the address for good after the state dir's lock (launch.run), so that
    a second daemon is told it is one (exit 4), whatever its ports."""
    if address is not None:
        from meshd.daemon.metrics import bind

        bind(address).close()


# --- join ------------------------------------------------------------------------------------


@contextlib.contextmanager
def rollback(
    root: Path,
    created: Sequence[str] = ("node.key", "wg.key", LOCK_NAME, *STORE_FILES),
) -> Iterator[None]:
    """Leave ``root`` as it was if the join fails: what ``init`` does too
    (:func:`meshd.node.statedir.undone_on_failure`), for the files a join makes."""
    from meshd.node.statedir import undone_on_failure  # the daemon's imports, not up's early ones

    with undone_on_failure(root, created):
        yield


@contextlib.contextmanager
def quiet_libp2p() -> Iterator[None]:
    """py-libp2p's own warnings kept out of the body (a join's failed dials: the join says in
    one line what failed)."""
    forwarded = logging.getLogger("meshd.gossip.libp2p")
    level = forwarded.level
    forwarded.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        forwarded.setLevel(level)
