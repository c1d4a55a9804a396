"""What a decoded record keeps: the fields read from its bytes when asked are not kept, and
the values are the ones it was made with."""

from __future__ import annotations

import copy
import pickle
import sys
import time
import tracemalloc
from dataclasses import replace

from meshd.records import Announcement, decode_untrusted, make_announcement
from meshd.trust.keys import FINGERPRINT_LEN, NodeKey, SigningKey

NETWORK_ID = bytes(range(FINGERPRINT_LEN))
N = 1000


def test_a_decoded_announcement_keeps_its_bytes_and_what_is_read_often() -> None:
    """1,000 decoded announcements of a daemon's kind (its sequence number the time in ns,
    one endpoint, one libp2p address): ~195 bytes each kept beside their bytes and node keys
    (the object 72, its endpoint's text, the list's place, and the tuple the decoder made
    of the endpoint, which lands in the interpreter's free list), where the object was 104
    and its sequence number's int 36 more (263). Their bytes are held without the node key
    (meshd.records.elide): 32 bytes fewer than the bytes decoded, which they give back."""
    seq = time.time_ns()
    raws = [
        make_announcement(
            SigningKey(i.to_bytes(4, "big") * 8),
            network_id=NETWORK_ID,
            seq=seq + i,
            issued_at=1_700_000_000 + i,
            endpoints=(f"198.18.{i >> 8}.{i & 255}:51820",),
            addrs=(f"/ip4/198.18.{i >> 8}.{i & 255}/tcp/7100",),
            relays=i % 2 == 1,
        ).raw
        for i in range(N)
    ]
    tracemalloc.start()
    try:
        decoded = [decode_untrusted(raw, Announcement) for raw in raws]
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Node keys are the decoder's own (a merge swaps in the credential's: not counted here).
    node_keys = sum(sys.getsizeof(ann.node_key) for ann in decoded)
    held = sum(sys.getsizeof(ann._raw) for ann in decoded)  # type: ignore[attr-defined,misc]
    per_announcement = (kept - node_keys - held) / N
    assert per_announcement < 207, per_announcement  # 263, then 215 before
    assert held <= sum(sys.getsizeof(raw) - 32 for raw in raws)
    assert sys.getsizeof(decoded[0]) <= 64  # GC header included (72 with a slot for _given)
    for i, ann in enumerate(decoded):
        assert ann.raw == raws[i]
        assert ann.seq == seq + i
        assert ann.issued_at == 1_700_000_000 + i
        assert ann.network_id == NETWORK_ID
        assert ann.relays is (i % 2 == 1)
        assert ann.addrs == (f"/ip4/198.18.{i >> 8}.{i & 255}/tcp/7100",)
        assert ann.endpoints == (f"198.18.{i >> 8}.{i & 255}:51820",)
        # Its one endpoint kept without a tuple of one (48 bytes; freed tuples of one go to
        # the interpreter's free list of 2,000 first, which hides them from the count above).
        assert type(ann._endpoints) is str  # type: ignore[attr-defined]
    # Every announcement of the network reads one network id object.
    assert decoded[0].network_id is decoded[1].network_id


def test_an_announcement_made_by_its_constructor_keeps_what_it_was_given() -> None:
    key = NodeKey(SigningKey(bytes([2]) * 32).public)
    ann = Announcement(NETWORK_ID, key, 7, 1000, ("192.0.2.1:51820",), (), (), b"")
    assert (ann.network_id, ann.seq, ann.issued_at, ann.addrs, ann.relays) == (
        NETWORK_ID,
        7,
        1000,
        (),
        False,
    )
    assert ann.endpoints == ("192.0.2.1:51820",)
    made = make_announcement(
        SigningKey(bytes([3]) * 32),
        network_id=NETWORK_ID,
        seq=5,
        issued_at=900,
        endpoints=("192.0.2.2:51820",),
    )
    newer = replace(made, seq=6, relays=True)
    assert (newer.seq, newer.relays, newer.issued_at, newer.raw) == (6, True, 900, made.raw)
    assert newer.network_id == made.network_id
    assert newer.node_key is made.node_key
    assert (made.seq, made.relays) == (5, False)
    assert newer != made
    assert replace(made) == made
    # Copies and pickles keep what it holds, decoded or given.
    for one in (ann, made, newer):
        for again in (copy.copy(one), copy.deepcopy(one), pickle.loads(pickle.dumps(one))):
            assert again == one
            assert again.raw == one.raw


def test_announced_endpoints_read_the_same_whatever_their_number() -> None:
    for endpoints in [(), ("192.0.2.1:51820",), ("192.0.2.1:51820", "[2001:db8::1]:51820")]:
        raw = make_announcement(
            SigningKey(bytes(32)), network_id=NETWORK_ID, seq=1, issued_at=1, endpoints=endpoints
        ).raw
        decoded = decode_untrusted(raw, Announcement)
        assert decoded.endpoints == endpoints
        assert type(decoded.endpoints) is tuple
        assert copy.copy(decoded) == decoded
        assert pickle.loads(pickle.dumps(decoded)) == decoded
