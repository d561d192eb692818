"""RFC 6962 §3.2 SignedCertificateTimestamp (v1): the log's signed promise to include an entry.

A log signs with ECDSA P-256 (`logkey.P256LogSigner`, DigitallySigned algorithms (4, 3)), the only
kind browsers and monitors accept besides RSA. Ed25519 signers are still accepted, encoded as the TLS
ed25519 SignatureScheme 0x0807 (8, 7), for logs that only TrustChain's own clients read. The timestamp
is passed in: replicas sign the same consensus time and so produce the same signed content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.crypto.signing import ED25519, Signer
from trustchain.ct import logkey
from trustchain.ct.entry import MAX_UINT64, SignedEntry, encode_signed_entry, opaque
from trustchain.ct.merkle import HASH_SIZE
from trustchain.errors import TrustChainError

__all__ = [
    "ED25519_HASH_ALG", "ED25519_SIG_ALG", "LEAF_INDEX_EXTENSION", "SCT_VERSION_V1",
    "SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP", "SCTError", "SignedCertificateTimestamp", "issue", "leaf_index_extension",
    "log_id", "parse_leaf_index", "signature_input", "spki", "verify",
]

SCT_VERSION_V1 = 0
SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP = 0
ED25519_HASH_ALG, ED25519_SIG_ALG = 8, 7
LEAF_INDEX_EXTENSION = 0  # static-ct-api: ExtensionType leaf_index, a big-endian uint40
_LEAF_INDEX_MAX = (1 << 40) - 1


class SCTError(TrustChainError, ValueError):
    """An SCT is malformed or its signature does not hold; the message says which."""


def spki(public_key: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a log key: a raw 32-byte Ed25519 key is wrapped, anything else is
    taken to be an SPKI already (as a P-256 log key is carried)."""
    if len(public_key) == 32:
        return Ed25519PublicKey.from_public_bytes(public_key).public_bytes(Encoding.DER,
                                                                           PublicFormat.SubjectPublicKeyInfo)
    return public_key


def log_id(public_key: bytes) -> bytes:
    """SHA-256 of the log key's DER SubjectPublicKeyInfo, as RFC 6962 §3.2 defines LogID."""
    return hashlib.sha256(spki(public_key)).digest()


def leaf_index_extension(index: int) -> bytes:
    """CtExtensions holding only the static-ct-api leaf_index extension (8 bytes)."""
    if not 0 <= index <= _LEAF_INDEX_MAX:
        raise SCTError(f"leaf index {index} does not fit 40 bits")
    return bytes([LEAF_INDEX_EXTENSION]) + opaque(index.to_bytes(5, "big"), 2)


def parse_leaf_index(extensions: bytes) -> int | None:
    """The leaf_index in a CtExtensions field, or None if there is none; raises SCTError if malformed."""
    pos, found = 0, None
    while pos < len(extensions):
        if pos + 3 > len(extensions):
            raise SCTError("extensions end inside an extension header")
        ext_type, size = extensions[pos], int.from_bytes(extensions[pos + 1 : pos + 3], "big")
        data = extensions[pos + 3 : pos + 3 + size]
        if len(data) != size:
            raise SCTError("extensions end inside an extension body")
        if ext_type == LEAF_INDEX_EXTENSION:
            if found is not None or size != 5:
                raise SCTError("leaf_index extension is duplicated or not 5 bytes")
            found = int.from_bytes(data, "big")
        pos += 3 + size
    return found


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
    hash_alg: int = ED25519_HASH_ALG
    sig_alg: int = ED25519_SIG_ALG

    def digitally_signed(self) -> bytes:
        """The DigitallySigned struct (algorithms and signature), as add-chain's `signature` carries it."""
        return bytes([self.hash_alg, self.sig_alg]) + opaque(self.signature, 2)

    def encode(self) -> bytes:
        return (
            bytes([SCT_VERSION_V1])
            + self.log_id
            + self.timestamp.to_bytes(8, "big")
            + opaque(self.extensions, 2)
            + self.digitally_signed()
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
        algs = (data[pos], data[pos + 1])
        if algs not in ((ED25519_HASH_ALG, ED25519_SIG_ALG), (logkey.HASH_SHA256, logkey.SIG_ECDSA)):
            raise SCTError(f"signature algorithm {algs} is neither ECDSA-SHA256 (4, 3) nor Ed25519 (8, 7)")
        sig_len = int.from_bytes(data[pos + 2 : pos + 4], "big")
        signature = data[pos + 4 :]
        if len(signature) != sig_len:
            raise SCTError(f"SCT signature field says {sig_len} bytes but {len(signature)} follow")
        return cls(lid, timestamp, signature, extensions, *algs)


def issue(
    signer: Signer, entry: SignedEntry, timestamp_ms: int, extensions: bytes = b""
) -> SignedCertificateTimestamp:
    if not 0 <= timestamp_ms <= MAX_UINT64:
        raise SCTError(f"timestamp {timestamp_ms} is not a uint64")
    assert signer.algorithm in ("ed25519", logkey.ECDSA_P256), signer.algorithm
    algs = (ED25519_HASH_ALG, ED25519_SIG_ALG) if signer.algorithm == "ed25519" else \
        (logkey.HASH_SHA256, logkey.SIG_ECDSA)
    sig = signer.sign(signature_input(timestamp_ms, entry, extensions))
    return SignedCertificateTimestamp(log_id(signer.public_key), timestamp_ms, sig, extensions, *algs)


def verify(sct: SignedCertificateTimestamp, public_key: bytes, entry: SignedEntry) -> None:
    """Raises SCTError unless this log key signed this entry at this timestamp."""
    if sct.log_id != log_id(public_key):
        raise SCTError(f"SCT is from log {sct.log_id.hex()}, not the log with this key")
    message = signature_input(sct.timestamp, entry, sct.extensions)
    if (sct.hash_alg, sct.sig_alg) == (logkey.HASH_SHA256, logkey.SIG_ECDSA) and len(public_key) != 32:
        try:
            logkey.verify_p256(public_key, message, sct.signature)
        except logkey.LogKeyError:
            raise SCTError(f"SCT signature over the entry at timestamp {sct.timestamp} does not verify") from None
        return
    if (sct.hash_alg, sct.sig_alg) != (ED25519_HASH_ALG, ED25519_SIG_ALG) or len(public_key) != 32:
        raise SCTError(f"SCT algorithm ({sct.hash_alg}, {sct.sig_alg}) does not match the log key")
    if not ED25519.verify(public_key, message, sct.signature):
        raise SCTError(f"SCT signature over the entry at timestamp {sct.timestamp} does not verify")
