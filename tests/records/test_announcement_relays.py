"""An announcement says whether its member relays (``relays``): a relay's body has a 10th
item, exactly true; a non-relay's keeps the 9 items, byte for byte, of before the flag
existed. Any other 10th item is refused, unless it is false and items a later release adds
follow it (extensions: read, type-checked and ignored), by the hot path
(``_announcement_fast``) and the general decoder alike, with the same error."""

from __future__ import annotations

import ipaddress

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.errors import DecodeError, VerifyError
from meshd.records import Announcement, Kind, decode_record_untrusted, make_announcement
from meshd.records.build import seal_unsigned
from meshd.records.fields import _Fields
from meshd.records.flat import _announcement, _announcement_fast
from meshd.records.types import CONTEXTS, MAX_EXTENSIONS, split_envelope_untrusted
from meshd.trust.announced import check_announcement_signature
from meshd.trust.keys import SigningKey

NODE = SigningKey(bytes(range(32)))
NETWORK_ID = bytes.fromhex("9c40a34c0ad698dcf89b73c84242d5ed")
PREFIX = ipaddress.ip_network("fd3a:64d3:a887:0:4298:dd11:cbb5:15f0/128")
# docs/wire-format.md §10: the worked example, 194 bytes, written before the flag existed.
WORKED_EXAMPLE = bytes.fromhex(
    "92c47d990501c4109c40a34c0ad698dcf89b73c84242d5edc42003a107bff3ce10be1d70dd18e74bc09967e4"
    "d6309ba50d5f1ddc8664125531b801ce6b49d20091af3139322e302e322e313a353138323091b72f6970342f"
    "3139322e302e322e312f7463702f343030319192c410fd3a64d3a88700004298dd11cbb515f0cc80c44011cd"
    "e6ed1c2c14c2019689e275200a2e560125a6526a2da0360617a6baa5529774eec91d69e5195e4a35237c32d8"
    "160bfc486811e921782d8ba53d834240c901"
)


def worked_example(**kw: bool) -> Announcement:
    return make_announcement(
        NODE,
        network_id=NETWORK_ID,
        seq=1,
        issued_at=1_800_000_000,
        endpoints=["192.0.2.1:51820"],
        addrs=["/ip4/192.0.2.1/tcp/4001"],
        prefixes=[PREFIX],
        **kw,
    )


def test_a_non_relay_announcement_is_the_bytes_of_before() -> None:
    for ann in (worked_example(), worked_example(relays=False)):
        assert ann.raw == WORKED_EXAMPLE
        assert ann.relays is False
        decoded = decode_record_untrusted(WORKED_EXAMPLE)
        assert decoded == ann
        assert isinstance(decoded, Announcement)
        assert decoded.relays is False


def test_a_relay_announcement_is_the_same_body_with_a_10th_item_true() -> None:
    ann = worked_example(relays=True)
    assert ann.relays is True
    old_body, _ = split_envelope_untrusted(WORKED_EXAMPLE)
    body, signature = split_envelope_untrusted(ann.raw)
    assert body == b"\x9a" + old_body[1:] + b"\xc3"  # fixarray of 10, ..., true
    assert decode_record_untrusted(ann.raw) == ann
    check_announcement_signature(ann)  # signed over the 10 items
    assert len(signature) == 64


def _sealed(items: list[object], signature: bytes = bytes(64)) -> bytes:
    return seal_unsigned(Kind.ANNOUNCEMENT, items, signature)


def _items() -> list[object]:
    """The fields after kind and version of the worked example's body, as the decoder reads
    them (the prefix as [address, length])."""
    return [
        NETWORK_ID,
        NODE.public,
        1,
        1_800_000_000,
        ["192.0.2.1:51820"],
        ["/ip4/192.0.2.1/tcp/4001"],
        [[PREFIX.network_address.packed, PREFIX.prefixlen]],
    ]


NOT_TRUE: list[object] = [False, 0, 1, 2, None, b"", b"\x01", "", "true", [], [True]]


