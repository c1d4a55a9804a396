"""Shared test configuration.

Tests marked ``root`` need root, network namespaces and the Debian packages that
scripts/setup.sh installs. Outside CI they are skipped when those are missing; in CI
(``CI=true``) a missing prerequisite is a failure, never a skip.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# meshd cuts tables to COLUMNS when it is set (a terminal's width); a runner that sets it
# (pytest-xdist's workers, some CI consoles) must not change what the tests read. Tests of
# the cutting set it themselves.
os.environ.pop("COLUMNS", None)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Whatever a test configured on the logging tree goes with it: a command run in-process
    (``meshd up``, ``join``) installs a handler on the test's captured stderr, and a later
    test's log line written to that closed stream printed a "--- Logging error ---" traceback
    into the later test's stderr. pytest's own capture handlers come and go by themselves."""
    root = logging.getLogger()
    ours = logging.getLogger("meshd")
    before = set(root.handlers)
    levels = (root.level, ours.level)
    hook = sys.unraisablehook
    yield
    sys.unraisablehook = hook
    logging.captureWarnings(False)
    for handler in list(root.handlers):
        if handler not in before and type(handler).__module__ != "_pytest.logging":
            root.removeHandler(handler)
            handler.close()
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


ROOT_TOOLS = ("ip", "wireguard-go", "wg", "babeld", "bird", "birdc", "ping", "nft")


def root_prerequisites_missing() -> str:
    """Say what is missing for the root tests, or return an empty string."""
    if os.geteuid() != 0:
        return "not running as root"
    missing = [tool for tool in ROOT_TOOLS if shutil.which(tool) is None]
    if missing:
        return "missing tools: " + ", ".join(missing)
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return ""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every ``with Lab`` and fixture teardown


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (``timeout``, a CI job's limit) ends a run as Ctrl-C does: the test's own
    ``with`` blocks unwind and pytest runs every fixture's teardown at the session's end,
    so a lab's daemons, their wireguard-go and its namespaces (each in a session of its
    own, not in pytest's process group) do not outlive the run."""
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)
    ):
        signal.signal(signal.SIGTERM, _terminated)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _group_for_workers(items)
    missing = root_prerequisites_missing()
    if not missing:
        return
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    for item in items:
        if "root" not in item.keywords:
            continue
        if in_ci:
            item.add_marker(pytest.mark.usefixtures("_fail_missing_root_prerequisites"))
        else:
            item.add_marker(pytest.mark.skip(reason=f"root test: {missing}"))


@pytest.fixture
def _fail_missing_root_prerequisites() -> None:
    pytest.fail(f"CI needs this root test to run, but: {root_prerequisites_missing()}")


def _group_for_workers(items: list[pytest.Item]) -> None:
    """Under ``pytest -n N --dist loadgroup`` (scripts/test.sh): each module on one worker, so
    a module-scoped fixture is set up once; every root test in one group, so two labs never
    share the machine even when root tests are run on workers."""
    for item in items:
        group = "root-lab" if "root" in item.keywords else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
