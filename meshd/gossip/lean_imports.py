"""Load only the parts of py-libp2p that meshd runs: the rest is deferred until first use.

meshd runs TCP, Noise, Yamux and gossipsub. Importing any module of py-libp2p 0.8.1 first
runs its package ``__init__``, which imports every transport, security protocol and service
it has (QUIC, WebSocket, TLS and AutoTLS with two HTTP clients, secio, mplex, mDNS, UPnP,
circuit relay, the Kademlia DHT, bitswap, persistent peer stores): about 1,000 modules and
50 MiB that meshd never reaches. Its files are not changed; instead, while
:func:`lean_libp2p` imports the stack, a finder in front of Python's import system *defers*
the modules of :data:`DEFERRED` (what py-libp2p's package ``__init__`` and its core modules
import for features meshd leaves off):

* a deferred module is a placeholder. An attribute taken from it (``from m import name``)
  is a stand-in that imports the real module the moment it is *used*: called, or an
  attribute read from it. Nothing py-libp2p does with these names changes, it only happens
  later, on demand (logged once, so that a deferral that stopped paying for itself is
  seen; :func:`deferred_loaded` lists them);
* ``isinstance`` and ``issubclass`` against a stand-in whose module is not loaded yet are
  False without loading it: no instance of a class can exist before its module ran;
* the ``libp2p`` package's ``__init__`` runs as it is (``new_host`` lives there), with the
  modules above deferred.

What this changes, said plainly: an ``except`` clause naming a stand-in only catches the
stand-in, never the real exception (Python matches exception classes by type, not through
``__subclasscheck__``), so no module whose exceptions py-libp2p catches on a path meshd runs
may be deferred (``libp2p.transport.quic.exceptions`` is not: net_stream.py catches its
errors on every read); a stand-in cannot be subclassed (that raises ImportError at import,
which tests/gossip/test_lean_imports.py would show). Everything else is py-libp2p's own
code, unchanged. The deferred set and the reason for each are in :data:`DEFERRED`; the tests
check that the daemon's import loads none of them, that each loads on first use, and the
gossip suite runs on this import.

If ``libp2p`` was imported before (a process that uses more of py-libp2p), nothing is
deferred: every module is the real one already. The mechanism is :mod:`meshd.deferred`.

**Importing this module imports py-libp2p that way** (once per process). Every module of
meshd that imports py-libp2p imports this one first, in an import block of its own::

    import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p without what meshd never runs)
"""

from __future__ import annotations

from typing import Final

from meshd.deferred import deferred_loaded, import_lean, imported_lean, is_placeholder

__all__ = [
    "BUILT_ON_USE",
    "DEFERRED",
    "STACK",
    "deferred_loaded",
    "is_lean",
    "is_placeholder",
    "lean_libp2p",
]

