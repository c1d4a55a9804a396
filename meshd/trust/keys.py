"""Keys, signatures and fingerprints.

* A node's identity is an Ed25519 key; the same key is its libp2p identity.
* The trust root and delegated admin keys are Ed25519 keys too; so is an invite's secret.
* A node's WireGuard key is an X25519 key, clamped when it is generated so that the bytes we
  hold are the bytes WireGuard reports.

Every signature covers a context string naming the record type, followed by the exact bytes
that are sent, so a signature over one record type can never be replayed as another.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NewType

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from meshd.encoding import b32, b32_each
from meshd.errors import VerifyError

NodeKey = NewType("NodeKey", bytes)
"""A member's Ed25519 node key (its identity, also its libp2p identity): 32 bytes."""

WgKey = NewType("WgKey", bytes)
"""A WireGuard (X25519) public key: 32 bytes. Not a node key: mypy refuses one for the other."""

KEY_LEN = 32
SIG_LEN = 64
FINGERPRINT_LEN = 16  # bytes; 26 characters of base32
_FINGERPRINT_CONTEXT = b"meshd fingerprint v1\x00"


def fingerprint_bytes(public_key: bytes) -> bytes:
    """The 16-byte fingerprint of a public key (the binary form of node and network ids)."""
    return hashlib.sha256(_FINGERPRINT_CONTEXT + public_key).digest()[:FINGERPRINT_LEN]


def fingerprint(public_key: bytes) -> str:
    """The canonical text form of a key's fingerprint: 26 lower-case base32 characters."""
    return b32(fingerprint_bytes(public_key))


def fingerprints(public_keys: Iterable[bytes]) -> list[str]:
    """``[fingerprint(key) for key in public_keys]``, their base32 written together
    (:func:`meshd.encoding.b32_each`: the node ids of 10,000 rows of ``meshd peers``)."""
    sha256 = hashlib.sha256
    return b32_each(
        [sha256(_FINGERPRINT_CONTEXT + key).digest()[:FINGERPRINT_LEN] for key in public_keys]
    )


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 secret key, held as its 32-byte seed."""

    seed: bytes = field(repr=False)
    public: bytes = field(init=False)
    _signer: nacl.signing.SigningKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.seed) != KEY_LEN:
            raise ValueError("an Ed25519 seed is 32 bytes")
        signer = nacl.signing.SigningKey(self.seed)
        object.__setattr__(self, "_signer", signer)
        object.__setattr__(self, "public", bytes(signer.verify_key))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(KEY_LEN))

    def sign(self, context: bytes, message: bytes) -> bytes:
        """Sign ``context || message``; returns the 64-byte signature."""
        return self._signer.sign(context + message).signature

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)


def verify(public_key: bytes, context: bytes, message: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature over ``context || message``; raise VerifyError if it fails."""
    if len(public_key) != KEY_LEN or len(signature) != SIG_LEN:
        raise VerifyError("bad-signature", "signature or key has the wrong length")
    try:
        nacl.bindings.crypto_sign_open(signature + context + message, public_key)
    except (
        nacl.exceptions.BadSignatureError,
        nacl.exceptions.ValueError,
        nacl.exceptions.TypeError,
    ) as exc:
        raise VerifyError("bad-signature", "signature does not verify") from exc


def clamp_x25519(secret: bytes) -> bytes:
    """Clamp an X25519 secret the way WireGuard stores it."""
    if len(secret) != KEY_LEN:
        raise ValueError("an X25519 secret is 32 bytes")
    k = bytearray(secret)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    return bytes(k)


@dataclass(frozen=True, slots=True)
class WireGuardKey:
    """A WireGuard (X25519) private key, always held clamped."""

    secret: bytes = field(repr=False)
    public: bytes = field(init=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_LEN:
            raise ValueError("a WireGuard key is 32 bytes")
        if clamp_x25519(self.secret) != self.secret:
            raise ValueError("a WireGuard private key must be clamped")
        public = bytes(nacl.public.PrivateKey(self.secret).public_key)
        object.__setattr__(self, "public", public)

    @classmethod
    def generate(cls) -> WireGuardKey:
        return cls(clamp_x25519(os.urandom(KEY_LEN)))
