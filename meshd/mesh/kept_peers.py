"""The peers a stopping daemon had, kept for its next start (pure).

At 10,000 members a start spends about as long loading and judging its store (every record
through the membership core again) as ``wireguard-go`` spends taking the peers (a
Curve25519 product a peer): done one after the other, WireGuard was programmed two seconds
after the start. So a daemon that stops cleanly keeps, in its store, the peers its
membership gave it then: each member's WireGuard key, the end of its credential, its
overlay address and its endpoint. The next start sets those while its store loads, and its
first round, from the judged membership, then corrects whatever differs (a peer removed,
an endpoint moved), as it would correct a device it did not make.

What makes that safe is what may make the list stale, and each is ruled out before a peer
is taken (docs/wireguard.md, "A restart sets the peers it had"):

* a record stored after the list was written (a revocation, a member's leave, a rollover,
  a renewal: anything that could end a standing) deletes it, by a trigger in the store's
  own schema, so a record written by any program (``meshd revoke`` while the daemon is
  down, an older release) does (:mod:`meshd.node.store`);
* the whole list is valid only until the first moment the stopping daemon's judgements
  could change by time alone (a credential's end, a silence limit, a retiring root's end)
  or its own standing ends, and from the moment it was written (a clock set back since
  leaves it unused); a member whose credential ended since is left out too; a list of
  another network (its overlay) is not used;
* the list is sealed as the store's rows are (a keyed hash under this node's key): one
  written by another node, or altered, is not taken.

:func:`encode_kept_peers` and :func:`decode_kept_peers_untrusted` are its format: canonical
msgpack, ``[1, OVERLAY_16, PREFIXLEN, VALID_UNTIL, WRITTEN_AT, [[WG_KEY_32, UNTIL,
ADDRESS_16, ENDPOINT|nil], ...]]``, peers in key order, each key once. The decoder raises
only DecodeError; every endpoint is checked as an announced one is.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from meshd.addressing import host_int, host_prefix_of
from meshd.encoding import pack, unpack_canonical_untrusted
from meshd.errors import DecodeError
from meshd.mesh.candidates import check_endpoint
from meshd.wg.addresses import link_local_prefix
from meshd.wg.model import PeerConfig, format_endpoint

VERSION: Final = 1
#: Peers a list holds at most (more than any network this daemon is built for).
MAX_PEERS: Final = 100_000
#: Bytes of a list at most: a peer is ~110 bytes.
MAX_BYTES: Final = MAX_PEERS * 128
KEY_BYTES: Final = 32
_U64: Final = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class KeptPeer:
    """One member's peer as the stopping daemon had it."""

    wg_key: bytes
    until: int  # the end of the member's credential (Unix seconds)
    overlay: int  # its overlay address, as an int
    endpoint: str | None

    def config(self) -> PeerConfig:
        """The peer to program: its link-local and overlay /128s (the interned networks
        the rounds use), its endpoint, no keepalive (the first round sets those)."""
        # Both interned /128s, in canonical_networks's order (by address), not sorted again.
        link_local = link_local_prefix(self.wg_key)
        own = host_prefix_of(self.overlay)
        nets = (own, link_local) if self.overlay < host_int(link_local) else (link_local, own)
        return PeerConfig.derived(self.wg_key, self.endpoint, nets, None)


@dataclass(frozen=True, slots=True)
class KeptPeers:
    """A stopping daemon's peers, with the window in which a start may set them."""

    overlay: ipaddress.IPv6Network  # the network's overlay prefix
    valid_until: int  # our standing's end, or when the judgements could change by time
    written_at: int
    peers: tuple[KeptPeer, ...]

    def usable(self, now: int, overlay: ipaddress.IPv6Network) -> tuple[KeptPeer, ...]:
        """The peers a start at ``now`` in the network of ``overlay`` may program: none
        for another network, once the list's validity (``valid_until``: our own standing's
        end, or the first moment the stopping daemon's judgements could change by time
        alone) has passed, or before it was written (a clock set back); else those whose
        credential has not ended."""
        if overlay != self.overlay or not self.written_at <= now < self.valid_until:
            return ()
        return tuple(p for p in self.peers if p.until > now)


