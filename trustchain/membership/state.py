"""The replicated validator set and the commands that change it.

A change (add a validator, remove one) is voted like every operation of the validator set as a
whole (`trustchain.authorization.validator_votes`): it runs once a quorum ceil((n+f+1)/2) of the
*current* validators ordered a vote for the same change. When it runs at sequence s the next set is
fixed, with epoch + 1 and base = the first checkpoint at or after s (`rules.boundary_after`); the
current set stays in force through that checkpoint, and operations ordered after it see the next set.
One change is pending at a time: a vote for another is refused until the boundary is passed, so
every epoch differs from the one before by exactly one change the quorum saw.

Open votes lapse at each switch: they were counted by the old set's indices and quorum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from trustchain.authorization.validator_votes import (
    Passed,
    ValidatorVotes,
    VoteLimits,
    VoteResult,
    VotesSnapshot,
)
from trustchain.encoding import DecodeError, decode, decode_prefix, encode
from trustchain.membership.rules import MAX_VALIDATORS, MIN_VALIDATORS, boundary_after

__all__ = [
    "MEMBERSHIP",
    "OP_ADD",
    "OP_REMOVE",
    "ChangeResult",
    "Membership",
    "MembershipChange",
    "MembershipSnapshot",
    "Validator",
    "ValidatorSet",
]

MEMBERSHIP = "membership"  # the vote target of a validator-set change
OP_ADD, OP_REMOVE = "add", "remove"
_KEY_LEN = 32


@dataclass(frozen=True)
class Validator:
    """`key`: the Ed25519 consensus key; `box_key`: the key FROST shares are encrypted to
    (`trustchain.ca.sharebox.RecipientPublicKey` bytes)."""

    key: bytes
    box_key: bytes


@dataclass(frozen=True)
class ValidatorSet:
    """One configuration. The order is the replica index (and the FROST identifier minus one): an
    addition appends, a removal closes the gap, so the survivors keep their relative order."""

    epoch: int
    base_seq: int
    validators: tuple[Validator, ...]

    @property
    def keys(self) -> tuple[bytes, ...]:
        return tuple(v.key for v in self.validators)

    @property
    def n(self) -> int:
        return len(self.validators)

    def index(self, key: bytes) -> int | None:
        keys = self.keys
        return keys.index(key) if key in keys else None


@dataclass(frozen=True)
class MembershipChange:
    """The voted payload: add `validator` (op "add") or remove the validator with `validator.key`
    (op "remove"; `box_key` empty)."""

    op: str
    validator: Validator


@dataclass(frozen=True)
class ChangeResult:
    """What a passed change did: the epoch it creates and the sequence number it takes effect after."""

    epoch: int
    base_seq: int
    n: int


@dataclass(frozen=True)
class MembershipSnapshot:
    current: ValidatorSet
    pending: tuple[ValidatorSet, ...]  # empty, or the one next set
    votes: VotesSnapshot


def _apply(current: ValidatorSet, change: MembershipChange) -> tuple[Validator, ...]:
    if change.op == OP_ADD:
        return (*current.validators, change.validator)
    return tuple(v for v in current.validators if v.key != change.validator.key)


class Membership:
    """The replicated validator set: the current configuration, the next one once a change passed,
    and the tally of votes for changes. Deterministic; consensus time and sequence are handed in."""

    def __init__(self, genesis: ValidatorSet, checkpoint_interval: int, limits: VoteLimits | None = None) -> None:
        assert genesis.base_seq % checkpoint_interval == 0
        self.checkpoint_interval = checkpoint_interval
        self.limits = limits
        self.current = genesis
        self.pending: ValidatorSet | None = None
        # Why no change may be voted now, from what surrounds the set (the key re-sharing), or None.
        self.gate: Callable[[], str | None] = lambda: None
        self.votes = self._tally(genesis.n)

    def _tally(self, n: int) -> ValidatorVotes:
        return ValidatorVotes(n, self._allowed, self.limits)

    # ------------------------------------------------------------------ reading

    def epoch_end(self, epoch: int) -> int | None:
        """The last sequence number of configuration `epoch`, once a change fixed it."""
        if self.pending is not None and self.pending.epoch > epoch:
            return self.pending.base_seq
        return None

    def configuration(self, epoch: int) -> ValidatorSet | None:
        for s in (self.current, self.pending):
            if s is not None and s.epoch == epoch:
                return s
        return None

    # ------------------------------------------------------------------ ordered steps

    def advance(self, seq: int) -> None:
        """Before executing at `seq`: past the boundary, the next set is the current one."""
        if self.pending is not None and seq > self.pending.base_seq:
            self.current, self.pending = self.pending, None
            self.votes = self._tally(self.current.n)

    def vote(self, voter_key: bytes, payload: bytes, seq: int, now_us: int) -> VoteResult:
        """One ordered vote (or withdrawal) from the client `voter_key`, which must be a validator of
        the current set."""
        self.advance(seq)
        outcome = self.votes.handle(self.current.index(voter_key), payload, now_us)
        if not isinstance(outcome, Passed):
            return outcome
        problem = self._allowed(outcome.target, outcome.payload)
        assert problem is None, problem  # checked when the vote was cast; nothing ran in between
        change = decode(MembershipChange, outcome.payload)
        nxt = ValidatorSet(self.current.epoch + 1, boundary_after(seq, self.checkpoint_interval),
                           _apply(self.current, change))
        self.pending = nxt
        return self.votes.executed(outcome, encode(ChangeResult(nxt.epoch, nxt.base_seq, nxt.n)))

    def _allowed(self, target: str, payload: bytes) -> str | None:
        if target != MEMBERSHIP:
            return f"target: only {MEMBERSHIP!r} changes are voted here"
        blocked = self.gate()
        if blocked is not None:
            return blocked
        if self.pending is not None:
            return (f"pending: epoch {self.pending.epoch} takes effect after sequence {self.pending.base_seq}; "
                    "vote again after it")
        try:
            if decode_prefix(_Op, payload).op not in (OP_ADD, OP_REMOVE):
                return f"op: must be {OP_ADD} or {OP_REMOVE}"
            change = decode(MembershipChange, payload)
        except DecodeError as exc:
            return f"payload: malformed ({exc})"
        v, n = change.validator, self.current.n
        if len(v.key) != _KEY_LEN:
            return f"validator.key: must be {_KEY_LEN} bytes"
        if change.op == OP_ADD:
            if v.key in self.current.keys:
                return "validator.key: already a validator"
            if not v.box_key:
                return "validator.box_key: a new validator needs a key to receive its FROST share"
            if n + 1 > MAX_VALIDATORS:
                return f"validator: at most {MAX_VALIDATORS} validators"
        else:
            if v.key not in self.current.keys:
                return "validator.key: not a validator"
            if v.box_key:
                return "validator.box_key: must be empty for a removal"
            if n - 1 < MIN_VALIDATORS:
                return f"validator: at least {MIN_VALIDATORS} validators must remain"
        return None

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> MembershipSnapshot:
        return MembershipSnapshot(self.current, () if self.pending is None else (self.pending,),
                                  self.votes.snapshot())

    def restore(self, snap: MembershipSnapshot) -> None:
        if len(snap.pending) > 1:
            raise DecodeError("MembershipSnapshot.pending: at most one next set")
        self.current = snap.current
        self.pending = snap.pending[0] if snap.pending else None
        self.votes = self._tally(self.current.n)
        self.votes.restore(snap.votes)


@dataclass(frozen=True)
class _Op:
    op: str
