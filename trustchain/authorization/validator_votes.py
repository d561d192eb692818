"""Operations only the validator set as a whole may make, decided by a quorum of validator votes.

Some operations act for the validator set rather than for any one account: revoking a certificate
without its subscriber (key compromise), changing the nodes' own zones, installing an issuer. If one
validator account could make them, one Byzantine validator could take the nodes' names or revoke any
certificate. Instead each validator orders a signed *vote* for the exact operation (the sub-application
it addresses and its command bytes); votes are tallied per operation digest in replicated state, and
the operation is executed once, for the pseudo-account `VALIDATORS`, in the ordered step in which the
votes of `threshold` distinct validators are present.

The threshold is the quorum ``ceil((n + f + 1) / 2)`` of `trustchain.quorum` (f = (n-1)//3 for every n,
not only n = 3f+1). It lies in [f+1, n-f], so the f Byzantine validators can never act alone while the
n-f honest ones can act without them; and any two quorums share an honest validator, so two
conflicting operations (two different contents for a node's zone) cannot both pass unless an honest
validator voted for both. f+1 would already stop one Byzantine validator, but would let f of them
carry any single careless honest vote.

Bounds, so state stays small whatever validators send: each vote expires `vote_ttl_us` after it was
cast (consensus time), a validator holds at most `max_open_per_validator` live votes, a payload is at
most `MAX_PAYLOAD` bytes, and an executed operation is remembered (so late votes for it cannot
execute it again) for `vote_ttl_us`, only as its digest.

Pure and deterministic: the router passes the validator index the write gate authenticated and
consensus time; executing the passed operation is the router's job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from trustchain.encoding import DecodeError, decode, decode_prefix, encode
from trustchain.errors import TrustChainError
from trustchain.quorum import check_signing_threshold, max_faulty, quorum_size

__all__ = [
    "MAX_PAYLOAD",
    "OP_VOTE",
    "OP_WITHDRAW",
    "STATUS_DONE",
    "STATUS_DUPLICATE",
    "STATUS_ERROR",
    "STATUS_EXECUTED",
    "STATUS_RECORDED",
    "STATUS_WITHDRAWN",
    "VOTES",
    "AllowedCheck",
    "Passed",
    "Proposal",
    "ValidatorVotes",
    "VoteCommand",
    "VoteConfigError",
    "VoteLimits",
    "VoteResult",
    "VotesSnapshot",
    "WithdrawCommand",
    "decode_result",
    "operation_digest",
    "vote_command",
    "withdraw_command",
]

VOTES = "validators"  # routing target of a validator's vote
OP_VOTE, OP_WITHDRAW = "vote", "withdraw"
STATUS_RECORDED = "recorded"  # counted; not enough votes yet
STATUS_EXECUTED = "executed"  # this vote completed the quorum: `result` is the operation's own result
STATUS_DUPLICATE = "duplicate"  # this validator already voted for it: ignored
STATUS_DONE = "done"  # already executed: a late vote, ignored
STATUS_WITHDRAWN = "withdrawn"
STATUS_ERROR = "error"
MAX_PAYLOAD = 64 * 1024
SNAPSHOT_VERSION = 1
_DIGEST_DOMAIN = b"trustchain/validator-vote/v1\0"

AllowedCheck = Callable[[str, bytes], str | None]


class VoteConfigError(TrustChainError, ValueError):
    """A validator count and threshold that would let f validators act alone, or block the rest."""


@dataclass(frozen=True)
class VoteLimits:
    vote_ttl_us: int = 24 * 3600 * 1_000_000  # operators of every validator get a day to agree
    max_open_per_validator: int = 16


@dataclass(frozen=True)
class VoteCommand:
    """A validator's vote for the operation `payload` addressed to sub-application `target`."""

    op: str  # OP_VOTE
    target: str
    payload: bytes


@dataclass(frozen=True)
class WithdrawCommand:
    """A validator takes back its vote for the operation with this digest (frees its quota)."""

    op: str  # OP_WITHDRAW
    digest: bytes


