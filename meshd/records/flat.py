"""Decoders of the records that nest no other record: networks, announcements (with the hot
path of ingest, ``_announcement_fast``), WireGuard key rotations, leaves and root rollovers.

Each takes the body's fields after kind and version (a :class:`~meshd.records.fields._Fields`
cursor) and the record's raw bytes, and raises DecodeError, never anything else;
meshd.records.decode dispatches to them by kind.
"""

from __future__ import annotations

from typing import Any

from meshd.errors import DecodeError
from meshd.records.announcement import Announcement, decoded_announcement
from meshd.records.fields import (
    _ADDR_ITEM,
    _ENDPOINT_ITEM,
    _Fields,
    _prefix_untrusted,
    _share,
    _text_item,
)
from meshd.records.types import (
    MAX_ADDR_LEN,
    MAX_ENDPOINT_LEN,
    MAX_ENDPOINTS,
    MAX_NAME,
    MAX_PREFIXES,
    MAX_REASON,
    U64,
    Kind,
    Leave,
    Network,
    Rollover,
    WgRotation,
)
from meshd.trust.keys import FINGERPRINT_LEN, KEY_LEN, NodeKey, WgKey


def _network(f: _Fields, raw: bytes, depth: int) -> Network:
    root = _share(f.blob("root_key", KEY_LEN))
    name = f.text("name", MAX_NAME)
    created = f.uint("created_at")
    f.end()
    return Network(root, name, created, raw)


def _announcement(f: _Fields, raw: bytes, depth: int) -> Announcement:
    f.blob("network_id", FINGERPRINT_LEN)  # checked: read from the bytes when asked
    node_key = f.blob("node_key", KEY_LEN)
    f.uint("seq")  # checked, as are issued_at, addrs and relays: the same
    f.uint("issued_at")
    endpoints = f.array("endpoints", MAX_ENDPOINTS, _text_item(MAX_ENDPOINT_LEN))
    f.array("addrs", MAX_ENDPOINTS, _text_item(MAX_ADDR_LEN))
    prefixes = f.array("prefixes", MAX_PREFIXES, _prefix_untrusted)
    f.relays_and_extensions()  # 9 items: not a relay
    f.end()
    return decoded_announcement(NodeKey(node_key), endpoints, prefixes, raw)


def _announcement_fast(items: list[Any], raw: bytes) -> Announcement:
    """The hot path of ingest: the same checks as _announcement, without the cursor."""
    if len(items) == 9 or (len(items) == 10 and items[9] is True):  # 10: a relay's
        _, _, network_id, node_key, seq, issued_at, endpoints, addrs, prefixes = items[:9]
    else:
        return _announcement(_Fields(items[2:], Kind.ANNOUNCEMENT), raw, 0)
    if (
        type(network_id) is not bytes
        or len(network_id) != FINGERPRINT_LEN
        or type(node_key) is not bytes
        or len(node_key) != KEY_LEN
        or type(seq) is not int
        or not 0 <= seq <= U64
        or type(issued_at) is not int
        or not 0 <= issued_at <= U64
        or type(endpoints) is not list
        or type(addrs) is not list
        or type(prefixes) is not list
    ):
        # Let the general decoder name the offending field.
        return _announcement(_Fields(items[2:], Kind.ANNOUNCEMENT), raw, 0)
    if len(endpoints) > MAX_ENDPOINTS or len(addrs) > MAX_ENDPOINTS:
        raise DecodeError("announcement: too many endpoints or addresses")
    if len(prefixes) > MAX_PREFIXES:
        raise DecodeError("announcement: too many prefixes")
    endpoints = tuple(map(_ENDPOINT_ITEM, endpoints)) if endpoints else ()
    for addr in addrs:  # checked, and read from the bytes again when asked
        _ADDR_ITEM(addr)
    # network_id, seq, issued_at, addrs and relays: checked, read from the bytes when asked.
    return decoded_announcement(
        NodeKey(node_key),
        endpoints,
        tuple(map(_prefix_untrusted, prefixes)) if prefixes else (),
        raw,
    )


def _wg_rotation(f: _Fields, raw: bytes, depth: int) -> WgRotation:
    network_id = _share(f.blob("network_id", FINGERPRINT_LEN))
    node_key = f.blob("node_key", KEY_LEN)
    counter = f.uint("counter")
    if counter == 0:
        raise DecodeError("wg_rotation: counter starts at 1 (0 is the enrollment's key)")
    issued_at = f.uint("issued_at")
    wg_key = f.blob("wg_key", KEY_LEN)
    f.end()
    return WgRotation(network_id, NodeKey(node_key), counter, issued_at, WgKey(wg_key), raw)


def _leave(f: _Fields, raw: bytes, depth: int) -> Leave:
    network_id = _share(f.blob("network_id", FINGERPRINT_LEN))
    node_key = f.blob("node_key", KEY_LEN)
    issued_at = f.uint("issued_at")
    reason = f.text("reason", MAX_REASON)
    f.end()
    return Leave(network_id, NodeKey(node_key), issued_at, reason, raw)


def _rollover(f: _Fields, raw: bytes, depth: int) -> Rollover:
    network_id = _share(f.blob("network_id", FINGERPRINT_LEN))
    old_root = f.blob("old_root", KEY_LEN)
    new_root = f.blob("new_root", KEY_LEN)
    issued_at = f.uint("issued_at")
    overlap_until = f.uint("overlap_until")
    f.end()
    return Rollover(network_id, old_root, new_root, issued_at, overlap_until, raw)
