"""``recertify``: a certificate certified again keeps what it grants, and only that."""

from __future__ import annotations

import ipaddress

from meshd.records import Cap, Certificate, Role, make_certificate
from meshd.records.build import recertify
from meshd.trust.keys import SigningKey

NETWORK = b"n" * 16


def _admin(root: SigningKey) -> tuple[SigningKey, Certificate]:
    key = SigningKey.generate()
    cert = make_certificate(
        root,
        network_id=NETWORK,
        subject=key.public,
        role=Role.ADMIN,
        serial=b"s" * 16,
        not_before=100,
        not_after=1000,
        caps=Cap.INVITE,
        name="ops",
        prefixes=(ipaddress.ip_network("fd10::/64"),),
    )
    return key, cert


def test_the_same_grants_under_another_issuer_and_dates() -> None:
    root, new_root = SigningKey.generate(), SigningKey.generate()
    key, old = _admin(root)
    again = recertify(new_root, old, network_id=NETWORK, not_before=500, not_after=2000)
    assert again.issuer == new_root.public
    assert again.subject == key.public
    assert (again.role, again.caps, again.name, again.prefixes) == (
        Role.ADMIN,
        Cap.INVITE,
        "ops",
        (ipaddress.ip_network("fd10::/64"),),
    )
    assert (again.not_before, again.not_after) == (500, 2000)
    assert again.serial != old.serial
    assert len(again.serial) == 16


def test_a_successor_key_and_a_given_serial() -> None:
    root = SigningKey.generate()
    _, old = _admin(root)
    successor = SigningKey.generate()
    again = recertify(
        root,
        old,
        network_id=NETWORK,
        subject=successor.public,
        serial=b"x" * 16,
        not_before=200,
        not_after=1000,
    )
    assert again.subject == successor.public
    assert again.serial == b"x" * 16
    assert again.name == "ops"
