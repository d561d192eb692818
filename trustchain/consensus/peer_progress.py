"""What a replica knows of its peers' progress, and when that makes it count itself behind.

A replica learns how far its peers got only from their signed messages (commit votes, checkpoints,
view changes, normal-case messages beyond its window). One Byzantine peer may claim anything, so the
goal is the (f+1)-th highest value reported: at least one honest replica reached it. Every part of
the protocol reports what it saw here; state transfer (`state_transfer`) and the request timer's
postponement (`Replica.on_timer`) act on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["PeerProgress", "weak_quorum_value"]


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
