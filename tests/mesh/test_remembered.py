"""Where our WireGuard last saw each peer, kept across a restart: what is kept, when it is
written, the file read back (damaged too), and the first round that tries it first."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.daemon import last_endpoints
from meshd.mesh import punch
from meshd.mesh.candidates import Candidate
from meshd.mesh.punch import DirectPath
from meshd.mesh.remembered import MAX_KEPT, Kept, decode_kept_untrusted, encode_kept

OVERLAY = ipaddress.IPv6Network("fd6d:6573:6864::/48")
A, B, C = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
LAN = Candidate("local", ipaddress.ip_address("192.168.5.2"), 51820)
MAPPING = "198.51.100.5:40211"  # a symmetric NAT's mapping for us: announced by nobody


def test_a_mapping_no_announcement_names_is_kept_and_written_once() -> None:
    kept = Kept({}, every=5.0)
    data = kept.update(0.0, {A: (MAPPING, False), B: ("203.0.113.2:51820", True)}, {A, B})
    assert data == f"{A.hex()} {MAPPING}\n".encode()
    assert kept.update(1.0, {A: (MAPPING, False)}, {A, B}) is None  # unchanged: not written


def test_the_file_is_written_at_most_every_few_seconds() -> None:
    kept = Kept({}, every=5.0)
    assert kept.update(0.0, {A: (MAPPING, False)}, {A}) is not None
    assert kept.update(1.0, {A: ("198.51.100.5:40999", False)}, {A}) is None
    data = kept.update(5.0, {}, {A})
    assert data == f"{A.hex()} 198.51.100.5:40999\n".encode()


def test_at_a_stop_what_changed_since_the_last_write_is_written_at_once() -> None:
    kept = Kept({}, every=5.0)
    assert kept.update(0.0, {A: (MAPPING, False)}, {A}) is not None
    assert kept.update(1.0, {A: (MAPPING, False), B: ("198.51.100.9:1234", False)}, {A, B}) is None
    data = kept.unwritten(1.2)  # the daemon stops 0.2 s later
    assert data == f"{A.hex()} {MAPPING}\n{B.hex()} 198.51.100.9:1234\n".encode()
    assert kept.unwritten(1.3) is None  # written: nothing more


def test_silent_peers_keep_their_last_endpoint_gone_ones_and_announced_ones_go() -> None:
    kept = Kept({A: MAPPING, B: "198.51.100.9:1234", C: "198.51.100.7:999"}, every=0.0)
    # A: no live session now (kept); B: its session is at an announced endpoint; C: gone.
    data = kept.update(0.0, {B: ("203.0.113.2:51820", True)}, {A, B})
    assert data == f"{A.hex()} {MAPPING}\n".encode()
    assert dict(kept.kept) == {A: MAPPING}


def test_at_most_limit_peers_are_kept() -> None:
    kept = Kept({}, every=0.0, limit=2)
    kept.update(0.0, {A: (MAPPING, False), B: (MAPPING, False), C: (MAPPING, False)}, {A, B, C})
    assert len(kept.kept) == 2


def test_a_damaged_file_gives_only_its_good_lines() -> None:
    data = b"\n".join(
        [
            f"{A.hex()} {MAPPING}".encode(),
            b"zz" * 32 + b" 198.51.100.5:1",  # not hex
            f"{B.hex()} 224.0.0.1:51820".encode(),  # multicast
            f"{C.hex()} [fd6d:6573:6864::1]:51820".encode(),  # the overlay
            f"{A.hex()} 198.51.100.6:1".encode(),  # A twice: the first one stays
            b"\xff\xfe garbage",
            f"{C.hex()[:10]} {MAPPING}".encode(),
            b"\t\t" + b"ab" * 31 + f" {MAPPING}".encode(),  # 64 characters, a 31-byte key
            b"",  # blank: not counted
        ]
    )
    decoded = decode_kept_untrusted(data, OVERLAY)
    assert decoded == {A: MAPPING}
    assert decoded.refused == 7


def test_lines_past_the_limit_are_counted_as_refused() -> None:
    many = {bytes([n // 256, n % 256]) * 16: MAPPING for n in range(MAX_KEPT + 3)}
    data = "".join(f"{key.hex()} {endpoint}\n" for key, endpoint in many.items()).encode()
    decoded = decode_kept_untrusted(data, OVERLAY)
    assert (len(decoded), decoded.refused) == (MAX_KEPT, 3)


def test_refused_lines_are_logged_once_with_their_count_and_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Read twice (as at start-up: the first round, then the punching service): one WARNING
    naming the file and how many lines it refused."""
    path = tmp_path / last_endpoints.FILENAME
    path.write_bytes(encode_kept({A: MAPPING}) + b"garbage\n" + f"{B.hex()} 224.0.0.1:1\n".encode())
    caplog.set_level(logging.DEBUG, logger=last_endpoints.__name__)
    assert last_endpoints.load(tmp_path, OVERLAY) == {A: MAPPING}
    assert last_endpoints.first_paths(tmp_path, OVERLAY, 25) == {A: (MAPPING, 25, None)}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0]
    assert "2 lines refused" in warnings[0]
    # Written anew without the refused lines, at once: the next start (a new process,
    # which has warned about nothing yet) has nothing to say.
    assert path.read_bytes() == encode_kept({A: MAPPING})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    caplog.clear()
    last_endpoints._warned.clear()
    assert last_endpoints.load(tmp_path, OVERLAY) == {A: MAPPING}
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@given(st.binary(max_size=4096))
def test_any_bytes_decode_without_raising(data: bytes) -> None:
    decoded = decode_kept_untrusted(data, OVERLAY)
    assert len(decoded) <= MAX_KEPT
    assert all(len(key) == 32 for key in decoded)
    lines = data.decode(errors="replace").splitlines()
    assert len(decoded) + decoded.refused == len([line for line in lines if line.strip()])


