"""Execution: committed batches run on the application strictly in sequence order, exactly once per
client request, and the replies go out only after the execution is persisted.

`_apply_batch` changes the state and nothing else, so crash recovery (`recovery`) re-executes the
log with it without producing replies or votes; `_execute` is the live path around it.
"""

from __future__ import annotations

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.consensus.core import TIMER_VIEW_CHANGE, ReplicaCore
from trustchain.consensus.effects import Executed, PersistExecuted
from trustchain.consensus.fair_queue import request_key
from trustchain.consensus.messages import CommittedEntry, PrePrepare, Request
from trustchain.consensus.replica_state import ClientRecord, Phase, ReplicaSnapshot
from trustchain.encoding import decode, encode

__all__ = ["Execution"]


class Execution(ReplicaCore):
    """In-order, exactly-once execution and the replicated client table."""

    def _try_execute(self, now: int) -> None:
        progressed = False
        while True:
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
        # Exactly once and in timestamp order per client: a request runs only if its timestamp is newer
        # than the client's last executed one, counting those earlier in this same batch (a client with
        # several requests in flight must not run one twice or move its record backwards).
        fresh: list[Request] = []
        newest_in_batch: dict[bytes, int] = {}
        for req in pp.batch:
            record = self._client_table.get(req.client)
            last = newest_in_batch.get(req.client, -1 if record is None else record.timestamp)
            if req.timestamp > last:
                fresh.append(req)
                newest_in_batch[req.client] = req.timestamp
        time_us = max(pp.timestamp_us, self._last_time_us)
        ctx = ExecutionContext(pp.seq, time_us)
        ops = [Operation(r.client, r.timestamp, r.operation) for r in fresh]
        results = self._app.execute(ops, ctx) if ops else []
        assert len(results) == len(fresh), "an application must return one result per operation"
        self._last_executed = pp.seq
        self._last_time_us = time_us
        self._cp.committed_log[pp.seq] = entry
        records = [ClientRecord(req.client, req.timestamp, result) for req, result in zip(fresh, results, strict=True)]
        for record in records:
            self._client_table[record.client] = record
        for req in pp.batch:
            self._drop_pending(request_key(req))
        return fresh, records

    def _after_progress(self, now: int) -> None:
        self._vc.postponed = False
        if self._phase is Phase.NORMAL:
            if self._pending:
                self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())
            else:
                self._cancel_timer(TIMER_VIEW_CHANGE)
        self._maybe_schedule_catchup(now)

    # ------------------------------------------------------------------ the replicated state

    def _snapshot(self) -> bytes:
        clients = tuple(self._client_table[c] for c in sorted(self._client_table))
        return encode(ReplicaSnapshot(self._app.snapshot(), clients, self._last_time_us))

    def _restore(self, snapshot: bytes) -> None:
        snap = decode(ReplicaSnapshot, snapshot)
        self._app.restore(snap.app)
        self._client_table = {c.client: c for c in snap.clients}
        self._last_time_us = snap.last_time_us
