"""C2SP tlog-checkpoint bodies, their log signature, and witness cosignatures (C2SP tlog-cosignature).

A checkpoint commits a log to (origin, size, root); signed as a note, it is what clients gossip and what
split-view evidence is made of. Cosignatures carry the witness's own timestamp (passed in, never read
from a clock) so replicas produce identical bytes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from trustchain.crypto.signing import ED25519, Signer
from trustchain.ct import note
from trustchain.ct.merkle import HASH_SIZE
from trustchain.errors import TrustChainError

__all__ = [
    "COSIGNATURE_PAYLOAD_SIZE", "MAX_UINT64", "Checkpoint", "CheckpointError", "SignedCheckpoint", "cosign",
    "cosigned_message", "sign",
]

MAX_UINT64 = (1 << 64) - 1
COSIGNATURE_PAYLOAD_SIZE = 8 + 64  # big-endian timestamp || Ed25519 signature


class CheckpointError(TrustChainError, ValueError):
    """A checkpoint body, signature or cosignature is malformed or wrong; the message names the problem."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError("origin must be one non-empty line")
        if not 0 <= self.size <= MAX_UINT64:
            raise CheckpointError(f"tree size {self.size} is not a uint64")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"root hash is {len(self.root_hash)} bytes, expected {HASH_SIZE}")
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise CheckpointError("extension lines must be single non-empty lines")

    def body(self) -> str:
        root = base64.b64encode(self.root_hash).decode()
        return f"{self.origin}\n{self.size}\n{root}\n" + "".join(e + "\n" for e in self.extensions)

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint body does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(f"checkpoint body has {len(lines)} lines, needs origin, size and root")
        origin, size_text, root_text, *extensions = lines
        if not size_text.isascii() or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
            raise CheckpointError(f"tree size {size_text!r} is not a canonical decimal number")
        try:
            root = base64.b64decode(root_text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as e:
            raise CheckpointError(f"root hash {root_text!r} is not valid standard base64") from e
        return cls(origin, int(size_text), root, tuple(extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: note.Note

    def __post_init__(self) -> None:
        if self.note.text != self.checkpoint.body():
            raise CheckpointError("note text is not this checkpoint's body")

    def encode(self) -> bytes:
        return self.note.encode()

    @classmethod
    def parse(cls, data: bytes) -> SignedCheckpoint:
        try:
            parsed = note.Note.parse(data)
        except note.NoteError as e:
            raise CheckpointError(f"not a signed note: {e}") from e
        return cls(Checkpoint.parse_body(parsed.text), parsed)

    def verify(self, name: str, public_key: bytes) -> None:
        """Checks the log's signature (Ed25519, or post-quantum in the quantum-resistant mode); other
        (unknown) signature lines are ignored."""
        try:
            note.verify_note(self.note, name, public_key)
        except note.NoteError as e:
            raise CheckpointError(f"checkpoint for {self.checkpoint.origin}: {e}") from e

    def cosign(self, name: str, signer: Signer, timestamp: int) -> SignedCheckpoint:
        """Adds a witness cosignature at `timestamp` (POSIX seconds, supplied by the caller)."""
        return SignedCheckpoint(
            self.checkpoint, self.note.with_signature(cosign(self.checkpoint, name, signer, timestamp))
        )

    def verify_cosignature(self, name: str, public_key: bytes) -> int:
        """Checks the witness's cosignature and returns the time it attests."""
        kid = note.key_id(name, note.SIG_TYPE_COSIGNATURE_V1, public_key)
        found = self.note.signatures_by(name, kid)
        if len(found) != 1:
            raise CheckpointError(
                f"{len(found)} cosignatures by witness {name} (key ID {kid.hex()}), expected one"
            )
        payload = found[0].payload
        if len(payload) != COSIGNATURE_PAYLOAD_SIZE:
            raise CheckpointError(
                f"cosignature by {name} is {len(payload)} bytes after the key ID, expected 72"
            )
        timestamp = int.from_bytes(payload[:8], "big")
        if not ED25519.verify(public_key, cosigned_message(self.checkpoint, timestamp), payload[8:]):
            raise CheckpointError(f"cosignature by witness {name} (key ID {kid.hex()}) does not verify")
        return timestamp


def sign(checkpoint: Checkpoint, name: str, signer: Signer) -> SignedCheckpoint:
    body = checkpoint.body()
    return SignedCheckpoint(checkpoint, note.Note(body, (note.sign_note(body, name, signer),)))


def cosigned_message(checkpoint: Checkpoint, timestamp: int) -> bytes:
    """`cosignature/v1\\ntime <t>\\n` + body: the header stops a cosignature passing as a log signature."""
    if not 0 <= timestamp <= MAX_UINT64:
        raise CheckpointError(f"cosignature time {timestamp} is not a uint64")
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint.body()}".encode()


def cosign(checkpoint: Checkpoint, name: str, signer: Signer, timestamp: int) -> note.NoteSignature:
    note.check_key_name(name)
    assert signer.algorithm == "ed25519", signer.algorithm
    kid = note.key_id(name, note.SIG_TYPE_COSIGNATURE_V1, signer.public_key)
    sig = signer.sign(cosigned_message(checkpoint, timestamp))
    return note.NoteSignature(name, kid, timestamp.to_bytes(8, "big") + sig)
