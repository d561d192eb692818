"""Execution: committed batches run on the application strictly in sequence order, exactly once per
client request, and the replies go out only after the execution is persisted.

`_apply_batch` changes the state and nothing else, so crash recovery (`recovery`) re-executes the
log with it without producing replies or votes; `_execute` is the live path around it.
"""

from __future__ import annotations

from trustchain.consensus.apply import apply_batch, encode_state, restore_state
from trustchain.consensus.core import TIMER_VIEW_CHANGE, ReplicaCore
from trustchain.consensus.effects import Executed, PersistExecuted
from trustchain.consensus.fair_queue import request_key
from trustchain.consensus.messages import CommittedEntry, PrePrepare, Request
from trustchain.consensus.replica_state import ClientRecord, Phase

__all__ = ["Execution"]


class Execution(ReplicaCore):
    """In-order, exactly-once execution and the replicated client table."""

    def _try_execute(self, now: int) -> None:
        progressed = False
        while not self._above_ceiling(self._last_executed + 1):
            slot = self._slots.get(self._last_executed + 1)
            if slot is None or slot.committed is None or slot.committed_pp is None:
                break
            self._execute(slot.committed, slot.committed_pp)
            progressed = True
        if progressed and self.is_primary:
            self._next_seq = max(self._next_seq, self._last_executed + 1)
        if progressed:
            self._after_progress(now)

    def _execute(self, entry: CommittedEntry, pp: PrePrepare) -> None:
        fresh, records = self._apply_batch(entry, pp)
        self._persist(PersistExecuted(pp.seq, entry))  # durable before any reply leaves
        for record in records:
            self._send_reply(record.client, record)
        self._emit(Executed(pp.seq, pp.view, self._last_time_us, pp.batch_digest, tuple(fresh),
                            tuple(r.result for r in records), entry))
        if pp.seq % self._config.checkpoint_interval == 0:
            self._take_checkpoint(pp.seq)

    def _apply_batch(self, entry: CommittedEntry, pp: PrePrepare) -> tuple[list[Request], list[ClientRecord]]:
        assert pp.seq == self._last_executed + 1, "execution must follow sequence order"
        outcome = apply_batch(self._app, self._client_table, self._last_time_us, pp)
        self._last_executed = pp.seq
        self._last_time_us = outcome.time_us
        self._cp.committed_log[pp.seq] = entry
        fresh, records = list(outcome.fresh), list(outcome.records)
        for req in pp.batch:
            self._drop_pending(request_key(req))
        return fresh, records

    def _after_progress(self, now: int) -> None:
        self._vc.postponed = False
        if self._config.max_in_flight and self.is_primary:
            self._try_propose(now, flush=False)  # a batch left the pipeline: the queue may follow
        if self._phase is Phase.NORMAL:
            if self._pending:
                self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())
            else:
                self._cancel_timer(TIMER_VIEW_CHANGE)
        self._maybe_schedule_catchup(now)

    # ------------------------------------------------------------------ the replicated state

    def _snapshot(self) -> bytes:
        return encode_state(self._app, self._client_table, self._last_time_us)

    def _restore(self, snapshot: bytes) -> None:
        self._client_table, self._last_time_us = restore_state(self._app, snapshot)
