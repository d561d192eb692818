"""The normal case: pre-prepare, prepare and commit for one view, and the messages held for later.

A message passes `_normal_case_gate` before it counts: one for a later view (or for ours while it is
still forming) is buffered until the replica enters that view; one just above the window is held
until the window moves (see `_normal_case_gate` for why); anything else outside the window is
rejected. A slot prepares on the primary's pre-prepare plus q-1 matching backup prepares and commits
on q matching commits; committed slots execute in sequence order (`execution`).
"""

from __future__ import annotations

from trustchain.consensus.certificates import InvalidMessage
from trustchain.consensus.core import ReplicaCore
from trustchain.consensus.fair_queue import request_key
from trustchain.consensus.messages import (
    Commit,
    CommittedEntry,
    Envelope,
    Prepare,
    PreparedCertificate,
    PrePrepare,
)
from trustchain.consensus.replica_state import NormalCaseMessage, Phase

__all__ = ["NormalCase"]


class NormalCase(ReplicaCore):
    """Agreement on one sequence number at a time, within the watermark window."""

    def _normal_case_gate(self, env: Envelope, msg: NormalCaseMessage) -> bool:
        """True if the message is for the current view and may be processed now; messages for a
        later view are buffered (bounded) until this replica enters it."""
        self._peers.saw_view(env.sender, msg.view)
        if msg.view < self._view:
            raise InvalidMessage("stale_view", f"view {msg.view} < {self._view}")
        if msg.view > self._view or self._phase is not Phase.NORMAL:
            self._future.append((env, msg))
            limit = 4 * self._config.watermark_window * self._config.n
            if len(self._future) > limit:
                dropped = len(self._future) - limit
                del self._future[:dropped]
                self._reject("future_buffer_overflow", f"{dropped} buffered message(s) for later views dropped")
            return False
        if not self._in_window(msg.seq):
            low = self._cp.low_watermark
            high = low + self._config.watermark_window
            if msg.seq > high:
                # Peers working beyond our window: our stable checkpoint lags (its proof may have been
                # lost), which state transfer repairs.
                self._peers.saw_beyond_window(env.sender, msg.seq)
                self._maybe_schedule_catchup(self._now)
                if msg.seq <= high + self._config.watermark_window:
                    # Each replica's checkpoint becomes stable when *it* has executed that far and
                    # counted a quorum of checkpoint votes, so the primary's window often moves first
                    # and it proposes up to its new h+L at once. Nobody sends these messages again:
                    # dropped, the slot may never gather a prepare quorum, and only a view change
                    # would unstick it. Keep them (bounded: one per sequence, kind and sender, current
                    # view only) until our window moves.
                    self._ahead.setdefault((msg.seq, msg.view, env.kind, env.sender), (env, msg))
                    return False
            raise InvalidMessage("outside_watermarks", f"seq {msg.seq} not in ({low}, {high}]")
        return True

    def _on_pre_prepare(self, env: Envelope, pp: PrePrepare, now: int) -> None:
        if self._above_ceiling(pp.seq):
            raise InvalidMessage("beyond_epoch", f"seq {pp.seq} is past this configuration's last sequence")
        if not self._normal_case_gate(env, pp):
            return
        if abs(pp.timestamp_us - now) > self._config.max_clock_skew_us:
            raise InvalidMessage("timestamp_skew", f"proposed {pp.timestamp_us}, local {now}")
        self._accept_pre_prepare(env, pp, now)

    def _accept_pre_prepare(self, env: Envelope, pp: PrePrepare, now: int) -> None:
        slot = self._slot(pp.seq)
        held = slot.pre_prepares.get(pp.view)
        if held is not None:
            if held[1].batch_digest != pp.batch_digest:
                raise InvalidMessage("equivocation", f"two pre-prepares for ({pp.view}, {pp.seq})")
            return
        slot.pre_prepares[pp.view] = (env, pp)
        for req in pp.batch:
            self._unproposed.discard(request_key(req))
        if not self.is_primary and pp.view not in slot.sent_prepare:
            slot.sent_prepare[pp.view] = pp.batch_digest
            penv = self._sign_and_broadcast(Prepare(pp.view, pp.seq, pp.batch_digest))
            slot.prepares.setdefault(pp.view, {})[self._id] = (pp.batch_digest, penv)
        self._check_slot(pp.seq, now)

    def _on_vote(self, env: Envelope, vote: Prepare | Commit, now: int) -> None:
        if isinstance(vote, Commit):
            self._peers.saw_sequence(env.sender, vote.seq)
            # Before the view gate: a replica waiting alone in a later view must still notice that the
            # others are executing, and fetch what they executed.
            self._maybe_schedule_catchup(now)
        if not self._normal_case_gate(env, vote):
            self._maybe_schedule_catchup(now)
            return
        slot = self._slot(vote.seq)
        if isinstance(vote, Prepare):
            if env.sender == self._config.primary(vote.view):
                raise InvalidMessage("prepare_from_primary", f"seq {vote.seq}")
            votes = slot.prepares.setdefault(vote.view, {})
        else:
            votes = slot.commits.setdefault(vote.view, {})
        held = votes.get(env.sender)
        if held is not None:
            if held[0] != vote.batch_digest:
                raise InvalidMessage("double_vote", f"replica {env.sender} at ({vote.view}, {vote.seq})")
            return
        votes[env.sender] = (vote.batch_digest, env)
        self._check_slot(vote.seq, now)
        self._maybe_schedule_catchup(now)

    def _matching(self, votes: dict[int, tuple[bytes, Envelope]], d: bytes) -> list[Envelope]:
        return [env for sender, (vd, env) in sorted(votes.items()) if vd == d]

    def _check_slot(self, seq: int, now: int) -> None:
        slot = self._slots.get(seq)
        v = self._view
        if slot is None or v not in slot.pre_prepares:
            return
        pp_env, pp = slot.pre_prepares[v]
        d = pp.batch_digest
        if v not in slot.sent_commit:
            primary = self._config.primary(v)
            backups = [e for e in self._matching(slot.prepares.get(v, {}), d) if e.sender != primary]
            if len(backups) < self._config.prepare_quorum:
                return
            if v > slot.prepared_view:
                slot.prepared_cert = PreparedCertificate(pp_env, tuple(backups[: self._config.prepare_quorum]))
                slot.prepared_view = v
            slot.sent_commit[v] = d
            cenv = self._sign_and_broadcast(Commit(v, seq, d))
            slot.commits.setdefault(v, {})[self._id] = (d, cenv)
        if slot.committed is None:
            commits = self._matching(slot.commits.get(v, {}), d)
            if len(commits) >= self._config.quorum:
                slot.committed = CommittedEntry(pp_env, tuple(commits[: self._config.quorum]))
                slot.committed_pp = pp
                self._try_execute(now)

    # ------------------------------------------------------------------ held messages

    def _process_ahead(self, now: int) -> None:
        """Handle the held messages that the window now covers (a nested window move is picked up by
        the loop of the outermost call)."""
        if self._replaying_ahead:
            return
        self._replaying_ahead = True
        try:
            while True:
                high = self._cp.low_watermark + self._config.watermark_window
                ready = sorted(k for k in self._ahead if k[0] <= high)
                if not ready:
                    return
                for key in ready:
                    held = self._ahead.pop(key, None)
                    if held is None or key[0] <= self._cp.low_watermark or key[1] != self._view:
                        continue
                    self._replay(*held, now)
        finally:
            self._replaying_ahead = False

    def _replay(self, env: Envelope, msg: NormalCaseMessage, now: int) -> None:
        """Handle a buffered normal-case message; a rejection is counted as if it had just arrived."""
        try:
            if isinstance(msg, PrePrepare):
                self._on_pre_prepare(env, msg, now)
            else:
                self._on_vote(env, msg, now)
        except InvalidMessage as exc:
            self._reject(exc.reason, str(exc))
