"""Account keys: what a client proves it holds when it writes.

Two algorithms, both from the field's libraries: Ed25519 (PyNaCl) and ECDSA P-256 with SHA-256
(`cryptography`, signatures in the JWS form r || s, 64 bytes). An account's identity is the digest of
the key it registered with, so it stays the same across key rollover and can never be confused with a
validator's raw consensus key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.errors import TrustChainError

__all__ = [
    "ALGORITHMS",
    "ED25519",
    "ES256",
    "AccountKey",
    "AccountKeyError",
    "AccountSigner",
    "Ed25519AccountSigner",
    "P256AccountSigner",
    "account_id",
]

ED25519, ES256 = "ed25519", "es256"
ALGORITHMS = (ED25519, ES256)
ACCOUNT_ID_SIZE = 32


class AccountKeyError(TrustChainError, ValueError):
    """A public key that is not a valid key of its declared algorithm."""


@dataclass(frozen=True)
class AccountKey:
    """A public key: Ed25519 as 32 raw bytes, P-256 as the 65-byte uncompressed SEC1 point."""

    algorithm: str
    public: bytes

    def __post_init__(self) -> None:
        if self.algorithm == ED25519:
            if len(self.public) != 32:
                raise AccountKeyError(f"public: an Ed25519 key is 32 bytes, got {len(self.public)}")
            try:
                nacl.signing.VerifyKey(self.public)
            except (nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
                raise AccountKeyError(f"public: not an Ed25519 key ({exc})") from None
        elif self.algorithm == ES256:
            if len(self.public) != 65 or self.public[0] != 4:
                raise AccountKeyError("public: a P-256 key is a 65-byte uncompressed point")
            try:
                ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.public)
            except ValueError:
                raise AccountKeyError("public: not a point on P-256") from None
        else:
            raise AccountKeyError(f"algorithm: must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True iff `signature` is this key's signature over `message`. Never raises on bad input."""
        if len(signature) != 64:
            return False
        if self.algorithm == ED25519:
            try:
                nacl.signing.VerifyKey(self.public).verify(message, signature)
            except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
                return False
            return True
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.public)
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def account_id(key: AccountKey) -> bytes:
    """The stable identity of the account first registered with `key` (domain-separated digest)."""
    return hashlib.sha256(b"trustchain/account/v1\0" + key.algorithm.encode() + b"\0" + key.public).digest()


class AccountSigner:
    """Client side: holds an account private key. Lives in the core so the simulator's clients and the
    command-line client sign exactly as the replicas verify."""

    key: AccountKey

    def sign(self, message: bytes) -> bytes:
        raise NotImplementedError


class Ed25519AccountSigner(AccountSigner):
    """Deterministic signatures: the simulator derives keys from its seeded RNG and replays exactly."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise AccountKeyError(f"seed: an Ed25519 seed is 32 bytes, got {len(seed)}")
        self._private = nacl.signing.SigningKey(seed)
        self.key = AccountKey(ED25519, bytes(self._private.verify_key))

    def sign(self, message: bytes) -> bytes:
        return bytes(self._private.sign(message).signature)


class P256AccountSigner(AccountSigner):
    """ECDSA P-256 / SHA-256 with a private key from `cryptography` (randomized signatures)."""

    def __init__(self, private: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private.curve, ec.SECP256R1):
            raise AccountKeyError("private: must be a P-256 key")
        self._private = private
        public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        self.key = AccountKey(ES256, public)

    def sign(self, message: bytes) -> bytes:
        r, s = decode_dss_signature(self._private.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

