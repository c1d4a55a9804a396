"""``meshd up --babel-originate PREFIX`` refuses a prefix the certificate does not allow."""

from __future__ import annotations

from pathlib import Path

from tests.daemon.support import meshd


def test_up_refuses_an_ungranted_prefix_in_one_line(tmp_path: Path) -> None:
    state = str(tmp_path / "node")
    assert meshd("init", "--network", "refuse", "--state-dir", state).returncode == 0
    done = meshd(
        "up", "--wg-backend", "userspace", "--state-dir", state,
        "--listen", "/ip4/127.0.0.1/tcp/0", "--babel-originate", "10.9.0.0/24",
        timeout=30,
    )  # fmt: skip
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("meshd:")]
    assert errors == [
        "meshd: --babel-originate 10.9.0.0/24: this member's certificate does not allow it;"
        " ask an admin for a certificate that grants the prefix"
    ]
    assert not (tmp_path / "node" / "meshd.sock").exists()
