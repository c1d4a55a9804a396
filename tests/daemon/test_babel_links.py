"""A site interface made anew (a new index) starts Babel again on it; one that is gone
or down waits (meshd.daemon.babel_links, on a fake clock)."""

from __future__ import annotations

import ipaddress
import itertools
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from meshd.babel.options import babel_config
from meshd.babel.ports import interface_addresses, packet_size
from meshd.daemon.babel import RESTART_RETRY, BabelService
from meshd.daemon.babel_links import (
    DOWN_HOLD,
    EVERY,
    LOOK_GAP,
    SETTLE,
    Look,
    follow_site_links,
    moved,
    ready_index,
    resized,
    watch_links,
)
from meshd.errors import BackendError


def test_only_an_interface_back_under_another_index_has_moved() -> None:
    opened = {"lan0": 2, "lan1": 3}
    assert moved(opened, {"lan0": Look(2), "lan1": Look(3)}) is None
    assert moved(opened, {"lan0": None, "lan1": Look(3)}) is None  # gone: it may come back
    assert moved(opened, {"lan0": Look(2), "lan1": Look(7)}) == "lan1"
    assert moved(opened, {}) is None


def test_only_a_link_under_its_index_with_another_mtu_is_resized() -> None:
    opened = {"lan0": 2, "lan1": 3}
    mtus = {"lan0": 1500, "lan1": None}
    assert resized(opened, mtus, {"lan0": Look(2, 1500), "lan1": Look(3, None)}) == {}
    assert resized(opened, mtus, {"lan0": Look(2, 1400), "lan1": Look(3, 1500)}) == {
        "lan0": 1400,
        "lan1": 1500,  # not known when opened: known now
    }
    assert resized(opened, mtus, {"lan0": Look(9, 1400)}) == {}  # made anew: a restart
    assert resized(opened, mtus, {"lan0": None, "lan1": Look(3)}) == {}  # gone, not said