@dataclass(frozen=True)
class _Op:
    op: str


@dataclass(frozen=True)
class VoteResult:
    """The answer to a vote. `detail` is "<field>: <reason>" for an error; `votes` of `threshold`
    counted so far; `result` is the executed operation's own encoded result (STATUS_EXECUTED)."""

    status: str
    detail: str = ""
    digest: bytes = b""
    votes: int = 0
    threshold: int = 0
    target: str = ""
    result: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status != STATUS_ERROR


@dataclass(frozen=True)
class Passed:
    """The quorum is reached: the router executes `payload` on `target` for the validator set, then
    answers with `votes.executed(...)`."""

    digest: bytes
    target: str
    payload: bytes
    votes: int


@dataclass
class Proposal:
    target: str
    payload: bytes
    votes: dict[int, int] = field(default_factory=dict)  # validator index -> consensus time of its vote


def vote_command(target: str, payload: bytes) -> bytes:
    return encode(VoteCommand(OP_VOTE, target, payload))


def withdraw_command(digest: bytes) -> bytes:
    return encode(WithdrawCommand(OP_WITHDRAW, digest))


def decode_result(data: bytes) -> VoteResult:
    return decode(VoteResult, data)


def operation_digest(target: str, payload: bytes) -> bytes:
    """What the votes are counted by: the exact operation, domain-separated."""
    t = target.encode()
    return hashlib.sha256(_DIGEST_DOMAIN + len(t).to_bytes(2, "big") + t + payload).digest()


