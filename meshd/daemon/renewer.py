"""Renewal, expiry warnings and leaving, as daemon services (the rules: renew_policy).

* :class:`AutoRenew` (``meshd up --auto-renew``, on a node holding the root or an admin key
  with the invite capability): once a day, renews every standing member whose credential ends
  within the window (a member anchored only to a root whose overlap ends within it, too), and
  copies under its own root the revocations of a root being retired; each record is stored,
  then flooded. It reads the admin certificate again each day (a new one, installed after a
  root rollover, is used from then on);
* :class:`ExpiryWarnings`: a WARNING per member, admin or long-lived invite ending within 30
  days, once a day each;
* :class:`Departure`: once this node's own leave is in the set (``meshd leave`` handed it to
  the daemon, which stored and flooded it), gives the flood a moment, then stops the daemon as
  SIGTERM would: the gossip host closes, the WireGuard interface goes, and ``meshd up``
  exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from meshd.daemon.config import DaemonConfig
from meshd.daemon.renew_policy import (
    WARN_WINDOW,
    ExpiryWarnings,
    RenewPolicy,
    carry_revocations,
    endings,
    expires_text,
    plan_for,
    sign_renewals,
)
from meshd.daemon.standing import Ended
from meshd.daemon.state import NodeState
from meshd.errors import MeshdError, VerifyError
from meshd.node.statedir import NodeDir
from meshd.records import U64, Cap, Certificate, Kind, Role, decode_untrusted
from meshd.trust.invites import Issuer
from meshd.trust.keyfiles import read_secret
from meshd.trust.keys import SigningKey, fingerprint

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

CHECK_EVERY: Final = 60.0  # seconds between looks at the clock; the policies act once a day
MAX_NAMED: Final = 10  # named in one warning line; `meshd status` lists them all
FLOOD_GRACE: Final = 1.0  # seconds the leave has to leave us before the daemon stops

Flood = Callable[[bytes], Awaitable[None]]


def wall_clock() -> int:
    return int(time.time())


def auto_renew_issuer(state: NodeState) -> Issuer:
    """The key auto-renewal signs with; UsageError when this node holds none that may."""
    issuer = state.node.issuer()
    issuer.require(Cap.INVITE)
    return issuer


class AutoRenew:
    """Renew the members that end soon, once a day (:class:`RenewPolicy`)."""

    def __init__(
        self,
        state: NodeState,
        issuer: Issuer,
        flood: Flood,
        *,
        window: int,
        period: int,
        clock: Callable[[], int] = wall_clock,
        check_every: float = CHECK_EVERY,
    ) -> None:
        self.state = state
        self.issuer = issuer
        self.flood = flood
        self.clock = clock
        self.check_every = check_every
        cert = issuer.certificate
        self.policy = RenewPolicy(
            window=window,
            period=period,
            issuer_end=cert.not_after if cert is not None else None,
            issuer_grants=cert.prefixes if cert is not None else None,
        )
        self.renewed = 0
        self.carried = 0  # revocations signed again under this node's root

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            for raw in self.step(self.clock()):
                await self.flood(raw)
            await trio.sleep(self.check_every)

    def _reload_issuer(self) -> None:
        """Take up a new admin certificate for the same key (installed after a rollover)."""
        current = self.issuer.certificate
        if current is None:
            return
        try:
            raw = self.state.node.paths.admin_cert.read_bytes()
            if raw == current.raw:
                return
            cert = decode_untrusted(raw, Certificate)
            self.state.membership.verifier.certificate(cert)
        except (OSError, MeshdError) as exc:
            log.warning("auto-renew: the admin certificate on disk is unusable: %s", exc)
            return
        if cert.subject != self.issuer.key.public and cert.role is Role.ADMIN:
            # The admin key itself was replaced (meshd admin rotate): take up the new key.
            with contextlib.suppress(OSError, MeshdError):
                key = SigningKey(read_secret(self.state.node.paths.admin_key))
                if key.public == cert.subject:
                    self.issuer = Issuer(key, cert)
                    log.info("auto-renew: signing with the admin key %s", fingerprint(key.public))
            return
        if cert.role is Role.ADMIN:
            self.issuer = Issuer(self.issuer.key, cert)
            log.info(
                "auto-renew: signing under the admin certificate valid until %s",
                _date(cert.not_after),
            )

    def step(self, now: int) -> list[bytes]:
        """Renew what is due at ``now``, and carry revocations over a rollover; returns the
        records stored (to flood)."""
        if not self.policy.due(now):
            return []
        self._reload_issuer()
        membership = self.state.membership
        cert = self.issuer.certificate
        root = self.issuer.key.public if cert is None else cert.issuer
        if membership.roots.end(root) < U64 and membership.roots.end(root) >= now:
            log.warning(
                "auto-renew: this node signs under a root being retired (its overlap ends %s): "
                "sign with the new root key, or install the admin certificate "
                "`meshd root rollover` wrote for it",
                _date(membership.roots.end(root)),
            )
        planned, skipped = plan_for(self.policy, membership, self.issuer, now)
        for s in skipped:
            log.warning("auto-renew: cannot renew %s: %s", s.name, s.why)
        made = []
        network_id = self.state.node.anchor.network_id
        for renewal, plan in zip(
            sign_renewals(self.issuer, network_id, planned, now), planned, strict=True
        ):
            try:
                outcome = self.state.add_local(renewal)
            except VerifyError as exc:
                log.warning("auto-renew: %s not renewed: %s", plan.name, exc)
                continue
            if outcome.new:
                made.append(renewal.raw)
                self.renewed += 1
                log.info("auto-renew: renewed %s until %s", plan.name, _date(plan.not_after))
        for copy in carry_revocations(membership, self.issuer, network_id, now):
            try:
                outcome = self.state.add_local(copy)
            except VerifyError as exc:
                log.warning("auto-renew: a revocation not carried over the rollover: %s", exc)
                continue
            if outcome.new:
                made.append(copy.raw)
                self.carried += 1
                log.info(
                    "auto-renew: revocation of %s signed again under the new root",
                    fingerprint(copy.target),
                )
        return made


class ExpiryWarner:
    """Log a WARNING for each member, admin or invite ending within 30 days, once a day."""

    def __init__(
        self,
        state: NodeState,
        *,
        clock: Callable[[], int] = wall_clock,
        check_every: float = CHECK_EVERY,
    ) -> None:
        self.state = state
        self.clock = clock
        self.check_every = check_every
        self.warnings = ExpiryWarnings()

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.step(self.clock())
            await trio.sleep(self.check_every)

    def step(self, now: int) -> int:
        """Warn about what ends within the window and was not warned about for a day: one
        line (the first MAX_NAMED named, earliest first); returns how many."""
        found = endings(
            self.state.membership,
            now,
            own_certificates(self.state),
            window=self.warnings.window,
        )
        due = self.warnings.due(now, found)
        if due:
            named = [
                f"{e.kind} {e.label} {expires_text(e.ends_at, now)} (on {_date(e.ends_at)})"
                for e in due[:MAX_NAMED]
            ]
            more = (
                f"; and {len(due) - MAX_NAMED} more (`meshd status`)"
                if len(due) > MAX_NAMED
                else ""
            )
            renew = any(e.kind == "member" for e in due)
            log.warning(
                "%s%s%s",
                "; ".join(named),
                more,
                "; renew members with `meshd renew` (or `meshd up --auto-renew`)" if renew else "",
            )
        return len(due)


def own_certificates(state: NodeState) -> list[Certificate]:
    """This node's admin certificate and the invites it issued (not secret; no key read)."""
    certs = []
    paths = state.node.paths
    with contextlib.suppress(OSError, MeshdError):
        certs.append(decode_untrusted(paths.admin_cert.read_bytes(), Certificate))
    for raw in state.node.store.issued(Kind.CERTIFICATE):
        try:
            cert = decode_untrusted(raw, Certificate)
        except MeshdError:
            continue
        if cert.role in (Role.INVITE, Role.ADMIN):
            certs.append(cert)
    return certs


