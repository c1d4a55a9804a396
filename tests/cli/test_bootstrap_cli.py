"""``--public-addr``, ``join --bootstrap`` and ``--relay`` on the command line (in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshd.daemon.bootstrap import peer_id_text
from meshd.node.statedir import NodeDir
from meshd.trust.invites import decode_token_untrusted
from tests.cli.test_cli import one_line_error, run


def test_invites_carry_the_public_address_first_even_with_the_daemon_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / "a")
    code, _, err = run(
        capsys, "init", "--network", "n", "--name", "a", "--state-dir", state,
        "--public-addr", "203.0.113.5", "--public-addr", "[2001:db8::5]:7200",
        "--public-addr", "mesh.example.org:7300", "--public-addr", "home.example.net",
    )  # fmt: skip
    assert code == 0, err
    node = NodeDir.open(Path(state))
    try:
        node.store.set_meta("listen_addrs", b"/ip4/192.168.1.10/tcp/7100/p2p/x")
        peer = peer_id_text(node.node_key.public)
    finally:
        node.close()
    code, out, err = run(capsys, "invite", "--state-dir", state)
    assert code == 0, err
    invite = decode_token_untrusted(out.strip().splitlines()[-1])
    assert list(invite.bootstrap) == [
        f"/ip4/203.0.113.5/tcp/7100/p2p/{peer}",
        f"/ip6/2001:db8::5/tcp/7200/p2p/{peer}",
        # A name is carried as written, looked up by the joiner when it dials (either IP
        # version): the way in that follows an address its provider changes.
        f"/dns/mesh.example.org/tcp/7300/p2p/{peer}",
        f"/dns/home.example.net/tcp/7100/p2p/{peer}",
        "/ip4/192.168.1.10/tcp/7100/p2p/x",  # a joiner on the same LAN still finds it
    ]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["init", "--network", "n", "--public-addr", "exa_mple.org"], "not a host name"),
        (["init", "--network", "n", "--public-addr", "10.0.0"], "neither an IP address"),
        (["init", "--network", "n", "--public-addr", "[example.org]:7100"], "--public-addr"),
        (["init", "--network", "n", "--public-addr", "10.0.0.1:0"], "--public-addr"),
        (["up", "--relay", "always"], "--relay"),
        (["up", "--public-addr", "0.0.0.0"], "--public-addr"),
        (["join", "--invite", "meshd1x", "--bootstrap", "/ip4/1.2.3.4/tcp/7100"], "/p2p/"),
        (["join", "--invite", "meshd1x", "--bootstrap", "1.2.3.4:7100"], "--bootstrap"),
        (["join", "--invite", "meshd1x", "--bootstrap", "/dns4/a..b/tcp/7100/p2p/x"], "1-63"),
        (["join", "--invite", "meshd1x", "--bootstrap", "/dns/example.org/udp/1"], "/tcp/"),
        (["join", "--invite", "meshd1x", "--bootstrap", "/dns6/example.org/tcp/7100"], "/p2p/"),
        (["up", "--bootstrap", "/dns4/exa_mple.org/tcp/7100/p2p/x"], "not a host name"),
        # A WireGuard endpoint is announced: a name would have every member look it up.
        (["up", "--endpoint", "mesh.example.org:51820"], "a host name; members are told"),
        (["up", "--endpoint", "1.2.3:51820"], "ADDRESS:PORT"),
    ],
)
def test_bad_reachability_options_are_one_line_errors_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    state = tmp_path / "s"
    code, _, err = run(capsys, *argv, "--state-dir", str(state))
    one_line_error(code, err)
    assert code == 2
    assert says in err
    assert not state.exists()  # refused before anything was made


def test_the_config_file_checks_relay_public_addr_and_bootstrap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'relay = "sometimes"\npublic_addr = ["example..org"]\nbootstrap = ["/ip4/1.2.3.4/tcp/1"]\n'
    )
    code, out, err = run(capsys, "config", "check", str(bad))
    assert code == 78
    assert "3 problems" in err
    for line, key in enumerate(("relay", "public_addr", "bootstrap"), start=1):
        assert f"bad.toml:{line}: {key} " in out
    good = tmp_path / "good.toml"
    peer = peer_id_text(bytes(32))
    good.write_text(
        'relay = "off"\npublic_addr = ["203.0.113.5:7100", "mesh.example.org"]\n'
        f'bootstrap = ["/ip4/203.0.113.5/tcp/7100/p2p/{peer}", '
        f'"/dns4/mesh.example.org/tcp/7100/p2p/{peer}"]\n'
    )
    code, out, err = run(capsys, "config", "check", str(good))
    assert code == 0, err
    assert "3 keys set" in out
