"""SCTs for a precertificate, gathered into replicated state before its certificate is signed.

Why ordered inputs: each validator's log signs its SCT with that validator's own P-256 key, so an SCT is
an outside observation no replica can compute for another. Once a precertificate is logged, every
validator signs an SCT over the logged entry and orders it as a validator-only write (`ct sct`); each
replica checks it against that validator's log key from genesis and against the entry the replicated
log holds (same timestamp, same leaf_index extension). When SCTs from `needed` distinct validators'
logs are in (f+1: at least one is from an honest validator's log), the certificate's TBSCertificate is
the precertificate's with those SCTs, ordered by validator, where the poison was; the CA then signs it
like any pending issuance. A Byzantine validator can withhold its SCT (the others suffice) or send a
bad one (refused, and it convicts itself: the write is signed with its consensus key).
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.ca.records import PendingIssuance
from trustchain.ct import sct as sctmod
from trustchain.ct.entry import PrecertEntry
from trustchain.ct.precert import without_poison
from trustchain.encoding import DecodeError, decode, encode

__all__ = ["OP_SCT", "SNAPSHOT_VERSION", "Awaiting", "CollectedSCT", "SCTCollector", "SCTCommand", "sct_command"]

OP_SCT = "sct"
SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class SCTCommand:
    op: str
    sct: bytes  # one encoded SignedCertificateTimestamp, by the ordering validator's log


def sct_command(sct: bytes) -> bytes:
    return encode(SCTCommand(OP_SCT, sct))


@dataclass(frozen=True)
class CollectedSCT:
    validator: int
    sct: bytes  # encoded, by that validator's log


@dataclass(frozen=True)
class Awaiting:
    """A logged precertificate and the SCTs in so far, ordered by validator."""

    pending: PendingIssuance  # the precertificate's pending issuance (its TBS carries the poison)
    precertificate: bytes
    issuer_key_hash: bytes
    index: int  # its entry in the replicated CT log
    timestamp: int
    extensions: bytes
    scts: tuple[CollectedSCT, ...] = ()


@dataclass(frozen=True)
class _Snapshot:
    version: int
    awaiting: tuple[Awaiting, ...]


class SCTCollector:
    def __init__(self, log_keys: tuple[bytes, ...], needed: int) -> None:
        """`log_keys`: each validator's CT log key (DER SPKI) in replica order, empty when a validator has
        none; `needed`: distinct logs whose SCTs a certificate embeds."""
        assert needed >= 1
        self.log_keys = log_keys
        self.needed = needed
        self.awaiting: dict[int, Awaiting] = {}  # by CT log index

    @property
    def enabled(self) -> bool:
        return sum(1 for k in self.log_keys if k) >= self.needed

    def start(self, pending: PendingIssuance, precertificate: bytes, issuer_key_hash: bytes, index: int,
              timestamp: int, extensions: bytes) -> None:
        self.awaiting[index] = Awaiting(pending, precertificate, issuer_key_hash, index, timestamp, extensions)

    def submit(self, validator: int, payload: bytes) -> tuple[str, Awaiting | None]:
        """Checks one validator's SCT: ("" or "<field>: <reason>", the Awaiting it completed, if any)."""
        try:
            cmd = decode(SCTCommand, payload)
            sct = sctmod.SignedCertificateTimestamp.decode(cmd.sct)
            index = sctmod.parse_leaf_index(sct.extensions)
        except (DecodeError, sctmod.SCTError) as exc:
            return f"sct: malformed ({str(exc)[:120]})", None
        if not 0 <= validator < len(self.log_keys) or not self.log_keys[validator]:
            return "sct: this validator has no CT log key in genesis", None
        waiting = self.awaiting.get(index) if index is not None else None
        if waiting is None:
            return f"sct: no precertificate awaits SCTs at log entry {index}", None
        if any(c.validator == validator for c in waiting.scts):
            return "", None  # already counted
        if (sct.timestamp, sct.extensions) != (waiting.timestamp, waiting.extensions):
            return "sct: timestamp or extensions differ from the logged entry", None
        entry = PrecertEntry(waiting.issuer_key_hash, without_poison(waiting.pending.tbs))
        try:
            sctmod.verify(sct, self.log_keys[validator], entry)
        except sctmod.SCTError as exc:
            return f"sct: {exc}", None
        scts = tuple(sorted((*waiting.scts, CollectedSCT(validator, cmd.sct)), key=lambda c: c.validator))
        at = waiting.index
        if len(scts) < self.needed:
            self.awaiting[at] = Awaiting(waiting.pending, waiting.precertificate, waiting.issuer_key_hash, at,
                                         waiting.timestamp, waiting.extensions, scts)
            return "", None
        del self.awaiting[at]
        return "", Awaiting(waiting.pending, waiting.precertificate, waiting.issuer_key_hash, at,
                            waiting.timestamp, waiting.extensions, scts[: self.needed])

    def expire(self, now_us: int, ttl_us: int) -> list[Awaiting]:
        gone = [a for a in self.awaiting.values() if now_us - a.pending.created_us > ttl_us]
        for a in gone:
            del self.awaiting[a.index]
        return gone

    def waiting_for(self, pending_id: int) -> bool:
        """Is the request answered with `pending_id` waiting for SCTs?"""
        return any(pending_id in (a.pending.pending_id, a.pending.request_id) for a in self.awaiting.values())

    def snapshot(self) -> bytes:
        return encode(_Snapshot(SNAPSHOT_VERSION, tuple(self.awaiting[i] for i in sorted(self.awaiting))))

    def restore(self, data: bytes) -> None:
        snap = decode(_Snapshot, data)
        if snap.version != SNAPSHOT_VERSION:
            raise DecodeError(f"SCT collector snapshot version {snap.version} is not {SNAPSHOT_VERSION}")
        self.awaiting = {a.index: a for a in snap.awaiting}
