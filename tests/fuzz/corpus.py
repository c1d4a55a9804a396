"""Seed inputs for the decoder fuzz targets, built with the project's own builders.

The world (a network, its founder, an admin, members admitted through invites, their
announcements, a revocation) is built once with ``tests.factory`` and saved as raw records
(:func:`build_world`), so that every process fuzzing or replaying a target sees the same
enrollment, the same membership state and the same records. Babel seeds are the golden
captures in ``tests/babel/vectors``; UAPI seeds are the captured replies of
``tests/wg/test_uapi_codec.py`` and the codec's own encodings.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path
from typing import Any

from meshd.addressing import Prefix
from meshd.babel.codec import decode_packet_untrusted, encode_packet
from meshd.babel.mac import Endpoints, MacAlgorithm, MacKey, sign_packet
from meshd.babel.packet import ChallengeReply, ChallengeRequest, Packet, Pc
from meshd.babel.tlv import Hello
from meshd.control.protocol import Failure, Request, Response, encode_request, encode_response
from meshd.encoding import pack
from meshd.errors import UsageError, VerifyError
from meshd.gossip.enroll import encode_refusal, encode_reply
from meshd.gossip.framing import encode_frame
from meshd.gossip.sync import Message, Range, SyncSession, encode_message
from meshd.membership import Membership
from meshd.records import (
    Admission,
    Announcement,
    Enrollment,
    Invite,
    Kind,
    Network,
    Role,
    decode_record_untrusted,
    decode_untrusted,
    make_admin_handover,
    make_certificate,
    make_handover,
    make_leave,
    make_renewal,
    make_rollover,
    make_wg_rotation,
    signed_body,
)
from meshd.records.build import seal_unsigned
from meshd.records.types import CONTEXTS, split_envelope_untrusted
from meshd.trust.chain import Anchor
from meshd.trust.invites import encode_token, enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from meshd.wg.model import (
    DeviceState,
    Operation,
    PeerConfig,
    PeerStatus,
    RemovePeer,
    ReplacePeers,
    SetFwmark,
    SetListenPort,
    SetPrivateKey,
    UpdatePeer,
)
from meshd.wg.uapi_reply import encode_errno_reply, encode_get_reply
from meshd.wg.uapi_request import encode_set_request
from meshd.wg.uapi_syntax import Dialect
from tests.babel.pcap import read_babel_datagrams
from tests.factory import T0, Net
from tests.wg.test_uapi_codec import BORINGTUN_REPLY, WIREGUARD_GO_REPLY

NOW = T0 + 100
VECTORS = Path(__file__).resolve().parent.parent / "babel" / "vectors"
MAC_VECTOR = "babeld-hmac-sha256-n1-e2.pcap"
# The key of the MAC capture (tests/babel/vectors/README.md): HMAC-SHA256, bytes 00..1f.
MAC_KEYS = (MacKey("k1", MacAlgorithm.HMAC_SHA256, bytes(range(32))),)

World = dict[str, Any]


def build_world() -> World:
    """Records of a small network, as raw bytes (what a fuzz process saves and reloads)."""
    net = Net()
    founder = net.founder()
    state = net.state()
    state.ingest(founder.credential, NOW)
    admin = net.admin()
    grant: Prefix = ipaddress.IPv6Network(net.anchor.overlay)
    invite = net.invite(
        uses=3,
        at=T0,
        prefixes=(ipaddress.IPv4Network("10.9.0.0/16"),),
        bootstrap=("/ip4/192.0.2.1/tcp/4001", "/ip6/2001:db8::1/tcp/4001"),
    )
    admin_invite = net.invite(issuer=admin, at=T0, name="lab")
    members = [net.join(state, founder, invite, f"m{i}", at=T0 + 10 + i) for i in range(2)]
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name="joiner", now=T0 + 30)
    admission = state.sponsor(founder.key, enrollment, T0 + 30)
    announcements = [
        founder.announce(
            net,
            T0 + 40,
            endpoints=("192.0.2.1:51820", "[2001:db8::1]:51820"),
            addrs=("/ip4/192.0.2.1/tcp/4001",),
            prefixes=(grant,),
        ),
        members[0].announce(net, T0 + 41, prefixes=(ipaddress.IPv4Network("10.9.1.0/24"),)),
        members[1].announce(net, T0 + 42, relays=True),  # a relay's: 10 items
        _extended_announcement(members[0].key, net.anchor.network_id, T0 + 46),
    ]
    revocation = net.revoke(members[1].key.public, at=T0 + 50, issuer=admin)
    invite_revocation = net.revoke(admin_invite.signer, Role.INVITE, at=T0 + 51)
    rotation = make_wg_rotation(
        members[0].key,
        network_id=net.anchor.network_id,
        counter=1,
        issued_at=T0 + 43,
        wg_key=WireGuardKey.generate().public,
    )
    renewal = make_renewal(
        admin.key,
        network_id=net.anchor.network_id,
        subject=members[0].key.public,
        issued_at=T0 + 44,
        not_after=T0 + 300 * 86400,
        chain=admin.chain,
    )
    leave = make_leave(key, network_id=net.anchor.network_id, issued_at=T0 + 45, reason="moved")
    handover = make_handover(
        members[0].key,
        SigningKey.generate(),
        network_id=net.anchor.network_id,
        issued_at=T0 + 47,
        wg_key=members[0].wg.public,
        credential=members[0].credential,
    )
    heir = SigningKey.generate()
    legacy = make_handover(
        members[1].key,
        heir,
        network_id=net.anchor.network_id,
        issued_at=T0 + 47,
        wg_key=members[1].wg.public,
        credential=members[1].credential,
        legacy=True,
    )
    onward = make_handover(
        heir,
        SigningKey.generate(),
        network_id=net.anchor.network_id,
        issued_at=T0 + 48,
        wg_key=members[1].wg.public,
        credential=legacy,
    )
    assert admin.certificate is not None
    successor = make_certificate(
        net.root,
        network_id=net.anchor.network_id,
        subject=SigningKey.generate().public,
        role=Role.ADMIN,
        serial=bytes(16),
        not_before=T0 + 49,
        not_after=admin.certificate.not_after,
        caps=admin.certificate.caps,
        name=admin.certificate.name,
        prefixes=admin.certificate.prefixes,
    )
    admin_handover = make_admin_handover(
        net.root,
        network_id=net.anchor.network_id,
        old_cert=admin.certificate,
        new_cert=successor,
        issued_at=T0 + 49,
    )
    rollover = make_rollover(
        net.root,
        network_id=net.anchor.network_id,
        new_root=SigningKey.generate().public,
        issued_at=T0 + 46,
        overlap_until=T0 + 400 * 86400,
    )
    return {
        "network": net.network.raw,
        "founder": founder.credential.raw,
        "admin": admin.certificate.raw if admin.certificate is not None else b"",
        "invite": invite.raw,
        "admin_invite": admin_invite.raw,
        "members": [m.credential.raw for m in members],
        "enrollment": enrollment.raw,
        "admission": admission.raw,
        "announcements": [a.raw for a in announcements],
        "revocations": [revocation.raw, invite_revocation.raw],
        "rotations": [rotation.raw, rollover.raw, handover.raw, legacy.raw, onward.raw],
        "lifecycle": [renewal.raw, leave.raw, admin_handover.raw],
    }


def _extended_announcement(key: SigningKey, network_id: bytes, at: int) -> Announcement:
    """An announcement with items a later release adds after ``relays`` (§6.5)."""
    items: list[object] = [network_id, key.public, 1 << 32, at, [], [], [], False, 1, [b"x"]]
    unsigned, _ = split_envelope_untrusted(seal_unsigned(Kind.ANNOUNCEMENT, items, bytes(64)))
    signature = key.sign(CONTEXTS[Kind.ANNOUNCEMENT], unsigned)
    return decode_untrusted(seal_unsigned(Kind.ANNOUNCEMENT, items, signature), Announcement)


def world_records(world: World) -> list[bytes]:
    """Every record of the world, in an order the membership core can merge."""
    return [
        world["network"],
        world["founder"],
        world["admin"],
        *world["members"],
        world["admission"],
        *world["announcements"],
        *world["rotations"],
        *world.get("lifecycle", []),
        *world["revocations"],
        world["invite"],
        world["admin_invite"],
        world["enrollment"],
    ]


def membership_of(world: World, *, upto: int | None = None) -> Membership:
    """A membership core holding the world's records (the first ``upto`` of them)."""
    network = decode_untrusted(world["network"], Network)
    state = Membership(Anchor.from_network(network))
    for raw in world_records(world)[1:upto]:
        record = decode_record_untrusted(raw)
        if not isinstance(record, Network | Invite | Enrollment):
            with contextlib.suppress(VerifyError):  # an admin certificate travels in chains
                state.ingest(record, NOW)
    return state


