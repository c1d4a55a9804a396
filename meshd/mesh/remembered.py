"""Where our WireGuard last saw each peer, kept across a restart of this node (pure).

A member behind a NAT that maps every destination to a port of its own (symmetric) announces
no endpoint that answers: only the member itself, sending first, opens the way, and what a
public member's WireGuard then shows for it (the source of its authenticated packets: the
NAT's mapping for that public member) is known to that public member alone. When the public
member's daemon restarts, its new device knew nothing of that mapping: it waited until the
member's own WireGuard gave up on the dead session (15 s) or its libp2p connection came back,
while the mapping itself stayed open all along (the member keeps sending to us).

So each member keeps, in a small file in its state dir, the endpoints its WireGuard shows for
peers with a live session **where a start from the announcement alone would not program
them** (:func:`meshd.mesh.desired.choose_endpoint`, which knows no candidate kinds and takes
a private address before a NAT's public one): the NAT mappings only we have seen, and
cone-NATed members' reflexive endpoints. At start-up the
peers are programmed with them, and each peer's first direct-path round tries its kept
endpoint first (:class:`meshd.mesh.punch.DirectPath`), so WireGuard initiates back through
the still-open mapping as soon as the device exists. An endpoint here is our own
WireGuard's (authenticated roaming), never another member's claim; a wrong or stale one
costs one attempt (5.5 s) before the peer's candidates, as before.

:class:`Kept` decides what the file holds and when it is written (at most every
``every`` seconds, only when it changes, and at once at a stop, :meth:`Kept.unwritten`; at
most ``limit`` peers); :func:`encode_kept` and
:func:`decode_kept_untrusted` are its format, one ``KEY_HEX ENDPOINT`` line per peer (the
file could be edited or damaged: every line is checked like any endpoint, and the lines
refused are counted). Time is passed in.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Collection, Mapping
from typing import Final

from meshd.mesh.candidates import check_endpoint
from meshd.wg.model import format_endpoint

#: Peers kept at most (the file stays under ~110 kB).
MAX_KEPT: Final = 1024
#: Bytes of the file read at most.
MAX_FILE: Final = MAX_KEPT * 128
#: The file is written at most this often (seconds).
WRITE_EVERY: Final = 5.0
KEY_BYTES: Final = 32


def encode_kept(kept: Mapping[bytes, str]) -> bytes:
    """The file's content: one ``KEY_HEX ENDPOINT`` line per peer, by key, at most
    ``MAX_KEPT``."""
    lines = [f"{key.hex()} {kept[key]}\n" for key in sorted(kept)[:MAX_KEPT]]
    return "".join(lines).encode()


class Decoded(dict[bytes, str]):
    """What :func:`decode_kept_untrusted` took, by WireGuard key, and ``refused``: how many
    lines (blank ones aside) it did not take."""

    __slots__ = ("refused",)

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0


def decode_kept_untrusted(data: bytes, overlay: ipaddress.IPv6Network | None) -> Decoded:
    """The peers (WireGuard keys) and endpoints of a file :func:`encode_kept` wrote; a line
    that is malformed, names a key twice or an endpoint no peer can be at (multicast, the
    overlay, ...) is refused, and so is every line after ``MAX_KEPT`` were taken (counted in
    ``refused``; blank lines are skipped without counting)."""
    out = Decoded()
    for line in data[:MAX_FILE].decode(errors="replace").splitlines():
        if not line.strip():
            continue
        if len(out) >= MAX_KEPT:
            out.refused += 1
            continue
        head, _, text = line.partition(" ")
        try:
            key = bytes.fromhex(head) if len(head) == 2 * KEY_BYTES else b""
        except ValueError:
            key = b""
        # (fromhex skips whitespace: 64 characters with tabs among them are a shorter key)
        good = len(key) == KEY_BYTES
        checked = check_endpoint(text, overlay, allow_loopback=True) if good else "malformed"
        if isinstance(checked, str) or key in out:
            out.refused += 1
            continue
        out[key] = format_endpoint(*checked)
    return out


class Kept:
    """What the file holds: see the module documentation."""

    def __init__(
        self,
        loaded: Mapping[bytes, str],
        *,
        every: float = WRITE_EVERY,
        limit: int = MAX_KEPT,
    ) -> None:
        if every < 0 or limit < 1:
            raise ValueError("Kept needs a non-negative interval and a positive limit")
        self.every = every
        self.limit = limit
        self._kept = dict(list(loaded.items())[:limit])
        self._written = dict(self._kept)
        self._written_at = -math.inf

    @property
    def kept(self) -> Mapping[bytes, str]:
        return self._kept

    def update(
        self,
        now: float,
        seen: Mapping[bytes, tuple[str, bool]],
        present: Collection[bytes],
    ) -> bytes | None:
        """Take, per peer with a live session, the endpoint our WireGuard shows and whether
        a start would program it there anyway (``seen``: what the announcement alone gives),
        and the peers there are (``present``); the file's new content when it should be
        written now, else None.

        A peer whose session is where a start would not program it is kept at it; one whose
        session is where a start programs it anyway is dropped; a peer without a live
        session keeps what it had (the last seen); a peer that is gone is dropped. New
        peers beyond ``limit`` are not taken.
        """
        for key in [k for k in self._kept if k not in present]:
            del self._kept[key]
        for key, (endpoint, announced) in seen.items():
            if announced:
                self._kept.pop(key, None)
            elif key in self._kept or len(self._kept) < self.limit:
                self._kept[key] = endpoint
        if self._kept == self._written or now - self._written_at < self.every:
            return None
        return self._write(now)

    def unwritten(self, now: float) -> bytes | None:
        """The file's new content if what is kept changed since the last write, whatever
        ``every`` says (the daemon stops: a mapping seen a second before the stop is what
        the next start needs most); else None."""
        return None if self._kept == self._written else self._write(now)

    def _write(self, now: float) -> bytes:
        self._written = dict(self._kept)
        self._written_at = now
        return encode_kept(self._kept)
