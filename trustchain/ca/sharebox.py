"""Confidential transport and storage of key shares.

In transit: hybrid X25519 + ML-KEM-768 so a DKG transcript recorded today stays secret if either
problem (ECDH or lattice) is broken later; the two secrets are combined with HKDF-SHA256 bound to both
ciphertexts and both recipient public keys (X-Wing style), then ChaCha20-Poly1305. At rest: AES-256-GCM
under an operator key, with associated data naming the validator and key id so a blob cannot be
swapped between validators or key epochs.

Confidentiality only: sender authenticity comes from the signed consensus/transport envelope that
carries the box. The ML-KEM encapsulation draws its randomness inside OpenSSL (cryptography exposes no
derandomised API), so boxes are not byte-reproducible; everything else uses the passed-in
``rand_bytes``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from trustchain.ca import dkg, frost, group
from trustchain.ca.group import RandBytes
from trustchain.errors import TrustChainError

BOX_VERSION = 1
BOX_LABEL = b"trustchain/sharebox/x25519-mlkem768-chacha20poly1305/v1"
REST_VERSION = 1
REST_LABEL = b"trustchain/share-at-rest/aes256gcm/v1"
X25519_LEN = 32
MLKEM_PK_LEN = 1184
MLKEM_CT_LEN = 1088
BOX_HEADER_LEN = 1 + X25519_LEN + MLKEM_CT_LEN
# Each box key is fresh (new ephemeral X25519 + new ML-KEM secret), so a fixed nonce is never reused.
_BOX_NONCE = bytes(12)


class ShareboxError(TrustChainError, ValueError):
    """Decryption or parsing failed; deliberately says nothing about which check failed."""


@dataclass(frozen=True)
class RecipientPublicKey:
    x25519: bytes
    mlkem768: bytes

    def to_bytes(self) -> bytes:
        return self.x25519 + self.mlkem768

    @classmethod
    def from_bytes(cls, data: bytes) -> RecipientPublicKey:
        if len(data) != X25519_LEN + MLKEM_PK_LEN:
            raise ShareboxError("bad recipient public key length")
        return cls(data[:X25519_LEN], data[X25519_LEN:])


@dataclass(frozen=True)
class RecipientKey:
    """A validator's decryption key, kept as seeds so it is small and can itself be stored at rest."""

    x25519_seed: bytes
    mlkem768_seed: bytes

    @classmethod
    def generate(cls, rand_bytes: RandBytes) -> RecipientKey:
        return cls(rand_bytes(32), rand_bytes(64))

    def to_bytes(self) -> bytes:
        return self.x25519_seed + self.mlkem768_seed

    @classmethod
    def from_bytes(cls, data: bytes) -> RecipientKey:
        if len(data) != 96:
            raise ShareboxError("bad recipient key length")
        return cls(data[:32], data[32:])

    def public_key(self) -> RecipientPublicKey:
        x = X25519PrivateKey.from_private_bytes(self.x25519_seed).public_key().public_bytes_raw()
        m = MLKEM768PrivateKey.from_seed_bytes(self.mlkem768_seed).public_key().public_bytes_raw()
        return RecipientPublicKey(x, m)


def _combine(
    ss_mlkem: bytes, ss_x25519: bytes, ct_mlkem: bytes, eph_x25519: bytes, recipient: RecipientPublicKey
) -> bytes:
    info = BOX_LABEL + ct_mlkem + eph_x25519 + recipient.x25519 + recipient.mlkem768
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ss_mlkem + ss_x25519)


def seal(recipient: RecipientPublicKey, plaintext: bytes, aad: bytes, rand_bytes: RandBytes) -> bytes:
    """Encrypt ``plaintext`` to ``recipient``; ``aad`` must name sender, receiver and session."""
    eph = X25519PrivateKey.from_private_bytes(rand_bytes(32))
    eph_pub = eph.public_key().public_bytes_raw()
    ss_x = eph.exchange(X25519PublicKey.from_public_bytes(recipient.x25519))
    ss_m, ct_m = MLKEM768PublicKey.from_public_bytes(recipient.mlkem768).encapsulate()
    assert len(ct_m) == MLKEM_CT_LEN
    header = bytes([BOX_VERSION]) + eph_pub + ct_m
    key = _combine(ss_m, ss_x, ct_m, eph_pub, recipient)
    return header + ChaCha20Poly1305(key).encrypt(_BOX_NONCE, plaintext, header + aad)


