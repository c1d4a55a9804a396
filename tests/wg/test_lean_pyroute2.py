"""pyroute2 imported lean (meshd.wg.lean_pyroute2): what meshd uses of it works, and nothing
deferred is loaded for it. Run in a fresh interpreter, where meshd imports pyroute2 first."""

from __future__ import annotations

from tests.gossip.test_lean_imports import run_fresh


def test_links_and_addresses_are_read_without_loading_what_is_deferred() -> None:
    found = run_fresh(
        """
        import json, sys, trio
        from meshd.wg.netlink import Netlink
        from meshd.wg import lean_pyroute2
        from meshd import deferred
        addresses = trio.run(Netlink().addresses)
        print(json.dumps({
            "lean": lean_pyroute2.is_lean(),
            "loopback": any(name == "lo" for name, _ in addresses),
            "loaded": deferred.deferred_loaded(),
            "real_deferred": sorted(
                name for name, module in sys.modules.items()
                if any(name == d or name.startswith(d + ".") for d in lean_pyroute2.DEFERRED)
                and not deferred.is_placeholder(module)
            ),
        }))
        """
    )
    assert found == {"lean": True, "loopback": True, "loaded": {}, "real_deferred": []}


def test_a_deferred_part_loads_when_used() -> None:
    found = run_fresh(
        """
        import json, sys
        import meshd.wg.lean_pyroute2
        import pyroute2
        from meshd import deferred
        ndb = pyroute2.NDB  # a stand-in: NDB's module never ran
        before = deferred.is_placeholder(sys.modules["pyroute2.ndb.main"])
        from pyroute2.ndb.main import NDB  # imported after: the real class
        print(json.dumps({"before": before, "real": NDB.__module__,
                          "loaded": sorted(deferred.deferred_loaded())}))
        """
    )
    assert found == {"before": True, "real": "pyroute2.ndb.main", "loaded": ["pyroute2.ndb.main"]}


def test_the_daemon_imports_no_pyroute2_until_the_kernel_backend_runs() -> None:
    found = run_fresh(
        """
        import json, sys
        import meshd.daemon.launch, meshd.daemon.service, meshd.wg.backend_select
        print(json.dumps({"pyroute2": "pyroute2" in sys.modules,
                          "asyncio": "asyncio" in sys.modules}))
        """
    )
    assert found == {"pyroute2": False, "asyncio": False}
