"""systemd's readiness protocol (sd_notify), by hand: one datagram to ``$NOTIFY_SOCKET``.

A ``Type=notify`` unit starts the daemon with ``NOTIFY_SOCKET`` set to a Unix datagram
socket: a path, or an abstract name written with a leading ``@``. The daemon sends
newline-separated ``KEY=VALUE`` lines: ``READY=1`` once it serves (here: WireGuard programmed
from the store and the gossip side listening), ``STATUS=...`` for ``systemctl status``,
``STOPPING=1`` when it shuts down, and ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` when
the unit sets ``WatchdogSec=``. Without ``NOTIFY_SOCKET`` (not under systemd) every call does
nothing. A failed send is logged once and never stops the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import trio

from meshd.control.commands import Ask, StatusAnswer, StatusRequest
from meshd.errors import MeshdError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

MAX_STATUS: Final = 200  # characters of a STATUS= line
STATUS_INTERVAL: Final = 5.0  # seconds between two looks at the status for STATUS=


def socket_address(value: str) -> str | None:
    """The address ``NOTIFY_SOCKET`` names: a path, or an abstract name (``@`` -> NUL)."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock: and other forms: not supported


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """How often to send WATCHDOG=1 (half the unit's WatchdogSec), or None if not asked.

    systemd sets ``WATCHDOG_PID`` to the main process; a child that inherited the variables
    must not answer for it."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Sends sd_notify messages to the socket ``env`` names, if any."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog = watchdog_interval(env, os.getpid())
        self._failed = False
        self._status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``lines`` in one datagram; True if it went."""
        if self.address is None:
            return False
        data = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(data, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd on %s: %s", self.address.lstrip("\0"), exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        lines = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            self._status = status
            lines.append(status_line(status))
        return self.send(*lines)

    def status(self, status: str) -> bool:
        """Send ``STATUS=`` if it changed since the last one."""
        if status == self._status:
            return False
        self._status = status
        return self.send(status_line(status))

    def stopping(self, status: str = "shutting down") -> bool:
        return self.send("STOPPING=1", status_line(status))

    def ping(self) -> bool:
        return self.send("WATCHDOG=1")


def status_line(status: str) -> str:
    """One ``STATUS=`` line: no newline, bounded."""
    return "STATUS=" + " ".join(status.split())[:MAX_STATUS]


def status_text(view: StatusAnswer) -> str:
    """The ``systemctl status`` line from the daemon's status."""
    text = f"{view.members} members admitted, {view.connected} connected"
    wireguard = view.wireguard
    if wireguard.get("backend") not in (None, "none"):
        text += f", {wireguard.get('peers')} WireGuard peers on {wireguard.get('interface')}"
    if view.revoked:
        text += f", {view.revoked} revoked"
    return text


async def inform_systemd(
    notifier: Notifier,
    ask: Ask,
    *,
    interval: float = STATUS_INTERVAL,
    task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Tell systemd: READY=1 now (start this once the node serves), then STATUS= when it
    changes, WATCHDOG=1 if the unit asks for it, and STOPPING=1 as soon as shutdown begins
    (this task is cancelled with the others)."""
    if not notifier.enabled:
        task_status.started()
        return
    try:
        notifier.ready(await _status(ask))
        task_status.started()
        async with trio.open_nursery() as nursery:
            if notifier.watchdog is not None:
                nursery.start_soon(_keep_watchdog_fed, notifier, notifier.watchdog)
            while True:
                await trio.sleep(interval)
                notifier.status(await _status(ask))
    finally:
        notifier.stopping()


async def _keep_watchdog_fed(notifier: Notifier, every: float) -> None:
    # From the event loop itself: a loop stuck for WatchdogSec stops feeding it.
    while True:
        notifier.ping()
        await trio.sleep(every)


async def _status(ask: Ask) -> str:
    try:
        view = await ask(StatusRequest(), StatusAnswer)
    except MeshdError as exc:
        return f"running; status unavailable: {exc}"
    return status_text(view)
