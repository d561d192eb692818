"""What validators hand to observers, and how any holder proves it: committed batches with their commit
certificates, stable checkpoints with their quorum proofs, and catching up from any peer.

Nothing here is signed by the node that sends it: a committed batch carries 2f+1 validators' commit
signatures, a checkpoint a quorum of validators' checkpoint signatures, so an observer can take them
from any peer, validator or observer, honest or not, and forward them unchanged. A packet is a tag
byte, the sequence number it claims (so a receiver drops a copy it already has without decoding it)
and the canonical encoding of the message; the claim is checked against the decoded message.

`CertificateCache` verifies a packet once and remembers the outcome by the packet's digest: a batch
reaching a node from three neighbours, or many observers simulated in one process, costs one
verification. `CertifiedLog` is what a node serves from: the last stable checkpoint (snapshot and
proof) and the committed batches above it.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from trustchain.consensus.certificates import (
    InvalidMessage,
    SignatureChecker,
    check_checkpoint_proof,
    check_commit_certificate,
)
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.messages import CommittedEntry, Envelope, PrePrepare, digest
from trustchain.crypto.signing import Verifier
from trustchain.encoding import DecodeError, decode, encode

__all__ = [
    "FEED_BATCH",
    "FEED_CHECKPOINT",
    "FEED_PULL",
    "FEED_PULL_REPLY",
    "CatchUpReply",
    "CatchUpRequest",
    "CertificateCache",
    "CertifiedLog",
    "CheckpointCertificate",
    "VerifiedBatch",
    "feed_header",
    "is_feed_packet",
    "pack_feed",
]

FEED_BATCH = 0x42  # a CommittedEntry
FEED_CHECKPOINT = 0x4B  # a CheckpointCertificate
FEED_PULL = 0x50  # a CatchUpRequest
FEED_PULL_REPLY = 0x52  # a CatchUpReply
_TAGS = frozenset({FEED_BATCH, FEED_CHECKPOINT, FEED_PULL, FEED_PULL_REPLY})
_HEADER = struct.Struct(">BQ")


@dataclass(frozen=True)
class CheckpointCertificate:
    """A stable checkpoint: a quorum of validators' CHECKPOINT envelopes for `seq`, one state digest."""

    seq: int
    proof: tuple[Envelope, ...]


@dataclass(frozen=True)
class CatchUpRequest:
    """Everything after `last_executed`, and a newer stable checkpoint than `stable_seq`."""

    last_executed: int
    stable_seq: int


@dataclass(frozen=True)
class CatchUpReply:
    """A stable checkpoint (its snapshot only when the requester is below it) and committed-batch
    packets after it, each to be verified on its own."""

    checkpoint_seq: int
    snapshot: bytes
    proof: tuple[Envelope, ...]
    batches: tuple[bytes, ...]


def pack_feed(tag: int, seq: int, message: object) -> bytes:
    assert tag in _TAGS
    return _HEADER.pack(tag, seq) + encode(message)


def is_feed_packet(data: bytes) -> bool:
    return len(data) >= _HEADER.size and data[0] in _TAGS


def feed_header(data: bytes) -> tuple[int, int]:
    """(tag, claimed sequence number), read without decoding; raises DecodeError if too short."""
    if len(data) < _HEADER.size or data[0] not in _TAGS:
        raise DecodeError("feed packet: short or unknown tag")
    tag, seq = _HEADER.unpack_from(data)
    return int(tag), int(seq)


def _open(data: bytes, tag: int, cls: type) -> object:
    got, _ = feed_header(data)
    if got != tag:
        raise InvalidMessage("wrong_kind", f"feed tag 0x{got:02x}, expected 0x{tag:02x}")
    try:
        return decode(cls, data[_HEADER.size:])
    except DecodeError as exc:
        raise InvalidMessage("malformed", str(exc)) from None


@dataclass(frozen=True)
class VerifiedBatch:
    """A committed batch whose certificate checked out (shared, read-only)."""

    packet: bytes
    entry: CommittedEntry
    pre_prepare: PrePrepare


_Outcome = VerifiedBatch | tuple[int, bytes, tuple[Envelope, ...]] | InvalidMessage


