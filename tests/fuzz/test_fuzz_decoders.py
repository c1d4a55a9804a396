"""Every decoder of untrusted bytes, fuzzed briefly: the short version of benchmarks/fuzz.py.

Each target (tests/fuzz/targets.py) gets inputs mutated from its seed corpus (real records,
tokens, sync messages, the Babel golden captures, captured UAPI replies, control lines) by
the same mutators as the long harness, plus plain random bytes. The oracle is the same:
only DecodeError (or the target's typed outcome) may come out, nothing may run past its
CPU budget, and what decodes must encode back to the same bytes. Then one regression test
per finding of the long runs, each failing on the code before its fix.
"""

from __future__ import annotations

import ast
import functools
import random
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshd.babel.codec import decode_packet_untrusted, encode_packet
from meshd.babel.config import InterfaceKind
from meshd.babel.core import BabelCore
from meshd.babel.packet import Packet
from meshd.babel.routes import NeighbourUp
from meshd.babel.subtlv import decode_sub_tlvs, split_untrusted
from meshd.babel.tlv import Hello, Ihu
from meshd.control.protocol import decode_request_untrusted, decode_response_untrusted
from meshd.errors import ControlError, DecodeError
from meshd.mesh.kept_peers import decode_kept_peers_untrusted
from meshd.wg.uapi_reply import parse_errno_untrusted, parse_get_reply_untrusted
from meshd.wg.uapi_request import parse_set_request_untrusted
from tests.fuzz import corpus, targets
from tests.fuzz.mutate import mutate
from tests.fuzz.targets import BY_NAME, TARGETS, Target

EXAMPLES = 150
BUDGET = 2.0  # CPU seconds per input: generous, a loaded 2-core machine must not flake


@functools.cache
def _world() -> corpus.World:
    return corpus.build_world()


@functools.cache
def _prepared(name: str) -> tuple[list[bytes], targets.Decoder]:
    target = BY_NAME[name]
    return target.seeds(_world()), target.setup(_world())


def _check(target: Target, data: bytes) -> None:
    _, decoder = _prepared(target.name)
    with targets.cpu_budget(BUDGET):
        finding = targets.run_one(target, decoder, data, BUDGET)
    assert finding is None, (
        f"{finding.kind}: {finding.error} at {finding.where}: {finding.message}; "
        f"input {finding.data.hex()}"
    )


@pytest.mark.parametrize("name", [t.name for t in TARGETS])
def test_seeds_decode_and_round_trip(name: str) -> None:
    """The seed corpus itself passes the oracle (the round trips hold on real inputs)."""
    target = BY_NAME[name]
    seeds, _ = _prepared(name)
    assert seeds
    for seed in seeds:
        _check(target, seed)


@pytest.mark.parametrize("name", [t.name for t in TARGETS])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_mutated_inputs_meet_the_oracle(name: str, data: st.DataObject) -> None:
    target = BY_NAME[name]
    seeds, _ = _prepared(name)
    if data.draw(st.integers(0, 9), label="raw") == 0:
        raw = data.draw(st.binary(max_size=512), label="bytes")
    else:
        seed = seeds[data.draw(st.integers(0, len(seeds) - 1), label="seed")]
        rng = random.Random(data.draw(st.integers(0, 2**32), label="rng"))
        rounds = data.draw(st.integers(1, 4), label="rounds")
        raw = mutate(seed, target.shape, rng, seeds, rounds)[: target.max_len]
    _check(target, raw)


# --- every _untrusted function is reached by a target ------------------------------------

# The function, and the targets through which the fuzzer reaches it.
REACHED = {
    "split_envelope_untrusted": ("records",),
    "_prefix_untrusted": ("records",),
    "_envelope_untrusted": ("records",),
    "_body_untrusted": ("records",),
    "decode_record_untrusted": ("records", "membership-ingest"),
    "decode_untrusted": ("records", "invite-tokens", "enroll-requests"),
    "decode_packet_untrusted": ("babel-packets", "babel-expand"),
    "open_untrusted": ("babel-auth",),
    "decode_verified_untrusted": ("babel-mac", "babel-auth"),
    "split_untrusted": ("babel-sub-tlvs", "babel-packets"),
    "decode_token_untrusted": ("invite-tokens",),
    "ingest_untrusted": ("membership-ingest",),
    "decode_batch_untrusted": ("membership-ingest",),
    "decode_each_untrusted": ("membership-ingest",),
    "parse_set_request_untrusted": ("uapi-set-requests",),
    "split_reply_untrusted": ("uapi-errno", "uapi-set-requests"),
    "parse_errno_untrusted": ("uapi-errno",),
    "parse_get_reply_untrusted": ("uapi-get-wireguard-go", "uapi-get-boringtun"),
    "receive_untrusted": ("uapi-get-wireguard-go", "uapi-get-boringtun"),
    "_object_untrusted": ("control-requests", "control-responses"),
    "decode_request_untrusted": ("control-requests", "enroll-requests"),
    "decode_response_untrusted": ("control-responses",),
    "decode_scrape_untrusted": ("metrics-scrapes",),
    "decode_nat_message_untrusted": ("nat-messages",),
    "decode_candidates_untrusted": ("announced-candidates",),
    "decode_kept_untrusted": ("kept-endpoints",),
    "decode_kept_peers_untrusted": ("kept-peers",),
    "feed_untrusted": ("stream-frames",),
    "end_untrusted": ("stream-frames",),
    "decode_message_untrusted": ("sync-messages", "sync-session"),
    "decode_reply_untrusted": ("enroll-replies",),
    "unpack_canonical_untrusted": ("canonical-msgpack", "sync-messages"),
    "unpack_body_untrusted": ("records",),
    "check_types_untrusted": ("records",),  # an announcement's extensions
    "b64url_decode_untrusted": ("invite-tokens",),
    "decode_messages_untrusted": ("rtnetlink-replies",),
    "routes_lost_untrusted": ("rtnetlink-replies",),
    "default_routes_changed_untrusted": ("rtnetlink-replies",),
    "routes_untrusted": ("rtnetlink-replies",),
    "addresses_untrusted": ("rtnetlink-replies",),
    "_frames_untrusted": ("rtnetlink-replies",),
    "_attrs_untrusted": ("rtnetlink-replies",),
    "_u32_untrusted": ("rtnetlink-replies",),
    "_ip_untrusted": ("rtnetlink-replies",),
    "_link_untrusted": ("rtnetlink-replies",),
    "_address_untrusted": ("rtnetlink-replies",),
    "_route_untrusted": ("rtnetlink-replies",),
}


