"""RFC 6962 §3.5 signed tree heads, and their static-ct-api form: a checkpoint whose note signature
(an RFC6962NoteSignature) carries the same TreeHeadSignature, so get-sth and /checkpoint are two
encodings of one signature.

Each validator signs its own log's tree heads with its own P-256 key; the timestamp is handed in (the
node's clock, never earlier than the newest entry it covers), nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from trustchain.ct import checkpoint as cpmod
from trustchain.ct import logkey, note
from trustchain.ct.entry import MAX_UINT64
from trustchain.ct.merkle import HASH_SIZE
from trustchain.errors import TrustChainError

__all__ = [
    "SIGNATURE_TYPE_TREE_HASH",
    "SIG_TYPE_RFC6962",
    "STHError",
    "SignedTreeHead",
    "rfc6962_key_id",
    "rfc6962_note_signature",
    "sign_tree_head",
    "tree_head_input",
]

SIGNATURE_TYPE_TREE_HASH = 1
SIG_TYPE_RFC6962 = 0x05  # static-ct-api's note signature type for a TreeHeadSignature


class STHError(TrustChainError, ValueError):
    """A tree head is out of range or its signature is malformed; the message says which."""


def tree_head_input(timestamp: int, tree_size: int, root_hash: bytes) -> bytes:
    """The TreeHeadSignature digitally-signed struct: v1, tree_hash, timestamp, tree_size, root."""
    if not (0 <= timestamp <= MAX_UINT64 and 0 <= tree_size <= MAX_UINT64 and len(root_hash) == HASH_SIZE):
        raise STHError("tree head timestamp, size or root is out of range")
    return bytes([0, SIGNATURE_TYPE_TREE_HASH]) + timestamp.to_bytes(8, "big") + tree_size.to_bytes(8, "big") \
        + root_hash


@dataclass(frozen=True)
class SignedTreeHead:
    tree_size: int
    timestamp: int
    root_hash: bytes
    signature: bytes  # the encoded DigitallySigned struct

    def verify(self, spki: bytes) -> None:
        try:
            logkey.verify_digitally_signed(spki, tree_head_input(self.timestamp, self.tree_size, self.root_hash),
                                           self.signature)
        except logkey.LogKeyError as exc:
            raise STHError(f"tree head at size {self.tree_size}: {exc}") from None

    def checkpoint(self, origin: str, spki: bytes) -> cpmod.SignedCheckpoint:
        """The static-ct-api checkpoint: origin, size, root, signed by this STH's signature."""
        cp = cpmod.Checkpoint(origin, self.tree_size, self.root_hash)
        return cpmod.SignedCheckpoint(cp, note.Note(cp.body(), (rfc6962_note_signature(origin, spki, self),)))


def sign_tree_head(signer: logkey.P256LogSigner, tree_size: int, root_hash: bytes, timestamp: int) -> SignedTreeHead:
    return SignedTreeHead(tree_size, timestamp, root_hash,
                          logkey.digitally_signed(signer, tree_head_input(timestamp, tree_size, root_hash)))


def rfc6962_key_id(name: str, spki: bytes) -> bytes:
    """First 4 bytes of SHA-256(key name || 0x0A || 0x05 || LogID)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([SIG_TYPE_RFC6962]) + logkey.spki_log_id(spki)).digest()[:4]


def rfc6962_note_signature(name: str, spki: bytes, sth: SignedTreeHead) -> note.NoteSignature:
    """`RFC6962NoteSignature { uint64 timestamp; TreeHeadSignature signature; }` as a note signature line."""
    return note.NoteSignature(name, rfc6962_key_id(name, spki), sth.timestamp.to_bytes(8, "big") + sth.signature)
