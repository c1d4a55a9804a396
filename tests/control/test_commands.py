"""The typed control commands: one request and one answer type per command, the same JSON.

Requests decode into their type or fail with a ControlDecodeError (the server answers it as a
typed error); answers read back into their type with only DecodeError, whatever the JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.control import commands as c
from meshd.control.client import ask, request
from meshd.control.typed_json import decode_answer, decode_request, to_json
from meshd.control.wire import Wire, fields
from meshd.errors import ControlDecodeError, DecodeError
from tests.control.serving import with_server

SAMPLES: list[c.Request] = [
    c.StatusRequest(),
    c.PeersRequest(),
    c.RoutesRequest(),
    c.InviteBootstrapRequest(),
    c.PublishRequest("AAEC"),
    c.ConnectRequest(("/ip4/127.0.0.1/tcp/1",)),
    c.SponsoredRequest("ab" * 32),
    c.SyncRequest(),
    c.RevokeRequest("carol", "left"),
    c.DownRequest(),
    c.RotateWgRequest(),
    c.NetcheckRequest(),
]

ROW = {
    "name": "carol", "node_id": "n" * 26, "node_key": "a2V5", "state": "admitted",
    "reason": "", "overlay_ip": "fd00::1", "link_local": "fe80::1", "wg_public_key": "d2c=",
    "endpoints": ["192.0.2.1:51820"], "addrs": [], "last_seen": 5, "admitted_at": 1,
    "not_after": 9, "credentials_end": 9, "connected": True, "wg_peer": False,
    "wg_endpoint": None, "last_handshake": None, "rx_bytes": None, "tx_bytes": None,
    "expires": None, "revocation_reason": None,
}  # fmt: skip


def test_every_command_has_one_request_and_one_answer_type() -> None:
    assert {type(r) for r in SAMPLES} == set(c.REQUESTS.values()) == set(c.ANSWERS)
    for request_ in SAMPLES:
        assert decode_request(request_.command, to_json(request_)) == request_


QUERIES = {"status", "peers", "routes", "invite-bootstrap", "sponsored", "netcheck"}
"""The commands that change nothing: the daemon answers them without waiting for its disk."""


def test_every_command_says_whether_it_changes_the_daemon() -> None:
    for command, cls in c.REQUESTS.items():
        assert issubclass(cls, c.Query) != issubclass(cls, c.Change), command
    assert {n for n, cls in c.REQUESTS.items() if issubclass(cls, c.Query)} == QUERIES


def test_a_command_that_is_neither_a_query_nor_a_change_is_refused() -> None:
    with pytest.raises(TypeError, match="a Query or a Change"):

        class ShrugRequest(c.Request):
            command: ClassVar[str] = "shrug"


@pytest.mark.parametrize(
    ("cmd", "args"),
    [
        ("reboot", {}),
        ("publish", {}),
        ("publish", {"record": 5}),
        ("status", {"verbose": True}),
        ("connect", {"addrs": "not a list"}),
        ("revoke", {"node": "x", "reason": None}),
    ],
)
def test_unknown_or_malformed_requests_are_a_typed_error(cmd: str, args: dict[str, Any]) -> None:
    with pytest.raises(ControlDecodeError):
        decode_request(cmd, args)


def test_peer_rows_read_back_and_print_the_same_keys() -> None:
    answer = decode_answer(c.PeersAnswer, [ROW])
    assert answer.rows[0].name == "carol"
    assert answer.rows[0].endpoints == ("192.0.2.1:51820",)
    assert to_json(answer) == [ROW]  # no Babel: no route columns
    routed = decode_answer(c.PeersAnswer, [ROW | {"route": None, "metric": None}])
    assert to_json(routed) == [ROW | {"route": None, "metric": None}]
    newer = decode_answer(c.PeersAnswer, [ROW | {"from_a_newer_daemon": 1}])
    assert newer == answer


@pytest.mark.parametrize("broken", [{"name": 5}, {"connected": "yes"}, {"admitted_at": True}])
def test_an_answer_of_the_wrong_shape_is_a_decode_error(broken: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        decode_answer(c.PeersAnswer, [ROW | broken])
    missing = dict(ROW)
    del missing["state"]
    with pytest.raises(DecodeError):
        decode_answer(c.PeersAnswer, [missing])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(set(c.ANSWERS.values()), key=lambda t: t.__name__)), _JSON)
def test_any_json_reads_as_an_answer_or_a_decode_error(cls: type[Any], value: Any) -> None:
    try:
        answer = decode_answer(cls, value)
    except DecodeError:
        return
    assert isinstance(answer, Wire)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(c.REQUESTS)), st.dictionaries(st.text(max_size=8), _JSON))
def test_any_arguments_decode_or_are_a_control_decode_error(cmd: str, args: Any) -> None:
    try:
        typed = decode_request(cmd, args)
    except ControlDecodeError:
        return
    assert isinstance(typed, c.REQUESTS[cmd])


def test_the_server_answers_a_bad_request_with_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "meshd.sock"
    seen: dict[str, Any] = {}

    async def handler(cmd: str, args: dict[str, Any]) -> Any:
        typed = decode_request(cmd, args)
        assert isinstance(typed, c.SyncRequest)
        return to_json(c.SyncAnswer(3))

    def client() -> None:
        seen["sync"] = ask(path, c.SyncRequest(), c.SyncAnswer)
        with pytest.raises(ControlDecodeError) as unknown:
            request(path, "reboot", {})
        seen["unknown"] = str(unknown.value)

    with_server(path, handler, client)
    assert seen["sync"] == c.SyncAnswer(3)
    assert "knows no command 'reboot'" in seen["unknown"]


def test_wire_types_are_frozen_records_of_their_fields() -> None:
    answer = c.SyncAnswer(3)
    assert answer == c.SyncAnswer(requested=3) != c.SyncAnswer(4)
    assert hash(answer) == hash(c.SyncAnswer(3))
    assert repr(answer) == "SyncAnswer(requested=3)"
    with pytest.raises(AttributeError):
        answer.requested = 4  # type: ignore[misc]
    with pytest.raises(TypeError, match="missing"):
        c.DownAnswer(stopping=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no field"):
        c.SyncAnswer(3, extra=1)  # type: ignore[call-arg]
    row_fields = [f.name for f in fields(c.PeerRow)]
    assert row_fields[:2] == ["name", "node_id"]
    assert row_fields[-1] == "routed"
    assert c.RoutesAnswer(router_id="r", routes=(), neighbours=()).seqno is None
    assert [f.name for f in fields(c.StatusRequest)] == []  # `command` is a class variable


def test_an_address_is_its_text_on_the_wire_also_an_interned_one() -> None:
    """An interned /128 is also an int (meshd.addressing): in an answer's free-form part (a
    status's ``wireguard``) it goes on the wire as its text, as a standard network does,
    never as a number."""
    import ipaddress
    import json

    from meshd.addressing import host_prefix_of
    from meshd.control.protocol import Response, encode_response

    value = int(ipaddress.IPv6Address("fd00::7"))
    answer = {
        "interned": host_prefix_of(value),
        "standard": ipaddress.ip_network("fd00::7/128"),
        "address": ipaddress.ip_address("fd00::7"),
        "count": 3,
    }
    line = encode_response(Response(result=to_json(answer)))
    sent = json.loads(line)["result"]
    assert sent == {
        "interned": "fd00::7/128",
        "standard": "fd00::7/128",
        "address": "fd00::7",
        "count": 3,
    }
