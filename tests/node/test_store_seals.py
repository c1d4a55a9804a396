"""Sealed stores: this node's own rows load without their signatures checked again; a row
without a valid seal is verified in full, and records from the network always are."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from meshd.errors import VerifyError
from meshd.membership import Membership
from meshd.node.store import Store, seal_key_of
from meshd.records import Kind, decode_record_untrusted, make_announcement
from meshd.trust import chain
from meshd.trust.keys import SigningKey, verify
from tests.factory import DAY, T0, Net
from tests.node.stores import NOW, populate

KEY = seal_key_of(bytes(range(32)))


def populated(path: Path, seal_key: bytes | None) -> tuple[Net, Membership]:
    """A store of a founder, three members (announcing twice each) and a revocation."""
    store = Store(path, seal_key=seal_key)
    net, state = populate(store)
    store.close()
    return net, state


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every Ed25519 check the trust layer makes, by signer."""
    checked: list[bytes] = []

    def counting(key: bytes, context: bytes, message: bytes, signature: bytes) -> None:
        checked.append(key)
        verify(key, context, message, signature)

    monkeypatch.setattr(chain, "verify", counting)
    return checked


def load(path: Path, net: Net, seal_key: bytes | None, at: int = NOW + 2) -> tuple[Membership, int]:
    store = Store(path, seal_key=seal_key)
    try:
        state = net.state()
        report = store.load_into(state, at)
        return state, report.rejected
    finally:
        store.close()


def snapshot(state: Membership) -> list[tuple[str, str, str]]:
    return [(m.name, m.state.value, m.reason) for m in state.members(NOW)]


def test_a_sealed_store_loads_without_checking_signatures(
    tmp_path: Path, signature_checks: list[bytes]
) -> None:
    path = tmp_path / "meshd.db"
    net, state = populated(path, KEY)
    signature_checks.clear()
    loaded, rejected = load(path, net, KEY)
    assert signature_checks == []
    assert rejected == 0
    assert loaded.digest() == state.digest()
    assert snapshot(loaded) == snapshot(state)
    assert ("m2", "revoked", "revoked") in snapshot(loaded)


def test_an_unsealed_store_is_verified_in_full_once_then_sealed(
    tmp_path: Path, signature_checks: list[bytes]
) -> None:
    """A store written before seals (or by a node without the key) is verified in full on
    its first load, and its rows are sealed then: the next load checks no signature."""
    path = tmp_path / "meshd.db"
    net, state = populated(path, None)
    signature_checks.clear()
    first, _ = load(path, net, KEY)
    assert len(signature_checks) >= len(state)  # every record, and the chains in them
    assert first.digest() == state.digest()
    signature_checks.clear()
    second, _ = load(path, net, KEY)
    assert signature_checks == []
    assert second.digest() == state.digest()


def test_a_store_sealed_by_another_key_is_verified_in_full(
    tmp_path: Path, signature_checks: list[bytes]
) -> None:
    path = tmp_path / "meshd.db"
    net, state = populated(path, seal_key_of(bytes(32)))
    signature_checks.clear()
    loaded, rejected = load(path, net, KEY)
    assert rejected == 0
    assert len(signature_checks) >= len(state)
    assert loaded.digest() == state.digest()


@pytest.mark.parametrize("table", ["announcements", "records"])
def test_an_altered_sealed_row_is_refused(tmp_path: Path, table: str) -> None:
    """A row changed after it was sealed no longer matches its seal: it is verified in full
    and its signature refuses it (the seal is kept, the bytes are not this node's)."""
    path = tmp_path / "meshd.db"
    net, _ = populated(path, KEY)
    db = sqlite3.connect(path)
    # A member's last announcement, or the revocation (a credential would take others along).
    where = "" if table == "announcements" else f"WHERE kind = {int(Kind.REVOCATION)}"
    rid, raw = db.execute(f"SELECT rid, raw FROM {table} {where} LIMIT 1").fetchone()
    flipped = bytearray(raw)
    flipped[-1] ^= 1
    db.execute(f"UPDATE {table} SET raw = ? WHERE rid = ?", (bytes(flipped), rid))
    db.commit()
    db.close()
    loaded, rejected = load(path, net, KEY)
    assert rejected == 1
    assert loaded.record(rid) is None
    assert bytes(flipped) not in {loaded.record(r) for r in loaded.record_ids()}
    # Gone from the disk too: the next load finds nothing to refuse.
    again, rejected_again = load(path, net, KEY)
    assert rejected_again == 0
    assert again.digest() == loaded.digest()


def test_a_forged_row_under_a_real_seal_is_refused(tmp_path: Path) -> None:
    """A seal covers its row's bytes: an announcement forged in a member's name (signed by
    another key) put in place of the member's own, its seal kept, is verified in full."""
    path = tmp_path / "meshd.db"
    net, state = populated(path, KEY)
    db = sqlite3.connect(path)
    node, rid, seal = db.execute("SELECT node, rid, seal FROM announcements LIMIT 1").fetchone()
    forged = make_announcement(
        SigningKey.generate(), network_id=net.anchor.network_id, seq=99, issued_at=NOW
    )
    # Claims the member's key, signed by another: only a signature check can tell.
    body = bytearray(forged.raw)
    start = bytes(body).find(forged.node_key)
    body[start : start + 32] = node
    db.execute("UPDATE announcements SET raw = ? WHERE rid = ?", (bytes(body), rid))
    db.commit()
    db.close()
    assert seal is not None
    loaded, rejected = load(path, net, KEY)
    assert rejected == 1
    assert loaded.digest() != state.digest()  # the member's announcement is gone
    assert all(m.announcement is None or m.announcement.seq != 99 for m in loaded.members(NOW))