def enrollment_of(world: World) -> Enrollment:
    return decode_untrusted(world["enrollment"], Enrollment)


# --- seeds per target -------------------------------------------------------------------


def record_seeds(world: World) -> list[bytes]:
    return world_records(world)


def canonical_seeds(world: World) -> list[bytes]:
    bodies = [signed_body(decode_record_untrusted(raw)) for raw in world_records(world)]
    return [*bodies, pack([1, [], [], b"", []]), pack([[b"\x00" * 16, 2**64 - 1], "é"])]


def token_seeds(world: World) -> list[bytes]:
    invites = [decode_untrusted(world[k], Invite) for k in ("invite", "admin_invite")]
    return [encode_token(i).encode() for i in invites] + [b"  " + encode_token(invites[0]).encode()]


def sync_seeds(world: World) -> list[bytes]:
    """Real conversations: a full state syncing with a near-empty one, both ways."""
    full, empty = membership_of(world), membership_of(world, upto=2)
    seeds: list[bytes] = []
    for first, second in ((full, empty), (empty, full)):
        a, b = SyncSession(first, split_threshold=1), SyncSession(second, split_threshold=1)
        message: Message | None = a.start()
        sides = (b, a)
        turn = 0
        while message is not None and turn < 20:
            seeds.append(encode_message(message))
            message = sides[turn % 2].receive(message).reply
            turn += 1
    ids = tuple(bytes([0x42] * 15 + [i]) for i in range(3))
    seeds.append(
        encode_message(
            Message(
                fingerprints=((Range(8, 7), bytes(20)), (Range(12, 0x42F), bytes(20))),
                ids=((Range(8, 0x42), ids),),
                wants=ids,
                records=(world["announcements"][0],),
            )
        )
    )
    return list(dict.fromkeys(seeds))


