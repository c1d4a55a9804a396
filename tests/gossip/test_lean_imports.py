"""py-libp2p imported lean (meshd.gossip.lean_imports): what is deferred, and that it loads
on first use. Each check runs in a fresh interpreter, where meshd is the first to import
py-libp2p, as in the daemon."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any


def run_fresh(code: str) -> Any:
    """Run ``code`` in a new interpreter; it prints one JSON value last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_daemon_imports_none_of_what_is_deferred() -> None:
    found = run_fresh(
        """
        import json, sys
        import meshd.daemon.launch, meshd.daemon.service
        from meshd.gossip import lean_imports as lean
        heavy = ["aioquic", "zeroconf", "httpx", "requests", "trio_websocket", "miniupnpc"]
        print(json.dumps({
            "lean": lean.is_lean(),
            "loaded": lean.deferred_loaded(),
            "heavy": [m for m in heavy if m in sys.modules],
            "real_deferred": sorted(
                name for name, module in sys.modules.items()
                if any(name == d or name.startswith(d + ".") for d in lean.DEFERRED)
                and not lean.is_placeholder(module)
            ),
            "modules": len(sys.modules),
        }))
        """
    )
    assert found["lean"] is True
    assert found["loaded"] == {}
    assert found["heavy"] == []
    assert found["real_deferred"] == []
    assert found["modules"] < 1300  # 1,600 with the whole of py-libp2p


def test_a_deferred_name_loads_its_module_when_used() -> None:
    found = run_fresh(
        """
        import json, sys
        import meshd.gossip.host
        from meshd.gossip import lean_imports as lean
        import libp2p
        stand_in = libp2p.InsecureTransport  # what libp2p's __init__ imported: a stand-in
        before = "aioquic" in sys.modules, isinstance(object(), stand_in)
        from libp2p.crypto.ed25519 import create_new_key_pair
        transport = stand_in(create_new_key_pair())  # used: the real class, loaded now
        real = sys.modules["libp2p.security.insecure.transport"]
        print(json.dumps({
            "before": before,
            "type": type(transport).__module__ + "." + type(transport).__name__,
            "isinstance": isinstance(transport, stand_in),
            "real_module": not lean.is_placeholder(real),
            "loaded": sorted(lean.deferred_loaded()),
            "constant": real.PLAINTEXT_PROTOCOL_ID,
        }))
        """
    )
    assert found["before"] == [False, False]
    assert found["type"] == "libp2p.security.insecure.transport.InsecureTransport"
    assert found["isinstance"] is True
    assert found["real_module"] is True
    assert found["loaded"] == ["libp2p.security.insecure.transport"]
    assert found["constant"] == "/plaintext/2.0.0"


def test_code_importing_a_deferred_module_later_gets_the_real_one() -> None:
    found = run_fresh(
        """
        import json
        import meshd.gossip.stack
        from libp2p.security.secio.transport import ID, Transport
        print(json.dumps({"id": ID, "transport": Transport.__module__}))
        """
    )
    assert found == {"id": "/secio/1.0.0", "transport": "libp2p.security.secio.transport"}


def test_the_metrics_collector_imported_after_libp2p_gets_the_real_prometheus_client() -> None:
    # prometheus_client is deferred (py-libp2p's swarm metrics); meshd's collector imports
    # prometheus_client.core, whose own imports reach back into the package: the real
    # package must be loaded before the submodule runs, not halfway through it (it was
    # not, when nothing had read a name from the package before: a circular import).
    found = run_fresh(
        """
        import json
        import meshd.gossip.stack
        import sys
        from meshd.metrics.collector import SnapshotCollector
        from prometheus_client.core import CounterMetricFamily
        import prometheus_client
        print(json.dumps({
            "collector": SnapshotCollector.__module__,
            "family": CounterMetricFamily.__module__,
            "package": type(sys.modules["prometheus_client"]).__name__,
            "counter": prometheus_client.Counter.__module__,
        }))
        """
    )
    assert found == {
        "collector": "meshd.metrics.collector",
        "family": "prometheus_client.metrics_core",
        "package": "module",
        "counter": "prometheus_client.metrics",
    }


