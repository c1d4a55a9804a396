"""``meshd peers`` at thousands of members (a scrape of the metrics takes the same view): each
member's view made once, its path looked up in one table, and the event loop left to run
between the columns, not held for the whole view; its addresses written by the C library."""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.synthetic_store import build_store
from meshd.control import typed_json
from meshd.control.commands import PeerRow, PeersAnswer
from meshd.control.typed_json import decode_answer
from meshd.daemon.control import ROWS_AT_ONCE
from meshd.daemon.state_views import ipv6_text
from meshd.node.statedir import NodeDir, now
from tests.daemon.fakes import first_announced, running

MEMBERS = 2 * ROWS_AT_ONCE + 500


def test_a_view_of_thousands_of_members_lets_the_event_loop_run(tmp_path: Path) -> None:
    build_store(tmp_path / "n", MEMBERS)
    node = NodeDir.open(tmp_path / "n")
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, _transport, _backend):
            await first_announced(daemon)
            turns = 0
            done = False

            async def other_task() -> None:
                nonlocal turns
                while not done:
                    turns += 1
                    await trio.lowlevel.checkpoint()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(other_task)
                await trio.lowlevel.checkpoint()
                before = turns
                started = time.process_time()
                with checked_a_row_at_a_time() as calls:
                    answer = await daemon.control.dispatch("peers", {})
                spent = time.process_time() - started
                done = True
            # The rows the daemon built were checked field by field, none on its own.
            assert calls == [], len(calls)
            rows = decode_answer(PeersAnswer, answer).rows
            assert len(rows) == MEMBERS
            assert {r.state for r in rows} == {"self", "admitted"}
            # Another task ran between the columns and between each ROWS_AT_ONCE rows.
            assert turns - before >= 3, (turns - before, spent)

    try:
        # A clock that never jumps: the view is of one instant, this node announced.
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=math.inf))
    finally:
        node.close()


@contextmanager
def checked_a_row_at_a_time() -> Iterator[list[object]]:
    """The PeerRows read one at a time (the row-by-row reader) while inside."""
    build = typed_json._BUILDERS.get(PeerRow) or typed_json._builder(PeerRow)
    calls: list[object] = []

    def counted(value: object, strict: bool) -> object:
        calls.append(value)
        return build(value, strict)

    typed_json._BUILDERS[PeerRow] = counted
    try:
        yield calls
    finally:
        typed_json._BUILDERS[PeerRow] = build


@settings(max_examples=2000, deadline=None)
@given(
    st.integers(0, 2**128 - 1),
    st.sampled_from([0, 0xFD00 << 112, 0xFE80 << 112, 0xFFFF << 80, 1 << 112]),
    st.integers(0, 255),
)
def test_addresses_are_written_as_str_writes_them(value: int, high: int, zeros: int) -> None:
    # Runs of zero hextets (the ``::``) in every place, and the forms with an IPv4 address
    # in them (``::ffff:a.b.c.d``), which only ``str`` writes.
    kept = int.from_bytes(bytes(0 if zeros >> (n // 2) & 1 else 0xFF for n in range(16)), "big")
    for address in (value, value & kept, high | (value & kept & (2**80 - 1))):
        ip = ipaddress.IPv6Address(address)
        assert ipv6_text(ip) == str(ip)