def test_round_trip() -> None:
    kept = {A: MAPPING, B: "[2001:db8::5]:51820"}
    assert decode_kept_untrusted(encode_kept(kept), OVERLAY) == kept


def test_the_file_is_private_and_read_back(tmp_path: Path) -> None:
    last_endpoints.save(tmp_path, encode_kept({A: MAPPING}))
    mode = stat.S_IMODE(os.stat(tmp_path / last_endpoints.FILENAME).st_mode)
    assert mode == 0o600
    assert last_endpoints.load(tmp_path, OVERLAY) == {A: MAPPING}
    assert last_endpoints.first_paths(tmp_path, OVERLAY, 25) == {A: (MAPPING, 25, None)}
    assert sorted(os.listdir(tmp_path)) == [last_endpoints.FILENAME]


def test_no_file_and_a_symlinked_file_give_nothing(tmp_path: Path) -> None:
    assert last_endpoints.load(tmp_path, OVERLAY) == {}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(encode_kept({A: MAPPING}))
    (tmp_path / last_endpoints.FILENAME).symlink_to(elsewhere)
    assert last_endpoints.load(tmp_path, OVERLAY) == {}


def test_a_restarted_node_tries_the_kept_endpoint_first_then_the_candidates() -> None:
    p = DirectPath([LAN], 0.0, families=frozenset({4}), overlay=OVERLAY, kept=MAPPING)
    a = p.update(0.0, None, None)
    assert (a.path, a.endpoint, a.kick) == ("trying", MAPPING, True)
    a = p.update(punch.ATTEMPT, None, None)  # no answer there: the announced ones, as before
    assert (a.path, a.endpoint) == ("trying", LAN.endpoint)
    p.update(20.0, None, None)
    p.update(60.0, None, None)  # the next round does not try the kept one again
    assert MAPPING not in [c.endpoint for c in p.candidates]
    assert p.update(60.0, None, None).endpoint == LAN.endpoint


def test_a_kept_endpoint_that_answers_is_settled() -> None:
    p = DirectPath([LAN], 0.0, families=frozenset({4}), overlay=OVERLAY, kept=MAPPING)
    p.update(0.0, None, None)
    a = p.update(0.3, 0.2, MAPPING)
    assert (a.path, a.endpoint) == ("direct", MAPPING)


def test_a_nonsense_kept_endpoint_is_ignored() -> None:
    p = DirectPath([LAN], 0.0, families=frozenset({4}), overlay=OVERLAY, kept="224.0.0.1:1")
    assert p.update(0.0, None, None).endpoint == LAN.endpoint


def test_a_fifo_in_place_of_the_file_is_refused_at_once_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO named wg-endpoints (no writer): the load does not wait for one, it says what
    it found once (the daemon reads the file twice at start-up) and gives nothing."""
    fifo = tmp_path / last_endpoints.FILENAME
    os.mkfifo(fifo)
    results: list[object] = []

    def load_twice() -> None:
        results.append(last_endpoints.load(tmp_path, OVERLAY))
        results.append(last_endpoints.first_paths(tmp_path, OVERLAY, 25))

    caplog.set_level(logging.DEBUG, logger=last_endpoints.__name__)
    worker = threading.Thread(target=load_twice, daemon=True)
    worker.start()
    worker.join(timeout=3.0)
    hung = worker.is_alive()
    if hung:  # let the stuck open see a writer come and go, so the thread ends
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=3.0)
    assert not hung, "loading a FIFO waited for a writer"
    assert results == [{}, {}]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "a FIFO" in warnings[0]
    assert "ignored" in warnings[0]


def test_a_directory_in_place_of_the_file_is_refused_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / last_endpoints.FILENAME).mkdir()
    assert last_endpoints.load(tmp_path, OVERLAY) == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "a directory" in warnings[0]
