"""What a client reads is a whole answer or one error, whatever the handler returned."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from meshd.cli import asking, main
from meshd.control.client import request
from meshd.control.commands import PeersAnswer
from meshd.control.typed_json import decode_answer
from meshd.errors import ControlError, DecodeError
from tests.control.serving import with_server

ROW: dict[str, Any] = {
    "name": "carol",
    "node_id": "c" * 26,
    "node_key": "a2V5",
    "state": "admitted",
    "reason": "",
    "overlay_ip": "fd00::1",
    "link_local": "fe80::1",
    "wg_public_key": "d2c=",
    "endpoints": [],
    "addrs": [],
    "last_seen": 1,
    "admitted_at": 1,
    "not_after": 2,
    "credentials_end": 2,
    "connected": True,
    "wg_peer": True,
    "wg_endpoint": None,
    "last_handshake": 1.5,
    "rx_bytes": 0,
    "tx_bytes": 0,
}


async def _handler(cmd: str, args: dict[str, Any]) -> Any:
    if cmd == "sets":
        return {"members": {"carol"}}  # a bug: a set is not JSON
    if cmd == "nan":
        return {"at": math.nan}
    return {"ok": cmd}


@pytest.mark.parametrize("cmd", ["sets", "nan"])
def test_an_answer_that_is_not_json_is_one_error_and_the_server_goes_on(
    tmp_path: Path, cmd: str
) -> None:
    path = tmp_path / "meshd.sock"
    seen: dict[str, Any] = {}

    def client() -> None:
        with pytest.raises(ControlError, match="not JSON") as refused:
            request(path, cmd, {})
        seen["error"] = refused.value.one_line()
        seen["next"] = request(path, "status", {})

    with_server(path, _handler, client)
    assert "\n" not in seen["error"]
    assert seen["next"] == {"ok": "status"}


def test_peers_json_prints_a_whole_document_or_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value JSON cannot hold (here NaN) ends the command in one line with stdout empty:
    a program reading stdout never gets half a document, nor NaN, with status 0."""
    answer = decode_answer(PeersAnswer, [ROW, {**ROW, "name": "dave", "last_handshake": math.nan}])
    monkeypatch.setattr(asking, "ask_typed", lambda *_: answer)
    with pytest.raises(SystemExit) as ended:
        main(["peers", "--json", "--state-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert ended.value.code == 70  # internal error (the README's table)
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("meshd: internal error")


def test_peers_says_why_a_member_is_out_without_repeating_its_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        {**ROW, "name": "eve", "state": "revoked", "reason": "revoked"},
        {**ROW, "name": "mallory", "state": "revoked", "reason": "revoked"},
        {**ROW, "name": "trent", "state": "revoked", "reason": "issuer-revoked"},
    ]
    rows[1]["revocation_reason"] = "lost laptop"
    monkeypatch.setattr(asking, "ask_typed", lambda *_: decode_answer(PeersAnswer, rows))
    main(["peers", "--state-dir", str(tmp_path)])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "revoked (" not in lines["eve"]
    assert "revoked (lost laptop)" in lines["mallory"]
    assert "revoked (issuer-revoked)" in lines["trent"]


def test_reading_many_rows_works_out_each_fields_check_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ``meshd peers`` at 10,000 members: the daemon checks the rows it answers with, and the
    # command line reads them back; each field's hint is read once, not once a row.
    import typing

    from meshd.control import typed_json

    calls = 0
    get_origin = typing.get_origin

    def counted(hint: Any) -> Any:
        nonlocal calls
        calls += 1
        return get_origin(hint)

    monkeypatch.setattr(typing, "get_origin", counted)
    monkeypatch.setattr(typed_json, "_CHECKS", {}, raising=False)
    monkeypatch.setattr(typed_json, "_BUILDERS", {}, raising=False)
    rows = [dict(ROW, name=f"m{n}", endpoints=["192.0.2.1:51820"]) for n in range(2000)]
    answer = decode_answer(PeersAnswer, rows)
    assert [row.name for row in answer.rows] == [f"m{n}" for n in range(2000)]
    assert answer.rows[7].endpoints == ("192.0.2.1:51820",)
    assert calls < 100  # the distinct hints of a row (~50 000 at one a field and row)
    with pytest.raises(DecodeError, match="rx_bytes: str is not int"):
        decode_answer(PeersAnswer, [*rows, dict(ROW, rx_bytes="0")])
