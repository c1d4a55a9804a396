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
deferred: every module is the real one already.

**Importing this module imports py-libp2p that way** (once per process). Every module of
meshd that imports py-libp2p imports this one first, in an import block of its own::

    import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p without what meshd never runs)
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

__all__ = ["DEFERRED", "STACK", "deferred_loaded", "is_lean", "lean_libp2p"]

log = logging.getLogger(__name__)

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
}
"""py-libp2p 0.8.1 modules meshd defers, and why it never reaches them."""

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

_lock = threading.RLock()
_released: set[str] = set()  # deferred modules whose real import is under way or done
_loaded: dict[str, str] = {}  # deferred modules loaded for real -> the name that needed it
_lean = False
_deferring_now = False
_handed_out: list[str] = []  # the stand-ins given out: "module.name"


def _deferred_root(name: str) -> str | None:
    for root in DEFERRED:
        if name == root or name.startswith(root + "."):
            return root
    return None


class _StandInMeta(type):
    """The type of a stand-in: using it imports the real module and forwards."""

    _module: str
    _attr: str

    def _real(cls) -> Any:
        return getattr(_load(cls._module, cls._attr), cls._attr)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(cls._real(), name)

    def __instancecheck__(cls, instance: Any) -> bool:
        if cls._module not in _loaded:
            return False  # nothing can be an instance of a class whose module never ran
        real = cls._real()
        return isinstance(real, type) and isinstance(instance, real)

    def __subclasscheck__(cls, subclass: Any) -> bool:
        if cls._module not in _loaded:
            return subclass is cls
        real = cls._real()
        return isinstance(real, type) and issubclass(subclass, real)

    def __repr__(cls) -> str:
        return f"<deferred {cls._module}.{cls._attr}>"


class _StandIn(Exception, metaclass=_StandInMeta):
    """Base of the stand-ins (an Exception, so that naming one in ``except`` is allowed)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "_module" not in cls.__dict__:
            raise ImportError(
                f"{cls.__qualname__} subclasses a deferred py-libp2p name: "
                "remove its module from meshd.gossip.lean_imports.DEFERRED"
            )
        super().__init_subclass__(**kwargs)


class _DeferredModule(types.ModuleType):
    """A placeholder for a deferred module: its names are stand-ins."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        real = sys.modules.get(self.__name__)
        if real is not None and real is not self:
            return getattr(real, name)
        if not _deferring_now:
            # Asked for after py-libp2p's import (by other code): the real thing, at once.
            return getattr(_load(self.__name__, name), name)
        stand_in = _StandInMeta(name, (_StandIn,), {"_module": self.__name__, "_attr": name})
        _handed_out.append(f"{self.__name__}.{name}")
        setattr(self, name, stand_in)
        return stand_in


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        root = _deferred_root(fullname)
        if root is None or root in _released:
            return None
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is None:
            return None  # not there: let the import fail as it would
        spec = importlib.machinery.ModuleSpec(
            fullname, self, is_package=real.submodule_search_locations is not None
        )
        spec.submodule_search_locations = real.submodule_search_locations
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _DeferredModule(spec.name)
        if spec.submodule_search_locations is not None:
            module.__path__ = list(spec.submodule_search_locations)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


_FINDER = _Finder()


def _note_loaded(module: str, needed: str) -> None:
    if module not in _loaded:
        _loaded[module] = needed
        log.info("%s, deferred when py-libp2p was imported, is loaded now (for %s)", module, needed)


def _load(module: str, attr: str) -> types.ModuleType:
    """Import the real ``module`` (deferred until now) and return it."""
    with _lock:
        current = sys.modules.get(module)
        if current is not None and not isinstance(current, _DeferredModule):
            return current
        _note_loaded(module, attr)
        root = _deferred_root(module) or module
        _released.add(root)
        # The placeholders of this tree make way for the real modules.
        for name in [n for n in sys.modules if n == root or n.startswith(root + ".")]:
            if isinstance(sys.modules[name], _DeferredModule):
                del sys.modules[name]
        real = importlib.import_module(module)
        parent, _, child = module.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, real)
        return real


@contextmanager
def _deferring() -> Iterator[None]:
    global _deferring_now
    sys.meta_path.insert(0, _FINDER)
    _deferring_now = True
    try:
        yield
    finally:
        _deferring_now = False
        sys.meta_path.remove(_FINDER)


def lean_libp2p() -> bool:
    """Import :data:`STACK` with :data:`DEFERRED` deferred; True if the import was lean.

    Idempotent. False (and nothing deferred) when ``libp2p`` was already imported.
    """
    global _lean
    with _lock:
        if "libp2p" in sys.modules:
            return _lean
        try:
            with _deferring():
                importlib.import_module("libp2p")
                for name in STACK:
                    importlib.import_module(name)
        except BaseException:
            for name in [n for n in sys.modules if n == "libp2p" or n.startswith("libp2p.")]:
                del sys.modules[name]
            raise
        _lean = True
        return True


def is_lean() -> bool:
    """Whether py-libp2p was imported by :func:`lean_libp2p` with its deferrals."""
    return _lean


def deferred_loaded() -> dict[str, str]:
    """The deferred modules that were loaded after all -> the name that needed each."""
    return dict(_loaded)


lean_libp2p()
