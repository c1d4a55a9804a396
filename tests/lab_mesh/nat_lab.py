"""The lab of the NAT tests that share it: h1 and h2 public, h3 and h4 each behind its own
symmetric NAT (they can never reach each other directly, and nobody can dial in to them); h1
founds the network and the others join it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from meshd.lab import Lab
from meshd.lab.demo import LabMesh
from tests.lab.test_root_lab import traces

PUBLIC = ["h1", "h2"]
NATED = ["h3", "h4"]


@contextlib.contextmanager
def symmetric_pair_lab(
    network: str,
    extra: tuple[str, ...],
    *,
    public: bool = False,
    per_host: Mapping[str, tuple[str, ...]] | None = None,
) -> Iterator[LabMesh]:
    """The mesh of that lab, announcing every 2 s, each node run with ``extra`` and then its
    own ``per_host`` options; ``public``: the public hosts have public addresses
    (``Lab(public=True)``). Every process is stopped and the lab torn down, leaving no
    trace, at the end."""
    with Lab(2, public=public) as lab:
        for name in ("sa", "sb"):
            lab.add_host(behind=lab.add_nat(name, kind="symmetric"))
        mesh = LabMesh(lab, network=network, announce_interval="2s")
        try:
            for host in PUBLIC + NATED:
                mesh.node(host).extra = extra + (per_host or {}).get(host, ())
            mesh.init("h1")
            mesh.up("h1")
            mesh.join_all("h1", ["h2", *NATED])
            yield mesh
        finally:
            mesh.close()
        assert not mesh.running()
    assert traces(lab.run_id) == []


def via(mesh: LabMesh, host: str, target: str) -> str | None:
    """The route ``host`` has to ``target`` (``direct``, ``via NAME``), as ``peers`` says."""
    row = next(r for r in mesh.node(host).peers() if r["name"] == target)
    route = row.get("route")
    return route if isinstance(route, str) else None
