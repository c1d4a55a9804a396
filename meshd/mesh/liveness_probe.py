"""Whether a quiet direct path still works where Babel's Hellos do not flow on it (pure).

Two members that both do not relay speak no Babel to each other, so their direct WireGuard
path carries only WireGuard's persistent keepalives and the users' own traffic. Silence then
means little by itself, and the rule that declares a path lost after four Hello intervals
without a packet (:mod:`meshd.daemon.peer_paths`) would lose every idle path. What WireGuard
does on such a path (Linux, wireguard-go and the other implementations alike):

* a persistent keepalive (32 bytes) goes out when nothing was sent *or received* for its
  interval ``K``: each side's timer is pushed back by what it receives, so on an idle path
  only one side sends keepalives (whichever fires first), every ``K`` s, and the other only
  receives them; a lost keepalive swaps the roles. A keepalive is never answered;
* data received is answered within ``PASSIVE`` (10 s, KEEPALIVE_TIMEOUT) by a passive
  keepalive when nothing else goes back;
* the session is renewed by a handshake every 2-3 minutes while packets flow; a handshake
  *initiation* is answered at once by a live peer.

:class:`Liveness` watches one peer's received and sent bytes and handshake (time passed in):

* **idle** (nothing sent beyond keepalives since something was received): quiet after
  ``K + PASSIVE`` s (35 s at 25 s), the keepalive interval plus room for a step's lateness
  and jitter. A side that receives the other's keepalives never gets there while the path
  works. A side that sends them hears nothing between handshakes: once a probe it asked
  for was answered with nothing else received since, its limit doubles, up to ``QUIET_MAX``
  (180 s, beyond the 145 s in which WireGuard renews a session it initiated), so that an
  idle path costs no probes once settled. Without a persistent keepalive of ours (two public
  members) an idle path is never quiet;
* **active** (we sent more than keepalives since something was received: data, or an
  initiation not answered): quiet ``ACTIVE_QUIET`` (15 s) after the last thing received,
  and at least ``PASSIVE`` s after the data was first seen (WireGuard answers data within
  10 s);
* **doubted**: a member's punch notice says the peer is trying to reach us; the path is
  probed at once (:meth:`Liveness.doubt`), within the same one probe per interval;
* **asked before declared**: a quiet path is *probed* (the caller makes WireGuard start a
  handshake now: :func:`meshd.mesh.kicks.recreate`); a handshake newer than the last one,
  or received bytes, within ``ANSWER_WAIT`` (3 s) means alive, nothing means *lost*. At
  most one probe per peer per keepalive interval (``ACTIVE_QUIET`` without one); the
  caller bounds the probes of one step (``PROBE_BUDGET``), longest quiet first.

A probe re-creates the peer, so its counters start from zero: counters that go down are a
new baseline, not something received.
"""

from __future__ import annotations

import math
from typing import Literal

#: WireGuard answers data within this (KEEPALIVE_TIMEOUT) when nothing else goes back.
PASSIVE = 10.0
#: Sending data with nothing received for this long: probe (KEEPALIVE_TIMEOUT+REKEY_TIMEOUT).
ACTIVE_QUIET = 15.0
#: A probe unanswered for this long: the path is lost.
ANSWER_WAIT = 3.0
#: The idle limit of a side that only sends keepalives grows up to this.
QUIET_MAX = 180.0
#: A WireGuard keepalive: a data message with nothing in it.
KEEPALIVE_BYTES = 32
#: Probes one step may ask for (each a peer removed and created again).
PROBE_BUDGET = 64
#: Two handshake times closer than this are the same one (read on two clocks).
SAME_HANDSHAKE = 0.5

Verdict = Literal["alive", "probe", "waiting", "lost"]


