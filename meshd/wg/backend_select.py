"""Choose a WireGuard backend: ``auto``, ``kernel``, ``userspace`` or ``none``."""

from __future__ import annotations

import shutil
from collections.abc import Callable

from meshd.errors import UsageError
from meshd.wg.backend import BackendOpener
from meshd.wg.backend_kernel import kernel_module_available, open_kernel_backend
from meshd.wg.backend_none import open_null_backend
from meshd.wg.backend_userspace import open_userspace_backend
from meshd.wg.errors import BackendUnavailable

BACKEND_KINDS = ("auto", "kernel", "userspace", "none")
INSTALL_HINT = (
    "install the userspace implementation: apt-get install --no-install-recommends "
    "wireguard-go wireguard-tools (or run a kernel with the wireguard module)"
)


def select_backend(
    kind: str,
    *,
    kernel_available: Callable[[], bool] = kernel_module_available,
    which: Callable[[str], str | None] = shutil.which,
) -> BackendOpener:
    """The opener for ``kind``; ``auto`` prefers the kernel module, then wireguard-go.

    Raises :class:`BackendUnavailable` (with the packages to install) if ``auto`` finds
    neither, and UsageError for an unknown kind. ``kernel`` and ``userspace`` are returned
    as asked; they report what is missing when opened.
    """
    if kind not in BACKEND_KINDS:
        raise UsageError(
            f"unknown WireGuard backend {kind!r}", hint="use one of " + ", ".join(BACKEND_KINDS)
        )
    if kind == "auto":
        if kernel_available():
            kind = "kernel"
        elif which("wireguard-go") is not None:
            kind = "userspace"
        else:
            raise BackendUnavailable(
                "no WireGuard backend: the kernel has no wireguard module and wireguard-go "
                "is not installed",
                hint=INSTALL_HINT,
            )
    openers: dict[str, BackendOpener] = {
        "kernel": open_kernel_backend,
        "userspace": open_userspace_backend,
        "none": open_null_backend,
    }
    return openers[kind]
