"""Checkpoints and garbage collection.

Every `checkpoint_interval` sequence numbers a replica snapshots its state (the application plus the
client table) and broadcasts the snapshot's digest. q matching CHECKPOINT messages make the checkpoint
stable: the low watermark h moves to it, the window (h, h+L] moves with it, and every slot, vote and
committed entry at or below it is dropped, as is storage (`durability`). State transfer serves the
stable checkpoint's snapshot and proof to replicas that fell behind it.
"""

from __future__ import annotations

from trustchain.consensus.certificates import InvalidMessage
from trustchain.consensus.core import ReplicaCore
from trustchain.consensus.effects import PersistStable
from trustchain.consensus.messages import Checkpoint, Envelope, digest
from trustchain.encoding import decode

__all__ = ["Checkpointing"]


class Checkpointing(ReplicaCore):
    """Taking checkpoints, counting votes for them, and collecting garbage once one is stable."""

    def _record_own_checkpoint(self, seq: int) -> tuple[bytes, bytes]:
        snapshot = self._snapshot()
        d = digest(snapshot)
        self._cp.own[seq] = (d, snapshot)
        return d, snapshot

    def _take_checkpoint(self, seq: int) -> None:
        d, _ = self._record_own_checkpoint(seq)
        env = self._sign_and_broadcast(Checkpoint(seq, d))
        self._cp.votes.setdefault(seq, {})[self._id] = env
        self._check_stable(seq)

    def _on_checkpoint(self, env: Envelope, cp: Checkpoint, now: int) -> None:
        self._peers.saw_sequence(env.sender, cp.seq)
        if cp.seq <= self._cp.low_watermark:
            return
        horizon = self._cp.low_watermark + 4 * self._config.watermark_window
        if cp.seq > horizon:
            self._maybe_schedule_catchup(now)
            raise InvalidMessage("checkpoint_beyond_horizon", f"seq {cp.seq} > {horizon}")
        votes = self._cp.votes.setdefault(cp.seq, {})
        if env.sender in votes:
            return
        votes[env.sender] = env
        self._check_stable(cp.seq)
        self._maybe_schedule_catchup(now)

    def _check_stable(self, seq: int) -> None:
        votes = self._cp.votes.get(seq, {})
        own = self._cp.own.get(seq)
        if own is None or seq <= self._cp.low_watermark:
            return
        matching = tuple(
            env for _, env in sorted(votes.items()) if decode(Checkpoint, env.body).state_digest == own[0]
        )
        if len(matching) < self._config.quorum:
            return
        self._make_stable(seq, own[1], matching)

    def _make_stable(self, seq: int, snapshot: bytes, proof: tuple[Envelope, ...]) -> None:
        cp = self._cp
        assert seq > cp.low_watermark
        cp.low_watermark = seq
        # Sustained progress: let the view-change timeout come down one step. Resetting it on every
        # execution instead makes a cluster on a slow network change view after every few requests.
        self._vc.attempts = max(0, self._vc.attempts - 1)
        cp.stable_proof = proof
        cp.stable_snapshot = snapshot
        self._persist(PersistStable(seq, snapshot, proof))
        for s in [s for s in self._slots if s <= seq]:
            del self._slots[s]
        for s in [s for s in cp.committed_log if s <= seq]:
            del cp.committed_log[s]
        for s in [s for s in cp.votes if s < seq]:
            del cp.votes[s]
        for s in [s for s in cp.own if s < seq]:
            del cp.own[s]
        if self.is_primary and self._next_seq <= seq:
            self._next_seq = seq + 1
        # The window moved: the primary may propose what was waiting for it, and messages held above
        # the old window may now be in it.
        self._try_propose(self._now, flush=True)
        self._process_ahead(self._now)
