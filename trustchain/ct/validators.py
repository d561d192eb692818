"""Trusting a replicated log: a quorum of distinct validator signatures over identical content.

Each validator signs checkpoints (Ed25519 note signatures under its own key name) and SCTs with its own
key. With n validators and at most f = (n-1)//3 Byzantine, the default threshold is the consensus quorum
ceil((n+f+1)/2): two checkpoints that each carry it share an honest signer, so no coalition of f can make
clients accept two forked roots. The threshold is a parameter (f+1 already implies one honest signer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from trustchain.ct import note
from trustchain.ct import sct as sctmod
from trustchain.ct.checkpoint import CheckpointError, SignedCheckpoint
from trustchain.ct.entry import SignedEntry
from trustchain.errors import TrustChainError
from trustchain.quorum import max_faulty, quorum_size

__all__ = ["QuorumError", "Validator", "ValidatorSet", "merge"]


class QuorumError(TrustChainError, ValueError):
    """Too few valid, distinct validator signatures; the message says how many and which were bad."""


@dataclass(frozen=True)
class Validator:
    name: str
    public_key: bytes

    @property
    def log_id(self) -> bytes:
        return sctmod.log_id(self.public_key)


class ValidatorSet:
    def __init__(self, validators: Sequence[Validator], threshold: int | None = None) -> None:
        if not validators:
            raise QuorumError("a validator set needs at least one validator")
        names = [v.name for v in validators]
        if len(set(names)) != len(names) or len({v.public_key for v in validators}) != len(validators):
            raise QuorumError("validator names and keys must be distinct")
        for name in names:
            note.check_key_name(name)
        self.validators = tuple(validators)
        self.f = max_faulty(len(validators))
        self.threshold = quorum_size(len(validators)) if threshold is None else threshold
        if not 1 <= self.threshold <= len(validators):
            raise QuorumError(f"threshold {self.threshold} is not within 1..{len(validators)}")
        self._by_name = {v.name: v for v in validators}
        self._by_log_id = {v.log_id: v for v in validators}

    def __len__(self) -> int:
        return len(self.validators)

    def get(self, name: str) -> Validator | None:
        return self._by_name.get(name)

    def signers_of(self, signed: SignedCheckpoint) -> list[str]:
        """Names of the validators whose signature on this checkpoint verifies (other lines ignored)."""
        good = []
        for v in self.validators:
            try:
                signed.verify(v.name, v.public_key)
            except CheckpointError:
                continue
            good.append(v.name)
        return good

    def verify_checkpoint(self, signed: SignedCheckpoint) -> list[str]:
        good = self.signers_of(signed)
        if len(good) < self.threshold:
            raise QuorumError(
                f"checkpoint at size {signed.checkpoint.size} has {len(good)} valid validator signatures, "
                f"needs {self.threshold}"
            )
        return good

    def verify_scts(self, entry: SignedEntry, scts: Iterable[sctmod.SignedCertificateTimestamp]) -> list[str]:
        """Names of distinct validators that signed `entry` at one common timestamp; raises below quorum."""
        by_time: dict[int, set[str]] = {}
        bad = 0
        for s in scts:
            v = self._by_log_id.get(s.log_id)
            try:
                if v is None:
                    raise sctmod.SCTError("unknown log ID")
                sctmod.verify(s, v.public_key, entry)
            except sctmod.SCTError:
                bad += 1
                continue
            by_time.setdefault(s.timestamp, set()).add(v.name)
        best = max(by_time.values(), key=len, default=set())
        if len(by_time) > 1:
            raise QuorumError(f"SCTs disagree on the timestamp ({len(by_time)} different times)")
        if len(best) < self.threshold:
            raise QuorumError(
                f"{len(best)} valid SCTs from distinct validators ({bad} invalid), needs {self.threshold}"
            )
        return sorted(best)


def merge(checkpoints: Iterable[SignedCheckpoint]) -> SignedCheckpoint:
    """One note carrying every distinct signature line over the same checkpoint body."""
    items = list(checkpoints)
    if not items:
        raise QuorumError("nothing to merge")
    first = items[0]
    seen: set[tuple[str, bytes, bytes]] = set()
    sigs: list[note.NoteSignature] = []
    for signed in items:
        if signed.checkpoint != first.checkpoint:
            raise QuorumError(
                f"cannot merge checkpoints of size {first.checkpoint.size} and {signed.checkpoint.size}: "
                "bodies differ"
            )
        for s in signed.note.signatures:
            key = (s.name, s.key_id, s.payload)
            if key not in seen:
                seen.add(key)
                sigs.append(s)
    if len(sigs) > note.MAX_SIGNATURES:
        raise QuorumError(f"{len(sigs)} signatures exceed the note limit of {note.MAX_SIGNATURES}")
    return SignedCheckpoint(first.checkpoint, note.Note(first.note.text, tuple(sigs)))
