"""One small signature interface, so consensus, CT checkpoints and the CA can swap Ed25519 for a
post-quantum scheme without touching protocol logic."""

from __future__ import annotations

from typing import Protocol

import nacl.exceptions
import nacl.signing

__all__ = ["ED25519", "Ed25519Signer", "Ed25519Verifier", "Signer", "Verifier"]


class Signer(Protocol):
    """Holds a private key; the protocol only ever asks it to sign."""

    algorithm: str

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class Verifier(Protocol):
    algorithm: str

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool: ...


class Ed25519Signer:
    """Ed25519 (RFC 8032) from PyNaCl. Keys come from a 32-byte seed so that the simulator can derive
    them from its seeded RNG; signatures are deterministic, so traces replay byte for byte."""

    algorithm = "ed25519"

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError(f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        self._key = nacl.signing.SigningKey(seed)
        self._public = bytes(self._key.verify_key)

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


class Ed25519Verifier:
    algorithm = "ed25519"

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        if len(public_key) != 32 or len(signature) != 64:
            return False
        try:
            nacl.signing.VerifyKey(public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            return False
        return True


ED25519 = Ed25519Verifier()
