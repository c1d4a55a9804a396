"""A seeded simulator run must not depend on Python's hash randomisation: what the tests of
meshd/sim share to check it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def outputs_under_hash_seeds(script: str, seeds: tuple[str, ...] = ("1", "2")) -> set[bytes]:
    """What ``script`` prints, run in a fresh interpreter under each ``PYTHONHASHSEED``: one
    output when the run does not depend on it."""
    outputs = set()
    for hashseed in seeds:
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, check=True
        )
        outputs.add(done.stdout)
    return outputs
