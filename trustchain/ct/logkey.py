"""A CT log's own signing key: ECDSA P-256 with SHA-256, as RFC 6962 section 2.1.4 allows (P-256 or RSA)
and as every browser and monitor requires for SCTs and signed tree heads.

Signatures are deterministic (RFC 6979), so the simulator replays a run byte for byte and a validator
that signs the same SCT twice produces the same bytes. The public key is carried as its DER
SubjectPublicKeyInfo: that is what log lists publish and what the LogID hashes.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.ct.entry import opaque
from trustchain.errors import TrustChainError

__all__ = [
    "ECDSA_P256", "HASH_SHA256", "SIG_ECDSA", "LogKeyError", "P256LogSigner", "digitally_signed",
    "load_private_pem", "parse_digitally_signed", "spki_log_id", "verify_digitally_signed", "verify_p256",
]

ECDSA_P256 = "ecdsa-p256"
HASH_SHA256, SIG_ECDSA = 4, 3  # TLS HashAlgorithm sha256, SignatureAlgorithm ecdsa (RFC 5246 7.4.1.4.1)


class LogKeyError(TrustChainError, ValueError):
    """A log key or DigitallySigned value is malformed or the signature does not verify."""


class P256LogSigner:
    """Holds a log's P-256 private key; `public_key` is its DER SubjectPublicKeyInfo."""

    algorithm = ECDSA_P256

    def __init__(self, private: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private.curve, ec.SECP256R1):
            raise LogKeyError(f"a CT log key must be on P-256, not {private.curve.name}")
        self._private = private
        self._spki = private.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)

    @classmethod
    def from_secret(cls, secret: bytes) -> P256LogSigner:
        """A key derived from 32 secret bytes (the simulator draws them from its seeded RNG)."""
        if len(secret) != 32:
            raise LogKeyError(f"log key secret must be 32 bytes, got {len(secret)}")
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        scalar = int.from_bytes(hashlib.sha256(b"trustchain/ct-log-key\0" + secret).digest(), "big") % (order - 1) + 1
        return cls(ec.derive_private_key(scalar, ec.SECP256R1()))

    @property
    def public_key(self) -> bytes:
        return self._spki

    def sign(self, message: bytes) -> bytes:
        """DER ECDSA-Sig-Value over SHA-256(message)."""
        return self._private.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))

    def private_pem(self) -> bytes:
        return self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())


def load_private_pem(data: bytes) -> P256LogSigner:
    try:
        key = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError) as exc:
        raise LogKeyError(f"not an unencrypted PEM private key ({str(exc)[:80]})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise LogKeyError("not an ECDSA private key")
    return P256LogSigner(key)


def spki_log_id(spki: bytes) -> bytes:
    """RFC 6962 section 3.2 LogID: SHA-256 of the log key's DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki).digest()


def digitally_signed(signer: P256LogSigner, message: bytes) -> bytes:
    """The TLS DigitallySigned struct: hash and signature algorithm bytes, then the signature <0..2^16-1>."""
    return bytes([HASH_SHA256, SIG_ECDSA]) + opaque(signer.sign(message), 2)


def parse_digitally_signed(data: bytes) -> tuple[int, int, bytes]:
    """(hash algorithm, signature algorithm, signature); raises LogKeyError if the framing is wrong."""
    if len(data) < 4:
        raise LogKeyError(f"DigitallySigned of {len(data)} bytes is too short")
    size = int.from_bytes(data[2:4], "big")
    if len(data) != 4 + size:
        raise LogKeyError(f"DigitallySigned says {size} signature bytes but {len(data) - 4} follow")
    return data[0], data[1], data[4:]


def verify_digitally_signed(spki: bytes, message: bytes, data: bytes) -> None:
    """Raises LogKeyError unless `data` is an ECDSA P-256/SHA-256 DigitallySigned over `message`."""
    hash_alg, sig_alg, signature = parse_digitally_signed(data)
    if (hash_alg, sig_alg) != (HASH_SHA256, SIG_ECDSA):
        raise LogKeyError(f"signature algorithm ({hash_alg}, {sig_alg}) is not ECDSA with SHA-256 (4, 3)")
    verify_p256(spki, message, signature)


def verify_p256(spki: bytes, message: bytes, signature: bytes) -> None:
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError):
        raise LogKeyError("log key is not a DER SubjectPublicKeyInfo") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise LogKeyError("log key is not an ECDSA P-256 key")
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise LogKeyError("ECDSA signature does not verify under the log key") from None
