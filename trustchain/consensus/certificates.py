"""Verification of signed envelopes and of the certificates built from them.

Certificates travel inside view-change, new-view and state-transfer messages, forwarded by replicas
that may be Byzantine, so each is re-checked here from its signatures alone.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.messages import (
    Checkpoint,
    Commit,
    CommittedEntry,
    Envelope,
    Kind,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
)
from trustchain.crypto.signing import Verifier
from trustchain.encoding import DecodeError
from trustchain.errors import TrustChainError

__all__ = [
    "InvalidMessage",
    "SignatureChecker",
    "check_checkpoint_proof",
    "check_commit_certificate",
    "check_committed",
    "check_pre_prepare",
    "check_prepared",
]


class InvalidMessage(TrustChainError):
    """A message or certificate failed validation; `reason` is a short stable counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class SignatureChecker:
    """Verifies envelope and request signatures, remembering recent successes so that a certificate
    forwarded several times is not re-verified (a hit requires the exact same signed bytes)."""

    def __init__(self, config: ClusterConfig, verifier: Verifier, cache_size: int = 8192) -> None:
        self.config = config
        self.verifier = verifier
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self.verifications = 0

    def _remember(self, key: bytes) -> None:
        self._cache[key] = None
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def envelope(self, env: Envelope) -> None:
        if env.epoch != self.config.epoch:
            raise InvalidMessage("wrong_epoch", f"envelope of epoch {env.epoch}, this configuration is "
                                                f"epoch {self.config.epoch}")
        if not 0 <= env.sender < self.config.n:
            raise InvalidMessage("unknown_sender", f"sender {env.sender} not in 0..{self.config.n - 1}")
        key = env.digest + env.signature
        if key in self._cache:
            self._cache.move_to_end(key)
            return
        self.verifications += 1
        if not self.verifier.verify(self.config.replicas[env.sender], env.signing_bytes(), env.signature):
            raise InvalidMessage("bad_signature", f"envelope from replica {env.sender}")
        self._remember(key)

    def request(self, req: Request) -> None:
        key = req.digest
        if key in self._cache:
            self._cache.move_to_end(key)
            return
        self.verifications += 1
        if not req.verify(self.verifier):
            raise InvalidMessage("bad_client_signature", f"request ts={req.timestamp}")
        self._remember(key)

    def open(self, env: Envelope, kind: Kind) -> Any:
        """Verify and decode an envelope that must be of `kind`."""
        if env.kind != kind:
            raise InvalidMessage("wrong_kind", f"expected {kind.name}, got kind {env.kind}")
        self.envelope(env)
        try:
            return env.open()
        except DecodeError as exc:
            raise InvalidMessage("malformed", str(exc)) from None


def check_pre_prepare(checker: SignatureChecker, env: Envelope) -> PrePrepare:
    """Signed by the primary of its view, digest matching its batch, every request signed."""
    pp: PrePrepare = checker.open(env, Kind.PRE_PREPARE)
    if env.sender != checker.config.primary(pp.view):
        raise InvalidMessage("not_primary", f"pre-prepare for view {pp.view} from replica {env.sender}")
    if PrePrepare.compute_digest(pp.timestamp_us, pp.batch) != pp.batch_digest:
        raise InvalidMessage("bad_digest", f"pre-prepare seq {pp.seq}")
    seen: set[bytes] = set()
    for req in pp.batch:
        checker.request(req)
        key = req.client + req.timestamp.to_bytes(8, "big")
        if key in seen:
            raise InvalidMessage("duplicate_request_in_batch", f"seq {pp.seq}")
        seen.add(key)
    return pp


def _distinct_votes(
    checker: SignatureChecker, envs: tuple[Envelope, ...], kind: Kind, view: int, seq: int, digest: bytes
) -> set[int]:
    senders: set[int] = set()
    for env in envs:
        vote = checker.open(env, kind)
        assert isinstance(vote, Prepare | Commit)
        if (vote.view, vote.seq, vote.batch_digest) != (view, seq, digest):
            raise InvalidMessage("certificate_mismatch", f"{kind.name} for ({vote.view},{vote.seq})")
        if env.sender in senders:
            raise InvalidMessage("duplicate_voter", f"replica {env.sender} twice in a {kind.name} set")
        senders.add(env.sender)
    return senders


