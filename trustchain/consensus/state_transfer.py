"""State transfer: when a replica asks for state, what a peer answers, and how the answer is applied.

A replica counts itself behind when f+1 peers showed progress beyond its own (`peer_progress`), and
asks one of them, rotating, only when it also made no progress for `catchup_delay_us` (a replica that
is merely a little slower catches up on its own). The answer (`answer`) is a stable checkpoint (with
its q-signature proof, and the snapshot when the requester has not executed that far), commit-certified
entries after it, and the current NEW-VIEW for a replica left in an older view; the requester
re-verifies every part from signatures alone (`StateTransfer._on_state_reply`), so a Byzantine peer
can withhold state but not forge it.

Peers' progress normally shows in their traffic. An idle network has none, so a replica that restarted
or was cut off would not learn it is behind until the next request. Each replica therefore sends a
signed STATUS (view, last executed, stable checkpoint) to a peer whenever the driver reports that its
link to that peer came up (`link_up`); f+1 of them are what any other progress report is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trustchain.consensus.certificates import InvalidMessage, check_checkpoint_proof, check_committed
from trustchain.consensus.core import TIMER_CATCHUP, ReplicaCore
from trustchain.consensus.effects import SendToReplica, StateRestored
from trustchain.consensus.messages import (
    CommittedEntry,
    Envelope,
    Kind,
    StateReply,
    StateRequest,
    Status,
    digest,
    pack,
    seal,
)
from trustchain.consensus.peer_progress import PeerProgress, weak_quorum_value
from trustchain.consensus.replica_state import Phase
from trustchain.encoding import DecodeError

__all__ = ["PeerProgress", "ServedState", "StateTransfer", "answer", "weak_quorum_value"]


@dataclass(frozen=True)
class ServedState:
    """What a replica can serve from: its own execution point, stable checkpoint and committed log."""

    last_executed: int
    low_watermark: int
    view: int
    normal: bool  # in NORMAL status (not view-changing)
    current_new_view: Envelope | None
    stable_proof: tuple[Envelope, ...]
    stable_snapshot: bytes
    committed_log: Mapping[int, CommittedEntry]
    max_entries: int


def answer(req: StateRequest, state: ServedState) -> StateReply | None:
    """The reply to `req`, or None when the requester lacks nothing we hold."""
    behind_in_view = state.current_new_view is not None and state.normal and (
        req.view < state.view or (req.view == state.view and req.view_changing))
    stale_checkpoint = req.low_watermark < state.low_watermark
    if req.last_executed >= state.last_executed and not behind_in_view and not stale_checkpoint:
        return None
    checkpoint_seq, snapshot = 0, b""
    proof: tuple[Envelope, ...] = ()
    start = req.last_executed
    if stale_checkpoint:
        checkpoint_seq, proof = state.low_watermark, state.stable_proof
    if req.last_executed < state.low_watermark:
        snapshot = state.stable_snapshot  # only when the requester has not executed that far itself
        start = state.low_watermark
    entries = tuple(
        state.committed_log[s]
        for s in range(start + 1, min(state.last_executed, start + state.max_entries) + 1)
        if s in state.committed_log
    )
    nv = (state.current_new_view,) if behind_in_view and state.current_new_view is not None else ()
    return StateReply(checkpoint_seq, snapshot, proof, entries, nv)


class StateTransfer(ReplicaCore):
    """Catching up from a peer: when to ask, serving a request, and applying a verified reply."""

    def _behind(self) -> bool:
        return self._peers.behind(self._last_executed, self._view, self._phase is Phase.VIEW_CHANGE,
                                  self._cp.low_watermark + self._config.watermark_window)

    def _maybe_schedule_catchup(self, now: int) -> None:
        if TIMER_CATCHUP not in self._timers and self._behind():
            self._catchup_mark = self._last_executed
            self._set_timer(TIMER_CATCHUP, now + self._config.catchup_delay_us)

    def _catchup(self, now: int) -> None:
        """Ask a peer for state only when stuck: behind, and no progress since the timer was armed
        (a replica that is merely a little slower catches up on its own)."""
        if not self._behind():
            self._transfer_requested = False
            return
        if self._last_executed > self._catchup_mark and self._phase is Phase.NORMAL:
            self._maybe_schedule_catchup(now)
            return
        peer = self._peers.pick_peer(self._id, self._config.n, self._catchup_rotation)
        self._catchup_rotation += 1
        request = StateRequest(self._last_executed, self._cp.low_watermark, self._view,
                               self._phase is Phase.VIEW_CHANGE)
        env = seal(self._signer, self._id, request, self._config.epoch)
        self._emit(SendToReplica(peer, pack(env)))
        self._transfer_requested = True
        self._set_timer(TIMER_CATCHUP, now + self._config.catchup_delay_us)

    def _status_for(self, peer: int) -> None:
        """Tell `peer` how far we got (a link to it just came up: it may have restarted)."""
        if peer == self._id or not 0 <= peer < self._config.n:
            return
        status = Status(self._view, self._last_executed, self._cp.low_watermark, self._phase is Phase.NORMAL)
        self._emit(SendToReplica(peer, pack(seal(self._signer, self._id, status, self._config.epoch))))

    def _on_status(self, sender: int, status: Status, now: int) -> None:
        """A peer's own claim of progress: one report among the f+1 that make us count ourselves behind."""
        self._peers.saw_sequence(sender, status.last_executed)
        if status.normal:
            self._peers.saw_view(sender, status.view)
        self._maybe_schedule_catchup(now)

    def _on_state_request(self, sender: int, req: StateRequest) -> None:
        cp = self._cp
        reply = answer(req, ServedState(
            self._last_executed, cp.low_watermark, self._view, self._phase is Phase.NORMAL,
            self._vc.current_new_view, cp.stable_proof, cp.stable_snapshot, cp.committed_log,
            self._config.state_reply_max_entries))
        if reply is not None:
            self._emit(SendToReplica(sender, pack(seal(self._signer, self._id, reply, self._config.epoch))))

    def _on_state_reply(self, reply: StateReply, now: int) -> None:
        if TIMER_CATCHUP not in self._timers:
            raise InvalidMessage("unsolicited_state_reply", "no state transfer in progress")
        before = self._last_executed
        self._install_checkpoint(reply)
        self._accept_committed(reply.entries)
        self._try_execute(now)
        if reply.new_view:
            nv_env = reply.new_view[0]
            nv = self._checker.open(nv_env, Kind.NEW_VIEW)
            if nv.view > self._view or (nv.view == self._view and self._phase is Phase.VIEW_CHANGE):
                self._on_new_view(nv_env, nv, now)
        if not self._behind():
            self._cancel_timer(TIMER_CATCHUP)
            self._transfer_requested = False
        if self._last_executed > before:
            self._after_progress(now)

    def _install_checkpoint(self, reply: StateReply) -> None:
        """The reply's stable checkpoint, proven by a quorum of signatures over the snapshot's digest:
        adopted as stable if we executed that far ourselves, installed if we are below it."""
        own = self._cp.own.get(reply.checkpoint_seq)
        if self._cp.low_watermark < reply.checkpoint_seq <= self._last_executed and own is not None:
            # We executed that far ourselves but never saw a quorum of checkpoint votes: the proof suffices.
            check_checkpoint_proof(self._checker, reply.checkpoint_proof, reply.checkpoint_seq, own[0])
            self._make_stable(reply.checkpoint_seq, own[1], reply.checkpoint_proof)
        elif reply.checkpoint_seq > self._last_executed:
            check_checkpoint_proof(self._checker, reply.checkpoint_proof, reply.checkpoint_seq,
                                   digest(reply.snapshot))
            self._install_snapshot(reply.checkpoint_seq, reply.snapshot, reply.checkpoint_proof)

    def _install_snapshot(self, seq: int, snapshot: bytes, proof: tuple[Envelope, ...]) -> None:
        try:
            self._restore(snapshot)
        except DecodeError as exc:
            raise InvalidMessage("malformed", f"snapshot: {exc}") from None
        self._last_executed = seq
        self._emit(StateRestored(seq))
        self._cp.own[seq] = (digest(snapshot), snapshot)
        if seq > self._cp.low_watermark:
            self._make_stable(seq, snapshot, proof)
        for key in [k for k, r in self._pending.items() if self._already_executed(r)]:
            self._drop_pending(key)

    def _accept_committed(self, entries: tuple[CommittedEntry, ...]) -> None:
        """Commit-certified entries above our execution point, each re-verified from its signatures."""
        for entry in entries:
            pp = check_committed(self._checker, entry)
            if pp.seq <= self._last_executed or not self._in_window(pp.seq):
                continue
            slot = self._slot(pp.seq)
            slot.committed, slot.committed_pp = entry, pp
