"""RFC 6962 §3.2 SignedCertificateTimestamp (v1): the log's signed promise to include an entry.

Signed with Ed25519 through the Signer interface; the DigitallySigned algorithm pair is (8, 7), the TLS
encoding of the ed25519 SignatureScheme 0x0807 (RFC 8422/8446). The timestamp is passed in: replicas
sign the same consensus time and so produce the same SCT bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.crypto.signing import ED25519, Signer
from trustchain.ct.entry import MAX_UINT64, SignedEntry, encode_signed_entry, opaque
from trustchain.ct.merkle import HASH_SIZE
from trustchain.errors import TrustChainError

__all__ = [
    "ED25519_HASH_ALG", "ED25519_SIG_ALG", "SCT_VERSION_V1", "SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP", "SCTError",
    "SignedCertificateTimestamp", "issue", "log_id", "signature_input", "verify",
]

SCT_VERSION_V1 = 0
SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP = 0
ED25519_HASH_ALG, ED25519_SIG_ALG = 8, 7


class SCTError(TrustChainError, ValueError):
    """An SCT is malformed or its signature does not hold; the message says which."""


def log_id(public_key: bytes) -> bytes:
    """SHA-256 of the log key's DER SubjectPublicKeyInfo, as RFC 6962 §3.2 defines LogID."""
    spki = Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def signature_input(timestamp: int, entry: SignedEntry, extensions: bytes = b"") -> bytes:
    """The digitally-signed struct: version, signature_type, timestamp, signed entry, extensions."""
    return (
        bytes([SCT_VERSION_V1, SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP])
        + timestamp.to_bytes(8, "big")
        + encode_signed_entry(entry)
        + opaque(extensions, 2)
    )


@dataclass(frozen=True)
class SignedCertificateTimestamp:
    log_id: bytes
    timestamp: int
    signature: bytes
    extensions: bytes = b""

    def encode(self) -> bytes:
        return (
            bytes([SCT_VERSION_V1])
            + self.log_id
            + self.timestamp.to_bytes(8, "big")
            + opaque(self.extensions, 2)
            + bytes([ED25519_HASH_ALG, ED25519_SIG_ALG])
            + opaque(self.signature, 2)
        )

    @classmethod
    def decode(cls, data: bytes) -> SignedCertificateTimestamp:
        if len(data) < 1 + HASH_SIZE + 8 + 2:
            raise SCTError(f"SCT of {len(data)} bytes is too short")
        if data[0] != SCT_VERSION_V1:
            raise SCTError(f"SCT version {data[0]} is not v1 (0)")
        pos = 1 + HASH_SIZE
        lid, timestamp = data[1:pos], int.from_bytes(data[pos : pos + 8], "big")
        pos += 8
        ext_len = int.from_bytes(data[pos : pos + 2], "big")
        extensions = data[pos + 2 : pos + 2 + ext_len]
        pos += 2 + ext_len
        if len(extensions) != ext_len or pos + 4 > len(data):
            raise SCTError("SCT ends inside its extensions or signature header")
        if (data[pos], data[pos + 1]) != (ED25519_HASH_ALG, ED25519_SIG_ALG):
            raise SCTError(f"signature algorithm ({data[pos]}, {data[pos + 1]}) is not Ed25519 (8, 7)")
        sig_len = int.from_bytes(data[pos + 2 : pos + 4], "big")
        signature = data[pos + 4 :]
        if len(signature) != sig_len:
            raise SCTError(f"SCT signature field says {sig_len} bytes but {len(signature)} follow")
        return cls(lid, timestamp, signature, extensions)


def issue(
    signer: Signer, entry: SignedEntry, timestamp_ms: int, extensions: bytes = b""
) -> SignedCertificateTimestamp:
    if not 0 <= timestamp_ms <= MAX_UINT64:
        raise SCTError(f"timestamp {timestamp_ms} is not a uint64")
    assert signer.algorithm == "ed25519", signer.algorithm
    sig = signer.sign(signature_input(timestamp_ms, entry, extensions))
    return SignedCertificateTimestamp(log_id(signer.public_key), timestamp_ms, sig, extensions)


def verify(sct: SignedCertificateTimestamp, public_key: bytes, entry: SignedEntry) -> None:
    """Raises SCTError unless this log key signed this entry at this timestamp."""
    if sct.log_id != log_id(public_key):
        raise SCTError(f"SCT is from log {sct.log_id.hex()}, not the log with this key")
    if not ED25519.verify(public_key, signature_input(sct.timestamp, entry, sct.extensions), sct.signature):
        raise SCTError(f"SCT signature over the entry at timestamp {sct.timestamp} does not verify")