def frame_seeds(world: World) -> list[bytes]:
    messages = sync_seeds(world)[:4]
    stream = b"".join(encode_frame(m) for m in messages)
    return [b"\x00" + stream, b"\x07" + stream, b"\x01" + encode_frame(b"") + encode_frame(b"x")]


def enroll_request_seeds(world: World) -> list[bytes]:
    return [world["enrollment"]]


def enroll_reply_seeds(world: World) -> list[bytes]:
    admission = decode_untrusted(world["admission"], Admission)
    refused = VerifyError("invite-used-up", "the invite is used up", hint="ask for another")
    return [encode_reply(admission), encode_refusal(refused)]


def babel_seeds() -> list[bytes]:
    payloads = [
        d.payload for path in sorted(VECTORS.glob("*.pcap")) for d in read_babel_datagrams(path)
    ]
    unique = list(dict.fromkeys(payloads))
    # Keep one of each TLV-type mix, so that the seed set stays small and varied.
    kinds: dict[tuple[bool, tuple[str, ...]], bytes] = {}
    for payload in unique:
        packet = decode_packet_untrusted(payload)
        mix = tuple(sorted({type(t).__name__ for t in packet.tlvs}))
        kinds.setdefault((bool(packet.trailer), mix), payload)
    return list(kinds.values())


def mac_context() -> tuple[Endpoints, list[bytes]]:
    """The endpoints of the MAC capture's first datagram, and its datagrams between them."""
    datagrams = list(read_babel_datagrams(VECTORS / MAC_VECTOR))
    first = datagrams[0]
    ends = Endpoints(first.src, first.src_port, first.dst, first.dst_port)
    same = [
        d.payload
        for d in datagrams
        if (d.src, d.src_port, d.dst, d.dst_port)
        == (ends.src, ends.src_port, ends.dst, ends.dst_port)
    ]
    return ends, same


def mac_seeds() -> list[bytes]:
    ends, captured = mac_context()
    signed = [
        encode_packet(sign_packet(Packet(decode_packet_untrusted(p).tlvs), MAC_KEYS, ends))
        for p in babel_seeds()[:8]
    ]
    return list(dict.fromkeys(captured[:8] + signed))


