"""Checkpoint gossip between witnesses, sans-I/O: bytes in, effects out; the caller moves the bytes.

A split view only shows when two parties compare what the log told them. Each peer feeds checkpoints it
fetched or received into its `Auditor`, cosigns (C2SP tlog-cosignature, its own key and a caller-given
time) those consistent with everything it has seen from their signers, forwards what is new, and turns
a conflict into `SplitViewEvidence` that it forwards too, so every peer can convict the key without
trusting the peer that found it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from trustchain.crypto.signing import Signer
from trustchain.ct.auditor import SPLIT_VIEW, AuditEvent, Auditor
from trustchain.ct.checkpoint import CheckpointError, SignedCheckpoint
from trustchain.ct.evidence import SplitViewEvidence
from trustchain.encoding import DecodeError, decode, encode

__all__ = [
    "KIND_CHECKPOINT", "KIND_EVIDENCE", "Alert", "Cosigned", "EvidenceFound", "Forward", "GossipEffect",
    "GossipMessage", "GossipPeer", "checkpoint_message", "evidence_message",
]

KIND_CHECKPOINT = "checkpoint"
KIND_EVIDENCE = "evidence"


@dataclass(frozen=True)
class GossipMessage:
    kind: str
    payload: bytes  # a signed checkpoint note, or encode(SplitViewEvidence)


@dataclass(frozen=True)
class Forward:
    """Send `data` to other peers (the caller picks which and how many)."""

    data: bytes


@dataclass(frozen=True)
class Cosigned:
    """This peer's cosignature added to a checkpoint it found consistent."""

    note: bytes
    size: int


@dataclass(frozen=True)
class EvidenceFound:
    evidence: SplitViewEvidence


@dataclass(frozen=True)
class Alert:
    event: AuditEvent


GossipEffect = Forward | Cosigned | EvidenceFound | Alert


def checkpoint_message(note: bytes) -> bytes:
    return encode(GossipMessage(KIND_CHECKPOINT, note))


def evidence_message(ev: SplitViewEvidence) -> bytes:
    return encode(GossipMessage(KIND_EVIDENCE, encode(ev)))


class GossipPeer:
    def __init__(self, name: str, signer: Signer, auditor: Auditor, *, max_seen: int = 100_000) -> None:
        self.name = name
        self.signer = signer
        self.auditor = auditor
        self.cosigned = 0
        self.rejected = 0
        self._seen: dict[bytes, None] = {}  # insertion-ordered, bounded
        self._max_seen = max_seen

    def publish(self, note: bytes, now_ms: int) -> list[GossipEffect]:
        """A checkpoint this peer fetched from a validator itself."""
        return self.receive(checkpoint_message(note), now_ms)

    def receive(self, data: bytes, now_ms: int) -> list[GossipEffect]:
        digest = hashlib.sha256(data).digest()
        if digest in self._seen:
            return []
        self._remember(digest)
        try:
            msg = decode(GossipMessage, data)
        except DecodeError:
            self.rejected += 1
            return []
        if msg.kind == KIND_CHECKPOINT:
            return self._on_checkpoint(msg.payload, data, now_ms)
        if msg.kind == KIND_EVIDENCE:
            return self._on_evidence(msg.payload, data, now_ms)
        self.rejected += 1
        return []

    def _on_checkpoint(self, note: bytes, data: bytes, now_ms: int) -> list[GossipEffect]:
        events = self.auditor.observe(note, now_ms)
        effects: list[GossipEffect] = [Alert(e) for e in events]
        for e in events:
            if e.kind == SPLIT_VIEW and e.evidence is not None:
                effects.append(EvidenceFound(e.evidence))
                effects.append(Forward(evidence_message(e.evidence)))
        try:
            signed = SignedCheckpoint.parse(note)
        except CheckpointError:
            self.rejected += 1
            return effects
        if not self.auditor.validators.signers_of(signed):
            self.rejected += 1
            return effects  # nobody we know signed it: not worth anyone's bandwidth
        effects.append(Forward(data))
        if self.auditor.is_consistent(signed):
            cosigned = signed.cosign(self.name, self.signer, now_ms // 1000)
            self.cosigned += 1
            effects.append(Cosigned(cosigned.encode(), signed.checkpoint.size))
        return effects

    def _on_evidence(self, payload: bytes, data: bytes, now_ms: int) -> list[GossipEffect]:
        try:
            ev = decode(SplitViewEvidence, payload)
        except DecodeError:
            self.rejected += 1
            return []
        known = ev.key_name in self.auditor.evidence
        events = self.auditor.accept_evidence(ev, now_ms)
        if not events:
            if not known:
                self.rejected += 1  # does not verify, or names no validator of ours
            return []
        return [Alert(events[0]), EvidenceFound(ev), Forward(data)]

    def _remember(self, digest: bytes) -> None:
        self._seen[digest] = None
        if len(self._seen) > self._max_seen:
            del self._seen[next(iter(self._seen))]
