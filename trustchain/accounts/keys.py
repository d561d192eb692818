"""Account keys: what a client proves it holds when it writes.

Three algorithms, all from the field's libraries: Ed25519 (PyNaCl), ECDSA P-256 with SHA-256
(`cryptography`, signatures in the JWS form r || s, 64 bytes) and RSA PKCS#1 v1.5 with SHA-256 (RS256,
the default account key of ACME clients such as certbot; 2048 to 4096 bits). An account's identity is the digest of
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
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from trustchain.errors import TrustChainError

__all__ = [
    "ALGORITHMS",
    "ED25519",
    "ES256",
    "RS256",
    "AccountKey",
    "AccountKeyError",
    "AccountSigner",
    "Ed25519AccountSigner",
    "P256AccountSigner",
    "RSAAccountSigner",
    "account_id",
    "rsa_account_key",
]

ED25519, ES256, RS256 = "ed25519", "es256", "rs256"
ALGORITHMS = (ED25519, ES256, RS256)
ACCOUNT_ID_SIZE = 32
RSA_BITS = (2048, 4096)  # accepted modulus sizes, inclusive: weaker is unsafe, larger costs every replica


class AccountKeyError(TrustChainError, ValueError):
    """A public key that is not a valid key of its declared algorithm."""


@dataclass(frozen=True)
class AccountKey:
    """A public key: Ed25519 as 32 raw bytes, P-256 as the 65-byte uncompressed SEC1 point, RSA as its
    DER SubjectPublicKeyInfo (the canonical re-encoding, so one key has one account id)."""

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
        elif self.algorithm == RS256:
            _rsa_key(self.public)
        else:
            raise AccountKeyError(f"algorithm: must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True iff `signature` is this key's signature over `message`. Never raises on bad input."""
        if self.algorithm == RS256:
            key = _rsa_key(self.public)
            if len(signature) != (key.key_size + 7) // 8:
                return False
            try:
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                return False
            return True
        if len(signature) != 64:
            return False
        if self.algorithm == ED25519:
            try:
                nacl.signing.VerifyKey(self.public).verify(message, signature)
            except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
                return False
            return True
        ec_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.public)
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        try:
            ec_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def _rsa_key(der: bytes) -> rsa.RSAPublicKey:
    """The RSA key in `der`, which must be its own canonical encoding and of an accepted size."""
    try:
        key = load_der_public_key(der)
    except (ValueError, TypeError):
        raise AccountKeyError("public: not a DER SubjectPublicKeyInfo") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise AccountKeyError("public: not an RSA key")
    if not RSA_BITS[0] <= key.key_size <= RSA_BITS[1]:
        raise AccountKeyError(f"public: RSA keys must have {RSA_BITS[0]} to {RSA_BITS[1]} bits, got {key.key_size}")
    if key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) != der:
        raise AccountKeyError("public: not the canonical DER encoding of the key")
    return key


def rsa_account_key(key: rsa.RSAPublicKey) -> AccountKey:
    """The account key of an RSA public key (canonical DER)."""
    return AccountKey(RS256, key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


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



class RSAAccountSigner(AccountSigner):
    """RSA PKCS#1 v1.5 / SHA-256 (RS256) with a private key from `cryptography`."""

    def __init__(self, private: rsa.RSAPrivateKey) -> None:
        self._private = private
        self.key = rsa_account_key(private.public_key())

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message, padding.PKCS1v15(), hashes.SHA256())
