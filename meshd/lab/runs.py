"""Finding lab runs on this machine: live ones and leftovers of crashed processes."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from meshd.lab import naming
from meshd.lab.commands import list_netns
from meshd.lab.state import MANIFEST, lab_dir


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A lab run seen from outside: its namespaces and, if known, the process that made it."""

    run_id: str
    namespaces: tuple[str, ...]
    owner_pid: int | None

    @property
    def owner_alive(self) -> bool:
        if self.owner_pid is None:
            return False
        try:
            os.kill(self.owner_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _owner(run_id: str) -> int | None:
    try:
        manifest = json.loads((lab_dir(run_id) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    pid = manifest.get("pid") if isinstance(manifest, dict) else None
    return pid if isinstance(pid, int) else None


def list_runs() -> list[RunInfo]:
    """Every lab run with a namespace or a directory on this machine, by run id."""
    by_run: dict[str, list[str]] = {}
    for name in list_netns():
        run_id = naming.run_id_of_netns(name)
        if run_id is not None:
            by_run.setdefault(run_id, []).append(name)
    for entry in Path(tempfile.gettempdir()).glob(f"{naming.NETNS_PREFIX}*"):
        run_id = entry.name.removeprefix(naming.NETNS_PREFIX)
        if naming.RUN_ID_PATTERN.fullmatch(run_id) and entry.is_dir():
            by_run.setdefault(run_id, [])
    return [
        RunInfo(run_id, tuple(sorted(by_run[run_id])), _owner(run_id)) for run_id in sorted(by_run)
    ]
