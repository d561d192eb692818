"""A catalogue of known PBFT bugs, injectable by name in the simulator only.

Each mutant is a subclass of the production `Replica` (and, for quorum bugs, of `ClusterConfig`)
that overrides one method with a plausible wrong version. The production classes are untouched:
without `--mutant`, the simulator runs exactly the code the reference node runs.

The seam: mutants override the replica's underscore step methods (`_check_stable`, `_in_window`, ...:
see `trustchain/consensus/core.py` for the steps and the state they share) and, being subclasses, read
and write its private state (`_cp`: checkpoints, `_vc`: view change, `_slots`, `_timers`, ...). This is
the only code outside `trustchain.consensus` allowed to: a mutant is a buggy replica, so it must be able
to do whatever a bug in the replica could.

`python -m sim mutants` lists them; `python -m sim run SCENARIO --mutant NAME` runs with one;
`python -m sim mutants --check --budget N` explores schedules against each and prints whether the
checkers catch it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from trustchain.app.interface import Application
from trustchain.consensus.certificates import InvalidMessage, check_checkpoint_proof, check_pre_prepare
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import (
    Broadcast,
    Persist,
    PersistExecuted,
    PersistRecord,
    PersistVote,
    SendToClient,
)
from trustchain.consensus.messages import (
    Checkpoint,
    Commit,
    CommittedEntry,
    Envelope,
    Kind,
    NewView,
    Prepare,
    PrePrepare,
    StateReply,
    pack,
    seal,
)
from trustchain.consensus.replica import TIMER_VIEW_CHANGE, Phase, Replica
from trustchain.consensus.viewchange import CheckedViewChange
from trustchain.crypto.signing import ED25519, Signer, Verifier
from trustchain.encoding import decode

# ---------------------------------------------------------------------------- the bugs


class _QuorumTwoFConfig(ClusterConfig):
    @property
    def quorum(self) -> int:
        return 2 * self.f


class _QuorumTwoFPlusOneConfig(ClusterConfig):
    @property
    def quorum(self) -> int:
        return 2 * self.f + 1

    @property
    def prepare_quorum(self) -> int:
        return 2 * self.f


class _TimerOnOwnViewOnly(Replica):
    def _arm_view_change_timer(self, now: int) -> None:
        if (self._phase is Phase.VIEW_CHANGE and TIMER_VIEW_CHANGE not in self._timers
                and len(self._vc.received.get(self._view, {})) >= self._config.quorum):
            self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())


class _StableOnWeakQuorum(Replica):
    def _check_stable(self, seq: int) -> None:
        votes = self._cp.votes.get(seq, {})
        own = self._cp.own.get(seq)
        if own is None or seq <= self._cp.low_watermark:
            return
        matching = tuple(env for _, env in sorted(votes.items())
                         if decode(Checkpoint, env.body).state_digest == own[0])
        if len(matching) >= self._config.weak_quorum:
            self._make_stable(seq, own[1], matching)


class _NewViewUnchecked(Replica):
    def _check_new_view_pre_prepares(
        self, nv: NewView, checked: list[CheckedViewChange]
    ) -> tuple[int, list[tuple[Envelope, PrePrepare]]]:
        # Takes the new primary's pre-prepares as sent (signatures only), without recomputing them.
        pairs = [(env, check_pre_prepare(self._checker, env)) for env in nv.pre_prepares]
        return max(c.message.stable_seq for c in checked), pairs


class _SnapshotUnverified(Replica):
    def _install_checkpoint(self, reply: StateReply) -> None:
        # Checks that the proof is a quorum for *some* digest, not for the snapshot it came with.
        if reply.checkpoint_seq > self._last_executed:
            check_checkpoint_proof(self._checker, reply.checkpoint_proof, reply.checkpoint_seq, None)
            self._install_snapshot(reply.checkpoint_seq, reply.snapshot, reply.checkpoint_proof)
        else:
            super()._install_checkpoint(reply)


class _EntriesUnverified(Replica):
    def _accept_committed(self, entries: tuple[CommittedEntry, ...]) -> None:
        # Uses the entries' pre-prepares without checking their commit certificates.
        for entry in entries:
            pp = decode(PrePrepare, entry.pre_prepare.body)
            if pp.seq <= self._last_executed or not self._in_window(pp.seq):
                continue
            slot = self._slot(pp.seq)
            slot.committed, slot.committed_pp = entry, pp


class _ForgetVotesOnRecovery(Replica):
    @classmethod
    def recover(cls, config: ClusterConfig, replica_id: int, signer: Signer, app: Application,
                records: list[PersistRecord], verifier: Verifier = ED25519,
                epoch_end: Callable[[], int | None] | None = None) -> Self:
        # Rebuilds state from checkpoints and executed entries but ignores the replica's own votes.
        kept: list[PersistRecord] = [r for r in records if not isinstance(r, PersistVote)]
        return super().recover(config, replica_id, signer, app, kept, verifier, epoch_end)


class _CommitNotPersisted(Replica):
    def _sign_and_broadcast(self, message: object) -> Envelope:
        if not isinstance(message, Commit):
            return super()._sign_and_broadcast(message)
        env = seal(self._signer, self._id, message)
        self._emit(Broadcast(pack(env)))  # sent without PersistVote: a restart may vote differently
        return env


class _AcceptOutsideWindow(Replica):
    def _in_window(self, seq: int) -> bool:
        return True


class _DropPreparedCertificates(Replica):
    def _start_view_change(self, new_view: int, now: int) -> None:
        for slot in self._slots.values():
            slot.prepared_cert = None
        super()._start_view_change(new_view, now)


class _PrePrepareFromAnyone(Replica):
    def _on_envelope(self, env: Envelope, now: int) -> None:
        if env.kind == Kind.PRE_PREPARE and env.sender != self.id:
            pp: PrePrepare = self._checker.open(env, Kind.PRE_PREPARE)  # signature only: no primary check
            if PrePrepare.compute_digest(pp.timestamp_us, pp.batch) != pp.batch_digest:
                raise InvalidMessage("bad_digest")
            self._received["pre_prepare"] += 1
            self._on_pre_prepare(env, pp, now)
            return
        super()._on_envelope(env, now)


class _NoDigestCheck(Replica):
    def _on_envelope(self, env: Envelope, now: int) -> None:
        if env.kind == Kind.PRE_PREPARE and env.sender != self.id:
            pp: PrePrepare = self._checker.open(env, Kind.PRE_PREPARE)
            if env.sender != self._config.primary(pp.view):
                raise InvalidMessage("not_primary")
            self._received["pre_prepare"] += 1
            self._on_pre_prepare(env, pp, now)  # the batch is never checked against its digest
            return
        super()._on_envelope(env, now)


class _CountDuplicateVotes(Replica):
    _copies = 0

    def _on_vote(self, env: Envelope, vote: Prepare | Commit, now: int) -> None:
        if not self._normal_case_gate(env, vote):
            return
        slot = self._slot(vote.seq)
        votes = (slot.prepares if isinstance(vote, Prepare) else slot.commits).setdefault(vote.view, {})
        self._copies += 1
        votes[env.sender + 1000 * self._copies] = (vote.batch_digest, env)  # every copy is a new "voter"
        self._check_slot(vote.seq, now)


class _CommitOnPrepares(Replica):
    def _check_slot(self, seq: int, now: int) -> None:
        super()._check_slot(seq, now)
        slot = self._slots.get(seq)
        v = self._view
        if slot is None or slot.committed is not None or v not in slot.sent_commit:
            return
        pp_env, pp = slot.pre_prepares[v]
        prepares = self._matching(slot.prepares.get(v, {}), pp.batch_digest)
        slot.committed, slot.committed_pp = CommittedEntry(pp_env, tuple(prepares)), pp
        self._try_execute(now)


class _ExecuteOutOfOrder(Replica):
    def _try_execute(self, now: int) -> None:
        progressed = False
        for seq, slot in list(self._slots.items()):
            if slot.committed is None or slot.committed_pp is None or seq <= self._last_executed:
                continue
            if seq in self._cp.committed_log:
                continue
            highest = max(self._last_executed, seq)
            self._last_executed = seq - 1
            self._execute(slot.committed, slot.committed_pp)
            self._last_executed = highest
            progressed = True
        if progressed:
            self._after_progress(now)


class _ReplyBeforePersist(Replica):
    def _execute(self, entry: CommittedEntry, pp: PrePrepare) -> None:
        start = len(self._out)
        super()._execute(entry, pp)
        tail = self._out[start:]
        persists = [e for e in tail if isinstance(e, Persist) and isinstance(e.record, PersistExecuted)]
        replies = [e for e in tail if isinstance(e, SendToClient)]
        others = [e for e in tail if e not in persists and e not in replies]
        self._out[start:] = replies + persists + others


class _NoTimerBackoff(Replica):
    def _vc_timeout(self) -> int:
        return self._config.view_change_timeout_us

    def _arm_view_change_timer(self, now: int) -> None:
        if self._phase is Phase.VIEW_CHANGE and TIMER_VIEW_CHANGE not in self._timers:
            self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())


# ---------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    replica_class: type[Replica] = Replica
    config_class: type[ClusterConfig] | None = None
    #: scenario overrides under which `mutants --check` explores (merged into the exploration base)
    base: dict[str, Any] = dataclasses.field(default_factory=dict)

    def instantiate(self, config: ClusterConfig) -> tuple[type[Replica], ClusterConfig]:
        if self.config_class is not None:
            values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
            config = self.config_class(**values)
        return self.replica_class, config


MUTANTS: dict[str, Mutant] = {
    m.name: m
    for m in (
        Mutant("quorum-2f", "quorums of 2f instead of ceil((n+f+1)/2) (commit, checkpoint, view change)",
               config_class=_QuorumTwoFConfig),
        Mutant("quorum-2f+1", "quorums of 2f+1 at every n (two quorums need not share an honest replica "
               "unless n = 3f+1)", config_class=_QuorumTwoFPlusOneConfig),
        Mutant("view-timer-own-view-only", "the next view's timer starts only on a quorum of requests for "
               "exactly this view, so replicas split across views wait for ever", _TimerOnOwnViewOnly,
               base={"explore_base": "one-way"}),
        Mutant("checkpoint-stable-on-f-plus-1", "a checkpoint becomes stable (and the log is truncated) "
               "on f+1 matching votes", _StableOnWeakQuorum, base={"explore_base": "long"}),
        Mutant("new-view-unchecked", "backups accept a NEW-VIEW's pre-prepares as sent instead of recomputing "
               "them from its view changes", _NewViewUnchecked, base={"byzantine_pool": ["nv_forge"]}),
        Mutant("state-snapshot-unverified", "state transfer installs a snapshot whose checkpoint proof is for "
               "another digest", _SnapshotUnverified, base={"byzantine_pool": ["state_lie"], "explore_base": "long"}),
        Mutant("state-entries-unverified", "state transfer executes committed entries without checking their "
               "commit certificates", _EntriesUnverified,
               base={"byzantine_pool": ["state_lie"], "explore_base": "long"}),
        Mutant("forget-votes-on-recovery", "a restarted replica rebuilds its state but forgets the votes it "
               "signed before the crash", _ForgetVotesOnRecovery),
        Mutant("commit-not-persisted", "commit votes are sent without being persisted first",
               _CommitNotPersisted),
        Mutant("accept-outside-watermarks", "accepts protocol messages outside (h, h+L]",
               _AcceptOutsideWindow),
        Mutant("drop-prepared-certificates", "view-change messages omit the prepared certificates",
               _DropPreparedCertificates),
        Mutant("pre-prepare-from-non-primary", "accepts a pre-prepare signed by any replica",
               _PrePrepareFromAnyone, base={"byzantine_pool": ["impersonate_primary"]}),
        Mutant("no-digest-check", "does not check a pre-prepare's digest against its batch",
               _NoDigestCheck, base={"byzantine_pool": ["corrupt_batch"]}),
        Mutant("count-duplicate-votes", "counts two votes from one replica (duplicates and replays)",
               _CountDuplicateVotes),
        Mutant("commit-on-prepares", "executes once prepared, skipping the commit phase", _CommitOnPrepares),
        Mutant("execute-out-of-order", "executes committed batches as they commit, not in sequence order",
               _ExecuteOutOfOrder),
        Mutant("reply-before-persist", "sends the reply before the execution is persisted",
               _ReplyBeforePersist),
        Mutant("no-view-change-backoff", "view-change timers never back off and restart at once (livelock)",
               _NoTimerBackoff),
    )
}
