"""PBFT wire messages: canonical bodies inside signed envelopes.

Replica-to-replica messages travel as an `Envelope` signed by the sender over a domain-separated
encoding; certificates (prepared, commit, checkpoint, view-change) are tuples of such envelopes, so
any holder can re-verify them without trusting the replica that forwarded them. Client requests
carry the client's own signature, the client being identified by its Ed25519 public key.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import blake3

from trustchain.crypto.signing import Signer, Verifier
from trustchain.encoding import DecodeError, decode, encode

__all__ = [
    "KIND_TYPES",
    "PROTOCOL_VERSION",
    "TYPE_KINDS",
    "Checkpoint",
    "Commit",
    "CommittedEntry",
    "Envelope",
    "Kind",
    "NewView",
    "PrePrepare",
    "Prepare",
    "PreparedCertificate",
    "Reply",
    "Request",
    "StateReply",
    "StateRequest",
    "Status",
    "ViewChange",
    "digest",
    "pack",
    "peek_kind",
    "seal",
    "unpack",
]

PROTOCOL_VERSION = 1
_ENVELOPE_DOMAIN = b"trustchain/pbft/envelope/v1\x00"
# Envelopes of a later configuration (epoch > 0) sign their epoch too, under their own domain: a vote
# signed for one validator set can never be replayed as a vote of the next, even by the same key at
# the same index. Epoch 0 keeps the original bytes, so records persisted before stay valid.
_EPOCH_ENVELOPE_DOMAIN = b"trustchain/pbft/envelope/v1/epoch\x00"
_REQUEST_DOMAIN = b"trustchain/pbft/request/v1\x00"


def digest(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


class Kind(IntEnum):
    PRE_PREPARE = 1
    PREPARE = 2
    COMMIT = 3
    CHECKPOINT = 4
    VIEW_CHANGE = 5
    NEW_VIEW = 6
    STATE_REQUEST = 7
    STATE_REPLY = 8
    REPLY = 9
    STATUS = 10


@dataclass(frozen=True)
class Request:
    """A client operation. `timestamp` is the client's own monotonic request number, as in PBFT,
    which gives exactly-once execution per client."""

    client: bytes
    timestamp: int
    operation: bytes
    signature: bytes

    def signing_bytes(self) -> bytes:
        return _REQUEST_DOMAIN + encode(_RequestBody(self.client, self.timestamp, self.operation))

    @property
    def digest(self) -> bytes:
        return digest(encode(self))

    @classmethod
    def create(cls, signer: Signer, timestamp: int, operation: bytes) -> Request:
        body = _RequestBody(signer.public_key, timestamp, operation)
        return cls(signer.public_key, timestamp, operation, signer.sign(_REQUEST_DOMAIN + encode(body)))

    def verify(self, verifier: Verifier) -> bool:
        return verifier.verify(self.client, self.signing_bytes(), self.signature)


@dataclass(frozen=True)
class _RequestBody:
    client: bytes
    timestamp: int
    operation: bytes


@dataclass(frozen=True)
class Envelope:
    """A signed replica message. `body` is the canonical encoding of the message of type `kind`."""

    version: int
    kind: int
    sender: int
    body: bytes
    signature: bytes
    epoch: int = 0  # the configuration (validator set) the sender signed for; `sender` indexes its list

    def signing_bytes(self) -> bytes:
        if self.epoch == 0:
            return _ENVELOPE_DOMAIN + struct.pack(">QQQ", self.version, self.kind, self.sender) + self.body
        return (_EPOCH_ENVELOPE_DOMAIN + struct.pack(">QQQQ", self.version, self.kind, self.sender, self.epoch)
                + self.body)

    @property
    def digest(self) -> bytes:
        return digest(self.signing_bytes())

    def open(self) -> Any:
        """Decode the body into its message type (raises DecodeError for an unknown kind)."""
        try:
            cls = KIND_TYPES[Kind(self.kind)]
        except ValueError:
            raise DecodeError(f"Envelope.kind: unknown message kind {self.kind}") from None
        return decode(cls, self.body)


def seal(signer: Signer, sender: int, message: Any, epoch: int = 0) -> Envelope:
    kind = TYPE_KINDS[type(message)]
    body = encode(message)
    unsigned = Envelope(PROTOCOL_VERSION, int(kind), sender, body, b"", epoch)
    return Envelope(PROTOCOL_VERSION, int(kind), sender, body, signer.sign(unsigned.signing_bytes()), epoch)


@dataclass(frozen=True)
class PrePrepare:
    """The primary's proposal of `batch` at `seq` in `view`. `timestamp_us` is the proposed consensus
    time; it is covered by `batch_digest`, so prepares and commits agree on it too."""

    view: int
    seq: int
    batch_digest: bytes
    timestamp_us: int
    batch: tuple[Request, ...]

    @staticmethod
    def compute_digest(timestamp_us: int, batch: tuple[Request, ...]) -> bytes:
        return digest(struct.pack(">Q", timestamp_us) + b"".join(r.digest for r in batch))


@dataclass(frozen=True)
class Prepare:
    view: int
    seq: int
    batch_digest: bytes


@dataclass(frozen=True)
class Commit:
    view: int
    seq: int
    batch_digest: bytes


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    state_digest: bytes


@dataclass(frozen=True)
class PreparedCertificate:
    """A pre-prepare plus 2f matching prepares from distinct backups."""

    pre_prepare: Envelope
    prepares: tuple[Envelope, ...]


@dataclass(frozen=True)
class ViewChange:
    new_view: int
    stable_seq: int
    checkpoint_proof: tuple[Envelope, ...]
    prepared: tuple[PreparedCertificate, ...]


@dataclass(frozen=True)
class NewView:
    view: int
    view_changes: tuple[Envelope, ...]
    pre_prepares: tuple[Envelope, ...]


@dataclass(frozen=True)
class StateRequest:
    """Ask for everything after `last_executed`: a stable checkpoint (if newer than `low_watermark`;
    its snapshot only if newer than `last_executed`) and committed entries."""

    last_executed: int
    low_watermark: int
    view: int
    view_changing: bool


@dataclass(frozen=True)
class Status:
    """How far the sender got, sent to a peer when a link to it comes up: a peer that restarted or was
    cut off learns that it is behind without waiting for new traffic, and starts state transfer."""

    view: int
    last_executed: int
    low_watermark: int
    normal: bool  # the sender works in `view` (not changing view)


@dataclass(frozen=True)
class CommittedEntry:
    """A pre-prepare with 2f+1 matching commits: proof that the batch committed at that sequence."""

    pre_prepare: Envelope
    commits: tuple[Envelope, ...]


@dataclass(frozen=True)
class StateReply:
    checkpoint_seq: int
    snapshot: bytes
    checkpoint_proof: tuple[Envelope, ...]
    entries: tuple[CommittedEntry, ...]
    new_view: tuple[Envelope, ...]  # the responder's latest NEW-VIEW (0 or 1), to rejoin a later view


@dataclass(frozen=True)
class Reply:
    view: int
    client: bytes
    timestamp: int
    replica: int
    result: bytes


KIND_TYPES: dict[Kind, type] = {
    Kind.PRE_PREPARE: PrePrepare,
    Kind.PREPARE: Prepare,
    Kind.COMMIT: Commit,
    Kind.CHECKPOINT: Checkpoint,
    Kind.VIEW_CHANGE: ViewChange,
    Kind.NEW_VIEW: NewView,
    Kind.STATE_REQUEST: StateRequest,
    Kind.STATE_REPLY: StateReply,
    Kind.REPLY: Reply,
    Kind.STATUS: Status,
}
TYPE_KINDS: dict[type, Kind] = {v: k for k, v in KIND_TYPES.items()}


# --- the wire: one packet is either a client request or a signed replica envelope -------------------

_PACKET_REQUEST = 0x51
_PACKET_ENVELOPE = 0x45


def pack(payload: Request | Envelope) -> bytes:
    tag = _PACKET_REQUEST if isinstance(payload, Request) else _PACKET_ENVELOPE
    return bytes([tag]) + encode(payload)


def peek_kind(data: bytes) -> str:
    """The message type name, read from the fixed header without decoding (for metrics and traces)."""
    if data[:1] == bytes([_PACKET_REQUEST]):
        return "request"
    if data[:1] == bytes([_PACKET_ENVELOPE]) and len(data) >= 17:
        try:
            return Kind(int.from_bytes(data[9:17], "big")).name.lower()
        except ValueError:
            return "unknown"
    return "malformed"


def unpack(data: bytes) -> Request | Envelope:
    """Parse wire bytes; raises DecodeError for anything malformed."""
    if not data:
        raise DecodeError("packet: empty")
    if data[0] == _PACKET_REQUEST:
        return decode(Request, data[1:])
    if data[0] == _PACKET_ENVELOPE:
        env = decode(Envelope, data[1:])
        if env.version != PROTOCOL_VERSION:
            raise DecodeError(f"Envelope.version: unsupported protocol version {env.version}")
        return env
    raise DecodeError(f"packet: unknown type byte 0x{data[0]:02x}")
