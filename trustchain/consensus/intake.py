"""Client requests: admitting them, answering duplicates, and (on the primary) batching them into
pre-prepares.

Every replica keeps the requests it knows and has not executed (`_pending`): a backup's request timer
runs while it holds one, and the next primary re-proposes them after a view change. The primary takes
them into batches round-robin by client (`fair_queue`), proposing while the next sequence number is
inside the window and either a full batch is waiting or the batch timer fired. With adaptive batching
(`ClusterConfig.max_in_flight`) it also keeps at most that many batches unexecuted, and each batch takes
everything waiting up to `max_batch_size`: per-batch costs (signatures, votes, one fsync per replica)
are then shared by more requests the longer the queue is.
"""

from __future__ import annotations

from trustchain.consensus.certificates import InvalidMessage
from trustchain.consensus.core import TIMER_BATCH, TIMER_VIEW_CHANGE, ReplicaCore
from trustchain.consensus.effects import SendToClient
from trustchain.consensus.fair_queue import request_key
from trustchain.consensus.messages import PrePrepare, Reply, Request, pack, seal
from trustchain.consensus.replica_state import ClientRecord, Phase

__all__ = ["MAX_PENDING", "MAX_PENDING_PER_CLIENT", "RequestIntake"]

MAX_PENDING = 100_000
#: Requests one client may have pending at a replica: PBFT clients have one outstanding request, and a
#: client that sends more must not fill what every client shares.
MAX_PENDING_PER_CLIENT = 64


class RequestIntake(ReplicaCore):
    """Admission of client requests, replies, and the primary's batching."""

    def _on_request(self, req: Request, now: int) -> None:
        self._checker.request(req)
        record = self._client_table.get(req.client)
        if record is not None and req.timestamp <= record.timestamp:
            if req.timestamp == record.timestamp:
                self._send_reply(req.client, record)  # the client missed our reply: resend it
            return
        key = request_key(req)
        if key in self._pending:
            return
        if len(self._pending) >= MAX_PENDING:
            raise InvalidMessage("pending_full", f"{len(self._pending)} requests already pending")
        if self._pending_per_client[req.client] >= MAX_PENDING_PER_CLIENT:
            raise InvalidMessage("client_backlog_full", f"{MAX_PENDING_PER_CLIENT} requests of this client pending")
        self._pending[key] = req
        self._pending_per_client[req.client] += 1
        if self._phase is Phase.NORMAL and self.is_primary:
            self._unproposed.add(req)
            self._try_propose(now, flush=False)
        elif TIMER_VIEW_CHANGE not in self._timers and self._phase is Phase.NORMAL:
            self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())

    def _send_reply(self, client: bytes, record: ClientRecord) -> None:
        reply = Reply(self._view, client, record.timestamp, self._id, record.result)
        self._emit(SendToClient(client, pack(seal(self._signer, self._id, reply, self._config.epoch))))

    def _drop_pending(self, key: bytes) -> None:
        req = self._pending.pop(key, None)
        if req is not None:
            self._unproposed.discard(key)
            self._pending_per_client[req.client] -= 1
            if not self._pending_per_client[req.client]:
                del self._pending_per_client[req.client]

    def _already_executed(self, req: Request) -> bool:
        record = self._client_table.get(req.client)
        return record is not None and req.timestamp <= record.timestamp

    # ------------------------------------------------------------------ primary: batching

    def _try_propose(self, now: int, flush: bool) -> None:
        if self._phase is not Phase.NORMAL or not self.is_primary:
            return
        config = self._config
        size = config.batch_size
        while self._unproposed:
            if not self._in_window(self._next_seq):
                return  # pipeline full: resumes when a checkpoint becomes stable
            if self._above_ceiling(self._next_seq):
                return  # this configuration ends below: the next one orders what waits
            if config.max_in_flight:
                in_flight = self._next_seq - 1 - self._last_executed
                if in_flight >= config.max_in_flight:
                    return  # resumes when a batch executes (`Execution._after_progress`)
                size = max(size, config.max_batch_size)
                flush = flush or in_flight == 0  # idle: nothing to wait for
            if len(self._unproposed) < config.batch_size and not flush and config.batch_delay_us > 0:
                if TIMER_BATCH not in self._timers:
                    self._set_timer(TIMER_BATCH, now + self._config.batch_delay_us)
                return
            self._propose(self._unproposed.take(size), now)
        self._cancel_timer(TIMER_BATCH)

    def _propose(self, batch: tuple[Request, ...], now: int) -> None:
        seq = self._next_seq
        self._next_seq += 1
        pp = PrePrepare(self._view, seq, PrePrepare.compute_digest(now, batch), now, batch)
        env = self._sign_and_broadcast(pp)
        self._slot(seq).pre_prepares[self._view] = (env, pp)
        self._check_slot(seq, now)