def check_prepared(checker: SignatureChecker, cert: PreparedCertificate) -> PrePrepare:
    """A pre-prepare plus quorum-1 prepares from distinct backups (the primary does not prepare)."""
    pp = check_pre_prepare(checker, cert.pre_prepare)
    voters = _distinct_votes(checker, cert.prepares, Kind.PREPARE, pp.view, pp.seq, pp.batch_digest)
    voters.discard(checker.config.primary(pp.view))
    if len(voters) < checker.config.prepare_quorum:
        raise InvalidMessage("prepared_without_quorum", f"{len(voters)} backup prepares for seq {pp.seq}")
    return pp


def check_committed(checker: SignatureChecker, entry: CommittedEntry) -> PrePrepare:
    """A pre-prepare plus a quorum of commits from distinct replicas in the same view."""
    pp = check_pre_prepare(checker, entry.pre_prepare)
    voters = _distinct_votes(checker, entry.commits, Kind.COMMIT, pp.view, pp.seq, pp.batch_digest)
    if len(voters) < checker.config.quorum:
        raise InvalidMessage("committed_without_quorum", f"{len(voters)} commits for seq {pp.seq}")
    return pp


def check_commit_certificate(checker: SignatureChecker, entry: CommittedEntry) -> PrePrepare:
    """What an observer checks of a committed batch: a quorum of commit signatures from distinct
    validators over (view, seq, batch digest), and the batch hashing to that digest.

    Neither the primary's pre-prepare signature nor the clients' request signatures are verified: the
    quorum's commits bind the digest, the digest binds the batch and its timestamp, and honest
    validators checked the requests before committing. That leaves 2f+1 verifications per batch,
    whatever its size."""
    try:
        pp = entry.pre_prepare.open()
    except DecodeError as exc:
        raise InvalidMessage("malformed", str(exc)) from None
    if entry.pre_prepare.kind != Kind.PRE_PREPARE or not isinstance(pp, PrePrepare):
        raise InvalidMessage("wrong_kind", "a commit certificate must carry a pre-prepare")
    if PrePrepare.compute_digest(pp.timestamp_us, pp.batch) != pp.batch_digest:
        raise InvalidMessage("bad_digest", f"batch does not hash to its digest at seq {pp.seq}")
    voters = _distinct_votes(checker, entry.commits, Kind.COMMIT, pp.view, pp.seq, pp.batch_digest)
    if len(voters) < checker.config.quorum:
        raise InvalidMessage("committed_without_quorum", f"{len(voters)} commits for seq {pp.seq}")
    return pp


def check_checkpoint_proof(
    checker: SignatureChecker, proof: tuple[Envelope, ...], seq: int, state_digest: bytes | None
) -> bytes:
    """A quorum of distinct signed checkpoints for `seq` agreeing on one state digest; returns that digest."""
    if seq == checker.config.base_seq and not proof:
        return b""  # genesis, or the boundary this epoch starts from: every member holds it
    senders: set[int] = set()
    digest = state_digest
    for env in proof:
        cp: Checkpoint = checker.open(env, Kind.CHECKPOINT)
        if cp.seq != seq:
            raise InvalidMessage("checkpoint_mismatch", f"checkpoint for {cp.seq} in a proof for {seq}")
        if digest is None:
            digest = cp.state_digest
        if cp.state_digest != digest:
            raise InvalidMessage("checkpoint_mismatch", f"state digests differ in the proof for {seq}")
        if env.sender in senders:
            raise InvalidMessage("duplicate_voter", f"replica {env.sender} twice in a checkpoint proof")
        senders.add(env.sender)
    if len(senders) < checker.config.quorum or digest is None:
        raise InvalidMessage("checkpoint_without_quorum", f"{len(senders)} signatures for seq {seq}")
    return digest