def test_a_links_new_mtu_sizes_babels_datagrams_there_once() -> None:
    """lan0 opened at 1500, lowered to 1400 at 5 s (told by the kernel) and raised to 9000
    at 12 s (seen at the next look): ``mtu`` once each, within SETTLE and EVERY; lan1's
    never changes."""

    async def index_of(name: str) -> Look | None:
        now = trio.current_time()
        if name == "lan1":
            return Look(3, 1500)
        return Look(2, 1500 if now < 5.0 else 1400 if now < 12.0 else 9000)

    told: list[tuple[float, str, int]] = []

    async def main() -> None:
        with trio.move_on_after(30):
            await follow_site_links(
                {"lan0": 2, "lan1": 3},
                lambda name: None,
                mtu=lambda name, mtu: told.append((trio.current_time(), name, mtu)),
                mtus={"lan0": 1500, "lan1": 1500},
                index_of=index_of,
                changes=_told_at(5.0),
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [(name, mtu) for _, name, mtu in told] == [("lan0", 1400), ("lan0", 9000)]
    assert told[0][0] == pytest.approx(5.0 + SETTLE)
    assert 12.0 <= told[1][0] <= 12.0 + EVERY


def test_babel_starts_again_once_the_interface_is_back_under_a_new_index() -> None:
    """lan0 goes away for 10 s, comes back (down, then ready) under a new index: one
    restart, when it is ready, not before; lan1 never moves."""
    timeline = [(0.0, 2), (5.0, None), (15.0, None), (20.0, 9)]  # from then on, lan0's
    restarts: list[tuple[float, str]] = []

    async def index_of(name: str) -> Look | None:
        if name == "lan1":
            return Look(3)
        now = trio.current_time()
        index = [index for at, index in timeline if at <= now][-1]
        return None if index is None else Look(index)

    async def main() -> None:
        with trio.move_on_after(60):
            await follow_site_links(
                {"lan0": 2, "lan1": 3},
                lambda name: restarts.append((trio.current_time(), name)),
                index_of=index_of,
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(restarts) == 1
    at, name = restarts[0]
    assert name == "lan0"
    assert 20.0 <= at <= 20.0 + EVERY


def test_an_interface_that_loses_its_link_and_finds_it_again_is_told_once_each() -> None:
    """Down (or without a carrier) from 4 to 8 s: the core hears of it once when it goes
    and once when it comes back, within a look (EVERY); no start again."""

    async def index_of(name: str) -> Look | None:
        return None if 4.0 <= trio.current_time() < 8.0 else Look(2)

    restarts: list[str] = []
    told: list[tuple[str, float]] = []

    async def main() -> None:
        with trio.move_on_after(30):
            await follow_site_links(
                {"lan0": 2},
                restarts.append,
                down=lambda name: told.append(("down", trio.current_time())),
                up=lambda name: told.append(("up", trio.current_time())),
                index_of=index_of,
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert restarts == []
    assert [what for what, _ in told] == ["down", "up"]
    assert 4.0 <= told[0][1] <= 4.0 + EVERY
    assert 8.0 <= told[1][1] <= 8.0 + EVERY


def test_babel_datagrams_fit_the_links_mtu() -> None:
    """As babeld: a link's MTU less IPv6's and UDP's headers, at most 1400 (and that where
    the MTU is not known), never under Babel's 512."""
    assert packet_size(None) == 1400
    assert packet_size(1500) == 1400
    assert packet_size(1420) == 1372  # meshd's WireGuard interface by default
    assert packet_size(1280) == 1232
    assert packet_size(576) == 528
    assert packet_size(100) == 512


def _told_at(*moments: float) -> Any:
    """A fake ``changes``: the kernel says something changed at each of ``moments``."""

    async def changes(changed: Any) -> None:
        for at in moments:
            await trio.sleep_until(at)
            changed()
        await trio.sleep_forever()

    return changes


def test_a_change_the_kernel_tells_of_is_looked_at_at_once_not_at_the_next_look() -> None:
    """Down at 4.3 s and back at 8.7 s, each told by the kernel (:func:`watch_links`): the
    core hears of the return within SETTLE and of the loss once it has lasted DOWN_HOLD,
    where the looks every EVERY s took up to 2 s more."""

    async def index_of(name: str) -> Look | None:
        return None if 4.3 <= trio.current_time() < 8.7 else Look(2)

    told: list[tuple[str, float]] = []

    async def main() -> None:
        with trio.move_on_after(30):
            await follow_site_links(
                {"lan0": 2},
                lambda name: None,
                down=lambda name: told.append(("down", trio.current_time())),
                up=lambda name: told.append(("up", trio.current_time())),
                index_of=index_of,
                changes=_told_at(4.3, 8.7),
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [what for what, _ in told] == ["down", "up"]
    assert told[0][1] == pytest.approx(4.3 + SETTLE + DOWN_HOLD)
    assert told[1][1] == pytest.approx(8.7 + SETTLE)


def test_a_blink_shorter_than_the_down_hold_drops_nothing() -> None:
    """Down for 0.5 s (told both ways): neither ``down`` nor ``up`` (the neighbours and
    their routes stay; the kernel's routes it took are put back by the shell)."""

    async def index_of(name: str) -> Look | None:
        return None if 4.3 <= trio.current_time() < 4.8 else Look(2)

    told: list[str] = []

    async def main() -> None:
        with trio.move_on_after(30):
            await follow_site_links(
                {"lan0": 2},
                lambda name: None,
                down=lambda name: told.append("down"),
                up=lambda name: told.append("up"),
                index_of=index_of,
                changes=_told_at(4.3, 4.8),
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert told == []


def test_however_much_the_kernel_says_the_looks_are_spaced() -> None:
    """A change told every millisecond for 20 s (a host busy with containers' interfaces):
    at most one look every LOOK_GAP s, not one a notification."""
    looks = 0

    async def index_of(name: str) -> Look | None:
        nonlocal looks
        looks += 1
        return Look(2)

    async def main() -> None:
        with trio.move_on_after(20):
            await follow_site_links(
                {"lan0": 2},
                lambda name: None,
                index_of=index_of,
                changes=_told_at(*(i / 1000 for i in range(20_000))),
            )

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert 20 / EVERY <= looks <= 20 / LOOK_GAP + 1


def _service() -> BabelService:
    return BabelService(
        babel_config(hello_interval=1.0),
        node_key=bytes(32),
        overlay=ipaddress.IPv6Address("fd00::1"),
    )


def test_a_start_again_that_fails_is_tried_again_not_the_end_of_babel() -> None:
    """The interface made anew is gone again by the time Babel starts on it: the start
    fails, and is tried again RESTART_RETRY s later (before, the service ended)."""
    service = _service()
    starts: list[float] = []

    async def run_once(task_status: Any) -> None:
        starts.append(trio.current_time())
        if len(starts) == 2:
            raise BackendError("network interface lan0 does not exist")
        task_status.started()
        await trio.sleep_forever()

    service._run_once = run_once  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await trio.sleep(10)
            service._site_link_moved("lan0")
            await trio.sleep(10)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(starts) == 3
    assert starts[2] - starts[1] == RESTART_RETRY


def test_a_first_start_that_fails_says_so() -> None:
    service = _service()

    async def run_once(task_status: Any) -> None:
        raise BackendError("network interface lan0 does not exist")

    service._run_once = run_once  # type: ignore[method-assign]
    with pytest.raises(BackendError):
        trio.run(service.run)


@pytest.mark.root
def test_an_interface_is_ready_only_up_with_a_carrier_and_a_link_local_address() -> None:
    """In a namespace: a veth pair up on both ends is ready; without a carrier (its peer
    down), down, or gone, it is not."""
    ns = f"bl{os.getpid() % 100000}"
    run = partial(subprocess.run, check=True, capture_output=True)
    with _veth_pair(ns, "bla", "blb"):
        shown = run(["ip", "-n", ns, "-o", "link", "show", "bla"], text=True).stdout
        index = int(shown.split(":")[0])

        def ready() -> int | None:
            look = trio.run(ready_index, "bla", ns)
            return None if look is None else look.index

        deadline = time.monotonic() + 5
        while ready() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready() == index
        run(["ip", "-n", ns, "link", "set", "bla", "mtu", "1280"])
        assert trio.run(ready_index, "bla", ns) == Look(index, 1280)
        addresses = trio.run(partial(interface_addresses, "bla", netns=ns))
        assert (addresses.index, addresses.mtu) == (index, 1280)
        assert packet_size(addresses.mtu) == 1232  # no Babel datagram the kernel fragments
        run(["ip", "-n", ns, "link", "set", "blb", "down"])  # no carrier on bla
        assert ready() is None
        run(["ip", "-n", ns, "link", "set", "blb", "up"])
        run(["ip", "-n", ns, "link", "set", "bla", "down"])
        assert ready() is None
        run(["ip", "-n", ns, "link", "del", "bla"])
        assert ready() is None


@pytest.mark.root
def test_a_real_link_going_down_and_up_is_heard_of_at_once() -> None:
    """In a namespace, with the looks every EVERY s out of the way (one a minute): a veth
    losing its carrier (its peer set down) is told once that has lasted DOWN_HOLD, and
    finding it again within a second, by the kernel's notifications alone
    (:func:`watch_links`); its MTU lowered is told within a second too."""
    ns = f"bw{os.getpid() % 100000}"
    run = partial(subprocess.run, check=True, capture_output=True)
    with _veth_pair(ns, "bwa", "bwb"):
        told: list[tuple[str, float]] = []
        heard = {"down": trio.Event(), "up": trio.Event(), "mtu 1300": trio.Event()}

        def tell(what: str) -> None:
            told.append((what, time.monotonic()))
            heard[what].set()

        async def main() -> None:
            look = None
            with trio.move_on_after(5):
                while look is None:
                    look = await ready_index("bwa", ns)
                    await trio.sleep(0.05)
            assert look is not None
            assert look.mtu == 1500
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    partial(
                        follow_site_links,
                        {"bwa": look.index},
                        lambda name: None,
                        down=lambda name: tell("down"),
                        up=lambda name: tell("up"),
                        mtu=lambda name, mtu: tell(f"mtu {mtu}"),
                        mtus={"bwa": look.mtu},
                        every=60.0,
                        index_of=partial(ready_index, netns=ns),
                        changes=partial(watch_links, netns=ns),
                    )
                )
                await trio.sleep(0.5)
                for what, change in (
                    ("down", ["bwb", "down"]),
                    ("up", ["bwb", "up"]),
                    ("mtu 1300", ["bwa", "mtu", "1300"]),
                ):
                    at = time.monotonic()
                    await trio.to_thread.run_sync(run, ["ip", "-n", ns, "link", "set", *change])
                    with trio.move_on_after(3):
                        await heard[what].wait()
                    assert heard[what].is_set(), f"{what}: not told"
                    assert told[-1][0] == what
                    assert told[-1][1] - at < (DOWN_HOLD if what == "down" else 0) + 1.0
                nursery.cancel_scope.cancel()

        trio.run(main)
        assert [what for what, _ in told] == ["down", "up", "mtu 1300"]


@contextmanager
def _veth_pair(ns: str, a: str, b: str) -> Iterator[None]:
    """A namespace ``ns`` holding a veth pair ``a``-``b``, both up, without duplicate
    address detection; deleted with all it holds on the way out."""
    run = partial(subprocess.run, check=True, capture_output=True)
    try:
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b])
        for name in (a, b):
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{name}.accept_dad=0"])
            run(["ip", "-n", ns, "link", "set", name, "up"])
        yield
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def test_a_bug_a_neighbour_sets_off_starts_babel_again_not_the_daemon_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once running, Babel ending on an exception nobody expected (a bug in its core that a
    neighbour's datagram set off, again and again) starts again RESTART_RETRY s later: the
    service, hence the daemon, runs on; the traceback is logged once, then counted."""
    import logging

    service = _service()
    starts: list[float] = []

    async def run_once(task_status: Any) -> None:
        starts.append(trio.current_time())
        task_status.started()
        if len(starts) <= 5:
            await trio.sleep(1)
            raise KeyError("a core bug")
        await trio.sleep_forever()

    service._run_once = run_once  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            await trio.sleep(60)
            nursery.cancel_scope.cancel()

    caplog.set_level(logging.INFO, logger="meshd.daemon.babel")
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(starts) == 6
    assert [b - a for a, b in itertools.pairwise(starts)] == [1 + RESTART_RETRY] * 5
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "Babel (starting again in 2 s) raised KeyError" in errors[0].getMessage()


def test_a_bug_before_babel_runs_is_the_start_failing() -> None:
    service = _service()

    async def run_once(task_status: Any) -> None:
        raise KeyError("a bug at the start")

    service._run_once = run_once  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        trio.run(service.run)
