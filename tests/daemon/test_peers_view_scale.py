"""``meshd peers`` at thousands of members (a scrape of the metrics takes the same view): each
member's view made once, its path looked up in one table, and the event loop left to run
between the columns, not held for the whole view; its addresses written by the C library."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.synthetic_store import build_store
from meshd.control.commands import PeersAnswer
from meshd.control.typed_json import decode_answer
from meshd.daemon.control import ROWS_AT_ONCE
from meshd.daemon.state_views import ipv6_text
from meshd.node.statedir import NodeDir, now
from tests.daemon.fakes import run_on_fake_clock, running

MEMBERS = 2 * ROWS_AT_ONCE + 500


def test_a_view_of_thousands_of_members_lets_the_event_loop_run(tmp_path: Path) -> None:
    build_store(tmp_path / "n", MEMBERS)
    node = NodeDir.open(tmp_path / "n")
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, _transport, _backend):
            await trio.testing.wait_all_tasks_blocked()
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
                answer = await daemon.control.dispatch("peers", {})
                spent = time.process_time() - started
                done = True
            rows = decode_answer(PeersAnswer, answer).rows
            assert len(rows) == MEMBERS
            assert {r.state for r in rows} == {"self", "admitted"}
            # Another task ran between the columns and between each ROWS_AT_ONCE rows.
            assert turns - before >= 3, (turns - before, spent)

    try:
        run_on_fake_clock(main)
    finally:
        node.close()


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