def auth_seeds() -> list[bytes]:
    """For the babel-auth target: first byte 0 (as received) or 1 (MAC it first)."""
    ends, _ = mac_context()
    hello = Hello(seqno=1, interval=400)
    # A sender's first packet (challenged), its answer to the challenge (the target's nonce
    # is 16 bytes of 01), a newer counter, and a replay.
    exchange = [
        Packet((Pc(1, b"sender01"), hello)),
        Packet((Pc(2, b"sender01"), ChallengeReply(b"\x01" * 16), hello)),
        Packet((Pc(3, b"sender01"), ChallengeRequest(b"n" * 8), hello)),
        Packet((Pc(3, b"sender01"), hello)),
        Packet((hello,)),
    ]
    sealed = [encode_packet(sign_packet(p, MAC_KEYS, ends)) for p in exchange]
    packets = mac_seeds() + babel_seeds()[:6]
    return (
        [b"\x00" + p for p in sealed]
        + [b"\x00" + p for p in packets]
        + [b"\x01" + p for p in packets]
    )


def core_seeds() -> list[bytes]:
    """For the babel-core target: first byte picks the interface and the sender."""
    payloads = babel_seeds()
    return [bytes([i % 4 | (0x80 if i % 3 == 0 else 0)]) + p for i, p in enumerate(payloads)]


def sub_tlv_seeds() -> list[bytes]:
    """First byte: the enclosing TLV's AE (byte % 6; 5 means none); then the sub-TLVs."""
    return [
        b"\x05\x03\x04\x00\x00\x00\x01",
        b"\x05\x03\x08\x00\x00\x00\x01\x00\x00\x00\x02",
        b"\x02\x80\x07\x30\xfd\x00\x00\xaa\x00\x00",
        b"\x01\x80\x03\x10\x0a\x09",
        b"\x04\x80\x02\x08\x0a",
        b"\x05\x00\x01\x02\x00\x00\x02\x01\x07\x85\x00",
    ]


def uapi_reply_seeds() -> list[bytes]:
    peer = PeerStatus(
        PeerConfig(
            public_key=bytes(range(1, 33)),
            endpoint="[2001:db8::1]:51820",
            allowed_ips=(ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00::/64")),
            persistent_keepalive=25,
        ),
        last_handshake=T0 + 0.25,
        rx_bytes=10,
        tx_bytes=2**40,
    )
    state = DeviceState(
        public_key=bytes(range(32, 64)),
        has_private_key=True,
        listen_port=51820,
        fwmark=7,
        peers=(peer,),
    )
    return [
        WIREGUARD_GO_REPLY,
        BORINGTUN_REPLY,
        encode_get_reply(state),
        encode_get_reply(state, Dialect.BORINGTUN, now=T0 + 10),
        encode_errno_reply(22),
        encode_errno_reply(0),
    ]


def uapi_set_seeds() -> list[bytes]:
    key = bytes(range(1, 33))
    ops: list[Operation] = [
        SetPrivateKey(bytes(range(64, 96))),
        SetListenPort(51820),
        SetFwmark(0),
        ReplacePeers(),
        UpdatePeer(
            key,
            update_only=True,
            endpoint="192.0.2.7:51820",
            persistent_keepalive=25,
            replace_allowed_ips=True,
            allowed_ips=(ipaddress.ip_network("10.2.0.0/24"), ipaddress.ip_network("fd00::1/128")),
        ),
        RemovePeer(bytes(range(2, 34))),
    ]
    return [encode_set_request(ops), encode_set_request(ops[4:5]), b"set=1\n\n"]


def control_request_seeds() -> list[bytes]:
    requests = [
        Request("peers", {}),
        Request("status", {}),
        Request("revoke", {"name": "m1", "reason": "lost laptop"}),
        Request("routes", {"json": True, "limit": 10, "names": ["a", "b"]}),
    ]
    return [encode_request(r) for r in requests]


def control_response_seeds() -> list[bytes]:
    peers = [{"name": "m0", "state": "admitted", "endpoints": ["192.0.2.1:51820"], "seq": 3}]
    return [
        encode_response(Response(result=peers)),
        encode_response(Response(result={"uptime": 1.5, "members": 3})),
        encode_response(Response(failure=Failure.of(UsageError("no such member", hint="h")))),
        encode_response(Response(failure=Failure.of(VerifyError("revoked", "it is revoked")))),
    ]