DEFERRED: Final[dict[str, str]] = {
    # module (and its submodules) -> why meshd never reaches it
    "libp2p.transport.quic.transport": "QUIC transport (aioquic): meshd listens and dials on TCP",
    "libp2p.transport.quic.utils": "QUIC multiaddrs (aioquic): TCP only",
    "libp2p.transport.quic.config": "QUIC settings (aioquic): TCP only",
    "libp2p.transport.quic.connection": "QUIC connections (aioquic): TCP only",
    "libp2p.transport.quic.security": "QUIC's TLS (aioquic): TCP only",
    "libp2p.transport.quic.listener": "QUIC listener (aioquic): TCP only",
    "libp2p.transport.quic.stream": "QUIC streams (aioquic), named in a type alias: TCP only",
    "libp2p.transport.websocket": "WebSocket transport (trio-websocket, wsproto): TCP only",
    "libp2p.transport.webrtc": "WebRTC transport: TCP only",
    "libp2p.transport.webtransport": "WebTransport: TCP only",
    "libp2p.security.tls": "TLS and AutoTLS (ACME over httpx and requests): Noise only",
    "libp2p.security.secio": "secio (pycryptodome): Noise only",
    "libp2p.security.insecure": "plaintext: Noise only",
    "libp2p.discovery.mdns": "mDNS discovery (zeroconf): off (enable_mDNS)",
    "libp2p.discovery.upnp": "UPnP port mapping (miniupnpc): off (enable_upnp)",
    "libp2p.discovery.bootstrap": "py-libp2p's bootstrap dialer: meshd dials its members itself",
    "libp2p.relay": "circuit relay v2 and the Kademlia DHT it imports: not used",
    "libp2p.kad_dht": "Kademlia DHT: not used",
    "libp2p.bitswap": "bitswap: not used",
    "libp2p.rcmgr.prometheus_exporter": "resource manager metrics (prometheus_client): off",
    "libp2p.peer.persistent": "persistent peer stores (SQLite, LevelDB, RocksDB): in memory",
    "libp2p.stream_muxer.mplex": "mplex: Yamux only",
    "prometheus_client": "Prometheus client of py-libp2p's metrics (libp2p.metrics.swarm imports "
    "it for SwarmMetrics, off): meshd's own --metrics imports it on the first scrape",
    "dns.quic": "DNS over QUIC (aioquic) of dnspython, which multiaddr's resolver imports: "
    "meshd's addresses are IP addresses, and a name would be resolved over UDP/TCP DNS",
    "multiaddr.resolvers": "multiaddr's DNS resolver (dnspython, 62 modules): meshd's "
    "addresses are IP addresses; Swarm makes a resolver at start (BUILT_ON_USE) and uses it "
    "only to dial /dns and /dnsaddr addresses",
    "libp2p.crypto.rsa": "RSA keys (pycryptodome, cryptography's RSA): meshd's peers have "
    "Ed25519 keys; a peer's RSA key would load it when deserialised",
    "libp2p.crypto.secp256k1": "secp256k1 keys (coincurve): Ed25519 only, as RSA",
    "cryptography.x509": "X.509 certificates (1.6 MiB): py-libp2p's BasicHost reads them only "
    "for AutoTLS certificates; Noise needs none",
    "libp2p.security.pnet": "private networks (a pre-shared key, pycryptodome's Salsa20 with "
    "cffi and pycparser): Swarm wraps a connection only when given a psk, which meshd is not",
}
"""py-libp2p 0.8.1 modules meshd defers, and why it never reaches them."""

BUILT_ON_USE: Final[dict[str, str]] = {
    "multiaddr.resolvers.DNSResolver": "Swarm makes one when it starts (its constructor reads "
    "/etc/resolv.conf with dnspython); it is used only to dial a /dns or /dnsaddr address",
}
"""Classes of deferred modules whose instances are made when first used (meshd.deferred)."""

STACK: Final = (
    "libp2p.abc",
    "libp2p.crypto.ed25519",
    "libp2p.crypto.x25519",
    "libp2p.network.swarm",
    "libp2p.host.basic_host",
    "libp2p.security.noise.transport",
    "libp2p.stream_muxer.yamux.yamux",
    "libp2p.transport.tcp.tcp",
    "libp2p.transport.upgrader",
    "libp2p.peer.peerstore",
    "libp2p.pubsub.gossipsub",
    "libp2p.pubsub.pubsub",
    "libp2p.tools.anyio_service",
    "libp2p.utils.logging",
)
"""What meshd imports of py-libp2p (meshd.gossip.stack builds the host from these)."""


def lean_libp2p() -> bool:
    """Import :data:`STACK` with :data:`DEFERRED` deferred; True if the import was lean.

    Idempotent. False (and nothing deferred) when ``libp2p`` was already imported.
    """
    return import_lean("libp2p", DEFERRED, STACK, BUILT_ON_USE)


def is_lean() -> bool:
    """Whether libp2p was imported by :func:`lean_libp2p` with its deferrals."""
    return imported_lean("libp2p")


lean_libp2p()
