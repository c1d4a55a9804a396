"""What the daemon logs of the membership's events: one line each, at a level that keeps a
large mesh's log readable (a member's new endpoints are DEBUG)."""

from __future__ import annotations

import logging

import pytest

from meshd.daemon.connections import Connections
from meshd.membership import Admitted, Expired, Revoked, Updated
from tests.mesh.support import member


def test_each_event_is_one_line_and_new_endpoints_stay_out_of_the_info_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    carol = member("carol")
    caplog.set_level(logging.DEBUG, logger="meshd.daemon.connections")
    for event in (Admitted(carol), Updated(carol), Expired(carol), Revoked(carol)):
        Connections._log(event)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    who = f"member carol ({carol.node_id[:10]})"
    assert lines == [
        (logging.INFO, f"{who} admitted"),
        (logging.DEBUG, f"{who} updated"),
        (logging.INFO, f"{who} expired"),
        (logging.INFO, f"{who} revoked"),
    ]
