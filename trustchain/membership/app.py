"""An application with a changing validator set: the replicated `Membership` and FROST re-sharing in
front of any inner application.

Operations are typed and framed by one leading type byte, like consensus packets: `APP` hands the
rest to the inner application unchanged; `VOTE` is a validator's vote for a change
(`trustchain.authorization.validator_votes.VoteCommand` with target "membership"); `DEALING` is an
old share holder's `ReshareDealing`. The voter and the dealer are the operation's client, i.e. the
consensus key that signed the request, which must belong to the current set (for a dealing: to the
set holding the shares, at the dealer's FROST identifier).

A change may be voted only once the previous one has fully taken effect: its boundary passed and its
re-sharing complete. So the share-holding set is never more than one epoch behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trustchain.app.interface import Application, ExecutionContext, Operation
from trustchain.authorization.validator_votes import STATUS_ERROR, VoteLimits, VoteResult
from trustchain.encoding import DecodeError, decode, encode
from trustchain.membership.reshare import GroupRecord, ReshareDealing, ReshareTally
from trustchain.membership.rules import signing_threshold
from trustchain.membership.state import Membership, MembershipSnapshot, ValidatorSet

__all__ = [
    "APP",
    "DEALING",
    "VOTE",
    "DealingResult",
    "MembershipApplication",
    "app_operation",
    "dealing_operation",
    "vote_operation",
]

APP, VOTE, DEALING = 0x01, 0x02, 0x03


def app_operation(payload: bytes) -> bytes:
    return bytes([APP]) + payload


def vote_operation(vote_command: bytes) -> bytes:
    return bytes([VOTE]) + vote_command


def dealing_operation(dealing: ReshareDealing) -> bytes:
    return bytes([DEALING]) + encode(dealing)


@dataclass(frozen=True)
class DealingResult:
    """`accepted`, or `detail` ("<field>: <reason>"); `complete` once the new group is fixed."""

    accepted: bool
    detail: str = ""
    complete: bool = False


@dataclass(frozen=True)
class _Snapshot:
    membership: MembershipSnapshot
    group: GroupRecord
    holders: ValidatorSet
    dealings: tuple[ReshareDealing, ...]  # accepted for the share-holding set's successor, in order
    completed: tuple[GroupRecord, ...]  # the group before the last re-sharing, if there was one
    completed_dealings: tuple[ReshareDealing, ...]  # that re-sharing's quorum of dealings
    inner: bytes


class MembershipApplication:
    """Implements `trustchain.app.interface.Application` around `inner`."""

    def __init__(self, inner: Application, genesis: ValidatorSet, group: GroupRecord, checkpoint_interval: int,
                 limits: VoteLimits | None = None) -> None:
        assert group.epoch == genesis.epoch and len(group.verifying_shares) == genesis.n
        self.inner = inner
        self.membership = Membership(genesis, checkpoint_interval, limits)
        self.group = group
        self.holders = genesis  # the set holding the shares of `group` (FROST identifier = index + 1)
        self.reshare: ReshareTally | None = None
        # The dealings that made `group` (None at genesis): kept in the replicated state so that a
        # holder that catches up later can still open its boxes and derive its share.
        self.completed: ReshareTally | None = None
        self.membership.gate = self._reshare_pending

    # ------------------------------------------------------------------ reading

    def epoch_end(self, epoch: int) -> int | None:
        return self.membership.epoch_end(epoch)

    def next_set(self, epoch: int) -> ValidatorSet | None:
        """The set that follows `epoch`, once a change fixed it."""
        return self.membership.configuration(epoch + 1)

    @staticmethod
    def next_set_in(snapshot: bytes, epoch: int) -> ValidatorSet | None:
        """The set following `epoch` as recorded in an application snapshot, without installing it
        (raises DecodeError for a malformed snapshot)."""
        m = decode(_Snapshot, snapshot).membership
        return next((s for s in (m.current, *m.pending) if s.epoch == epoch + 1), None)

    # ------------------------------------------------------------------ Application

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        self.membership.advance(context.seq)
        results: list[bytes] = []
        inner_ops: list[tuple[int, Operation]] = []
        for op in operations:
            tag, body = (op.payload[0], op.payload[1:]) if op.payload else (0, b"")
            if tag == APP:
                inner_ops.append((len(results), Operation(op.client, op.timestamp, body)))
                results.append(b"")
            elif tag == VOTE:
                results.append(encode(self._vote(op.client, body, context)))
            elif tag == DEALING:
                results.append(encode(self._dealing(op.client, body)))
            else:
                results.append(encode(VoteResult(STATUS_ERROR, "operation: unknown type byte")))
        if inner_ops:
            # The inner application sees its operations in order, in one call per batch.
            for (i, _), r in zip(inner_ops, self.inner.execute([o for _, o in inner_ops], context), strict=True):
                results[i] = r
        return results

    def _reshare_pending(self) -> str | None:
        if self.reshare is not None:
            return f"pending: re-sharing the issuing key to epoch {self.reshare.epoch} has not completed"
        return None

    def _vote(self, client: bytes, body: bytes, context: ExecutionContext) -> VoteResult:
        result = self.membership.vote(client, body, context.seq, context.time_us)
        nxt = self.membership.pending
        if nxt is not None and self.reshare is None and nxt.epoch > self.group.epoch:
            self.reshare = ReshareTally(self.group, nxt.epoch, nxt.n, signing_threshold(nxt.n))
        return result

    def _dealing(self, client: bytes, body: bytes) -> DealingResult:
        tally = self.reshare
        if tally is None:
            return DealingResult(False, "epoch: no re-sharing in progress")
        try:
            dealing = decode(ReshareDealing, body)
        except DecodeError as exc:
            return DealingResult(False, f"dealing: malformed ({exc})")
        if self.holders.index(client) != dealing.dealer - 1:
            return DealingResult(False, "dealer: the signer is not this FROST identifier of the share-holding set")
        problem = tally.offer(dealing)
        if problem is not None:
            return DealingResult(False, problem)
        if tally.done:
            nxt = self.membership.configuration(tally.epoch)
            assert nxt is not None, "the re-shared set is the pending or the current one"
            self.group, self.holders, self.reshare, self.completed = tally.new_group(), nxt, None, tally
            return DealingResult(True, complete=True)
        return DealingResult(True)

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> bytes:
        tally, done = self.reshare, self.completed
        dealings = () if tally is None else tuple(tally.accepted[d] for d in sorted(tally.accepted))
        completed = () if done is None else (done.old,)
        done_dealings = () if done is None else tuple(done.accepted[d] for d in sorted(done.accepted))
        return encode(_Snapshot(self.membership.snapshot(), self.group, self.holders, dealings, completed,
                                done_dealings, self.inner.snapshot()))

    def restore(self, snapshot: bytes) -> None:
        snap = decode(_Snapshot, snapshot)
        self.membership.restore(snap.membership)
        self.group, self.holders = snap.group, snap.holders
        self.reshare = None
        nxt = self.membership.pending or (self.membership.current if self.membership.current.epoch > snap.group.epoch
                                          else None)
        if nxt is not None and nxt.epoch > snap.group.epoch:
            self.reshare = ReshareTally(snap.group, nxt.epoch, nxt.n, signing_threshold(nxt.n))
            for d in snap.dealings:
                if self.reshare.offer(d) is not None:
                    raise DecodeError("snapshot.dealings: a dealing the tally refuses")
        elif snap.dealings:
            raise DecodeError("snapshot.dealings: dealings without a re-sharing")
        self.completed = None
        if snap.completed:
            done = ReshareTally(snap.completed[0], snap.group.epoch, len(snap.group.verifying_shares),
                                snap.group.threshold)
            for d in snap.completed_dealings:
                if done.offer(d) is not None:
                    raise DecodeError("snapshot.completed_dealings: a dealing the tally refuses")
            if not done.done or done.new_group() != snap.group:
                raise DecodeError("snapshot.completed_dealings: they do not make the group")
            self.completed = done
        self.inner.restore(snap.inner)
