"""Split-view evidence: two checkpoints, both signed by one log key for one origin, that no single
append-only log could have produced.

Equal sizes with different roots is self-contained proof. For different sizes, a bad consistency proof
is no proof at all (anyone can write one), so the evidence instead carries a consistency path that *does*
reproduce the larger root but yields a different root for the smaller size: by collision resistance
that path is the larger tree's real history, so the smaller checkpoint cannot be one of its prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.ct import merkle, note
from trustchain.ct.checkpoint import CheckpointError, SignedCheckpoint
from trustchain.errors import TrustChainError

__all__ = ["EvidenceError", "SplitViewEvidence", "detect_split_view"]


class EvidenceError(TrustChainError, ValueError):
    """The material does not prove a split view; the message says which part fails."""


@dataclass(frozen=True)
class SplitViewEvidence:
    """Self-contained and re-checkable by anyone holding nothing but this object."""

    key_name: str
    public_key: bytes
    first: bytes  # signed checkpoint note, the smaller (or equal) tree size
    second: bytes
    consistency_path: tuple[bytes, ...] = ()  # RFC 9162 path with the seed always included

    @property
    def key_id(self) -> bytes:
        return note.key_id(self.key_name, note.SIG_TYPE_ED25519, self.public_key)

    @property
    def verifier_key(self) -> str:
        return note.verifier_key(self.key_name, self.public_key)

    def verify(self) -> None:
        """Raises EvidenceError unless both signatures hold and the checkpoints truly conflict."""
        a, b = self._open("first", self.first), self._open("second", self.second)
        ca, cb = a.checkpoint, b.checkpoint
        if ca.origin != cb.origin:
            raise EvidenceError(
                f"origins differ ({ca.origin!r} vs {cb.origin!r}): two logs, not a split view"
            )
        if ca.size > cb.size:
            raise EvidenceError("first checkpoint must not be larger than the second")
        if ca.size == cb.size:
            if self.consistency_path:
                raise EvidenceError("equal sizes need no consistency path")
            if ca.root_hash == cb.root_hash:
                raise EvidenceError(f"both checkpoints commit to the same root at size {ca.size}")
            return
        if ca.size == 0:
            raise EvidenceError("every tree extends the empty tree: no conflict is possible from size 0")
        try:
            old, new = merkle.consistency_roots(ca.size, cb.size, self.consistency_path)
        except merkle.ProofError as e:
            raise EvidenceError(f"consistency path is malformed: {e}") from e
        if new != cb.root_hash:
            raise EvidenceError(f"consistency path does not reproduce the signed root at size {cb.size}")
        if old == ca.root_hash:
            raise EvidenceError(f"the size-{ca.size} checkpoint is a prefix of the size-{cb.size} one")

    def _open(self, which: str, data: bytes) -> SignedCheckpoint:
        try:
            signed = SignedCheckpoint.parse(data)
            signed.verify(self.key_name, self.public_key)
        except CheckpointError as e:
            raise EvidenceError(f"{which} checkpoint: {e}") from e
        return signed


def detect_split_view(
    a: SignedCheckpoint,
    b: SignedCheckpoint,
    key_name: str,
    public_key: bytes,
    consistency_proof: list[bytes] | None = None,
    prefix_hash: bytes | None = None,
) -> SplitViewEvidence | None:
    """None when `a` and `b` are consistent; evidence when they conflict; EvidenceError when the
    material cannot decide (e.g. a proof that matches neither root, which blames nobody).

    For different sizes pass the log's RFC consistency proof between them. When the smaller size is a
    power of two that proof omits the prefix subtree, so `prefix_hash` (that subtree's hash in the larger
    tree, e.g. read from its tiles) must be supplied for evidence to be possible.
    """
    for which, signed in (("first", a), ("second", b)):
        try:
            signed.verify(key_name, public_key)
        except CheckpointError as e:
            raise EvidenceError(f"{which} checkpoint: {e}") from e
    small, large = (a, b) if a.checkpoint.size <= b.checkpoint.size else (b, a)
    cs, cl = small.checkpoint, large.checkpoint
    path: tuple[bytes, ...] = ()
    if cs.size == cl.size:
        if cs.root_hash == cl.root_hash:
            return None
    else:
        if consistency_proof is None:
            raise EvidenceError(f"sizes {cs.size} and {cl.size} differ: a consistency proof is needed")
        try:
            merkle.verify_consistency(cs.size, cl.size, cs.root_hash, cl.root_hash, consistency_proof)
            return None
        except merkle.ProofError:
            pass
        if merkle.is_power_of_two(cs.size):
            if prefix_hash is None:
                raise EvidenceError(f"size {cs.size} is a power of two: the prefix subtree hash is needed")
            path = (prefix_hash, *consistency_proof)
        else:
            path = tuple(consistency_proof)
    evidence = SplitViewEvidence(key_name, public_key, small.encode(), large.encode(), path)
    evidence.verify()
    return evidence