class ValidatorVotes:
    """Replicated tally. `allowed(target, payload)` says why an operation may not be voted on (a
    "<field>: <reason>"), or None: the router lists the operations the validator set may make."""

    def __init__(self, n: int, allowed: AllowedCheck, limits: VoteLimits | None = None,
                 threshold: int | None = None) -> None:
        if n < 1:
            raise VoteConfigError("n: at least one validator")
        self.n = n
        self.f = max_faulty(n)
        self.threshold = quorum_size(n) if threshold is None else threshold
        reason = check_signing_threshold(n, self.threshold)
        if reason is not None:
            raise VoteConfigError(f"threshold: {reason}")
        self.allowed = allowed
        self.limits = limits or VoteLimits()
        self.proposals: dict[bytes, Proposal] = {}
        self.executed_at: dict[bytes, int] = {}  # digest -> consensus time it was executed

    def handle(self, validator: int | None, payload: bytes, now_us: int) -> VoteResult | Passed:
        """One ordered vote command from validator `validator` (None: not a validator)."""
        if validator is None or not 0 <= validator < self.n:
            return self._error("validator: only a validator may vote for the validator set's operations")
        self.expire(now_us)
        try:
            op = decode_prefix(_Op, payload).op
            if op == OP_WITHDRAW:
                return self._withdraw(validator, decode(WithdrawCommand, payload).digest)
            if op != OP_VOTE:
                return self._error(f"op: must be {OP_VOTE} or {OP_WITHDRAW}, got {op[:32]!r}")
            cmd = decode(VoteCommand, payload)
        except DecodeError as exc:
            return self._error(f"command: malformed ({exc})")
        return self._vote(validator, cmd, now_us)

    def _vote(self, validator: int, cmd: VoteCommand, now_us: int) -> VoteResult | Passed:
        if len(cmd.payload) > MAX_PAYLOAD:
            return self._error(f"payload: longer than {MAX_PAYLOAD} bytes")
        problem = self.allowed(cmd.target, cmd.payload)
        if problem is not None:
            return self._error(problem)
        digest = operation_digest(cmd.target, cmd.payload)
        if digest in self.executed_at:
            return VoteResult(STATUS_DONE, "digest: already executed", digest, self.threshold, self.threshold,
                              cmd.target)
        proposal = self.proposals.get(digest)
        if proposal is not None and validator in proposal.votes:
            return self._result(STATUS_DUPLICATE, digest, proposal, "validator: already voted for this operation")
        if self.open_votes(validator) >= self.limits.max_open_per_validator:
            return self._error(f"validator: already {self.limits.max_open_per_validator} open votes; withdraw "
                               "one or wait until they expire", digest)
        if proposal is None:
            proposal = self.proposals[digest] = Proposal(cmd.target, cmd.payload)
        proposal.votes[validator] = now_us
        if len(proposal.votes) < self.threshold:
            return self._result(STATUS_RECORDED, digest, proposal)
        del self.proposals[digest]
        self.executed_at[digest] = now_us
        return Passed(digest, proposal.target, proposal.payload, len(proposal.votes))

    def _withdraw(self, validator: int, digest: bytes) -> VoteResult:
        proposal = self.proposals.get(digest)
        if proposal is None or validator not in proposal.votes:
            return self._error("digest: no open vote of this validator for it", digest)
        del proposal.votes[validator]
        if not proposal.votes:
            del self.proposals[digest]
        return self._result(STATUS_WITHDRAWN, digest, proposal)

    def executed(self, passed: Passed, result: bytes) -> VoteResult:
        """The answer to the vote that completed the quorum, carrying the operation's own result."""
        return VoteResult(STATUS_EXECUTED, "", passed.digest, passed.votes, self.threshold, passed.target, result)

    def open_votes(self, validator: int) -> int:
        return sum(1 for p in self.proposals.values() if validator in p.votes)

    def expire(self, now_us: int) -> None:
        """Drop votes older than the TTL (and proposals left without votes) and forget executed
        operations after the same time."""
        ttl = self.limits.vote_ttl_us
        for digest in list(self.proposals):
            votes = self.proposals[digest].votes
            for v in [v for v, at in votes.items() if now_us - at > ttl]:
                del votes[v]
            if not votes:
                del self.proposals[digest]
        for digest in [d for d, at in self.executed_at.items() if now_us - at > ttl]:
            del self.executed_at[digest]

    def _result(self, status: str, digest: bytes, proposal: Proposal, detail: str = "") -> VoteResult:
        return VoteResult(status, detail, digest, len(proposal.votes), self.threshold, proposal.target)

    def _error(self, detail: str, digest: bytes = b"") -> VoteResult:
        return VoteResult(STATUS_ERROR, detail[:512], digest, threshold=self.threshold)

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> VotesSnapshot:
        return VotesSnapshot(
            SNAPSHOT_VERSION,
            tuple(_ProposalRecord(d, p.target, p.payload, tuple(_Vote(v, at) for v, at in sorted(p.votes.items())))
                  for d, p in sorted(self.proposals.items())),
            tuple(_Executed(d, at) for d, at in sorted(self.executed_at.items())),
        )

    @staticmethod
    def empty_snapshot() -> VotesSnapshot:
        return VotesSnapshot(SNAPSHOT_VERSION, (), ())

    def restore(self, snap: VotesSnapshot) -> None:
        if snap.version != SNAPSHOT_VERSION:
            raise DecodeError(f"VotesSnapshot.version: {snap.version} is not {SNAPSHOT_VERSION}")
        proposals: dict[bytes, Proposal] = {}
        for r in snap.proposals:
            if operation_digest(r.target, r.payload) != r.digest or any(
                    not 0 <= v.validator < self.n for v in r.votes):
                raise DecodeError("VotesSnapshot.proposals: a digest or validator index does not match")
            proposals[r.digest] = Proposal(r.target, r.payload, {v.validator: v.cast_us for v in r.votes})
        self.proposals = proposals
        self.executed_at = {e.digest: e.executed_us for e in snap.executed}


@dataclass(frozen=True)
class _Vote:
    validator: int
    cast_us: int


@dataclass(frozen=True)
class _ProposalRecord:
    digest: bytes
    target: str
    payload: bytes
    votes: tuple[_Vote, ...]


@dataclass(frozen=True)
class _Executed:
    digest: bytes
    executed_us: int


@dataclass(frozen=True)
class VotesSnapshot:
    version: int
    proposals: tuple[_ProposalRecord, ...]
    executed: tuple[_Executed, ...]