class Liveness:
    """One peer's direct path without Hellos; see the module documentation."""

    __slots__ = (
        "_answered",
        "_data_at",
        "_doubted",
        "_due",
        "_handshake",
        "_rx",
        "_tx",
        "_tx_heard",
        "heard",
        "keepalive",
        "probe_at",
    )

    def __init__(self, now: float, rx: int, tx: int, keepalive: int) -> None:
        self.heard = now  # when something last came from the peer (bytes or a handshake)
        self.keepalive = keepalive  # our persistent keepalive (seconds, 0 for none)
        self.probe_at = -math.inf  # when the last probe was asked for
        self._rx, self._tx, self._tx_heard = rx, tx, tx
        self._handshake: float | None = None
        self._answered = 0  # probes answered with nothing else received since
        self._data_at: float | None = None  # when more than keepalives was first seen sent
        self._doubted = -math.inf  # when a member last said the peer cannot reach us
        self._due = self._next()

    @property
    def probing(self) -> bool:
        """A probe is out and nothing came since."""
        return self.probe_at > self.heard

    def judge(
        self, now: float, rx: int, tx: int, handshake: float | None, keepalive: int
    ) -> Verdict:
        """What the device shows now (received and sent bytes, the latest handshake on
        ``now``'s clock or None, our persistent keepalive): ``probe`` when one is due (then
        :meth:`probed` once asked for), ``waiting`` for an answer, ``lost`` when none came."""
        if (  # nothing moved and nothing due: the common case, cheap at 10,000 peers
            rx == self._rx
            and tx == self._tx
            and keepalive == self.keepalive
            and now < self._due
            and not self.probing
            and (
                handshake is None
                or (self._handshake is not None and handshake <= self._handshake + SAME_HANDSHAKE)
            )
        ):
            return "alive"
        self.keepalive = keepalive
        if rx < self._rx or tx < self._tx:  # the peer was created anew: a new baseline
            self._rx, self._tx, self._tx_heard = rx, tx, tx
        was_probing = self.probing
        new_handshake = handshake is not None and (
            self._handshake is None or handshake > self._handshake + SAME_HANDSHAKE
        )
        if new_handshake:
            assert handshake is not None
            self._handshake = handshake
            if handshake > self.heard:
                self.heard = min(handshake, now)
                self._tx_heard, self._data_at = tx, None
            if was_probing:
                self._answered += 1  # a probe's answer says nothing of keepalives coming
        if rx > self._rx:
            if not new_handshake:
                self._answered = 0  # keepalives or data came by themselves
            self.heard, self._tx_heard, self._data_at = now, tx, None
        self._rx, self._tx = rx, tx
        verdict: Verdict
        if was_probing and not self.probing:
            verdict = "alive"
        elif self.probing:
            verdict = "waiting"
            if now - self.probe_at >= ANSWER_WAIT:
                self.heard, self._tx_heard, self._data_at = now, tx, None
                self.probe_at = -math.inf
                verdict = "lost"
        else:
            if self._data_at is None and tx - self._tx_heard > self._allowance(now):
                self._data_at = now
            verdict = "probe" if now >= self._next() else "alive"
        self._due = self._next()
        return verdict

    def probed(self, now: float) -> None:
        """A probe was asked for now."""
        self.probe_at = now
        self._due = self._next()

    def doubt(self, now: float) -> None:
        """A member says the peer is trying to reach us (its punch notice): probe at the next
        judgement unless something comes first, and still at most once per keepalive
        interval, so notices sent on purpose cost a working path no more than its probes."""
        self._doubted = now
        self._due = self._next()

    def cancel(self) -> None:
        """The probe asked for could not be sent: as if it had not been asked for."""
        self.probe_at = -math.inf
        self._due = self._next()

    def next_check(self) -> float:
        """When the path is due to be judged again (when it turns quiet, or a probe's answer
        is due); a probe is due once this has passed."""
        return self._due

    def _next(self) -> float:
        if self.probing:
            return self.probe_at + ANSWER_WAIT
        due = math.inf
        if self.keepalive > 0:
            idle = (self.keepalive + PASSIVE) * 2 ** min(self._answered, 8)
            due = self.heard + min(idle, QUIET_MAX)
        if self._data_at is not None:
            due = min(due, max(self.heard + ACTIVE_QUIET, self._data_at + PASSIVE))
        if self._doubted > self.heard:
            due = min(due, self._doubted)
        return max(due, self.probe_at + (self.keepalive or ACTIVE_QUIET))

    def _allowance(self, now: float) -> int:
        """The bytes our keepalives may have sent since something was received: one per
        interval begun, and one passive keepalive."""
        if self.keepalive <= 0:
            return KEEPALIVE_BYTES
        return KEEPALIVE_BYTES * (2 + int(max(0.0, now - self.heard) // self.keepalive))
