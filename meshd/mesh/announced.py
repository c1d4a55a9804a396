"""Candidates in an announcement's ``endpoints`` field, readable by older nodes (pure).

An announcement (wire-format §6.5) carries its WireGuard endpoints as plain ``ip:port``
text. Candidates add a kind to each, in the same field, so that a node that predates them
keeps reading the endpoints it knows:

* the candidates' endpoints come first, in rank order, as plain text;
* one last entry, ``kinds=`` followed by one letter per endpoint before it (``c``
  configured, ``r`` reflexive, ``l`` local), names their kinds.

An older node skips the last entry (it is no ``ip:port``) and chooses among the endpoints as
it always did. An announcement without the entry (an older node's) is read as all ``local``.
:func:`decode_candidates_untrusted` raises only DecodeError; what comes out is still
untrusted text for :func:`meshd.mesh.candidates.parse_announced` to check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from meshd.errors import DecodeError
from meshd.mesh.candidates import MAX_CANDIDATES, Candidate, Kind

TAG = "kinds="
_LETTER: dict[str, Kind] = {"c": "configured", "r": "reflexive", "l": "local"}
_OF_KIND: dict[str, str] = {kind: letter for letter, kind in _LETTER.items()}


def encode_candidates(candidates: Iterable[Candidate]) -> tuple[str, ...]:
    """The ``endpoints`` field for ranked candidates (hints are never announced)."""
    kept = [c for c in candidates if c.kind in _OF_KIND][:MAX_CANDIDATES]
    if not kept:
        return ()
    return (*(c.endpoint for c in kept), TAG + "".join(_OF_KIND[c.kind] for c in kept))


def decode_candidates_untrusted(entries: Sequence[object]) -> list[tuple[str, str]]:
    """``(kind, endpoint text)`` pairs from an announcement's ``endpoints`` field.

    Without a kinds entry, every entry is ``local``. Raises DecodeError if the kinds entry
    is not last, holds an unknown letter, or does not name exactly the entries before it.
    """
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise DecodeError("candidates: expected a list of endpoints")
    texts: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise DecodeError("candidates: an endpoint must be text")
        texts.append(entry)
    tagged = [n for n, text in enumerate(texts) if text.startswith(TAG)]
    if not tagged:
        return [("local", text) for text in texts]
    if tagged != [len(texts) - 1]:
        raise DecodeError("candidates: one kinds entry, last")
    letters = texts[-1][len(TAG) :]
    if len(letters) != len(texts) - 1:
        raise DecodeError("candidates: the kinds entry must name every endpoint")
    kinds = [_LETTER.get(letter) for letter in letters]
    if any(kind is None for kind in kinds):
        raise DecodeError("candidates: unknown kind letter")
    return [(str(kind), text) for kind, text in zip(kinds, texts[:-1], strict=True)]


def plain_endpoints(entries: Sequence[str]) -> list[str]:
    """The endpoints of an announcement's ``endpoints`` field, without its kinds entry (what
    ``meshd peers`` shows)."""
    return [entry for entry in entries if not entry.startswith(TAG)]
