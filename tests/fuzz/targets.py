"""Every decoder of untrusted bytes as a fuzz target, with one oracle.

A target turns an input into a call of the decoder (and of what consumes its output at the
same boundary), then checks the round trip through the matching encoder for what decodes.
:func:`run_one` is the oracle:

- the decoder raises only what the target allows: :class:`~meshd.errors.DecodeError` and
  its subclasses; a few targets also answer with a typed outcome that is not a parse
  failure (the sponsor's refusal, a VerifyError; a device's non-zero errno; a bad MAC);
- anything else (IndexError, ValueError, struct.error, KeyError, RecursionError,
  MemoryError, UnicodeDecodeError...) is a *leak*;
- an encoding of what decoded that differs is a *round-trip* finding;
- an input that runs longer than the time budget (CPU time) is a *hang*.

Targets are set up from a :data:`~tests.fuzz.corpus.World` so that the process that fuzzes
and the one that replays the corpus for coverage judge inputs the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import ipaddress
import signal
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

from meshd.babel.auth import LinkAuth
from meshd.babel.codec import decode_packet_untrusted, encode_packet
from meshd.babel.core import BabelCore
from meshd.babel.expand import expand
from meshd.babel.mac import decode_verified_untrusted, sign_packet
from meshd.babel.packet import Packet
from meshd.babel.subtlv import decode_sub_tlvs, encode_sub_tlvs
from meshd.control.protocol import (
    decode_request_untrusted,
    decode_response_untrusted,
    encode_request,
    encode_response,
)
from meshd.encoding import pack, unpack_body_untrusted, unpack_canonical_untrusted
from meshd.errors import DecodeError, VerifyError
from meshd.gossip import enroll as enroll_protocol
from meshd.gossip import nat as nat_protocol
from meshd.gossip.framing import FrameDecoder, encode_frame
from meshd.gossip.sync import MAX_MESSAGE, SyncSession, decode_message_untrusted, encode_message
from meshd.membership import decode_batch_untrusted
from meshd.mesh import announced, kept_peers, remembered
from meshd.mesh.candidates import parse_announced
from meshd.metrics.http import decode_scrape_untrusted, encode_scrape
from meshd.records import Announcement, Record, decode_record_untrusted, kind_of, seal_unsigned
from meshd.records.build import encode_prefix
from meshd.records.types import split_envelope_untrusted
from meshd.trust.invites import decode_token_untrusted, encode_token
from meshd.wg import rtnetlink
from meshd.wg.errors import UapiErrnoError
from meshd.wg.uapi_reply import encode_get_reply, parse_errno_untrusted, parse_get_reply_untrusted
from meshd.wg.uapi_request import encode_set_request, parse_set_request_untrusted
from meshd.wg.uapi_syntax import Dialect
from tests.fuzz import corpus
from tests.fuzz.corpus import NOW, World

Decoder = Callable[[bytes], object]


class RoundTripError(Exception):
    """What decoded does not encode back to what it was."""


class Hang(BaseException):
    """The input ran past its CPU-time budget (raised from a SIGVTALRM handler)."""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    what: str
    shape: str
    modules: tuple[str, ...]
    seeds: Callable[[World], list[bytes]]
    setup: Callable[[World], Decoder]
    allowed: tuple[type[BaseException], ...] = (DecodeError,)
    max_len: int = 4096


@dataclass(frozen=True, slots=True)
class Finding:
    target: str
    kind: str  # leak, round-trip, hang
    error: str  # exception type
    where: str  # innermost meshd frame: file:line function
    message: str
    data: bytes

    @property
    def signature(self) -> tuple[str, str, str, str]:
        return (self.target, self.kind, self.error, self.where)


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise RoundTripError(what)


# --- records and tokens ------------------------------------------------------------------


def _wire(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return int(value.value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return encode_prefix(value)
    if isinstance(value, tuple):
        return [_wire(v) for v in value]
    raw = getattr(value, "raw", None)
    return raw if isinstance(raw, bytes) and dataclasses.is_dataclass(value) else value


def encode_record(record: Record) -> bytes:
    """The record encoded again from its fields (not from the bytes it kept)."""
    fields = [
        _wire(getattr(record, f.name))
        for f in dataclasses.fields(record)
        # None: a trailing field the record's legacy layout lacks (§9); False: a trailing
        # flag written only when true (an announcement's ``relays``, §6.5)
        if f.name not in ("signature", "raw")
        and getattr(record, f.name) is not None
        and getattr(record, f.name) is not False
    ]
    return seal_unsigned(kind_of(record), fields, record.signature)


def _extended(record: Record) -> bool:
    """An announcement with items after ``relays`` (extensions, docs/wire-format.md §6.5)."""
    if not isinstance(record, Announcement):
        return False
    body, _ = split_envelope_untrusted(record.raw)
    return len(unpack_body_untrusted(body)) > 10


def _records(world: World) -> Decoder:
    def run(data: bytes) -> object:
        record = decode_record_untrusted(data)
        _check(record.raw == data, "raw differs from the input")
        again = decode_record_untrusted(encode_record(record))
        if _extended(record):  # its extensions are in its bytes, not in its fields
            again = dataclasses.replace(again, raw=record.raw)
        else:
            _check(encode_record(record) == data, "fields re-encode differently")
        _check(again == record, "decode(encode) differs")
        return record

    return run


def _canonical(world: World) -> Decoder:
    def run(data: bytes) -> object:
        value = unpack_canonical_untrusted(data, max_size=8192, what="fuzz")
        _check(pack(value) == data, "canonical value re-encodes differently")
        return value

    return run


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _tokens(world: World) -> Decoder:
    def run(data: bytes) -> object:
        text = _text(data)
        invite = decode_token_untrusted(text)
        _check(encode_token(invite) == text.strip(), "token re-encodes differently")
        return invite

    return run


# --- gossip streams ----------------------------------------------------------------------


def _sync_messages(world: World) -> Decoder:
    def run(data: bytes) -> object:
        message = decode_message_untrusted(data)
        _check(encode_message(message) == data, "sync message re-encodes differently")
        return message

    return run


def _sync_session(world: World) -> Decoder:
    state = corpus.membership_of(world)

    def run(data: bytes) -> object:
        session = SyncSession(state, split_threshold=2)
        step = session.receive(decode_message_untrusted(data))
        if step.reply is not None:
            _check(len(encode_message(step.reply)) <= MAX_MESSAGE, "reply over MAX_MESSAGE")
        return step

    return run


def _frames(world: World) -> Decoder:
    """First byte: chunk size (0: all at once); the rest is the stream, with a 2 KiB limit."""

    def run(data: bytes) -> object:
        decoder = FrameDecoder(max_frame_size=2048)
        chunk = data[0] if data else 0
        stream = data[1:]
        payloads: list[bytes] = []
        step = chunk or max(1, len(stream))
        for at in range(0, len(stream), step):
            payloads += decoder.feed_untrusted(stream[at : at + step])
        consumed = b"".join(encode_frame(p, max_frame_size=2048) for p in payloads)
        _check(consumed + stream[len(consumed) :] == stream, "frames re-encode differently")
        _check(decoder.buffered == len(stream) - len(consumed), "buffered count is off")
        decoder.end_untrusted()
        return payloads

    return run


def _enroll_requests(world: World) -> Decoder:
    def run(data: bytes) -> object:
        enrollment = enroll_protocol.decode_request_untrusted(data)
        _check(enroll_protocol.encode_request(enrollment) == data, "request differs")
        return enrollment

    return run


def _enroll_replies(world: World) -> Decoder:
    enrollment = corpus.enrollment_of(world)

    def run(data: bytes) -> object:
        admission = enroll_protocol.decode_reply_untrusted(data, enrollment)
        _check(enroll_protocol.encode_reply(admission) == data, "reply re-encodes differently")
        return admission

    return run


def _ingest(world: World) -> Decoder:
    state = corpus.membership_of(world)

    def run(data: bytes) -> object:
        # As a batch too (a sync's, a store's load: decode_each_untrusted), which takes what
        # does not decode as a refusal, never as an error.
        decode_batch_untrusted([data, data])
        return state.ingest_untrusted(data, NOW)

    return run


# --- Babel -------------------------------------------------------------------------------

_SOURCE = IPv6Address("fe80::1")


def _babel_packets(world: World) -> Decoder:
    def run(data: bytes) -> object:
        packet = decode_packet_untrusted(data)
        _check(encode_packet(packet) == data, "packet re-encodes differently")
        return packet

    return run


def _babel_expand(world: World) -> Decoder:
    def run(data: bytes) -> object:
        return list(expand(decode_packet_untrusted(data), _SOURCE))

    return run


def _babel_core(world: World) -> Decoder:
    """First byte: which interface (top bit) and which of 16 link-local neighbours sent the
    rest; each datagram advances the clock by 50 ms and runs the timers, as the shell does.
    Nothing may escape :meth:`BabelCore.receive`: it counts what does not parse."""
    core = BabelCore(b"fuzzcore")
    core.add_interface("eth0", kind="wired", hello_interval=1.0, link_local=IPv6Address("fe80::2"))
    core.add_interface("wg0", kind="tunnel", hello_interval=1.0, link_local=IPv6Address("fe80::3"))
    clock = [0.0]

    def run(data: bytes) -> object:
        head = data[0] if data else 0
        interface = "wg0" if head & 0x80 else "eth0"
        clock[0] += 0.05
        core.receive(interface, IPv6Address(f"fe80::{16 + (head & 0x0F):x}"), data[1:], clock[0])
        core.handle_timer(clock[0])
        while core.next_event() is not None:
            pass
        return core.datagrams_to_send(clock[0])

    return run


def _sub_tlvs(world: World) -> Decoder:
    def run(data: bytes) -> object:
        ae = data[0] % 6 if data else 5
        subs = decode_sub_tlvs(data[1:], None if ae == 5 else ae)
        _check(encode_sub_tlvs(subs) == data[1:], "sub-TLVs re-encode differently")
        return subs

    return run


def _babel_mac(world: World) -> Decoder:
    ends, _ = corpus.mac_context()

    def run(data: bytes) -> object:
        packet = decode_verified_untrusted(data, corpus.MAC_KEYS, ends)
        _check(encode_packet(packet) == data, "packet re-encodes differently")
        return packet

    return run


def _babel_auth(world: World) -> Decoder:
    """Odd first byte: the rest is MACed with the link's key first, as a keyed neighbour (or
    one that stole the key) would send it, so that PCs and challenges see hostile content."""
    ends, _ = corpus.mac_context()
    auth = LinkAuth(corpus.MAC_KEYS, nonce=lambda: b"\x01" * 16, index=b"fuzzidx1")
    clock = iter(range(10**12))

    def run(data: bytes) -> object:
        payload = data[1:]
        if data and data[0] & 1:
            with contextlib.suppress(DecodeError):
                packet = decode_packet_untrusted(payload)
                payload = encode_packet(sign_packet(Packet(packet.tlvs), corpus.MAC_KEYS, ends))
        return auth.open_untrusted(payload, ends, float(next(clock)) / 4)

    return run


# --- WireGuard UAPI ----------------------------------------------------------------------


def _uapi_get(dialect: Dialect) -> Callable[[World], Decoder]:
    def setup(world: World) -> Decoder:
        def run(data: bytes) -> object:
            state = parse_get_reply_untrusted(data, dialect=dialect, now=float(NOW))
            again = encode_get_reply(state, dialect, now=float(NOW))
            reparsed = parse_get_reply_untrusted(again, dialect=dialect, now=float(NOW))
            _check(_same_state(reparsed, state, dialect), "parse(encode(state)) differs")
            return state

        return run

    return setup


def _same_state(a: Any, b: Any, dialect: Dialect) -> bool:
    # Handshake times pass through float seconds and nanoseconds: compare them to 1 µs. A
    # state holds no private key, so a wireguard-go reply written from it carries no key.
    def key(state: Any) -> Any:
        keyed = dialect is Dialect.BORINGTUN
        return (
            state.public_key if keyed else None,
            state.has_private_key if keyed else None,
            state.listen_port,
            state.fwmark,
            [
                (
                    p.config,
                    None if p.last_handshake is None else round(p.last_handshake, 6),
                    p.rx_bytes,
                    p.tx_bytes,
                )
                for p in state.peers
            ],
        )

    return bool(key(a) == key(b))


def _rtnetlink_seeds() -> list[bytes]:
    """Replies as the kernel sends them: a link, addresses and routes of a dump (several
    messages in one datagram, ended by NLMSG_DONE), an acknowledgement, a refusal."""
    from ipaddress import IPv4Address, ip_address

    rt = rtnetlink
    link = rt.Link(7, "meshd0", rt.IFF_UP, seq=3)
    v6 = rt.Address(rt.AF_INET6, 64, 7, ip_address("fe80::1"), None, rt.IFA_F_NODAD, 253, 4)
    v4 = rt.Address(rt.AF_INET, 24, 2, IPv4Address("192.0.2.7"), IPv4Address("192.0.2.7"))
    route = rt.Route(
        rt.AF_INET6, 48, 0, ip_address("fd5a:1::"), None, 7, None, None, 1024, protocol=77
    )
    via = rt.Route(
        rt.AF_INET, 24, 0, IPv4Address("10.2.0.0"), None, 2, None, ip_address("fe80::2"),
        2048, protocol=42,
    )  # fmt: skip
    default = rt.Route(rt.AF_INET, 0, 0, None, None, 2, IPv4Address("192.0.2.1"), None, 0)
    multi = rt.NLM_F_MULTI
    dump = b"".join(rt.encode_message(m, flags=multi) for m in (link, v6, v4, route, via))
    # A route dump (seq 3) with a default route among others, as derived_mtu reads it.
    routes = (route, default, via, rt.Route(rt.AF_INET6, 0, 0, None, None, 9, None, None, 1024))
    table = b"".join(rt.encode_message(dataclasses.replace(m, seq=3), flags=multi) for m in routes)
    # An address dump (seq 3): a link-local, a global and the host's own, as a look reads it.
    own = rt.Address(rt.AF_INET, 8, 1, IPv4Address("127.0.0.1"), None, 0, 254, 3)
    kept = (dataclasses.replace(v6, seq=3), dataclasses.replace(v4, seq=3), own)
    addrs = b"".join(rt.encode_message(m, flags=multi) for m in kept)
    return [
        dump + rt.encode_message(rt.Done(0, 3), flags=multi),
        table + rt.encode_message(rt.Done(0, 3), flags=multi),
        addrs + rt.encode_message(rt.Done(0, 3), flags=multi),
        rt.encode_message(default) + rt.encode_message(rt.Route(128, 0)),
        rt.encode_message(rt.Ack(0, 5)),
        rt.encode_message(rt.Ack(17, 6)),
    ]


def _rtnetlink_replies(world: World) -> Decoder:
    def run(data: bytes) -> object:
        try:
            lost: bool | None = rtnetlink.routes_lost_untrusted(data, 42)
        except DecodeError:
            lost = None
        try:
            default_changed: bool | None = rtnetlink.default_routes_changed_untrusted(data)
        except DecodeError:
            default_changed = None
        filters: list[dict[str, int]] = [{}, {"dst_len": 0}, {"protocol": 42}]
        scanned: list[list[rtnetlink.Route] | None] = []
        for kept in filters:
            try:
                scanned.append(rtnetlink.routes_untrusted(data, 3, **kept)[0])
            except DecodeError:
                scanned.append(None)
        # (scopes, link index) asked for: any; the reachable ones; one link's link-local.
        asked: list[tuple[tuple[int, ...] | None, int | None]] = [
            (None, None),
            ((0, 200), None),
            ((253,), 7),
        ]
        scanned_addresses: list[list[rtnetlink.Address] | None] = []
        for scopes, index in asked:
            try:
                found = rtnetlink.addresses_untrusted(data, 3, scopes=scopes, index=index)[0]
                scanned_addresses.append(found)
            except DecodeError:
                scanned_addresses.append(None)
        messages = rtnetlink.decode_messages_untrusted(data)
        _check(lost is not None, "the lost-routes scanner refused what decodes whole")
        _check(default_changed is not None, "the default-route scanner refused what decodes")
        # Each message's type (one message a frame): a dump's replies are RTM_NEW*; a
        # deletion among them is passed over by the scanners.
        kinds = [kind for kind, _, _, _ in rtnetlink._frames_untrusted(data)]
        told = any(
            isinstance(m, rtnetlink.Route)
            and kind in (rtnetlink.RTM_NEWROUTE, rtnetlink.RTM_DELROUTE)
            and m.dst_len == 0
            for kind, m in zip(kinds, messages, strict=True)
        )
        # A default route decoded is told of (the scanner may also tell of one whose family
        # the whole decode passes over: a look too many, never one too few).
        _check(default_changed or not told, "a default route changing was not told of")
        of_dump: list[rtnetlink.Route] = []  # the routes of the dump (seq 3) until its end
        of_address_dump: list[rtnetlink.Address] = []  # and its addresses
        for kind, m in zip(kinds, messages, strict=True):
            if m.seq != 3:
                continue
            if isinstance(m, rtnetlink.Done | rtnetlink.Ack):
                break
            if isinstance(m, rtnetlink.Route) and kind == rtnetlink.RTM_NEWROUTE:
                of_dump.append(m)
            if isinstance(m, rtnetlink.Address) and kind == rtnetlink.RTM_NEWADDR:
                of_address_dump.append(m)
        for kept, got in zip(filters, scanned, strict=True):
            _check(got is not None, f"the route scanner ({kept}) refused what decodes whole")
            want = [
                r
                for r in of_dump
                if r.dst_len == kept.get("dst_len", r.dst_len)
                and r.protocol == kept.get("protocol", r.protocol)
            ]
            _check(got == want, f"the route scanner ({kept}) differs from the whole decode")
        for (scopes, index), got_addresses in zip(asked, scanned_addresses, strict=True):
            what = f"the address scanner ({scopes}, {index})"
            _check(got_addresses is not None, f"{what} refused what decodes whole")
            wanted = [
                a
                for a in of_address_dump
                if (scopes is None or a.scope in scopes) and (index is None or a.index == index)
            ]
            _check(got_addresses == wanted, f"{what} differs from the whole decode")
        known = [m for m in messages if not isinstance(m, rtnetlink.Ignored)]
        again = b"".join(rtnetlink.encode_message(m) for m in known)
        _check(rtnetlink.decode_messages_untrusted(again) == known, "decode(encode) differs")
        return messages

    return run


def _uapi_errno(world: World) -> Decoder:
    def run(data: bytes) -> object:
        return parse_errno_untrusted(data)

    return run


def _uapi_set(world: World) -> Decoder:
    def run(data: bytes) -> object:
        ops = parse_set_request_untrusted(data)
        try:
            again = encode_set_request(ops)
        except ValueError:
            return ops  # device lines after peer lines: a request we would never encode
        _check(parse_set_request_untrusted(again) == ops, "parse(encode(ops)) differs")
        return ops

    return run


# --- control socket ----------------------------------------------------------------------


def _control_requests(world: World) -> Decoder:
    def run(data: bytes) -> object:
        request = decode_request_untrusted(data)
        _check(decode_request_untrusted(encode_request(request)) == request, "request differs")
        return request

    return run


def _control_responses(world: World) -> Decoder:
    def run(data: bytes) -> object:
        response = decode_response_untrusted(data)
        again = decode_response_untrusted(encode_response(response))
        _check(again == response, "response differs")
        return response

    return run


# --- metrics endpoint ----------------------------------------------------------------------

SCRAPES = (
    b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9101\r\nAccept: text/plain\r\n\r\n",
    b"HEAD / HTTP/1.0\r\n\r\n",
    b"GET /metrics?name[]=meshd_members HTTP/1.1\nUser-Agent: Prometheus/2.45.0\n\n",
    b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
)


def _scrapes(world: World) -> Decoder:
    def run(data: bytes) -> object:
        request = decode_scrape_untrusted(data)
        _check(decode_scrape_untrusted(encode_scrape(request)) == request, "request differs")
        return request

    return run


# --- NAT: punch messages and announced candidates ----------------------------------------

NAT_SEEDS = (
    nat_protocol.Report("203.0.113.7:51820", "203.0.113.7"),
    nat_protocol.Report("", "[2001:db8::1]:4001"),
    nat_protocol.PunchRequest(bytes(range(32))),
    nat_protocol.PunchNotice(bytes(32), ("198.51.100.2:51820", "[2001:db8::2]:51820")),
)
CANDIDATE_SEEDS: tuple[list[str], ...] = (
    [],
    ["192.168.1.10:51820"],
    ["198.51.100.1:51820", "203.0.113.9:40000", "10.0.0.2:51820", "kinds=crl"],
    ["[2001:db8::7]:51820", "127.0.0.1:51820", "kinds=rc"],
    # Written otherwise than canonically (a member's own text, signed): read canonically,
    # and an endpoint written twice so is one candidate.
    ["[0021:db8::7]:51820", "[21:db8::7]:51820", "127.0.0.1:51", "kinds=rrc"],
)


def _nat_messages(world: World) -> Decoder:
    def run(data: bytes) -> object:
        message = nat_protocol.decode_nat_message_untrusted(data)
        _check(nat_protocol.encode_message(message) == data, "encode(decode(m)) differs")
        return message

    return run


def _announced_candidates(world: World) -> Decoder:
    def run(data: bytes) -> object:
        entries = unpack_canonical_untrusted(data, max_size=2048, what="endpoints")
        if not isinstance(entries, list):
            raise DecodeError("endpoints: not a list")
        pairs = announced.decode_candidates_untrusted(entries)
        kept, refused = parse_announced(pairs, None)
        encoded = list(announced.encode_candidates(kept))
        # What is kept is told again as it was read (canonical endpoints, each once).
        again = parse_announced(announced.decode_candidates_untrusted(encoded), None)
        _check(again == (kept, []), "parse(encode(kept)) differs")
        canonical = len(pairs) == len(kept) and all(
            c.endpoint == endpoint for c, (_, endpoint) in zip(kept, pairs, strict=True)
        )
        if not refused and canonical and pairs and entries[-1:] != [pairs[-1][1]]:
            # Canonical text: the same entries (what differed said in full, to replay it).
            _check(encoded == entries, f"candidates differ: {entries!r} told as {encoded!r}")
        return kept

    return run


# --- the kept WireGuard endpoints (the state dir's wg-endpoints) ---------------------------

KEPT_OVERLAY = ipaddress.IPv6Network("fd4d:6573:6864::/48")
KEPT_SEEDS: tuple[dict[bytes, str], ...] = (
    {},
    {bytes(range(32)): "203.0.113.7:51820"},
    {bytes(32): "[2001:db8::7]:40000", bytes([7] * 32): "127.0.0.1:51821"},
)
KEPT_DAMAGED = (
    b"zz" * 32 + b" 203.0.113.7:51820\n",  # a key that is not hex
    bytes(range(32)).hex().encode() + b" [fd4d:6573:6864::1]:51820\n",  # the overlay
    bytes(range(32)).hex().encode() + b" 224.0.0.1:51820\n\xff\xfe garbage\n",
)


def _kept_endpoints(world: World) -> Decoder:
    def run(data: bytes) -> object:
        kept = remembered.decode_kept_untrusted(data, KEPT_OVERLAY)
        _check(len(kept) <= remembered.MAX_KEPT, "more peers than MAX_KEPT")
        _check(all(len(key) == remembered.KEY_BYTES for key in kept), "a key of another size")
        again = remembered.decode_kept_untrusted(remembered.encode_kept(kept), KEPT_OVERLAY)
        _check(again == kept, "decode(encode(kept)) differs")
        return kept

    return run


# --- the peers a stopping daemon kept (the store's kept_peers row) --------------------------

KEPT_PEERS_OVERLAY = ipaddress.IPv6Network("fd4d:6573:6865::/48")
_FIRST = int(KEPT_PEERS_OVERLAY.network_address)
KEPT_PEERS_SEEDS = (
    kept_peers.KeptPeers(KEPT_PEERS_OVERLAY, NOW + 600, NOW, ()),
    kept_peers.KeptPeers(
        KEPT_PEERS_OVERLAY,
        NOW + 600,
        NOW - 5,
        (
            kept_peers.KeptPeer(bytes(32), NOW + 60, _FIRST + 1, "203.0.113.7:51820"),
            kept_peers.KeptPeer(bytes([7] * 32), NOW + 99, _FIRST + 2, "[2001:db8::7]:40000"),
            kept_peers.KeptPeer(bytes([9] * 32), NOW, _FIRST + 3, None),
        ),
    ),
)


def _kept_peers(world: World) -> Decoder:
    def run(data: bytes) -> object:
        kept = kept_peers.decode_kept_peers_untrusted(data)
        _check(len(kept.peers) <= kept_peers.MAX_PEERS, "more peers than MAX_PEERS")
        keys = [p.wg_key for p in kept.peers]
        _check(keys == sorted(set(keys)), "peers not in key order, each once")
        _check(kept_peers.encode_kept_peers(kept) == data, "what reads is not what it writes")
        configs = [p.config() for p in kept.usable(NOW, kept.overlay)]
        _check(all(c.persistent_keepalive is None for c in configs), "a keepalive kept")
        return kept

    return run


TARGETS: tuple[Target, ...] = (
    Target(
        "records",
        "decode_record_untrusted: every record kind; re-encoded from its fields",
        "msgpack",
        (
            "meshd.records.decode",
            "meshd.records.fields",
            "meshd.records.flat",
            "meshd.records.types",
            "meshd.encoding",
        ),
        corpus.record_seeds,
        _records,
        max_len=8192,
    ),
    Target(
        "canonical-msgpack",
        "unpack_canonical_untrusted: the one msgpack form of everything signed",
        "msgpack",
        ("meshd.encoding",),
        corpus.canonical_seeds,
        _canonical,
    ),
    Target(
        "invite-tokens",
        "decode_token_untrusted: meshd1 + base64url of a signed invite",
        "token",
        (
            "meshd.trust.invites",
            "meshd.encoding",
            "meshd.records.decode",
            "meshd.records.fields",
            "meshd.records.flat",
        ),
        corpus.token_seeds,
        _tokens,
        max_len=12_500,
    ),
    Target(
        "membership-ingest",
        "Membership.ingest_untrusted: decode, verify and merge one gossiped record",
        "msgpack",
        (
            "meshd.membership.state",
            "meshd.membership.merge",
            "meshd.membership.authority",
            "meshd.records.decode",
            "meshd.records.fields",
            "meshd.records.flat",
        ),
        corpus.record_seeds,
        _ingest,
        allowed=(DecodeError, VerifyError),
        max_len=8192,
    ),
    Target(
        "sync-messages",
        "gossip.sync decode_message_untrusted",
        "msgpack",
        ("meshd.gossip.sync",),
        corpus.sync_seeds,
        _sync_messages,
        max_len=16384,
    ),
    Target(
        "sync-session",
        "a decoded sync message received by a SyncSession over the world's state",
        "msgpack",
        ("meshd.gossip.sync",),
        corpus.sync_seeds,
        _sync_session,
        max_len=16384,
    ),
    Target(
        "stream-frames",
        "gossip.framing FrameDecoder.feed_untrusted / end_untrusted, in chunks",
        "frames",
        ("meshd.gossip.framing",),
        corpus.frame_seeds,
        _frames,
        max_len=16384,
    ),
    Target(
        "enroll-requests",
        "gossip.enroll decode_request_untrusted",
        "msgpack",
        (
            "meshd.gossip.enroll",
            "meshd.records.decode",
            "meshd.records.fields",
            "meshd.records.flat",
        ),
        corpus.enroll_request_seeds,
        _enroll_requests,
        max_len=8192,
    ),
    Target(
        "enroll-replies",
        "gossip.enroll decode_reply_untrusted (a refusal is a VerifyError by design)",
        "msgpack",
        (
            "meshd.gossip.enroll",
            "meshd.records.decode",
            "meshd.records.fields",
            "meshd.records.flat",
        ),
        corpus.enroll_reply_seeds,
        _enroll_replies,
        allowed=(DecodeError, VerifyError),
        max_len=9216,
    ),
    Target(
        "babel-packets",
        "babel.codec decode_packet_untrusted (TLVs, sub-TLVs, trailer)",
        "babel",
        ("meshd.babel.codec", "meshd.babel.subtlv", "meshd.babel.prefix"),
        lambda world: corpus.babel_seeds(),
        _babel_packets,
        max_len=1500,
    ),
    Target(
        "babel-expand",
        "a decoded packet expanded into routes and requests (RFC 8966 4.5 parser state)",
        "babel",
        ("meshd.babel.expand", "meshd.babel.prefix"),
        lambda world: corpus.babel_seeds(),
        _babel_expand,
        max_len=1500,
    ),
    Target(
        "babel-core",
        "the Babel routing core receiving datagrams from 16 neighbours on two interfaces",
        "bytes",
        ("meshd.babel.core", "meshd.babel.expand"),
        lambda world: corpus.core_seeds(),
        _babel_core,
        allowed=(),
        max_len=1500,
    ),
    Target(
        "babel-sub-tlvs",
        "babel.subtlv decode_sub_tlvs / split_untrusted",
        "bytes",
        ("meshd.babel.subtlv",),
        lambda world: corpus.sub_tlv_seeds(),
        _sub_tlvs,
        max_len=512,
    ),
    Target(
        "babel-mac",
        "babel.mac decode_verified_untrusted (a MAC that does not match is a VerifyError)",
        "babel",
        ("meshd.babel.mac", "meshd.babel.codec"),
        lambda world: corpus.mac_seeds(),
        _babel_mac,
        allowed=(DecodeError, VerifyError),
        max_len=1500,
    ),
    Target(
        "babel-auth",
        "babel.auth LinkAuth.open_untrusted: MAC, PC and challenges of one link",
        "babel",
        ("meshd.babel.auth", "meshd.babel.mac"),
        lambda world: corpus.auth_seeds(),
        _babel_auth,
        allowed=(DecodeError, VerifyError),
        max_len=1500,
    ),
    Target(
        "uapi-get-wireguard-go",
        "wg.uapi_reply parse_get_reply_untrusted, wireguard-go dialect",
        "uapi",
        ("meshd.wg.uapi_reply", "meshd.wg.uapi_syntax"),
        lambda world: corpus.uapi_reply_seeds(),
        _uapi_get(Dialect.WIREGUARD_GO),
        allowed=(DecodeError, UapiErrnoError),
    ),
    Target(
        "uapi-get-boringtun",
        "wg.uapi_reply parse_get_reply_untrusted, boringtun dialect",
        "uapi",
        ("meshd.wg.uapi_reply", "meshd.wg.uapi_syntax"),
        lambda world: corpus.uapi_reply_seeds(),
        _uapi_get(Dialect.BORINGTUN),
        allowed=(DecodeError, UapiErrnoError),
    ),
    Target(
        "uapi-errno",
        "wg.uapi_reply parse_errno_untrusted",
        "uapi",
        ("meshd.wg.uapi_reply", "meshd.wg.uapi_syntax"),
        lambda world: corpus.uapi_reply_seeds(),
        _uapi_errno,
    ),
    Target(
        "uapi-set-requests",
        "wg.uapi_request parse_set_request_untrusted (what the fake devices read)",
        "uapi",
        ("meshd.wg.uapi_request", "meshd.wg.uapi_syntax"),
        lambda world: corpus.uapi_set_seeds(),
        _uapi_set,
    ),
    Target(
        "control-requests",
        "control.protocol decode_request_untrusted",
        "json",
        ("meshd.control.protocol",),
        lambda world: corpus.control_request_seeds(),
        _control_requests,
    ),
    Target(
        "control-responses",
        "control.protocol decode_response_untrusted",
        "json",
        ("meshd.control.protocol",),
        lambda world: corpus.control_response_seeds(),
        _control_responses,
    ),
    Target(
        "nat-messages",
        "gossip.nat decode_nat_message_untrusted: reports and punch messages",
        "msgpack",
        ("meshd.gossip.nat",),
        lambda world: [nat_protocol.encode_message(m) for m in NAT_SEEDS],
        _nat_messages,
    ),
    Target(
        "announced-candidates",
        "mesh.announced decode_candidates_untrusted, then candidates.parse_announced",
        "msgpack",
        ("meshd.mesh.announced", "meshd.mesh.candidates"),
        lambda world: [pack(entries) for entries in CANDIDATE_SEEDS],
        _announced_candidates,
    ),
    Target(
        "rtnetlink-replies",
        "wg.rtnetlink decode_messages_untrusted, routes_lost_untrusted, "
        "default_routes_changed_untrusted and routes_untrusted: the kernel's"
        " answers to meshd's requests, its notifications",
        "bytes",
        ("meshd.wg.rtnetlink",),
        lambda world: _rtnetlink_seeds(),
        _rtnetlink_replies,
    ),
    Target(
        "metrics-scrapes",
        "metrics.http decode_scrape_untrusted: the request head of a scrape",
        "bytes",
        ("meshd.metrics.http",),
        lambda world: list(SCRAPES),
        _scrapes,
        max_len=9000,
    ),
    Target(
        "kept-endpoints",
        "mesh.remembered decode_kept_untrusted: the state dir's wg-endpoints file",
        "bytes",
        ("meshd.mesh.remembered", "meshd.mesh.candidates"),
        lambda world: [remembered.encode_kept(k) for k in KEPT_SEEDS] + list(KEPT_DAMAGED),
        _kept_endpoints,
        max_len=remembered.MAX_FILE + 64,
    ),
    Target(
        "kept-peers",
        "mesh.kept_peers decode_kept_peers_untrusted: the peers a stopping daemon kept",
        "msgpack",
        ("meshd.mesh.kept_peers", "meshd.mesh.candidates"),
        lambda world: [kept_peers.encode_kept_peers(k) for k in KEPT_PEERS_SEEDS],
        _kept_peers,
    ),
)

BY_NAME = {t.name: t for t in TARGETS}


# --- the oracle --------------------------------------------------------------------------


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang


@contextlib.contextmanager
def cpu_budget(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` inside the block once it has used ``seconds`` of CPU time."""
    previous = signal.signal(signal.SIGVTALRM, _on_alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def _where(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/meshd/" in f.filename]
    if not frames:
        frames = list(traceback.extract_tb(exc.__traceback__))[-1:]
    if not frames:
        return "?"
    f = frames[-1]
    path = f.filename[f.filename.rfind("/meshd/") + 1 :] if "/meshd/" in f.filename else f.filename
    return f"{path}:{f.lineno} {f.name}"


def run_one(target: Target, decoder: Decoder, data: bytes, budget: float) -> Finding | None:
    """Run one input through the oracle. Call inside :func:`cpu_budget` for hangs to count."""
    signal.setitimer(signal.ITIMER_VIRTUAL, budget)
    try:
        decoder(data)
    except Hang:
        return Finding(target.name, "hang", "Hang", "?", f"over {budget} s of CPU", data)
    except RoundTripError as exc:
        return Finding(target.name, "round-trip", "RoundTripError", _where(exc), str(exc), data)
    except target.allowed:
        pass
    except Exception as exc:  # noqa: BLE001 (the oracle: anything else is a finding)
        return Finding(target.name, "leak", type(exc).__name__, _where(exc), str(exc)[:200], data)
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
    return None
