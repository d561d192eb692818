"""What a Byzantine replica legitimately held earlier, for behaviours that lie with real certificates.

The honest replica garbage-collects its stable-checkpoint proofs and prepared certificates as its
window moves; a liar keeps them, because old but genuine signatures are exactly what it can replay
inside a VIEW-CHANGE to make a stale or inconsistent claim look well-formed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trustchain.consensus.messages import Envelope, PreparedCertificate
from trustchain.consensus.replica_state import ReplicaInternals


@dataclass
class History:
    """Stable checkpoints (seq -> proof; seq 0 needs no proof) and prepared certificates
    ((seq, view) -> certificate), the most recent `limit` of each."""

    limit: int = 64
    checkpoints: dict[int, tuple[Envelope, ...]] = field(default_factory=lambda: {0: ()})
    certs: dict[tuple[int, int], PreparedCertificate] = field(default_factory=dict)

    def observe(self, held: ReplicaInternals) -> None:
        """Remember what the honest replica code holds now (`Behaviour.held`)."""
        h = held.checkpoints.low_watermark
        if h not in self.checkpoints and held.checkpoints.stable_proof:
            self.checkpoints[h] = held.checkpoints.stable_proof
            while len(self.checkpoints) > self.limit:
                del self.checkpoints[min(s for s in self.checkpoints if s > 0)]
        for seq, slot in held.slots.items():
            cert = slot.prepared_cert
            if cert is not None and (seq, slot.prepared_view) not in self.certs:
                self.certs[(seq, slot.prepared_view)] = cert
                while len(self.certs) > self.limit:
                    del self.certs[next(iter(self.certs))]

    def checkpoint_below(self, seq: int) -> tuple[int, tuple[Envelope, ...]]:
        """The most recent stable checkpoint held below `seq` (at worst the genesis, seq 0)."""
        older = [s for s in self.checkpoints if s < seq]
        s = max(older, default=0)
        return s, self.checkpoints.get(s, ())

    def latest_proof(self) -> tuple[int, tuple[Envelope, ...]] | None:
        """The highest stable checkpoint with a non-empty proof, if any."""
        held = [s for s, proof in self.checkpoints.items() if proof]
        if not held:
            return None
        s = max(held)
        return s, self.checkpoints[s]

    def certs_at_or_below(self, seq: int) -> list[tuple[int, PreparedCertificate]]:
        return [(s, c) for (s, _), c in sorted(self.certs.items()) if s <= seq]

    def certs_above(self, seq: int) -> list[tuple[int, PreparedCertificate]]:
        return [(s, c) for (s, _), c in sorted(self.certs.items()) if s > seq]
