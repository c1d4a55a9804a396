"""Babel neighbours: Hello histories, link cost and round-trip time (RFC 8966 3.4, A.1, A.2).

A neighbour is an address on one of our interfaces. What we know about it:

- two Hello histories (RFC 8966 3.4.1 and A.1), one for its multicast Hellos and one for the
  unicast Hellos it sends us, 16 bits each, most recent Hello in bit 0. Missed Hellos are
  counted by a timer: 1.5 advertised intervals after the last Hello, then one interval each;
- the *txcost*, the cost it reports in its IHUs for hearing us, forgotten after 3.5 IHU
  intervals without an IHU;
- with RFC 9616 timestamps, a smoothed round-trip time;
- our pace towards it: at rest (``rest_pace``) it is passed by at all but every pace-th
  scheduled Hello and full update, counted down per neighbour.

The *rxcost* we report is ``nominal`` when at least ``k`` of the last ``j`` Hellos of either
history arrived (RFC 8966 A.2.1, 2-out-of-3 by default), infinity otherwise. The cost of the
link is the txcost when both are finite (A.2.1), plus an RTT penalty that grows linearly
from 0 at ``rtt_min`` to ``max_rtt_penalty`` at ``rtt_max`` (as babeld does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from meshd.babel.numbers import INFINITY
from meshd.babel.sources import seqno_diff, seqno_plus

IPAddress = IPv4Address | IPv6Address

TIMESTAMP_MODULUS: Final = 1 << 32
SILENT_FOR: Final = 300.0
"""Seconds without a packet from a neighbour, where no Hello schedule it announced runs,
after which its link is down (babeld flushes a neighbour silent for 300 s)."""
IHU_HOLD_UNTIMED: Final = 180.0
"""How long the cost of an IHU that announced no interval (0) holds, as babeld's 180 s."""
_MAX_RTT: Final = 10.0
"""Round-trip samples above this many seconds are taken for clock trouble and dropped."""


def timestamp(now: float) -> int:
    """An RFC 9616 timestamp: ``now`` in microseconds modulo 2^32."""
    return int(now * 1_000_000) % TIMESTAMP_MODULUS


@dataclass(frozen=True, slots=True)
class LinkParams:
    """How one interface turns Hellos, IHUs and RTT into a cost."""

    rxcost: int = 96
    """The nominal rxcost announced while enough Hellos arrive."""
    k: int = 2
    j: int = 3
    rtt_min: float = 0.010
    rtt_max: float = 0.120
    max_rtt_penalty: int = 0
    rtt_smoothing: float = 0.8
    """Weight of the old estimate in the exponential average of RTT samples."""

    def __post_init__(self) -> None:
        if not 1 <= self.rxcost < INFINITY:
            raise ValueError(f"nominal rxcost {self.rxcost} outside 1..65534")
        if not 1 <= self.k <= self.j <= 16:
            raise ValueError(f"{self.k}-out-of-{self.j} needs 1 <= k <= j <= 16")
        if not 0 <= self.rtt_min < self.rtt_max:
            raise ValueError("rtt_min must be below rtt_max")
        if not 0 <= self.max_rtt_penalty < INFINITY:
            raise ValueError(f"RTT penalty {self.max_rtt_penalty} outside 0..65534")
        if not 0 <= self.rtt_smoothing < 1:
            raise ValueError("rtt_smoothing must lie in [0, 1)")

    def rtt_penalty(self, rtt: float | None) -> int:
        """The cost added for a smoothed RTT (none without a measurement)."""
        if rtt is None or self.max_rtt_penalty == 0 or rtt <= self.rtt_min:
            return 0
        if rtt >= self.rtt_max:
            return self.max_rtt_penalty
        share = (rtt - self.rtt_min) / (self.rtt_max - self.rtt_min)
        return round(self.max_rtt_penalty * share)


@dataclass(slots=True)
class HelloHistory:
    """The last 16 Hellos of one sequence (bit 0: the most recent), RFC 8966 A.1."""

    bits: int = 0
    expected: int | None = None
    interval: float = 0.0
    deadline: float | None = None

    def receive(self, seqno: int, interval: float, now: float) -> None:
        """Record a Hello with ``seqno`` promising the next one within ``interval`` seconds."""
        if self.expected is not None:
            diff = seqno_diff(seqno, self.expected)
            if abs(diff) > 16:
                self.bits = 0  # the sender rebooted or we missed too much to tell
            elif diff < 0:
                self.bits >>= -diff  # it slowed down: undo the misses we counted
            else:
                self.bits = (self.bits << diff) & 0xFFFF  # Hellos lost in between
        self.bits = ((self.bits << 1) | 1) & 0xFFFF
        self.expected = seqno_plus(seqno)
        self.interval = interval
        self.deadline = now + 1.5 * interval if interval > 0 else None

    def tick(self, now: float) -> bool:
        """Count the Hellos missed by ``now``; True if any was."""
        missed = False
        while self.deadline is not None and self.deadline <= now and self.expected is not None:
            self.bits = (self.bits << 1) & 0xFFFF
            self.expected = seqno_plus(self.expected)
            self.deadline += self.interval
            missed = True
            if self.bits == 0:
                self.deadline = None
        return missed

    def received(self, j: int) -> int:
        """How many of the last ``j`` Hellos arrived."""
        return (self.bits & ((1 << j) - 1)).bit_count()