def test_every_untrusted_function_has_a_target() -> None:
    root = Path(__file__).resolve().parents[2] / "meshd"
    found = {
        node.name
        for path in root.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name.endswith("_untrusted")
    }
    assert found - set(REACHED) == set(), "an _untrusted function no fuzz target reaches"
    assert {t for names in REACHED.values() for t in names} <= set(BY_NAME)


# --- regressions: one per finding of benchmarks/fuzz.py ----------------------------------


def test_kept_peers_of_version_true_raise_decode_error() -> None:
    # msgpack's true compared equal to the version 1: read, and written back as 1.
    data = bytes.fromhex("96c3c410fd4d657368650000000000000000000030ce6b49d4bcce6b49d26490")
    with pytest.raises(DecodeError):
        decode_kept_peers_untrusted(data)


@pytest.mark.parametrize(
    "sub_tlvs",
    [
        "080a",  # a sub-TLV of length 10 with no body
        "8002",  # a Source Prefix cut after its length
        "08",  # a type with no length byte
    ],
)
def test_sub_tlv_split_raises_decode_error(sub_tlvs: str) -> None:
    with pytest.raises(DecodeError):
        list(split_untrusted(bytes.fromhex(sub_tlvs), "sub-TLV"))
    with pytest.raises(DecodeError):
        decode_sub_tlvs(bytes.fromhex(sub_tlvs))


@pytest.mark.parametrize(
    ("ae", "sub_tlvs"),
    [
        (2, "8000"),  # an empty Source Prefix
        (4, "80022a0a"),  # a source length of 42 for an IPv4 prefix
        (1, "80030309 09"),  # 3 bits need 1 byte, 2 were sent
        (2, "800240"),  # 64 bits need 8 bytes, none were sent
    ],
)
def test_malformed_source_prefix_raises_decode_error(ae: int, sub_tlvs: str) -> None:
    with pytest.raises(DecodeError):
        decode_sub_tlvs(bytes.fromhex(sub_tlvs.replace(" ", "")), ae)


def test_packet_with_malformed_source_prefix_is_a_decode_error() -> None:
    # An Update for 2001:db8::/32 whose Source Prefix claims 48 bits and carries one byte.
    body = bytes.fromhex("0200200001900001006020010db8800230fd")
    update = bytes([8, len(body)]) + body
    packet = bytes([42, 2, 0, len(update)]) + update
    with pytest.raises(DecodeError):
        decode_packet_untrusted(packet)


@pytest.mark.parametrize(
    "reply",
    [b"", b"errno=zero\n\n", b"\xff\n\n", b"listen_port=70000\nerrno=0\n\n", b"x=1\n\n"],
)
def test_uapi_reply_errors_are_decode_errors(reply: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_get_reply_untrusted(reply)
    with pytest.raises(DecodeError):
        parse_errno_untrusted(reply)


def test_uapi_set_request_errors_are_decode_errors() -> None:
    with pytest.raises(DecodeError):
        parse_set_request_untrusted(b"set=1\nlisten_port=x\n\n")


@pytest.mark.parametrize(
    "line",
    [
        b'{"v":2,"cmd":"peers","args":{}}\n',  # another protocol version
        b'{"v":true,"cmd":"peers","args":{}}\n',
        b'{"v":1,"cmd":"Peers","args":{}}\n',  # not a command name
        b'{"v":1,"cmd":"","args":{}}\n',
    ],
)
def test_control_request_errors_are_decode_errors(line: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_request_untrusted(line)
    assert isinstance(info.value, ControlError)  # still what the CLI shows with its hint


def test_control_response_of_another_version_is_a_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        decode_response_untrusted(b'{"v":2,"ok":true,"result":1}\n')
    assert "restart the daemon" in info.value.hint


@pytest.mark.parametrize("kind", ["wired", "tunnel"])
def test_an_ihu_with_rxcost_zero_does_not_break_the_babel_core(kind: InterfaceKind) -> None:
    """Found by the babel-core target: a neighbour reporting rxcost 0 made the link cost 0,
    and NeighbourUp's check raised ValueError out of BabelCore.receive (and out of the
    Babel shell, ending the daemon). Two datagrams from anyone on the link were enough."""
    core = BabelCore(b"fuzzcore")
    core.add_interface("eth0", kind=kind, hello_interval=1.0, link_local=IPv6Address("fe80::3"))
    up: list[int] = []
    for i in range(4):
        now = 0.5 * (i + 1)
        hello_and_ihu = Packet((Hello(i + 1, 100), Ihu(0, 300, 3, IPv6Address("fe80::3"))))
        core.receive("eth0", IPv6Address("fe80::10"), encode_packet(hello_and_ihu), now)
        core.handle_timer(now)
        while (event := core.next_event()) is not None:
            if isinstance(event, NeighbourUp):
                up.append(event.cost)
    assert up == [1]  # the lowest cost a link can have
    (neighbour,) = core.neighbours()
    assert neighbour.cost == 1
