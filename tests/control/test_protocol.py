"""The control codec: round trips, limits, and arbitrary bytes giving only typed errors."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.control.protocol import (
    MAX_REQUEST,
    Failure,
    Request,
    Response,
    decode_request_untrusted,
    decode_response_untrusted,
    encode_request,
    encode_response,
)
from meshd.errors import ControlError, DecodeError, UsageError, VerifyError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
commands = st.from_regex(r"[a-z][a-z0-9-]{0,31}", fullmatch=True)


@given(commands, st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_request_round_trip(cmd: str, args: dict[str, Any]) -> None:
    line = encode_request(Request(cmd, args))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert decode_request_untrusted(line) == Request(cmd, args)


@given(json_values)
def test_result_round_trip(result: Any) -> None:
    assert decode_response_untrusted(encode_response(Response(result=result))).result == result


def test_failure_round_trip_keeps_class_message_hint_and_reason() -> None:
    line = encode_response(Response(failure=Failure.of(UsageError("no such member", hint="ask"))))
    exc = decode_response_untrusted(line).failure.to_exception()  # type: ignore[union-attr]
    assert type(exc) is UsageError
    assert str(exc) == "no such member"
    assert exc.hint == "ask"
    failure = Failure.of(VerifyError("invite-expired", "the invite has expired", hint="new one"))
    back = decode_response_untrusted(encode_response(Response(failure=failure))).failure
    exc = back.to_exception()  # type: ignore[union-attr]
    assert isinstance(exc, VerifyError)
    assert exc.reason == "invite-expired"


@given(st.binary(max_size=300))
def test_any_bytes_give_a_request_or_a_typed_error(data: bytes) -> None:
    with contextlib.suppress(ControlError, DecodeError):
        decode_request_untrusted(data)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_response_or_a_typed_error(data: bytes) -> None:
    with contextlib.suppress(ControlError, DecodeError):
        decode_response_untrusted(data)


@given(json_values)
def test_any_json_gives_a_request_or_a_typed_error(value: Any) -> None:
    for candidate in (
        value,
        {"v": 1, "cmd": value, "args": {}},
        {"v": 1, "cmd": "x", "args": value},
    ):
        with contextlib.suppress(ControlError, DecodeError):
            decode_request_untrusted(json.dumps(candidate).encode())


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b'{"v":2,"cmd":"peers","args":{}}\n', ControlError),
        (b'{"v":1,"cmd":"Peers","args":{}}\n', ControlError),
        (b'{"v":1,"cmd":"peers"}\n', DecodeError),
        (b'{"v":1,"cmd":"peers","args":[]}\n', DecodeError),
        (b'{"v":1,"cmd":"peers","args":{},"x":1}\n', DecodeError),
        (b'{"v":1,"cmd":"peers","args":{"a":NaN}}\n', DecodeError),
        (b'{"v":1,"cmd":"routes","args":{"limit":1e9990}}\n', DecodeError),
        (b'{"v":1,"cmd":"routes","args":{"limit":-1e400}}\n', DecodeError),
        (b'{"v":true,"cmd":"peers","args":{}}\n', ControlError),
        (b'{"v":1,"cmd":"a","args":{}}\n{"v":1}\n', DecodeError),
        (b"[" * 5000 + b"]" * 5000, DecodeError),
        (b"\xff\xfe", DecodeError),
        (b"", DecodeError),
    ],
)
def test_bad_requests_are_refused_with_their_type(line: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_request_untrusted(line)


def test_sizes_are_bounded() -> None:
    with pytest.raises(DecodeError):
        decode_request_untrusted(b" " * (MAX_REQUEST + 1))
    with pytest.raises(ControlError):
        encode_request(Request("publish", {"record": "x" * MAX_REQUEST}))