def encode_kept_peers(kept: KeptPeers) -> bytes:
    peers = sorted(kept.peers, key=lambda p: p.wg_key)
    return pack(
        [
            VERSION,
            kept.overlay.network_address.packed,
            kept.overlay.prefixlen,
            kept.valid_until,
            kept.written_at,
            [
                [p.wg_key, p.until, p.overlay.to_bytes(16, "big"), p.endpoint]
                for p in peers[:MAX_PEERS]
            ],
        ]
    )


def decode_kept_peers_untrusted(data: bytes) -> KeptPeers:
    """A list :func:`encode_kept_peers` wrote; DecodeError for anything else (a list
    whose form, version, keys, numbers or endpoints are not what it writes, or whose
    peers are not in key order, each once)."""
    # Every field is checked below (check_types: its walk of the whole list costs as much).
    value = unpack_canonical_untrusted(
        data, max_size=MAX_BYTES, what="kept peers", check_types=False
    )
    if not (isinstance(value, list) and len(value) == 6 and type(value[0]) is int):
        raise DecodeError("kept peers: not a list of version 1")
    if value[0] != VERSION:  # (an int: True would equal 1)
        raise DecodeError("kept peers: not a list of version 1")
    _, net, prefixlen, valid_until, written_at, rows = value
    if not (isinstance(net, bytes) and len(net) == 16 and type(prefixlen) is int):
        raise DecodeError("kept peers: the overlay is malformed")
    try:
        overlay = ipaddress.IPv6Network((net, prefixlen))
    except ValueError as exc:
        raise DecodeError(f"kept peers: the overlay is malformed: {exc}") from None
    for number in (valid_until, written_at):
        _check_u64(number, "a date")
    if not isinstance(rows, list) or len(rows) > MAX_PEERS:
        raise DecodeError("kept peers: the peers are malformed")
    first, last = int(overlay.network_address), int(overlay.broadcast_address)
    peers = [_peer(row, overlay, first, last) for row in rows]
    _check_order(peers)
    return KeptPeers(overlay, valid_until, written_at, tuple(peers))


def _peer(row: object, overlay: ipaddress.IPv6Network, first: int, last: int) -> KeptPeer:
    if not isinstance(row, list) or len(row) != 4:
        raise DecodeError("kept peers: a peer is malformed")
    key, until, address, endpoint = row
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise DecodeError("kept peers: a WireGuard key is malformed")
    _check_u64(until, "a date")
    if not isinstance(address, bytes) or len(address) != 16:
        raise DecodeError("kept peers: an overlay address is malformed")
    value = int.from_bytes(address, "big")
    if not first <= value <= last:
        raise DecodeError("kept peers: an overlay address is outside the network's prefix")
    if endpoint is not None:
        if not isinstance(endpoint, str):
            raise DecodeError("kept peers: an endpoint is malformed")
        checked = check_endpoint(endpoint, overlay, allow_loopback=True)
        if isinstance(checked, str):
            raise DecodeError(f"kept peers: an endpoint is refused ({checked})")
        if format_endpoint(*checked) != endpoint:
            raise DecodeError("kept peers: an endpoint is not in its canonical form")
    return KeptPeer(key, until, value, endpoint)


def _check_u64(number: object, what: str) -> None:
    if type(number) is not int or not 0 <= number <= _U64:
        raise DecodeError(f"kept peers: {what} is malformed")


def _check_order(peers: Sequence[KeptPeer]) -> None:
    for before, after in itertools.pairwise(peers):
        if before.wg_key >= after.wg_key:
            raise DecodeError("kept peers: the peers are not in key order, each once")
