"""How often periodic work over every member runs (pure): at its interval, or further apart
when it costs more, so that it takes at most ``SHARE`` of the time.

Two loops of an idle daemon make a pass over every member on a timer whatever happens: the
WireGuard round reads the whole device (to catch what changed it besides us, and the
peers' handshakes) every 5 s, and the expiry service judges every member every second. At
10,000 members a read of the device took ~0.25 s (our parse and wireguard-go's answer) and
judging every member ~0.05 s: ~7 % and ~3 % of a core to stand still. Spaced by what their
last pass cost, each takes at most ``SHARE`` of the time, and never waits longer than
``LONGEST``; at a thousand members and fewer their intervals win and nothing changes. (A
tick now judges every member only when a member's end or silence limit has come:
meshd.membership.settle, ``due_nodes``.) A round's pass is its read of the device and its plan,
and the punching step's (spaced the same way while no path is direct) its read and its look
at each peer: a read that got cheaper (~0.06 s of Python at 10,000 peers now) is not spent
again on passes more often than their whole cost allows (meshd.daemon.device_reads: the
round and the step share one read at rest). What they react to does not wait: a new
membership snapshot, a hold ending or a first handshake due still runs a round at once, and
revocations and joins are judged as they are merged (docs/footprint.md, "An idle daemon at
10,000 members").
"""

from __future__ import annotations

from typing import Final

SHARE: Final = 0.02  # of the time, at most, for one loop's periodic pass
LONGEST: Final = 30.0  # seconds: the longest a periodic pass waits, whatever it costs


def spaced(
    interval: float, cost: float, *, share: float = SHARE, longest: float = LONGEST
) -> float:
    """Seconds until the next periodic pass: ``interval``, or more for a pass that took
    ``cost`` seconds, so that passes take at most ``share`` of the time; never more than
    ``longest`` (unless ``interval`` itself is longer)."""
    if not cost > 0:  # nothing measured (a fake clock, a pass that took no time), or NaN
        return interval
    return max(interval, min(cost / share, longest))
