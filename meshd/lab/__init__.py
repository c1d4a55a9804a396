"""A network-namespace lab: N hosts behind one router, for tests, benchmarks and demos.

An I/O shell: it drives ``ip``, ``sysctl`` and ``nft`` through subprocesses and needs root.
:class:`Lab` builds and tears down one lab; :func:`list_runs` and :func:`destroy_run` find and
remove leftovers by their run id. ``python -m meshd.lab`` is the command line. See docs/lab.md.
"""

from meshd.lab.commands import LabError
from meshd.lab.lab import Lab
from meshd.lab.plumbing import Host
from meshd.lab.runs import RunInfo, list_runs
from meshd.lab.teardown import destroy_run

__all__ = ["Host", "Lab", "LabError", "RunInfo", "destroy_run", "list_runs"]
