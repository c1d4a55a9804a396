"""A test run ended by SIGTERM tears down what its tests set up (tests/conftest.py): the
test's own ``with`` blocks and its fixtures' teardowns run, as on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

INNER = textwrap.dedent(
    """
    import contextlib, os, time
    from pathlib import Path

    import pytest

    OUT = Path(os.environ["SIGTERM_PROBE"])

    @pytest.fixture
    def held():
        yield
        (OUT / "fixture").write_text("torn down")

    def test_slow(held):
        with contextlib.ExitStack() as stack:
            stack.callback(lambda: (OUT / "with").write_text("unwound"))
            (OUT / "started").write_text("")
            time.sleep(60)
    """
)


def test_sigterm_runs_the_teardowns(tmp_path: Path) -> None:
    tests = tmp_path / "inner"
    tests.mkdir()
    (tests / "test_inner.py").write_text(INNER)
    # The project's conftest, as it is (its hooks are what is tested).
    (tests / "conftest.py").write_text(Path(__file__).with_name("conftest.py").read_text())
    out = tmp_path / "out"
    out.mkdir()
    log = (tmp_path / "pytest.log").open("wb")
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(tests)],
        env={**os.environ, "SIGTERM_PROBE": str(out)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (out / "started").exists():
            assert time.monotonic() < deadline, "the inner test did not start"
            time.sleep(0.05)
        run.send_signal(signal.SIGTERM)
        run.wait(30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        log.close()
    assert (out / "with").exists(), (tmp_path / "pytest.log").read_text()[-2000:]
    assert (out / "with").read_text() == "unwound"
    assert (out / "fixture").read_text() == "torn down"
    assert run.returncode != 0