class Departure:
    """Stop the daemon once this node's own leave is in the set (as NodeState.standing, the
    one watcher of our own standing, says)."""

    def __init__(self, state: NodeState, *, grace: float = FLOOD_GRACE) -> None:
        self.state = state
        self.grace = grace

    def left(self) -> bool:
        ending = self.state.standing.check()
        return ending is not None and ending.how is Ended.LEFT

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        # The leave arrives through the control socket's `publish`.
        if (await self.state.standing.wait()).how is not Ended.LEFT:
            return  # revoked or handed over: meshd.daemon.lifecycle.stop_when_revoked's
        log.warning("this node left the network: stopping and removing its WireGuard interface")
        await trio.sleep(self.grace)
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
            # Not run by `meshd up` (whose SIGTERM shuts down cleanly): a test's nursery, say.
            log.warning("not stopping: nothing here handles SIGTERM")
            return
        os.kill(os.getpid(), signal.SIGTERM)


def _date(at: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


class Service(Protocol):
    async def run(self, task_status: TaskStatus[None] = ...) -> None: ...


def lifecycle_services(state: NodeState) -> list[Service]:
    """The services of this module a daemon runs always: the watcher of our own standing,
    warnings and departure (renewal runs in :class:`meshd.daemon.renew_slot.AutoRenewSlot`,
    which a SIGHUP turns on and off)."""
    return [state.standing, ExpiryWarner(state), Departure(state)]


def expiring_view(state: NodeState, now: int | None = None) -> list[dict[str, object]]:
    """What ends within the warning window (``meshd status``), earliest first."""
    at = wall_clock() if now is None else now
    found = endings(state.membership, at, own_certificates(state), window=WARN_WINDOW)
    soon = sorted((e for e in found if e.ends_at <= at + WARN_WINDOW), key=lambda e: e.ends_at)
    return [
        {
            "kind": e.kind,
            "name": e.label,
            "ends_at": e.ends_at,
            "expires": expires_text(e.ends_at, at),
        }
        for e in soon
    ]


def add_expiry(rows: list[dict[str, Any]], now: int | None = None) -> None:
    """Give each ``peers`` row whose membership ends within the warning window an ``expires``
    text ("expires in N days"); None for the others and for excluded members."""
    at = wall_clock() if now is None else now
    for row in rows:
        end = row.get("credentials_end")
        soon = isinstance(end, int) and end <= at + WARN_WINDOW and row.get("state") != "revoked"
        row["expires"] = expires_text(end, at) if soon and isinstance(end, int) else None


def refuse_auto_renew_without_key(config: DaemonConfig, node: NodeDir) -> None:
    """Before anything starts: ``--auto-renew`` needs the root key, or an admin key with the
    invite capability, in this state dir (UsageError otherwise)."""
    if config.auto_renew:
        node.issuer().require(Cap.INVITE)
