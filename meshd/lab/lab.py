"""The lab: N hosts, each in its own network namespace, joined through one router namespace.

::

    with Lab(3) as lab:
        lab.exec("h1", ["ping", "-c1", str(lab.address_of("h2", 6))])
        wg = lab.spawn("h2", ["wireguard-go", lab.wg_ifname("h2")],
                       env={"WG_PROCESS_FOREGROUND": "1"})
        lab.cut("h3"); ...; lab.heal("h3")
        lab.block_udp("h1", "h2")
        lab.partition(["h1", "h2"], ["h3"]); ...; lab.heal_partition()

Building reserves a run id (by creating the lab's temporary directory, which fails if it
exists), then makes the router, then each host. ``close()`` undoes all of it and can be
called at any point, any number of times: after a build that failed half way too. It never
raises; what it cannot remove it logs. See docs/lab.md.

This module holds the life of a lab (build, close, detach); the rest of :class:`Lab` is in
the classes it is made of: its state and names (meshd.lab.state), hosts and NATs
(meshd.lab.topology), processes (meshd.lab.processes) and faults (meshd.lab.faults). The
namespaces and veths are made by meshd.lab.plumbing and removed by meshd.lab.teardown.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import threading
import time
from types import FrameType, TracebackType

from meshd.lab import naming, plumbing
from meshd.lab.commands import LabError, list_netns
from meshd.lab.faults import LabFaults
from meshd.lab.filters import choose_filter
from meshd.lab.processes import LabProcesses, stop_children
from meshd.lab.state import MANIFEST, lab_dir
from meshd.lab.teardown import destroy_run
from meshd.lab.topology import LabTopology

log = logging.getLogger("meshd.lab")


class Lab(LabTopology, LabProcesses, LabFaults):
    """A lab of ``hosts`` hosts behind one router. Build it with ``with`` or ``build()``.

    ``Lab(hosts=3, *, udp_filter="auto", stop_timeout=5.0, public=False)``: the arguments
    are :class:`meshd.lab.state.LabState`'s.
    """

    _sigterm_installed = False  # whether this lab put in the SIGTERM handler it removes

    # -- building -----------------------------------------------------------------------

    def build(self) -> Lab:
        """Make the namespaces, links, addresses and routes; on failure tear down and raise."""
        if self._state != "new":
            raise LabError("a lab is built once")
        self._state = "built"
        atexit.register(self.close)
        self._unwind_on_sigterm()
        try:
            self._reserve()
            self._add_router()
            for host in self.hosts:
                self._add_host(host)
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Lab:
        return self.build()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _reserve(self) -> None:
        """Pick a run id nobody uses; creating its directory is what claims it."""
        taken = {naming.run_id_of_netns(name) for name in list_netns()}
        for _ in range(100):
            run_id = naming.new_run_id()
            if run_id in taken:
                continue
            try:
                lab_dir(run_id).mkdir(mode=0o700)
            except FileExistsError:
                continue
            break
        else:
            raise LabError("no free lab run id found; run `python -m meshd.lab down --all`")
        self.run_id = run_id
        self.hosts = tuple(
            plumbing.describe_host(run_id, i, self.public) for i in range(1, self._size + 1)
        )
        manifest = {
            "run_id": run_id,
            "pid": os.getpid(),
            "created": time.time(),
            "hosts": [host.name for host in self.hosts],
        }
        (self.dir / MANIFEST).write_text(json.dumps(manifest) + "\n")
        log.info("lab %s: %d hosts in %s*", run_id, self._size, self.netns_prefix)

    def _add_router(self) -> None:
        plumbing.add_router(self.router_netns)
        self._filter = choose_filter(self._filter_name, self.router_netns)
        self._filter.setup()

    # -- teardown -----------------------------------------------------------------------

    def detach(self) -> None:
        """Leave the lab running and forget it: neither ``close()`` nor atexit removes it.

        For ``python -m meshd.lab up --keep``; ``destroy_run(run_id)`` removes it later.
        Spawned processes are left running too.
        """
        self._state = "closed"
        atexit.unregister(self.close)
        self._sigterm_as_before()

    def _unwind_on_sigterm(self) -> None:
        """While the lab stands, SIGTERM (``timeout``, a job's time limit, ``kill``) unwinds
        like Ctrl-C through ``with Lab`` and close(), where by default it ended the process
        at once and left the namespaces, the spawned daemons (in sessions of their own) and
        their wireguard-go behind: ``meshd demo``, the tests and the benchmarks alike. Only
        where nothing else handles SIGTERM, and only in the main thread (its handlers')."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminated)
            self._sigterm_installed = True

    def _sigterm_as_before(self) -> None:
        installed, self._sigterm_installed = self._sigterm_installed, False
        if (
            installed
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _terminated
        ):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def close(self) -> list[str]:
        """Remove everything the lab made; never raises. Returns what could not be removed.

        In order: the spawned processes (SIGTERM, SIGKILL after ``stop_timeout``), any
        process still inside a lab namespace, the namespaces (and with them the veths and
        the rules), leftover interfaces, wireguard-go sockets, the temporary directory.
        """
        if self._state == "closed":
            return []
        self._state = "closed"
        atexit.unregister(self.close)
        self._sigterm_as_before()
        try:
            stop_children(self._processes, self.stop_timeout)
        except Exception:  # teardown goes on whatever happens
            log.exception("lab %s: stopping processes failed", self.run_id)
        if not self.run_id:
            return []
        return destroy_run(self.run_id, extra_wg_names=self._wg_names)


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through ``with Lab`` and close(), as Ctrl-C does
