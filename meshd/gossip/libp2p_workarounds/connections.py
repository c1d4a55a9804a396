"""The host's connections outside the inbound gate: listening, dialling, Yamux credit.

py-libp2p 0.8.1 decides things about connections that meshd decides otherwise, or does them
in ways that cost a mesh dearly. What is here, and why:

* :func:`stop_auto_connector`: libp2p dials whatever its peerstore holds; which peers we
  connect to is the membership layer's decision.
* :func:`widen_listen_backlog`: libp2p listens with a queue of 128, which a connect flood
  fills ahead of an honest dialler.
* ``_open_exclusive_listeners``: libp2p listens with SO_REUSEPORT, so two daemons shared
  a port; ours does not bind a port in use, and :func:`unbound_listen_addrs` says which
  addresses did not bind (libp2p only logs them).
* :func:`forget_failed_dial`: what libp2p remembers of failed dials kept a member that
  moved unreachable.
* ``_release_window_at_half``: Yamux returned receive-window credit after every read, one
  more frame per gossip RPC received.

The two functions named with an underscore replace libp2p's own;
:mod:`meshd.gossip.libp2p_workarounds` puts them in place when the package is imported.

To re-check on an upgrade of py-libp2p (the tests are in tests/gossip/test_host.py):

- Yamux credit at half the window (patch; CPU).
  ``YamuxStream._auto_tune_and_send_window_update`` and what it uses (``window_lock``,
  ``_pending_recv_release``, ``target_recv_window``, ``send_window_update``).
- The auto-connector (:func:`stop_auto_connector`). ``Swarm.auto_connector`` and
  ``AutoConnector.stop``. No test: a member we disconnect must stay disconnected.
- The listen queue (:func:`widen_listen_backlog`). ``sock.listen(128)`` in
  ``transport/tcp/tcp.py: _open_reuseport_listeners`` and ``TCPListener.listeners``.
  Test: test_the_listen_queue_is_wide.
- Exclusive TCP listen ports (patch; :func:`unbound_listen_addrs`). ``transport/tcp/tcp.py:
  _open_reuseport_listeners`` sets SO_REUSEPORT, so a second daemon shared a port already in
  use and dials landed on either; ours sets SO_REUSEADDR only (a restart still binds past
  TIME_WAIT). ``Swarm.listen`` only logs an address that does not bind: the host checks
  ``Swarm.listeners`` (keyed by the multiaddr's text) after listening. Tests:
  tests/daemon/test_startup.py.
- Dials to a new address (:func:`forget_failed_dial`). ``Swarm._negative_peer_cache``,
  ``Swarm.unblock_peer``, ``PeerStore.clear_addrs`` and the one-address-per-class choice in
  ``Swarm.dial_peer``. Test: test_a_dial_to_a_new_address_ignores_an_earlier_failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import multiaddr
import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import IHost
from libp2p.network.auto_connector import AutoConnector
from libp2p.peer.id import ID
from libp2p.stream_muxer.yamux.yamux import YamuxStream
from libp2p.transport.exceptions import OpenConnectionError

__all__ = [
    "LISTEN_BACKLOG",
    "forget_failed_dial",
    "stop_auto_connector",
    "unbound_listen_addrs",
    "widen_listen_backlog",
]


# -- the auto-connector ----------------------------------------------------------------------


async def stop_auto_connector(host: IHost) -> None:
    """Stop the swarm's auto-connector; call it once the host runs."""
    # py-libp2p's auto-connector dials peers from the peerstore (which fills from the
    # signed records riding on every gossip RPC) until it holds ~100 connections, and
    # watermarks cannot turn it off. Which peers we connect to is the membership
    # layer's decision: a member we disconnect, revoked say, must stay disconnected.
    connector = getattr(host.get_network(), "auto_connector", None)
    if isinstance(connector, AutoConnector):
        await connector.stop()


# -- listening -------------------------------------------------------------------------------


LISTEN_BACKLOG: Final = 4096
"""The listen queue we ask the kernel for (it caps it at ``net.core.somaxconn``)."""


def widen_listen_backlog(host: IHost, backlog: int = LISTEN_BACKLOG) -> None:
    """Give the host's TCP listeners a listen queue of ``backlog`` (py-libp2p asks for 128).

    Under a connect flood the kernel's accept queue is where an honest dialler waits for
    its turn. With 128 places, a flooder keeping more connects than that in flight filled
    it, and the kernel dropped the honest SYN, which TCP only retries after 1, 3, 7 s:
    joining took seconds longer than the daemon needed to accept and shed the flood.
    ``listen()`` on a listening socket only changes its backlog.
    """
    for listener in host.get_network().listeners.values():
        for trio_listener in getattr(listener, "listeners", ()):
            sock = getattr(trio_listener, "socket", None)
            if sock is not None:
                sock.listen(backlog)


def unbound_listen_addrs(host: IHost, wanted: Sequence[multiaddr.Multiaddr]) -> list[str]:
    """The addresses of ``wanted`` that the host does not listen on (they did not bind)."""
    listening = host.get_network().listeners
    return [str(addr) for addr in wanted if str(addr) not in listening]


# A patch: put in place of libp2p's when the package is imported.
async def _open_exclusive_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """libp2p's ``_open_reuseport_listeners`` without SO_REUSEPORT: a port in use does not
    bind (two daemons never share one). ``host`` None listens on 0.0.0.0 only, as there."""
    family = trio.socket.AF_INET6 if host is not None and ":" in host else trio.socket.AF_INET
    ip = host or "0.0.0.0"  # noqa: S104 (the wildcard, as asked)
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        await sock.bind((ip, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise OpenConnectionError(f"Failed to listen on {ip}:{port}: {exc}") from exc
    return [trio.SocketListener(sock)]


# -- dialling --------------------------------------------------------------------------------


def forget_failed_dial(host: IHost, peer_id: ID) -> None:
    """Make the next dial of ``peer_id`` go to the address it is given, whatever came before.

    Two things py-libp2p remembers defeated a dial to a member's *new* address: its 60 s
    negative cache of peers whose every address failed (renewed by each failed re-dial),
    which refused the dial outright ("recently failed all addresses"); and the peerstore,
    which kept the old address, while ``Swarm.dial_peer`` dials at most one address per
    transport class (``MAX_ADDRS_PER_PEER``), the old one first. Both are cleared for
    ``peer_id``; the caller's dial policy owns backoff (the daemon's is per member, capped,
    and reset when a member's addresses change).
    """
    swarm = host.get_network()
    unblock = getattr(swarm, "unblock_peer", None)
    if callable(unblock):
        unblock(peer_id)
    host.get_peerstore().clear_addrs(peer_id)


# -- Yamux (a patch: put in place of libp2p's when the package is imported) ------------------


async def _release_window_at_half(self: YamuxStream, *, bytes_read: int = 0) -> None:
    """Give the sender its credit back once half the receive window has been read.

    py-libp2p 0.8.1 sends a WINDOW_UPDATE after every read of a stream with room left, that
    is one more encrypted frame and socket write for every gossip RPC received (about a
    quarter of the CPU per message). go-yamux waits for half the window; so does this.
    The window keeps its initial size (256 KiB), ample on the links we run over.
    """
    async with self.window_lock:
        self._pending_recv_release += bytes_read
        if self._pending_recv_release < self.target_recv_window // 2:
            return
        delta = self._pending_recv_release
        self._pending_recv_release = 0
        self.recv_window += delta
    await self.send_window_update(delta, skip_lock=True)
