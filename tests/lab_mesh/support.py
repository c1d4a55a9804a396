"""The lab mesh the root tests of this package start: a founder, every other host joined."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from meshd.lab import Lab
from meshd.lab.demo import LabMesh, wait_for


@contextlib.contextmanager
def running_mesh(
    hosts: Sequence[str],
    network: str,
    *,
    extra: tuple[str, ...] = (),
    founder_extra: tuple[str, ...] = (),
    handshakes_within: float | None = 15,
    check_stopped: bool = True,
) -> Iterator[LabMesh]:
    """A lab of ``hosts``: the first founds ``network`` and the others join it, each node run
    with ``extra`` options (the founder also with ``founder_extra``); with
    ``handshakes_within``, a WireGuard handshake between every pair is awaited that long.
    Every process is stopped and the lab torn down at the end (``check_stopped``: and
    nothing of the mesh is left running)."""
    with Lab(len(hosts)) as lab:
        mesh = LabMesh(lab, network=network)
        try:
            for host in hosts:
                mesh.node(host).extra = extra
            founder = hosts[0]
            mesh.init(founder)
            mesh.node(founder).extra += founder_extra
            mesh.up(founder)
            mesh.join_all(founder, list(hosts[1:]))
            if handshakes_within is not None:
                # First initiations that cross would cost a WireGuard retry (5 s); the mesh
                # breaks such a tie within DEFER (docs/mesh.md, "First handshakes").
                wait_for(
                    lambda: mesh.handshakes_done(list(hosts)),
                    handshakes_within,
                    "a handshake between every pair",
                )
            yield mesh
        finally:
            mesh.close()
        if check_stopped:
            assert not mesh.running()