def test_sealed_rows_are_still_judged(tmp_path: Path) -> None:
    """A seal spares the signatures only: dates, revocations and standing are judged anew
    (a sealed store loaded long after drops what has expired, as an unsealed one does)."""
    path = tmp_path / "meshd.db"
    net, _ = populated(path, KEY)
    later, rejected = load(path, net, KEY, at=T0 + 500 * DAY)
    assert rejected > 0
    assert all(m.state.value != "admitted" for m in later.members(T0 + 500 * DAY))


def test_records_from_the_network_are_verified_after_a_sealed_load(
    tmp_path: Path, signature_checks: list[bytes]
) -> None:
    """Loading trusts the store's signatures while it runs, never after: a record that comes
    from a peer has its signature (and its chain's) checked."""
    path = tmp_path / "meshd.db"
    net, _ = populated(path, KEY)
    loaded, _ = load(path, net, KEY)
    assert not loaded.verifier.signatures_trusted
    founder_key = next(m.node_key for m in loaded.members(NOW) if m.name == "founder")
    mallory = SigningKey.generate()

    def claiming(make: Callable[[], bytes]) -> bytes:
        raw = bytearray(make())
        start = bytes(raw).find(mallory.public)
        raw[start : start + 32] = founder_key
        return bytes(raw)

    # An announcement in the founder's name signed by another key: alone and in a batch.
    forged = claiming(
        lambda: (
            make_announcement(
                mallory, network_id=net.anchor.network_id, seq=50, issued_at=NOW + 3
            ).raw
        )
    )
    with pytest.raises(VerifyError) as refused:
        loaded.ingest_untrusted(forged, NOW + 3)
    assert refused.value.reason == "bad-signature"
    batch = loaded.ingest_batch([forged], NOW + 3)
    assert batch.rejected == ("bad-signature",)
    # A member certificate whose root signature is not the root's.
    cert = bytearray(net.founder("eve").credential.raw)
    cert[-1] ^= 1
    signature_checks.clear()
    with pytest.raises(VerifyError) as refused:
        loaded.ingest_untrusted(bytes(cert), NOW + 3)
    assert refused.value.reason == "bad-signature"
    assert signature_checks


@pytest.mark.parametrize("table", ["announcements", "records"])
def test_a_sealed_row_under_another_id_is_verified_and_filed_under_its_own(
    tmp_path: Path, table: str, signature_checks: list[bytes]
) -> None:
    """A seal covers a row's bytes, not its id: a sealed row whose id is not its bytes' is
    verified in full, kept, and written again under its own id (a sealed load hands back
    nothing to be written, so such a row could not be mended from what it merged)."""
    path = tmp_path / "meshd.db"
    net, state = populated(path, KEY)
    db = sqlite3.connect(path)
    where = "" if table == "announcements" else f"WHERE kind = {int(Kind.REVOCATION)}"
    rid, seal = db.execute(f"SELECT rid, seal FROM {table} {where} LIMIT 1").fetchone()
    db.execute(f"UPDATE {table} SET rid = ? WHERE rid = ?", (b"x" * 16, rid))
    db.commit()
    db.close()
    assert seal is not None
    signature_checks.clear()
    loaded, rejected = load(path, net, KEY)
    assert rejected == 1  # the row under the other id, gone
    if table == "records":  # its signature checked (an announcement's is not by chain.verify)
        assert signature_checks
    assert loaded.digest() == state.digest()
    db = sqlite3.connect(path)
    ids = {bytes(r) for (r,) in db.execute(f"SELECT rid FROM {table}")}
    db.close()
    assert bytes(rid) in ids
    assert b"x" * 16 not in ids
    # Sealed again under its own id: the next load checks no signature.
    signature_checks.clear()
    again, _ = load(path, net, KEY)
    assert signature_checks == []
    assert again.digest() == state.digest()


def test_a_sealed_load_hands_back_nothing_to_store(tmp_path: Path) -> None:
    """What a load of sealed rows merged is the store's already: its batch stores nothing,
    and the same records and judgements come out as a load that hands them back."""
    path = tmp_path / "meshd.db"
    net, state = populated(path, KEY)
    store = Store(path, seal_key=KEY)
    try:
        raws = [raw for _, raw in store.rows()]
    finally:
        store.close()
    records = [decode_record_untrusted(raw) for raw in raws]
    kept = net.state().load(records, NOW + 2, signatures_trusted=True, stored_already=True)
    handed = net.state().load(records, NOW + 2, signatures_trusted=True)
    assert kept.stored == ()
    assert len(handed.stored) == len(state)
    assert kept.new == handed.new == len(state)


def test_a_record_filed_among_the_announcements_is_still_merged_and_judged(
    tmp_path: Path,
) -> None:
    """The announcements are read apart, after the rest is judged: a record of another kind
    found among them (a damaged store's) is merged after them, and judged, as in any
    order (here the revocation: its member is revoked all the same)."""
    path = tmp_path / "meshd.db"
    net, state = populated(path, KEY)
    db = sqlite3.connect(path)
    rid, raw, seal = db.execute(
        "SELECT rid, raw, seal FROM records WHERE kind = ?", (int(Kind.REVOCATION),)
    ).fetchone()
    db.execute("DELETE FROM records WHERE rid = ?", (rid,))
    db.execute(
        "INSERT INTO announcements(node, rid, raw, seal) VALUES (?, ?, ?, ?)",
        (b"r" * 32, rid, raw, seal),
    )
    db.commit()
    db.close()
    loaded, _ = load(path, net, KEY)
    assert loaded.digest() == state.digest()
    assert snapshot(loaded) == snapshot(state)
    assert ("m2", "revoked", "revoked") in snapshot(loaded)