def test_a_submodule_of_a_deferred_package_imported_by_name_runs_under_the_real_package() -> None:
    # The principle behind the test above, for any deferred package: a submodule imported by
    # name after the deferral, its package still a placeholder, runs once, with the real
    # package loaded first (it was run under the placeholder: a circular import for one
    # that the package imports itself, prometheus_client.core).
    found = run_fresh(
        """
        import json, sys
        import meshd.gossip.stack
        from meshd import deferred
        before = deferred.is_placeholder(sys.modules["prometheus_client"])
        import prometheus_client.core  # the package's __init__ imports it too
        import prometheus_client.parser  # the package's __init__ does not
        import prometheus_client
        metrics = sys.modules["prometheus_client.metrics"]
        print(json.dumps({
            "before": before,
            "package": type(prometheus_client).__name__,
            "once": prometheus_client.Counter is metrics.Counter
            and prometheus_client.core.Counter is metrics.Counter,
            "loaders": sorted({type(sys.modules[name].__spec__.loader).__name__
                               for name in ("prometheus_client.core", "prometheus_client.parser")}),
            "attribute": prometheus_client.parser is sys.modules["prometheus_client.parser"],
            "loaded": deferred.deferred_loaded(),
        }))
        """
    )
    assert found == {
        "before": True,
        "package": "module",
        "once": True,
        "loaders": ["SourceFileLoader"],
        "attribute": True,
        "loaded": {"prometheus_client": "prometheus_client.core"},
    }


def test_nothing_is_deferred_when_libp2p_came_first() -> None:
    found = run_fresh(
        """
        import json, sys
        import libp2p
        from meshd.gossip import lean_imports as lean
        import meshd.gossip.host
        print(json.dumps({"lean": lean.is_lean(), "aioquic": "aioquic" in sys.modules}))
        """
    )
    assert found == {"lean": False, "aioquic": True}


def test_the_daemon_loads_no_dns_resolver_nor_key_types_it_does_not_use() -> None:
    found = run_fresh(
        """
        import json, sys
        import meshd.daemon.launch, meshd.daemon.service
        from meshd.gossip.lean_imports import is_placeholder
        unused = ["dns", "Crypto", "coincurve", "cffi", "pycparser", "pyroute2"]
        unused.append("cryptography.x509")
        print(json.dumps([
            m for m in unused if m in sys.modules and not is_placeholder(sys.modules[m])
        ]))
        """
    )
    assert found == []


# A peer's public keys as py-libp2p serialises them (protobuf): RSA (1,024 bits), secp256k1.
OTHER_KEYS = [
    "080012a20130819f300d06092a864886f70d010101050003818d0030818902818100f7cb12eff9eaa095b8"
    "ab9567a73dfcfe8dc07c4e1c07d042837888cd4df1fec50cb487f5aec3a1ad6d5fbea9e8ce2eab320b0c78"
    "fd10c9cf9e00806d5de078f7c42a58827661d3816216ad0fd37aaf5aac6f3a93227f21e9ec126f5c3d94c1"
    "6180b8552b296b42364243c1c62040670c2ce6488a4553f04870cf51ca175491c90203010001",
    "08021221029bc8c97ccae02ad5d8f65ca0fa478301e54dd59c019c121721bb75c000ef4c44",
]


def test_a_peers_key_of_another_type_is_still_read() -> None:
    # The lean import's table of deserialisers loads RSA and secp256k1 when it is used.
    keys = OTHER_KEYS
    found = run_fresh(
        f"""
        import json, sys
        import meshd.gossip.host
        from meshd.gossip import lean_imports as lean
        from libp2p.crypto.serialization import deserialize_public_key
        before = [m for m in ("Crypto", "coincurve") if m in sys.modules]
        read = [type(deserialize_public_key(bytes.fromhex(k))).__name__ for k in {keys!r}]
        print(json.dumps({{"before": before, "read": read,
                          "loaded": sorted(lean.deferred_loaded())}}))
        """
    )
    assert found == {
        "before": [],
        "read": ["RSAPublicKey", "Secp256k1PublicKey"],
        "loaded": ["libp2p.crypto.rsa", "libp2p.crypto.secp256k1"],
    }


def test_swarms_dns_resolver_is_made_when_first_used() -> None:
    found = run_fresh(
        """
        import json, sys
        import trio
        from meshd.gossip.stack import build_stack
        from meshd.gossip import lean_imports as lean
        from libp2p.network import swarm as swarm_module
        resolver = swarm_module.DNSResolver()  # as Swarm makes it when it starts
        before = "dns" in sys.modules
        resolve = resolver.resolve  # used: made now
        print(json.dumps({
            "before": before,
            "after": "dns.asyncresolver" in sys.modules,
            # dnspython's DNS over QUIC stays deferred: its loading is deferred like the
            # first import was (it loaded aioquic with the resolver before).
            "quic": ["aioquic" in sys.modules, lean.is_placeholder(sys.modules["dns.quic"])],
            "method": type(resolve).__name__,
            "loaded": sorted(lean.deferred_loaded()),
        }))
        """
    )
    assert found == {
        "before": False,
        "after": True,
        "quic": [False, True],
        "method": "method",
        "loaded": ["multiaddr.resolvers"],
    }
