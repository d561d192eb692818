"""Crash recovery: a replica rebuilt from what it persisted (`durability` says what survives).

The last stable checkpoint is restored, the executed entries after it are re-executed on the state
alone (`Execution._apply_batch`: no replies, no checkpoint votes, no effects at all), and the
replica's own signed votes are reloaded, so that a restarted replica never contradicts a message it
signed before the crash. It then catches up by state transfer; `Replica.start` arms its timers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

from trustchain.app.interface import Application
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.core import ReplicaCore
from trustchain.consensus.effects import PersistExecuted, PersistRecord, PersistStable, PersistVote
from trustchain.consensus.messages import Commit, CommittedEntry, NewView, Prepare, PrePrepare, ViewChange, digest
from trustchain.consensus.replica_state import Phase
from trustchain.crypto.signing import ED25519, Signer, Verifier
from trustchain.encoding import decode

__all__ = ["Recovery"]


class Recovery(ReplicaCore):
    """Rebuilding a replica from its persisted records."""

    @classmethod
    def recover(
        cls,
        config: ClusterConfig,
        replica_id: int,
        signer: Signer,
        app: Application,
        records: list[PersistRecord],
        verifier: Verifier = ED25519,
        epoch_end: Callable[[], int | None] | None = None,
    ) -> Self:
        """Rebuild a replica from its persisted records: the last stable checkpoint, the executed
        entries after it (re-executed, without replies) and its own votes, so that it never
        contradicts a message it signed before the crash."""
        r = cls(config, replica_id, signer, app, verifier, epoch_end)
        r._reload_state(records)
        r._reload_votes(records)
        assert not r._out, "recovery rebuilds state and emits nothing"
        return r

    @classmethod
    def at_boundary(
        cls,
        config: ClusterConfig,
        replica_id: int,
        signer: Signer,
        app: Application,
        snapshot: bytes,
        verifier: Verifier = ED25519,
        epoch_end: Callable[[], int | None] | None = None,
    ) -> Self:
        """A member of a new configuration, starting from the state at its base checkpoint (the
        previous configuration's last, certified by that configuration's quorum). Within this epoch
        the base needs no proof: every member starts there."""
        assert config.base_seq > 0, "genesis replicas start with the constructor"
        return cls.recover(config, replica_id, signer, app, [PersistStable(config.base_seq, snapshot, ())],
                           verifier, epoch_end)

    def _reload_state(self, records: list[PersistRecord]) -> None:
        stable = [rec for rec in records if isinstance(rec, PersistStable)]
        if stable:
            last = stable[-1]
            cp = self._cp
            self._restore(last.snapshot)
            cp.low_watermark = self._last_executed = last.seq
            cp.stable_proof, cp.stable_snapshot = last.proof, last.snapshot
            cp.own[last.seq] = (digest(last.snapshot), last.snapshot)
        for rec in records:
            if isinstance(rec, PersistExecuted) and rec.seq == self._last_executed + 1:
                self._reexecute(rec.entry, decode(PrePrepare, rec.entry.pre_prepare.body))

    def _reexecute(self, entry: CommittedEntry, pp: PrePrepare) -> None:
        """An execution replayed from the log: its replies and checkpoint vote went out before the
        crash, so only the state changes (our own checkpoint included, for a later stable proof)."""
        self._apply_batch(entry, pp)
        if pp.seq % self._config.checkpoint_interval == 0:
            self._record_own_checkpoint(pp.seq)

    def _reload_votes(self, records: list[PersistRecord]) -> None:
        """The view this replica last took part in, and every vote it signed above its checkpoint."""
        view, phase = 0, Phase.NORMAL
        for rec in records:
            if not isinstance(rec, PersistVote):
                continue
            msg = rec.envelope.open()
            if isinstance(msg, ViewChange) and msg.new_view >= view:
                view, phase = msg.new_view, Phase.VIEW_CHANGE
                self._vc.own_view_change = rec.envelope
            elif isinstance(msg, NewView) and msg.view >= view:
                view, phase = msg.view, Phase.NORMAL
                self._vc.current_new_view = rec.envelope
                self._vc.new_view_sent.add(msg.view)
                # The pre-prepares inside its NEW-VIEW are its own for (view, seq): restore them and
                # propose only after them, as `_enter_view` does, or it would re-propose those numbers.
                min_s = max((decode(ViewChange, vc.body).stable_seq for vc in msg.view_changes), default=0)
                self._next_seq = max(self._next_seq, min_s + 1)
                for pp_env in msg.pre_prepares:
                    pp = decode(PrePrepare, pp_env.body)
                    self._next_seq = max(self._next_seq, pp.seq + 1)
                    if pp.seq > self._cp.low_watermark:
                        self._slot(pp.seq).pre_prepares[pp.view] = (pp_env, pp)
            elif isinstance(msg, PrePrepare | Prepare | Commit):
                if msg.view > view:
                    view, phase = msg.view, Phase.NORMAL
                if msg.seq <= self._cp.low_watermark:
                    continue
                slot = self._slot(msg.seq)
                if isinstance(msg, PrePrepare):
                    slot.pre_prepares[msg.view] = (rec.envelope, msg)
                    self._next_seq = max(self._next_seq, msg.seq + 1)
                elif isinstance(msg, Prepare):
                    slot.sent_prepare[msg.view] = msg.batch_digest
                    slot.prepares.setdefault(msg.view, {})[self._id] = (msg.batch_digest, rec.envelope)
                else:
                    slot.sent_commit[msg.view] = msg.batch_digest
                    slot.commits.setdefault(msg.view, {})[self._id] = (msg.batch_digest, rec.envelope)
        self._view, self._phase = view, phase
        self._next_seq = max(self._next_seq, self._last_executed + 1)