class CertificateCache:
    """Verifies feed packets against the validator set, remembering each outcome (accepted or the
    reason for refusing) by packet digest in a bounded LRU."""

    def __init__(self, config: ClusterConfig, verifier: Verifier, size: int = 4096) -> None:
        self.config = config
        self.checker = SignatureChecker(config, verifier, cache_size=max(size, 8 * config.n))
        self._seen: OrderedDict[bytes, _Outcome] = OrderedDict()
        self._size = size
        self.checked = 0

    def _lookup(self, key: bytes) -> _Outcome | None:
        hit = self._seen.get(key)
        if hit is not None:
            self._seen.move_to_end(key)
        return hit

    def _store(self, key: bytes, value: _Outcome) -> None:
        self._seen[key] = value
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)

    def batch(self, packet: bytes) -> VerifiedBatch:
        """The verified batch in `packet`, or InvalidMessage (a wrong claimed sequence number too)."""
        key = digest(packet)
        hit = self._lookup(key)
        if hit is None:
            self.checked += 1
            try:
                entry = _open(packet, FEED_BATCH, CommittedEntry)
                assert isinstance(entry, CommittedEntry)
                pp = check_commit_certificate(self.checker, entry)
                if pp.seq != feed_header(packet)[1]:
                    raise InvalidMessage("seq_mismatch", f"packet claims {feed_header(packet)[1]}, carries {pp.seq}")
                hit = VerifiedBatch(packet, entry, pp)
            except InvalidMessage as exc:
                hit = exc
            self._store(key, hit)
        if isinstance(hit, InvalidMessage):
            raise hit
        assert isinstance(hit, VerifiedBatch)
        return hit

    def checkpoint(self, packet: bytes) -> tuple[int, bytes, tuple[Envelope, ...]]:
        """(seq, state digest, proof) of a checkpoint packet, or InvalidMessage."""
        key = digest(packet)
        hit = self._lookup(key)
        if hit is None:
            self.checked += 1
            try:
                cert = _open(packet, FEED_CHECKPOINT, CheckpointCertificate)
                assert isinstance(cert, CheckpointCertificate)
                if cert.seq != feed_header(packet)[1] or cert.seq == 0:
                    raise InvalidMessage("seq_mismatch", f"checkpoint packet claims {feed_header(packet)[1]}")
                hit = (cert.seq, check_checkpoint_proof(self.checker, cert.proof, cert.seq, None), cert.proof)
            except InvalidMessage as exc:
                hit = exc
            self._store(key, hit)
        if isinstance(hit, InvalidMessage):
            raise hit
        assert isinstance(hit, tuple)
        return hit

    def proof(self, seq: int, proof: tuple[Envelope, ...], state_digest: bytes) -> None:
        """A checkpoint proof for `seq` over exactly `state_digest` (raises InvalidMessage)."""
        check_checkpoint_proof(self.checker, proof, seq, state_digest)


class CertifiedLog:
    """What a node serves to peers catching up: its last stable checkpoint and the verified batch
    packets above it, at most `max_entries` of them per reply."""

    def __init__(self, max_entries: int = 64) -> None:
        self.stable_seq = 0
        self.stable_snapshot = b""
        self.stable_proof: tuple[Envelope, ...] = ()
        self.stable_packet = b""  # the checkpoint certificate packet, forwarded as is
        self.batches: dict[int, bytes] = {}
        self.last_executed = 0
        self.max_entries = max_entries

    def executed(self, seq: int, packet: bytes) -> None:
        self.batches[seq] = packet
        self.last_executed = max(self.last_executed, seq)

    def restored(self, seq: int) -> None:
        self.last_executed = max(self.last_executed, seq)

    def stable(self, seq: int, snapshot: bytes, proof: tuple[Envelope, ...]) -> bytes:
        """Adopt a stable checkpoint, drop the batches at or below it; returns its certificate packet."""
        assert seq > self.stable_seq
        self.stable_seq, self.stable_snapshot, self.stable_proof = seq, snapshot, proof
        self.stable_packet = pack_feed(FEED_CHECKPOINT, seq, CheckpointCertificate(seq, proof))
        for s in [s for s in self.batches if s <= seq]:
            del self.batches[s]
        return self.stable_packet

    def answer(self, req: CatchUpRequest) -> CatchUpReply | None:
        """The reply to `req`, or None when the requester lacks nothing we hold."""
        newer_checkpoint = req.stable_seq < self.stable_seq
        if req.last_executed >= self.last_executed and not newer_checkpoint:
            return None
        start, snapshot = req.last_executed, b""
        if req.last_executed < self.stable_seq and req.last_executed + 1 not in self.batches:
            start, snapshot = self.stable_seq, self.stable_snapshot
        batches = tuple(self.batches[s] for s in range(start + 1, min(self.last_executed, start + self.max_entries) + 1)
                        if s in self.batches)
        if newer_checkpoint or snapshot:
            return CatchUpReply(self.stable_seq, snapshot, self.stable_proof, batches)
        return CatchUpReply(0, b"", (), batches) if batches else None
