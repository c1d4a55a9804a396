"""The parts of benchmarks/soak.py that need no lab: a SIGTERM unwinds through the lab's
teardown, and when the agreement after the churn is read again (the soak itself runs as
root: tests/lab_mesh/test_root_soak.py)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from benchmarks.fixtures import sigterm_unwinds
from benchmarks.soak import STARTED, Soak
from benchmarks.soak_figures import Process
from meshd.daemon.announce_policy import ADDRESS_CHECK
from meshd.lab.demo import LabMesh


def test_a_sigterm_during_the_run_unwinds_and_the_handler_is_put_back() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are the main thread's")
    before = signal.getsignal(signal.SIGTERM)
    unwound: list[bool] = []

    def run() -> None:
        try:
            with sigterm_unwinds():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5.0)  # the handler runs at once; the sleep is not finished
        finally:
            unwound.append(True)  # what `with Lab(...)` does here: the teardown

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run()
    assert unwound == [True]
    assert time.monotonic() - started < 5.0
    assert signal.getsignal(signal.SIGTERM) is before


@dataclass
class _Popen:
    pid: int


@dataclass
class _Node:
    process: _Popen | None
    digest: str = "d"

    def ask(self, cmd: str) -> dict[str, Any]:
        assert cmd == "status"
        return {"digest": self.digest}


@dataclass
class _Mesh:
    nodes: dict[str, _Node] = field(default_factory=dict)

    def running(self) -> list[str]:
        return [h for h, n in self.nodes.items() if n.process is not None]

    def node(self, host: str) -> _Node:
        return self.nodes[host]


def test_the_final_read_waits_for_the_youngest_daemons_second_announcement() -> None:
    mesh = _Mesh({"h1": _Node(_Popen(1)), "h3": _Node(_Popen(3)), "h4": _Node(None)})
    soak = Soak(cast(LabMesh, mesh), random.Random(1), time.monotonic(), {})
    soak.processes = {
        1: Process("h1", "h1", 1, 0.0),
        2: Process("h3", "h3m1", 2, 20.0),  # h3's earlier daemon, stopped since
        3: Process("h3", "h3m1", 3, 61.5),  # the last to come back
        4: Process("h4", "h4m1", 4, 64.0),  # stopped: not waited for
    }
    assert soak.youngest() == 61.5
    # Its second announcement (relay decision, reflexive candidate) comes 5 s after its
    # start, at the relay decision's next look, or at the announcer's (ADDRESS_CHECK) at last.
    assert STARTED > ADDRESS_CHECK > 5.0
    assert soak.digests(["h1", "h3"]) == {"h1": "d", "h3": "d"}
