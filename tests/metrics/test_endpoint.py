"""The metrics endpoint of real daemons (``meshd up --metrics``), scraped with urllib."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.daemon.metrics import HEAD_TIMEOUT, MAX_CLIENTS
from meshd.metrics.collector import CATALOGUE
from tests.daemon.support import Daemon, daemons, free_port, meshd, wait_for
from tests.metrics.test_collector import Samples, parse


def get(port: int, path: str = "/metrics", method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def scrape(port: int) -> Samples:
    status, _, body = get(port)
    assert status == 200
    return parse(body)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Daemon, int]]:
    port = free_port()
    with daemons(tmp_path, "n0") as (n0,):
        n0.init()
        n0.up("--metrics", f"127.0.0.1:{port}")
        yield n0, port


def test_a_scrape_has_every_metric_with_its_help(node: tuple[Daemon, int]) -> None:
    daemon, port = node
    status, content_type, body = get(port)
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    for spec in CATALOGUE:
        assert f"# HELP {spec.name} " in body, spec.name
        assert f"# TYPE {spec.name} {spec.kind}" in body, spec.name
    samples = parse(body)
    assert value(samples, "meshd_members", state="admitted") == 1
    assert value(samples, "meshd_records") == daemon.ask("status")["records"]
    assert samples["process_resident_memory_bytes"][()] > 1e6
    # Every budget and shed counter of the status view is exposed.
    view = daemon.ask("status")
    exposed = {
        dict(labels)["what"]
        for name in ("meshd_shed_total", "meshd_budget_used")
        for labels in samples[name]
    }
    assert exposed == set(view["budgets"]) | set(view["shed"])
    # Without WireGuard there are no WireGuard samples (their HELP stays).
    assert "meshd_wireguard_peers" not in samples


def test_only_get_and_head_of_metrics_and_the_index(node: tuple[Daemon, int]) -> None:
    _, port = node
    assert get(port, "/", "GET")[0] == 200
    status, _, body = get(port, "/metrics", "HEAD")
    assert (status, body) == (200, "")
    assert get(port, "/secret")[0] == 404
    assert get(port, "/metrics", "POST")[0] == 405
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")


def test_idle_connections_make_room_for_a_scrape(node: tuple[Daemon, int]) -> None:
    """Connections that send nothing, MAX_CLIENTS and more: a scrape still gets its answer,
    as the oldest connection still waiting for its request is closed to make room (before,
    MAX_CLIENTS idle connections shut every scrape out for their 10 s), and one that sends
    nothing is closed after HEAD_TIMEOUT anyway."""
    daemon, port = node
    idle = [
        socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4 * MAX_CLIENTS)
    ]
    try:
        time.sleep(0.3)
        started = time.monotonic()
        assert get(port)[0] == 200
        assert time.monotonic() - started < 2
        daemon.ask("status")  # the daemon itself does not notice
        last = idle[-1]  # among the newest: closed by the head timeout, not to make room
        with contextlib.suppress(ConnectionResetError):
            assert last.recv(100) == b""
        assert time.monotonic() - started >= HEAD_TIMEOUT - 1
    finally:
        for sock in idle:
            sock.close()


def errors(stderr: str) -> list[str]:
    """What a command printed, less the INFO lines of the log (which config file it read)."""
    return [line for line in stderr.strip().splitlines() if " INFO " not in line]


def test_a_metrics_address_that_does_not_bind_stops_the_start_in_one_line(tmp_path: Path) -> None:
    state_dir = tmp_path / "n0"
    assert meshd("init", "--network", "m", "--state-dir", str(state_dir)).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = meshd(
            "up", "--wg-backend", "none", "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}",
            "--metrics", f"127.0.0.1:{port}", "--state-dir", str(state_dir),
        )  # fmt: skip
        assert done.returncode == 6, done.stderr
        error = (
            f"meshd: --metrics 127.0.0.1:{port}: cannot listen: Address already in use; "
            "another program listens there: choose another port for --metrics"
        )
        assert errors(done.stderr) == [error]
        assert not (state_dir / "meshd.sock").exists()
        # join tries the address before it spends a use of the invite: nothing is made.
        joiner = tmp_path / "joiner"
        done = meshd(
            "join", "--invite", "mi1-not-a-token", "--wg-backend", "none",
            "--metrics", f"127.0.0.1:{port}", "--state-dir", str(joiner),
        )  # fmt: skip
        assert done.returncode == 6, done.stderr
        assert errors(done.stderr) == [error]
        assert not joiner.exists()
    done = meshd("up", "--metrics", "9101", "--state-dir", str(state_dir))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("meshd: --metrics '9101' is not an")


def test_a_scrape_during_a_revocation_sees_the_counters_move(tmp_path: Path) -> None:
    ports = {"founder": free_port(), "node1": free_port()}
    with daemons(tmp_path, "founder", "node1", "node2") as (founder, n1, n2):
        founder.init()
        founder.up("--metrics", f"127.0.0.1:{ports['founder']}")
        for node in (n1, n2):
            extra = ("--metrics", f"127.0.0.1:{ports[node.name]}") if node is n1 else ()
            node.join(founder.invite("--name", node.name), *extra)
        wait_for(lambda: n1.states().get("node2") == "admitted", 30, "node2 admitted at node1")
        before = {name: scrape(port) for name, port in ports.items()}
        seen: list[Samples] = []
        stop = threading.Event()

        def scraping() -> None:  # node1 scraped all along, ten times a second
            while not stop.is_set():
                seen.append(scrape(ports["node1"]))
                time.sleep(0.1)

        scraper = threading.Thread(target=scraping)
        scraper.start()
        try:
            done = meshd(
                "revoke", "node2", "--reason", "test", "--state-dir", str(founder.state_dir)
            )
            assert done.returncode == 0, done.stderr
            wait_for(lambda: n1.states()["node2"] == "revoked", 10, "the revocation at node1")
            time.sleep(0.3)
        finally:
            stop.set()
            scraper.join()
        after = {name: scrape(port) for name, port in ports.items()}

    first, last = before["node1"], after["node1"]
    assert value(first, "meshd_revocations") == 0
    assert value(last, "meshd_revocations") == 1
    assert value(first, "meshd_members", state="revoked") == 0
    assert value(last, "meshd_members", state="revoked") == 1
    assert value(last, "meshd_members", state="admitted") == 2

    def ingested(samples: Samples) -> float:
        return sum(samples.get("meshd_records_ingested_total", {}).values())

    assert ingested(last) > ingested(first)
    # A scrape taken during the revocation saw it arrive: before it, none; then one.
    revoked = [value(s, "meshd_revocations") for s in seen]
    assert revoked[0] == 0, revoked
    assert revoked[-1] == 1, revoked
    assert revoked == sorted(revoked)
    # The founder published it; node1 took it from gossip (or, if it came first, a sync).
    published = "meshd_gossip_messages_published_total"
    assert value(after["founder"], published) > value(before["founder"], published)
    gossip = value(last, "meshd_gossip_messages_received_total", result="accepted") - value(
        first, "meshd_gossip_messages_received_total", result="accepted"
    )
    synced = value(last, "meshd_sync_records_total", direction="received") - value(
        first, "meshd_sync_records_total", direction="received"
    )
    assert gossip + synced >= 1
    assert value(last, "meshd_revocations") == value(after["founder"], "meshd_revocations")


def test_a_second_daemon_with_the_same_metrics_address_is_told_a_daemon_runs(
    node: tuple[Daemon, int],
) -> None:
    """The state dir's lock comes before every other start-up check: the second daemon hears
    that one already runs (exit 4), not that the metrics port is taken."""
    n0, port = node
    done = meshd(
        "up", "--wg-backend", "none", "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}",
        "--metrics", f"127.0.0.1:{port}", "--state-dir", str(n0.state_dir),
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    line = errors(done.stderr)[-1]
    assert line.startswith(f"meshd: a meshd daemon already runs for {n0.state_dir}"), line
    assert get(port)[0] == 200