@pytest.mark.parametrize("tenth", NOT_TRUE, ids=repr)
def test_a_10th_item_other_than_true_is_refused(tenth: object) -> None:
    raw = _sealed([*_items(), tenth])
    with pytest.raises(DecodeError, match="relays must be true, or absent"):
        decode_record_untrusted(raw)


EXTENSIONS: list[list[object]] = [
    [0],
    [1, b"\x00" * 40, "a text", [1, [2, [b"x"]]]],
    [2**64 - 1] * MAX_EXTENSIONS,
]


@pytest.mark.parametrize("relays", [False, True])
@pytest.mark.parametrize("extensions", EXTENSIONS, ids=repr)
def test_items_after_relays_are_read_and_ignored(relays: bool, extensions: list[object]) -> None:
    """A later release may add fields after ``relays``: this one reads the announcement as
    if they were not there (no flag day for the next field), keeps its bytes whole (they are
    what is signed, stored and forwarded), and the hot path and the general decoder agree."""
    raw = _sealed([*_items(), relays, *extensions])
    ann = decode_record_untrusted(raw)
    assert isinstance(ann, Announcement)
    assert ann.raw == raw
    assert ann.relays is relays
    plain = worked_example(relays=relays)
    assert (ann.seq, ann.endpoints, ann.addrs, ann.prefixes) == (
        plain.seq,
        plain.endpoints,
        plain.addrs,
        plain.prefixes,
    )
    fast, general = _both(raw)
    assert fast == general == ann


def test_extensions_are_signed() -> None:
    body_items = [*_items(), False, 7]
    signed = seal_announcement(body_items)
    ann = decode_record_untrusted(signed)
    assert isinstance(ann, Announcement)
    check_announcement_signature(ann)
    _, sig = split_envelope_untrusted(signed)
    for forged in ([*_items(), False, 8], [*_items(), False, 7, 7], [*_items(), False]):
        try:
            record = decode_record_untrusted(_sealed(forged, sig))
        except DecodeError:
            continue  # [..., False] alone: a second encoding, refused before the signature
        assert isinstance(record, Announcement)
        with pytest.raises(VerifyError):
            check_announcement_signature(record)


@pytest.mark.parametrize(
    "tail",
    [
        [False],  # not a relay, nothing after: the 9 items are its one encoding
        [True, True],  # booleans are no extension
        [False, False],
        [True, None],
        [True, -1],
        [True, [[[[[[[[[[1]]]]]]]]]]],  # nested deeper than MAX_NESTING
        [True, *([0] * (MAX_EXTENSIONS + 1))],
    ],
    ids=repr,
)
def test_a_tail_that_is_no_flag_and_extensions_is_refused(tail: list[object]) -> None:
    with pytest.raises(DecodeError):
        decode_record_untrusted(_sealed([*_items(), *tail]))
    fast, general = _both(_sealed([*_items(), *tail]))
    assert fast == general


@given(
    st.lists(
        st.recursive(
            st.integers(0, 2**64 - 1) | st.binary(max_size=20) | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=3),
            max_leaves=6,
        ),
        min_size=1,
        max_size=MAX_EXTENSIONS,
    )
)
def test_any_well_typed_extension_decodes_to_the_same_announcement(
    extensions: list[object],
) -> None:
    raw = _sealed([*_items(), True, *extensions])
    ann = decode_record_untrusted(raw)
    assert isinstance(ann, Announcement)
    assert ann.relays is True
    assert ann.endpoints == worked_example().endpoints


def seal_announcement(items: list[object]) -> bytes:
    """``items`` (after version and kind) as NODE signs them."""
    body = seal_unsigned(Kind.ANNOUNCEMENT, items, bytes(64))
    unsigned, _ = split_envelope_untrusted(body)
    return seal_unsigned(Kind.ANNOUNCEMENT, items, NODE.sign(CONTEXTS[Kind.ANNOUNCEMENT], unsigned))


