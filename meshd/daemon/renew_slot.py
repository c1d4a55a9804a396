"""``--auto-renew`` as a running daemon holds it: turned on, off or given a new window or
period by a SIGHUP (meshd.daemon.live_config), without a restart.

:class:`AutoRenewSlot` always runs; it holds the :class:`~meshd.daemon.renewer.AutoRenew`
of the options it was last given, or none. Turned on, it needs a key that may renew here, as
a start does (a UsageError refuses the whole SIGHUP, nothing changed); turned off, the
renewal's task ends between two floods (what it stored and had not flooded yet reaches the
members by anti-entropy). A new ``renew_window`` or ``renew_for`` runs the day's renewal
again at once, under the new terms: an operator who widened the window wants what it now
covers renewed today, not tomorrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from meshd.daemon.config import DaemonConfig
from meshd.daemon.renewer import AutoRenew, Flood, auto_renew_issuer
from meshd.daemon.state import NodeState

if TYPE_CHECKING:
    from trio_typing import TaskStatus


class AutoRenewSlot:
    """Where the daemon's renewal runs, if ``--auto-renew`` is on; see the module text."""

    def __init__(self, state: NodeState, flood: Flood, config: DaemonConfig) -> None:
        self.state = state
        self.flood = flood
        self.renew: AutoRenew | None = self._made(config)  # UsageError: no key that may renew
        self._scope: trio.CancelScope | None = None

    def _made(self, config: DaemonConfig) -> AutoRenew | None:
        if not config.auto_renew:
            return None
        issuer = auto_renew_issuer(self.state)
        window, period = config.renew_window, config.renew_for
        return AutoRenew(
            self.state, issuer, self.flood, window=window, period=period, clock=self.state.clock
        )

    def check(self, config: DaemonConfig) -> None:
        """Raise what :meth:`reconfigure` would refuse ``config`` for (a UsageError: no key
        that may renew here), changing nothing."""
        if config.auto_renew and self.renew is None:
            auto_renew_issuer(self.state)

    def reconfigure(self, config: DaemonConfig) -> None:
        """Take ``config``'s ``auto_renew``, ``renew_window`` and ``renew_for`` (see the
        module text)."""
        renew = self.renew
        if renew is None or not config.auto_renew:
            self.renew = self._made(config)
        else:
            policy = renew.policy
            if (policy.window, policy.period) == (config.renew_window, config.renew_for):
                return
            policy.window, policy.period = config.renew_window, config.renew_for
            policy.last_run = None  # the day's run again, under the new terms
        if self.renew is renew is None:
            return
        if self._scope is not None:
            self._scope.cancel()  # the loop below starts over with what is held now

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.CancelScope() as scope:
                self._scope = scope
                renew = self.renew
                if renew is None:
                    await trio.sleep_forever()
                else:
                    await renew.run()