def open_box(recipient: RecipientKey, box: bytes, aad: bytes) -> bytes:
    if len(box) < BOX_HEADER_LEN + 16 or box[0] != BOX_VERSION:
        raise ShareboxError("malformed box")
    header = box[:BOX_HEADER_LEN]
    eph_pub = box[1 : 1 + X25519_LEN]
    ct_m = box[1 + X25519_LEN : BOX_HEADER_LEN]
    try:
        ss_x = X25519PrivateKey.from_private_bytes(recipient.x25519_seed).exchange(
            X25519PublicKey.from_public_bytes(eph_pub)
        )
        # ML-KEM decapsulation never fails (implicit rejection); a bad ct yields a key the AEAD rejects.
        ss_m = MLKEM768PrivateKey.from_seed_bytes(recipient.mlkem768_seed).decapsulate(ct_m)
        key = _combine(ss_m, ss_x, ct_m, eph_pub, recipient.public_key())
        return ChaCha20Poly1305(key).decrypt(_BOX_NONCE, box[BOX_HEADER_LEN:], header + aad)
    except (InvalidTag, ValueError) as exc:
        raise ShareboxError("box does not open") from exc


# --- DKG round-2 shares in transit -----------------------------------------------------------------


def _share_aad(session: bytes, sender: int, receiver: int) -> bytes:
    return b"dkg-share" + struct.pack(">HII", len(session), sender, receiver) + session


def seal_share(
    share: dkg.Round2Share, recipient: RecipientPublicKey, session: bytes, rand_bytes: RandBytes
) -> bytes:
    """AAD binds session, sender and receiver: a box cannot be replayed into another DKG or slot."""
    return seal(recipient, share.value, _share_aad(session, share.sender, share.receiver), rand_bytes)


def open_share(
    recipient: RecipientKey, box: bytes, session: bytes, sender: int, receiver: int
) -> dkg.Round2Share:
    value = open_box(recipient, box, _share_aad(session, sender, receiver))
    try:
        return dkg.Round2Share(sender, receiver, group.deserialize_scalar(value))
    except group.GroupError as exc:
        raise ShareboxError("share is not a canonical scalar") from exc


# --- At rest ----------------------------------------------------------------------------------------


def _rest_aad(validator_id: str, key_id: str) -> bytes:
    v, k = validator_id.encode(), key_id.encode()
    return REST_LABEL + struct.pack(">H", len(v)) + v + struct.pack(">H", len(k)) + k


def wrap_at_rest(
    operator_key: bytes, validator_id: str, key_id: str, secret: bytes, rand_bytes: RandBytes
) -> bytes:
    if len(operator_key) != 32:
        raise ValueError("operator key must be 32 bytes (AES-256)")
    nonce = rand_bytes(12)
    ct = AESGCM(operator_key).encrypt(nonce, secret, _rest_aad(validator_id, key_id))
    return bytes([REST_VERSION]) + nonce + ct


def unwrap_at_rest(operator_key: bytes, validator_id: str, key_id: str, blob: bytes) -> bytes:
    if len(operator_key) != 32:
        raise ValueError("operator key must be 32 bytes (AES-256)")
    if len(blob) < 1 + 12 + 16 or blob[0] != REST_VERSION:
        raise ShareboxError("malformed at-rest blob")
    try:
        return AESGCM(operator_key).decrypt(blob[1:13], blob[13:], _rest_aad(validator_id, key_id))
    except InvalidTag as exc:
        raise ShareboxError("at-rest blob does not decrypt") from exc


def encode_key_package(pkg: frost.KeyPackage) -> bytes:
    return (
        struct.pack(">BHH", 1, pkg.identifier, pkg.min_signers)
        + pkg.signing_share
        + pkg.verifying_share
        + pkg.group_public_key
    )


def decode_key_package(data: bytes) -> frost.KeyPackage:
    """Re-checks that the stored share matches its verifying share, catching a mis-restored file."""
    if len(data) != 5 + 96 or data[0] != 1:
        raise ShareboxError("malformed key package")
    _, identifier, min_signers = struct.unpack(">BHH", data[:5])
    try:
        share = group.deserialize_scalar(data[5:37])
        vs = group.deserialize_element(data[37:69])
        gpk = group.deserialize_element(data[69:101])
    except group.GroupError as exc:
        raise ShareboxError("malformed key package") from exc
    if group.base_mult(share) != vs:
        raise ShareboxError("signing share does not match its verifying share")
    return frost.KeyPackage(identifier, share, vs, gpk, min_signers)


def store_key_package(
    operator_key: bytes, validator_id: str, key_id: str, pkg: frost.KeyPackage, rand_bytes: RandBytes
) -> bytes:
    return wrap_at_rest(operator_key, validator_id, key_id, encode_key_package(pkg), rand_bytes)


def load_key_package(operator_key: bytes, validator_id: str, key_id: str, blob: bytes) -> frost.KeyPackage:
    return decode_key_package(unwrap_at_rest(operator_key, validator_id, key_id, blob))
