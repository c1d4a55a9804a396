"""A joiner whose clock is off from its sponsor's is told so, how far and what to do."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from meshd.daemon import join as join_module
from meshd.daemon.config import DaemonConfig
from meshd.daemon.join import CLOCK_WARN, JoinError, clock_warning, join
from meshd.errors import VerifyError
from tests.daemon.support import Daemon, daemons


def test_what_a_joiner_is_told_of_its_clock() -> None:
    assert clock_warning(CLOCK_WARN, 300) is None
    assert clock_warning(-CLOCK_WARN, 300) is None
    ahead = clock_warning(120, 300)
    assert ahead is not None
    assert ahead.startswith("warning: this machine's clock is 120 s ahead of the sponsor's")
    assert "will not be heard" not in ahead
    behind = clock_warning(-200, 300)
    assert behind is not None
    assert "200 s behind the sponsor's" in behind
    far = clock_warning(900, 300)
    assert far is not None
    assert "they will refuse this node's (it will not be heard)" in far


def _join_with_clock_off(
    founder: Daemon, tmp_path: Path, off: int, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """``meshd join --no-up``'s work, in this process, with the joiner's clock ``off``
    seconds from the founder's; what it said as it went."""
    monkeypatch.setattr(join_module, "now", lambda: int(time.time()) + off)
    token = founder.invite("--name", f"j{abs(off)}")
    said: list[str] = []
    config = DaemonConfig(state_dir=tmp_path / f"j{off}", wg_backend="none", dial_timeout=3.0)

    async def main() -> None:
        node = await join(token, name="", config=config, progress=said.append)
        node.close()

    trio.run(main)
    return said


def test_a_joiner_is_told_its_clock_is_off_or_why_it_cannot_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with daemons(tmp_path, "founder") as (founder,):
        founder.init()
        founder.up()
        said = _join_with_clock_off(founder, tmp_path, 0, monkeypatch)
        assert not [line for line in said if "clock" in line]  # the clocks agree
        said = _join_with_clock_off(founder, tmp_path, 200, monkeypatch)
        assert said[-1].startswith("warning: this machine's clock is 2")  # 200 s, or 199
        assert "ahead of the sponsor's" in said[-1]
        # More than members allow, ahead: the sponsor refuses, saying by how much.
        with pytest.raises(VerifyError) as refused:
            _join_with_clock_off(founder, tmp_path, 900, monkeypatch)
        assert refused.value.reason == "not-yet-valid"
        assert "ahead of the sponsor's clock, more than the 300 s allowed" in str(refused.value)
        assert "timedatectl" in refused.value.one_line()
        # Behind: the admission is dated in this machine's future, and refused here.
        with pytest.raises(JoinError) as behind:
            _join_with_clock_off(founder, tmp_path, -900, monkeypatch)
        assert "clock is 9" in str(behind.value)  # 900 s, or 899
        assert "behind the sponsor's, more than the 300 s members allow" in str(behind.value)
        assert "timedatectl set-ntp true" in behind.value.one_line()
