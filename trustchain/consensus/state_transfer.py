"""State transfer: when a replica counts itself behind, whom it asks, and what a peer answers.

A replica learns how far its peers got only from their signed messages (commit votes, checkpoints,
view changes, normal-case messages beyond its window). One Byzantine peer may claim anything, so the
goal is the (f+1)-th highest value reported: at least one honest replica reached it. The answer to a
request is a stable checkpoint (with its 2f+1 proof, and the snapshot when the requester has not
executed that far), commit-certified entries after it, and the current NEW-VIEW for a replica left in
an older view; the requester re-verifies every part (`Replica._on_state_reply`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from trustchain.consensus.messages import CommittedEntry, Envelope, StateReply, StateRequest


def weak_quorum_value(reported: Mapping[int, int], weak_quorum: int) -> int:
    """The `weak_quorum`-th highest value in `reported` (0 when fewer peers reported)."""
    values = sorted(reported.values(), reverse=True)
    return values[weak_quorum - 1] if len(values) >= weak_quorum else 0


@dataclass
class PeerProgress:
    """The highest sequence number each peer showed (`executed`: commit votes, checkpoints, view
    changes), the highest view it used, and the highest sequence it used beyond our window."""

    weak_quorum: int
    executed: dict[int, int] = field(default_factory=dict)
    views: dict[int, int] = field(default_factory=dict)
    window: dict[int, int] = field(default_factory=dict)

    @staticmethod
    def _raise(table: dict[int, int], peer: int, value: int) -> None:
        table[peer] = max(table.get(peer, 0), value)

    def saw_sequence(self, peer: int, seq: int) -> None:
        self._raise(self.executed, peer, seq)

    def saw_view(self, peer: int, view: int) -> None:
        self._raise(self.views, peer, view)

    def saw_beyond_window(self, peer: int, seq: int) -> None:
        self._raise(self.window, peer, seq)

    def target(self) -> tuple[int, int]:
        """(sequence, view) that at least one honest replica reached."""
        return (weak_quorum_value(self.executed, self.weak_quorum),
                weak_quorum_value(self.views, self.weak_quorum))

    def behind(self, last_executed: int, view: int, view_changing: bool, window_end: int) -> bool:
        target_seq, target_view = self.target()
        return (target_seq > last_executed or target_view > view
                or (target_view == view and view_changing)
                or weak_quorum_value(self.window, self.weak_quorum) > window_end)

    def pick_peer(self, me: int, n: int, rotation: int) -> int:
        """A peer that reported the target sequence (any other peer if none did), rotating between calls so
        that a silent or lying peer cannot stall the transfer."""
        target_seq, _ = self.target()
        peers = sorted(p for p, s in self.executed.items() if s >= target_seq and p != me)
        peers = peers or sorted(p for p in range(n) if p != me)
        return peers[rotation % len(peers)]


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