@dataclass(slots=True)
class Neighbour:
    """What we know about one neighbour (an address on one interface)."""

    interface: str
    address: IPAddress
    multicast: HelloHistory = field(default_factory=HelloHistory)
    unicast: HelloHistory = field(default_factory=HelloHistory)
    txcost: int = INFINITY
    ihu_deadline: float | None = None
    hello_seqno: int = 0
    """Our unicast Hello seqno towards this neighbour."""
    hello_origin: int | None = None
    """Transmit timestamp of its last timestamped Hello, echoed in our IHUs."""
    hello_receive: int | None = None
    """Our timestamp when that Hello arrived."""
    hello_received_at: float = 0.0
    rtt: float | None = None
    cost: int = INFINITY
    """The cost as last computed by :meth:`update_cost`."""
    down_at: float = float("-inf")
    """When its link last went down (its cost became infinite)."""
    heard_since: float | None = None
    """When we first heard from it since its link last went down (or ever): only our Hellos
    sent since then measure its RTT (:meth:`rtt_sample`)."""
    last_heard: float | None = None
    """When a packet from it last arrived: past :data:`SILENT_FOR`, with no Hello schedule
    running, its link is down (Hellos of interval 0 promised nothing, and kept it forever)."""
    last_dump: float | None = None
    """When we last answered its wildcard Route Request with a full dump."""
    quick_hellos: int = 0
    """Unicast Hellos sent to it out of schedule since our last scheduled one."""
    update_tokens: float = -1.0
    """The Updates it may still send us now (:meth:`take_updates`); negative: a full budget
    not yet counted from."""
    tokens_at: float = 0.0
    """When :attr:`update_tokens` was last counted."""
    pace: int = 1
    """Our pace towards it: 1, or the interface's rest pace while it is at rest. Our Hello,
    IHU and Update intervals to it are this many times the interface's."""
    hellos_to_skip: int = 0
    """Scheduled Hello rounds that pass it by before its next Hello (at most pace - 1)."""
    updates_to_skip: int = 0
    """Scheduled full updates that pass it by before its next one (at most pace - 1)."""
    noted: float | None = None
    """Its deadline as its interface's heap holds it (:meth:`Interface.note`)."""

    def set_pace(self, pace: int) -> None:
        """The pace from this Hello round on. Faster than before (it is busy again): its
        next Hello goes at this round and its next full update at the next full update."""
        if pace < self.pace:
            self.hellos_to_skip = self.updates_to_skip = 0
        self.pace = pace

    def hello_due(self) -> bool:
        """Whether this scheduled Hello round sends it a Hello (or passes it by)."""
        self.hellos_to_skip, due = _turn(self.hellos_to_skip, self.pace)
        return due

    def update_due(self) -> bool:
        """Whether this scheduled full update goes to it (or passes it by)."""
        self.updates_to_skip, due = _turn(self.updates_to_skip, self.pace)
        return due

    def reach(self) -> int:
        """The 16-bit reachability (both histories or-ed), as babeld shows it."""
        return self.multicast.bits | self.unicast.bits

    def rxcost(self, params: LinkParams) -> int:
        """The rxcost we report in IHUs: nominal if k of the last j Hellos came."""
        best = max(self.multicast.received(params.j), self.unicast.received(params.j))
        return params.rxcost if best >= params.k else INFINITY

    def compute_cost(self, params: LinkParams) -> int:
        """The link cost: txcost plus RTT penalty if both directions work (A.2.1).

        At least 1: a neighbour's IHU may report rxcost 0, and a usable link costs something.
        """
        if self.txcost >= INFINITY or self.rxcost(params) >= INFINITY:
            return INFINITY
        return max(1, min(self.txcost + params.rtt_penalty(self.rtt), INFINITY - 1))

    def update_cost(self, params: LinkParams, now: float) -> bool:
        """Recompute :attr:`cost`; True if it changed."""
        cost = self.compute_cost(params)
        changed = cost != self.cost
        if self.cost < INFINITY <= cost:
            self.down_at = now
        self.cost = cost
        return changed

    def deadline(self) -> float | None:
        """When :meth:`tick` has something to do next."""
        silent = self._silent_at()
        times = [
            t
            for t in (self.multicast.deadline, self.unicast.deadline, self.ihu_deadline, silent)
            if t is not None
        ]
        return min(times) if times else None

    def _silent_at(self) -> float | None:
        """When it will have been silent too long, if anything of it is still held and no
        Hello schedule it announced times it out by itself (one of interval 0 arms none;
        a long one, up to 655 s, is its own limit)."""
        if self.last_heard is None:
            return None
        if self.multicast.deadline is not None or self.unicast.deadline is not None:
            return None
        held = self.multicast.bits or self.unicast.bits or self.txcost < INFINITY
        return self.last_heard + SILENT_FOR if held else None

    def tick(self, now: float) -> None:
        """Count missed Hellos and forget a txcost no IHU has refreshed; past
        :data:`SILENT_FOR` without a packet, forget its Hellos and its txcost."""
        silent = self._silent_at()
        if silent is not None and silent <= now:
            for history in (self.multicast, self.unicast):
                history.bits, history.deadline = 0, None
            self.txcost = INFINITY
            self.ihu_deadline = None
        self.multicast.tick(now)
        self.unicast.tick(now)
        if self.ihu_deadline is not None and self.ihu_deadline <= now:
            self.txcost = INFINITY
            self.ihu_deadline = None

    def heard(self, now: float) -> None:
        """A packet from it arrives (before what it says is taken in)."""
        self.last_heard = now
        since = self.heard_since
        if self.cost >= INFINITY and (since is None or since < self.down_at):
            self.heard_since = now

    def take_updates(self, wanted: int, capacity: float, rate: float, now: float) -> int:
        """How many of ``wanted`` Updates it may send now: a budget of ``capacity`` that
        refills at ``rate`` a second (:data:`meshd.babel.core_receive.UPDATE_TABLES`)."""
        tokens = self.update_tokens
        refilled = tokens + (now - self.tokens_at) * rate
        tokens = capacity if tokens < 0 else min(capacity, refilled)
        taken = min(wanted, int(tokens))
        self.update_tokens, self.tokens_at = tokens - taken, now
        return taken

    def receive_ihu(self, rxcost: int, interval: float, now: float) -> None:
        """Take the cost it reports for hearing us; it holds for 3.5 IHU intervals."""
        self.txcost = rxcost
        self.ihu_deadline = now + (3.5 * interval if interval > 0 else IHU_HOLD_UNTIMED)

    def receive_hello_timestamp(self, transmit: int, now: float) -> None:
        """Remember a Hello's transmit timestamp and when it came, to echo in an IHU."""
        self.hello_origin = transmit
        self.hello_receive = timestamp(now)
        self.hello_received_at = now

    def rtt_sample(
        self, origin: int, receive: int, transmit: int, now: float, params: LinkParams
    ) -> None:
        """RFC 9616 3.1: an IHU echoing our Hello sent at ``origin`` and received at
        ``receive``, in a packet whose Hello was sent at ``transmit``, arrives ``now``.

        Only for a Hello we sent once we heard from it again after its link went down
        (:attr:`heard_since`): one sent before may have waited in WireGuard for a
        handshake (a peer stages what it cannot send yet) and arrived seconds late, which
        is no round trip. Taken for one, it put the whole RTT penalty on a direct path just
        back, and hysteresis kept the longer route until the smoothed RTT decayed. The
        Hellos that answer its first ones (a link coming up) count: the link's RTT is
        known from the start, not a jump of its cost a Hello interval later."""
        since = self.heard_since
        if since is None:
            return
        total = (timestamp(now) - origin) % TIMESTAMP_MODULUS
        if total > (now - since) * 1_000_000 + 2:  # µs; 2 for the truncation of both stamps
            return  # sent before we heard from it again: perhaps staged meanwhile
        held = (transmit - receive) % TIMESTAMP_MODULUS
        sample = ((total - held) % TIMESTAMP_MODULUS) / 1_000_000
        if sample > _MAX_RTT:
            return  # negative or absurd: the clocks or the timestamps are wrong
        if self.rtt is None:
            self.rtt = sample
        else:
            weight = params.rtt_smoothing
            self.rtt = weight * self.rtt + (1 - weight) * sample


def _turn(to_skip: int, pace: int) -> tuple[int, bool]:
    """One scheduled round of a countdown: ``(rounds left to skip, whether this one goes)``;
    a round that goes starts the next ``pace - 1`` skips."""
    if to_skip > 0:
        return to_skip - 1, False
    return pace - 1, True
