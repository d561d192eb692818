"""Auditor: holds a log to its signed word. Checks every pair of checkpoints one validator key signed for
consistency (with proofs from a log view), checks each SCT it is given is included within the maximum
merge delay, and turns a key's conflicting checkpoints into self-contained `SplitViewEvidence`.

The log view is whatever serves proofs (a local replica, an HTTP client's cache); it is untrusted: a
proof that fits neither checkpoint blames nobody, so such pairs are reported as disagreeing with the
view and evidence waits for a pair that proves it. Checkpoints of one origin from different validators
are cross-checked through the view (a root the view contradicts is reported, not convicted).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from trustchain.ct import merkle
from trustchain.ct.checkpoint import CheckpointError, SignedCheckpoint
from trustchain.ct.evidence import EvidenceError, SplitViewEvidence, detect_split_view
from trustchain.ct.validators import ValidatorSet

__all__ = [
    "BAD_CHECKPOINT", "DISAGREES_WITH_LOG", "MMD_VIOLATION", "SCT_INCLUDED", "SPLIT_VIEW", "AuditEvent", "Auditor",
    "LogView",
]

SPLIT_VIEW = "split_view"
DISAGREES_WITH_LOG = "disagrees_with_log"
BAD_CHECKPOINT = "bad_checkpoint"
SCT_INCLUDED = "sct_included"
MMD_VIOLATION = "mmd_violation"


class LogView(Protocol):
    """The proof-serving part of a log API (CTLog satisfies it); errors are ValueError subclasses."""

    @property
    def size(self) -> int: ...

    def consistency_proof(self, first: int, second: int) -> list[bytes]: ...

    def inclusion_proof_by_leaf_hash(self, leaf_hash_: bytes, tree_size: int) -> tuple[int, list[bytes]]: ...

    def root_at(self, size: int) -> bytes: ...


@dataclass(frozen=True)
class AuditEvent:
    kind: str
    key_name: str = ""
    detail: str = ""
    size: int = 0
    at_ms: int = 0
    leaf_hash: bytes = b""
    evidence: SplitViewEvidence | None = None


@dataclass
class _PendingSCT:
    leaf_hash: bytes
    timestamp_ms: int
    source: str


@dataclass
class _KeyHistory:
    checkpoints: dict[tuple[int, bytes], SignedCheckpoint] = field(default_factory=dict)
    undecided: set[tuple[tuple[int, bytes], tuple[int, bytes]]] = field(default_factory=set)


class Auditor:
    def __init__(
        self, origin: str, validators: ValidatorSet, log: LogView, mmd_ms: int, *, max_per_key: int = 32
    ) -> None:
        assert mmd_ms >= 0 and max_per_key >= 2
        self.origin = origin
        self.validators = validators
        self.log = log
        self.mmd_ms = mmd_ms
        self.max_per_key = max_per_key
        self.evidence: dict[str, SplitViewEvidence] = {}  # key name -> first proof of its split view
        self.events: list[AuditEvent] = []  # the stream, oldest first; drain() hands it out
        self.checked_pairs = 0
        self._keys: dict[str, _KeyHistory] = {}
        self._disagreeing: set[tuple[str, int, bytes]] = set()
        self._pending: list[_PendingSCT] = []
        self._largest: dict[str, SignedCheckpoint] = {}

    # ------------------------------------------------------------------ checkpoints

    def observe(self, data: bytes, now_ms: int) -> list[AuditEvent]:
        """Takes one signed checkpoint note; returns (and records) the events it caused."""
        out: list[AuditEvent] = []
        try:
            signed = SignedCheckpoint.parse(data)
        except CheckpointError as exc:
            return self._emit(out, AuditEvent(BAD_CHECKPOINT, detail=str(exc), at_ms=now_ms))
        cp = signed.checkpoint
        if cp.origin != self.origin:
            return self._emit(out, AuditEvent(BAD_CHECKPOINT, detail=f"origin {cp.origin!r} is not "
                                              f"{self.origin!r}", size=cp.size, at_ms=now_ms))
        signers = self.validators.signers_of(signed)
        if not signers:
            return self._emit(out, AuditEvent(BAD_CHECKPOINT, detail="no valid validator signature",
                                              size=cp.size, at_ms=now_ms))
        ident = (cp.size, cp.root_hash)
        for key in signers:
            hist = self._keys.setdefault(key, _KeyHistory())
            if ident in hist.checkpoints:
                continue
            for other in list(hist.checkpoints):
                self._compare(key, hist, other, ident, signed, now_ms, out)
            hist.checkpoints[ident] = signed
            self._evict(hist)
            self._check_against_view(key, signed, now_ms, out)
            best = self._largest.get(key)
            if best is None or best.checkpoint.size < cp.size:
                self._largest[key] = signed
        self.retry(now_ms, out)
        return out

    def retry(self, now_ms: int, out: list[AuditEvent] | None = None) -> list[AuditEvent]:
        """Re-checks pairs the log view could not decide before (it may have grown since)."""
        out = [] if out is None else out
        for key, hist in self._keys.items():
            for a, b in sorted(hist.undecided):
                if a in hist.checkpoints and b in hist.checkpoints:
                    hist.undecided.discard((a, b))
                    self._compare(key, hist, a, b, hist.checkpoints[b], now_ms, out)
                else:
                    hist.undecided.discard((a, b))
        return out

    def _compare(self, key: str, hist: _KeyHistory, a: tuple[int, bytes], b: tuple[int, bytes],
                 signed_b: SignedCheckpoint, now_ms: int, out: list[AuditEvent]) -> None:
        if key in self.evidence:
            return  # already convicted: nothing more to prove
        signed_a = hist.checkpoints[a]
        small, large = (a, b) if a[0] <= b[0] else (b, a)
        proof: list[bytes] | None = None
        prefix: bytes | None = None
        if small[0] != large[0] and small[0] > 0:
            if self.log.size < large[0]:
                hist.undecided.add((a, b))  # the view has not caught up yet
                return
            try:
                proof = self.log.consistency_proof(small[0], large[0])
                if merkle.is_power_of_two(small[0]):
                    prefix = self.log.root_at(small[0])
            except ValueError:
                hist.undecided.add((a, b))
                return
        elif small[0] == 0:
            return
        self.checked_pairs += 1
        if proof is not None:
            try:  # the common case, checked without re-verifying signatures
                merkle.verify_consistency(small[0], large[0], small[1], large[1], proof)
                return
            except merkle.ProofError:
                pass
        validator = self.validators.get(key)
        assert validator is not None
        try:
            ev = detect_split_view(signed_a, signed_b, key, validator.public_key, proof, prefix)
        except EvidenceError:
            return  # the view's proof fits neither root: the view, not the key, is in question
        if ev is not None:
            self.evidence[key] = ev
            self._emit(out, AuditEvent(SPLIT_VIEW, key, f"key {key} signed conflicting checkpoints at sizes "
                                       f"{small[0]} and {large[0]}", large[0], now_ms, evidence=ev))

    def _check_against_view(self, key: str, signed: SignedCheckpoint, now_ms: int, out: list[AuditEvent]) -> None:
        cp = signed.checkpoint
        if cp.size > self.log.size:
            return
        if self.log.root_at(cp.size) != cp.root_hash and (key, cp.size, cp.root_hash) not in self._disagreeing:
            self._disagreeing.add((key, cp.size, cp.root_hash))
            self._emit(out, AuditEvent(DISAGREES_WITH_LOG, key, f"checkpoint by {key} at size {cp.size} has a "
                                       "root the log view does not", cp.size, now_ms))

    def _evict(self, hist: _KeyHistory) -> None:
        """Bounded memory: forget the smallest checkpoints not waiting on a decision."""
        waiting = {x for pair in hist.undecided for x in pair}
        for ident in sorted(hist.checkpoints):
            if len(hist.checkpoints) <= self.max_per_key:
                break
            if ident not in waiting:
                del hist.checkpoints[ident]

    def accept_evidence(self, ev: SplitViewEvidence, now_ms: int) -> list[AuditEvent]:
        """Evidence learned from elsewhere (gossip): recorded only if it verifies and names a validator."""
        v = self.validators.get(ev.key_name)
        if v is None or v.public_key != ev.public_key or ev.key_name in self.evidence:
            return []
        try:
            ev.verify()
        except EvidenceError:
            return []
        self.evidence[ev.key_name] = ev
        return self._emit([], AuditEvent(SPLIT_VIEW, ev.key_name, f"key {ev.key_name} convicted by gossiped "
                                         "evidence", at_ms=now_ms, evidence=ev))

    def is_consistent(self, signed: SignedCheckpoint) -> bool:
        """Whether everything this auditor saw from the signers of `signed` agrees with it so far."""
        cp = signed.checkpoint
        signers = self.validators.signers_of(signed)
        if not signers or any(k in self.evidence for k in signers):
            return False
        if any((k, cp.size, cp.root_hash) in self._disagreeing for k in signers):
            return False
        ident = (cp.size, cp.root_hash)
        return not any(ident in pair for k in signers for pair in self._keys.get(k, _KeyHistory()).undecided)

    # ------------------------------------------------------------------ SCTs and the MMD

    def expect_inclusion(self, leaf_hash: bytes, timestamp_ms: int, source: str = "") -> None:
        """An SCT promised this leaf at `timestamp_ms`: it must be in a signed tree by timestamp + MMD."""
        assert len(leaf_hash) == merkle.HASH_SIZE
        self._pending.append(_PendingSCT(leaf_hash, timestamp_ms, source))

    @property
    def pending_scts(self) -> int:
        return len(self._pending)

    def tick(self, now_ms: int) -> list[AuditEvent]:
        """Checks pending SCTs against the largest checkpoints seen from unconvicted validators."""
        out: list[AuditEvent] = []
        candidates = sorted(
            (s for k, s in self._largest.items() if k not in self.evidence),
            key=lambda s: -s.checkpoint.size,
        )[:3]
        still: list[_PendingSCT] = []
        for p in self._pending:
            if self._included(p, candidates):
                self._emit(out, AuditEvent(SCT_INCLUDED, p.source, f"included {now_ms - p.timestamp_ms} ms after "
                                           "its SCT timestamp", at_ms=now_ms, leaf_hash=p.leaf_hash))
            elif now_ms > p.timestamp_ms + self.mmd_ms:
                self._emit(out, AuditEvent(MMD_VIOLATION, p.source, f"not in any signed tree {self.mmd_ms} ms "
                                           "after its SCT timestamp", at_ms=now_ms, leaf_hash=p.leaf_hash))
            else:
                still.append(p)
        self._pending = still
        return out

    def _included(self, p: _PendingSCT, checkpoints: Iterable[SignedCheckpoint]) -> bool:
        for signed in checkpoints:
            cp = signed.checkpoint
            if cp.size == 0 or cp.size > self.log.size:
                continue
            try:
                index, path = self.log.inclusion_proof_by_leaf_hash(p.leaf_hash, cp.size)
                merkle.verify_inclusion(index, cp.size, p.leaf_hash, path, cp.root_hash)
            except ValueError:
                continue
            return True
        return False

    # ------------------------------------------------------------------ the stream

    def _emit(self, out: list[AuditEvent], event: AuditEvent) -> list[AuditEvent]:
        out.append(event)
        self.events.append(event)
        return out

    def drain(self) -> list[AuditEvent]:
        events, self.events = self.events, []
        return events