def _both(raw: bytes) -> tuple[object, object]:
    """What the hot path and the general decoder make of ``raw``'s body: a record, or the
    error's text."""
    body, _ = split_envelope_untrusted(raw)
    items = msgpack.unpackb(body, raw=False)

    def outcome(decode: object) -> object:
        try:
            return decode()  # type: ignore[operator]
        except DecodeError as exc:
            return ("DecodeError", str(exc))

    fast = outcome(lambda: _announcement_fast(list(items), raw))
    general = outcome(lambda: _announcement(_Fields(list(items[2:]), Kind.ANNOUNCEMENT), raw, 0))
    return fast, general


BAD_FIELDS: list[object] = [None, True, -1, b"", bytes(16), bytes(32), "", "é", [], [b"x"]]


@pytest.mark.parametrize("relays", [False, True])
def test_the_hot_path_and_the_general_decoder_agree(relays: bool) -> None:
    tails: list[list[object]] = [[], [True], *([t] for t in NOT_TRUE), [True, True]]
    for tail in tails:
        fast, general = _both(_sealed([*_items(), *tail]))
        assert fast == general, tail
    tail = [True] if relays else []
    for index in range(7):  # each field wrong, in a 9-item and a 10-item body
        for bad in BAD_FIELDS:
            items = [*_items(), *tail]
            items[index] = bad
            fast, general = _both(_sealed(items))
            assert fast == general, (index, bad)


def test_the_hot_path_takes_relay_announcements(monkeypatch: pytest.MonkeyPatch) -> None:
    """A relay's announcement goes the hot path (its header is 9a, not 99) as a
    non-relay's does, and decodes to what the general decoder makes of it."""
    from meshd.records import decode

    taken: list[int] = []

    def fast(items: list[object], raw: bytes) -> Announcement:
        taken.append(len(items))
        return _announcement_fast(items, raw)

    monkeypatch.setattr(decode, "_announcement_fast", fast)
    ann = worked_example(relays=True)
    assert decode_record_untrusted(ann.raw) == ann
    assert decode_record_untrusted(WORKED_EXAMPLE) == worked_example()
    assert taken == [10, 10, 9, 9]  # make_announcement decodes what it built, too
    fast_made, general = _both(ann.raw)
    assert fast_made == general == ann


def test_the_flag_is_signed() -> None:
    """A relay's signature does not cover the 9 items without the flag, nor a non-relay's
    the 10 with it: no one but the member can say it relays, or take that back."""
    relay, plain = worked_example(relays=True), worked_example()
    _, relay_sig = split_envelope_untrusted(relay.raw)
    _, plain_sig = split_envelope_untrusted(plain.raw)
    stripped = decode_record_untrusted(_sealed(_items(), relay_sig))
    added = decode_record_untrusted(_sealed([*_items(), True], plain_sig))
    assert isinstance(stripped, Announcement)
    assert isinstance(added, Announcement)
    assert (stripped.relays, added.relays) == (False, True)
    for forged in (stripped, added):
        with pytest.raises(VerifyError):
            check_announcement_signature(forged)
    body, _ = split_envelope_untrusted(relay.raw)
    assert NODE.sign(CONTEXTS[Kind.ANNOUNCEMENT], body) == relay_sig


@given(
    st.booleans(), st.integers(0, 2**64 - 1), st.lists(st.sampled_from(["a:1", "b:2"]), max_size=16)
)
def test_round_trip(relays: bool, seq: int, endpoints: list[str]) -> None:
    ann = make_announcement(
        NODE, network_id=NETWORK_ID, seq=seq, issued_at=5, endpoints=endpoints, relays=relays
    )
    assert ann.relays is relays
    assert decode_record_untrusted(ann.raw) == ann
    assert (
        ann.raw
        == make_announcement(
            NODE, network_id=NETWORK_ID, seq=seq, issued_at=5, endpoints=endpoints
        ).raw
    ) is not relays
