"""The PBFT replica as a sans-I/O state machine.

Inputs are wire bytes (`receive`), timer firings (`on_timer`) and the current time in integer
microseconds; outputs are effects (see `effects.py`). The replica never reads a clock, never draws
randomness and never performs I/O, so the simulator and the reference node run the same code and a
simulation replays exactly.

Structure follows Castro & Liskov: normal case (pre-prepare, prepare, commit, execute), checkpoints
and garbage collection, view change with backing-off timers, and state transfer from a stable
checkpoint plus commit-certified entries.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from trustchain.app.interface import Application, ExecutionContext, Operation
from trustchain.consensus.certificates import (
    InvalidMessage,
    SignatureChecker,
    check_checkpoint_proof,
    check_committed,
    check_pre_prepare,
)
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import (
    Broadcast,
    CancelTimer,
    Effect,
    Executed,
    Persist,
    PersistExecuted,
    PersistRecord,
    PersistStable,
    PersistVote,
    SendToClient,
    SendToReplica,
    SetTimer,
    StateRestored,
    ViewEntered,
)
from trustchain.consensus.fair_queue import FairQueue, request_key
from trustchain.consensus.messages import (
    Checkpoint,
    Commit,
    CommittedEntry,
    Envelope,
    Kind,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Reply,
    Request,
    StateReply,
    StateRequest,
    ViewChange,
    digest,
    pack,
    seal,
    unpack,
)
from trustchain.consensus.state_transfer import PeerProgress, ServedState, answer
from trustchain.consensus.viewchange import CheckedViewChange, check_view_change, new_view_pre_prepares
from trustchain.crypto.signing import ED25519, Signer, Verifier
from trustchain.encoding import DecodeError, decode, encode

TIMER_BATCH = "batch"
TIMER_VIEW_CHANGE = "view_change"
TIMER_CATCHUP = "catchup"
TIMER_VC_RESEND = "view_change_resend"

MAX_PENDING = 100_000
#: Requests one client may have pending at a replica: PBFT clients have one outstanding request, and a
#: client that sends more must not fill what every client shares.
MAX_PENDING_PER_CLIENT = 64


class Status(enum.Enum):
    NORMAL = "normal"
    VIEW_CHANGE = "view-change"


@dataclass(frozen=True)
class ClientRecord:
    client: bytes
    timestamp: int
    result: bytes


@dataclass(frozen=True)
class ReplicaSnapshot:
    """What a checkpoint's state digest covers: the application plus the exactly-once client table."""

    app: bytes
    clients: tuple[ClientRecord, ...]
    last_time_us: int


@dataclass
class Slot:
    """Everything a replica knows about one sequence number, per view."""

    pre_prepares: dict[int, tuple[Envelope, PrePrepare]] = field(default_factory=dict)
    prepares: dict[int, dict[int, tuple[bytes, Envelope]]] = field(default_factory=dict)
    commits: dict[int, dict[int, tuple[bytes, Envelope]]] = field(default_factory=dict)
    sent_prepare: dict[int, bytes] = field(default_factory=dict)
    sent_commit: dict[int, bytes] = field(default_factory=dict)
    prepared_cert: PreparedCertificate | None = None
    prepared_view: int = -1
    committed: CommittedEntry | None = None
    committed_pp: PrePrepare | None = None


class Replica:
    def __init__(
        self,
        config: ClusterConfig,
        replica_id: int,
        signer: Signer,
        app: Application,
        verifier: Verifier = ED25519,
    ) -> None:
        if not 0 <= replica_id < config.n:
            raise ValueError(f"replica_id {replica_id} not in 0..{config.n - 1}")
        if signer.public_key != config.replicas[replica_id]:
            raise ValueError(f"signer's public key is not replica {replica_id}'s key in the config")
        self.config = config
        self.id = replica_id
        self.signer = signer
        self.app = app
        self.checker = SignatureChecker(config, verifier)

        self.view = 0
        self.status = Status.NORMAL
        self.low_watermark = 0  # h: sequence of the last stable checkpoint
        self.last_executed = 0
        self.last_time_us = 0
        self.next_seq = 1  # primary only

        self.slots: dict[int, Slot] = {}
        self.pending: dict[bytes, Request] = {}  # known, not yet executed (insertion ordered)
        self.unproposed = FairQueue()  # primary: pending and not yet in a pre-prepare
        self.pending_per_client: Counter[bytes] = Counter()
        self.client_table: dict[bytes, ClientRecord] = {}

        self.own_checkpoints: dict[int, tuple[bytes, bytes]] = {}  # seq -> (state digest, snapshot)
        self.checkpoint_votes: dict[int, dict[int, Envelope]] = {}
        self.stable_proof: tuple[Envelope, ...] = ()
        self.stable_snapshot: bytes = b""
        self.committed_log: dict[int, CommittedEntry] = {}  # executed entries above h

        self.view_changes: dict[int, dict[int, CheckedViewChange]] = {}
        self.latest_vc_view: dict[int, int] = {}
        self.vc_attempts = 0
        self.vc_postponed = False  # the request timer already waited one extra period for state transfer
        self.new_view_sent: set[int] = set()
        self.current_new_view: Envelope | None = None
        self.future: list[tuple[Envelope, Prepare | Commit | PrePrepare]] = []
        # Current-view normal-case messages for (h+L, h+2L], one per (seq, view, kind, sender): processed
        # when our window moves (see `_normal_case_gate`).
        self.ahead: dict[tuple[int, int, int, int], tuple[Envelope, Prepare | Commit | PrePrepare]] = {}
        self._replaying_ahead = False
        self._checked_vcs: dict[bytes, CheckedViewChange] = {}
        self.own_view_change: Envelope | None = None

        self.peers = PeerProgress(config.weak_quorum)
        self.catchup_rotation = 0

        self.timers: dict[str, int] = {}
        self.rejected: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self._out: list[Effect] = []
        self._now = 0
        self.catchup_mark = -1
        self._silent = False  # recovery replays executions without producing effects

    # ------------------------------------------------------------------ public driver interface

    @property
    def primary(self) -> int:
        return self.config.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.id

    def receive(self, data: bytes, now: int) -> list[Effect]:
        """Handle one packet from the network. Never raises on bad input: it is counted instead."""
        self._out = []
        self._now = now
        try:
            payload = unpack(data)
            if isinstance(payload, Request):
                self.received["request"] += 1
                self._on_request(payload, now)
            else:
                self._on_envelope(payload, now)
        except DecodeError as exc:
            self._reject("malformed", str(exc))
        except InvalidMessage as exc:
            self._reject(exc.reason, str(exc))
        return self._take()

    def submit(self, request: Request, now: int) -> list[Effect]:
        """A request handed over directly by a co-located API (same checks as from the network)."""
        return self.receive(pack(request), now)

    def on_timer(self, name: str, now: int) -> list[Effect]:
        self._out = []
        self._now = now
        due = self.timers.get(name)
        if due is None or now < due:
            return []  # stale firing of a timer that was re-armed or cancelled
        del self.timers[name]
        if name == TIMER_BATCH:
            self._try_propose(now, flush=True)
        elif name == TIMER_VIEW_CHANGE:
            if self.status is Status.NORMAL and not self.vc_postponed and self._behind():
                # Peers report sequence numbers beyond ours: we may be the ones behind (just restarted), and
                # a view change now would leave us alone in the next view, a non-voting learner until the
                # others change view. Give state transfer one more timeout. Only one: commit votes show
                # what was prepared, not executed, so "behind" may also mean a stuck slot that only a view
                # change unsticks (the mutant suite's lossy schedule deadlocks if we keep waiting).
                self.vc_postponed = True
                self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())
                self._maybe_schedule_catchup(now)
            else:
                self._start_view_change(self.view + 1, now)
        elif name == TIMER_CATCHUP:
            self._catchup(now)
        elif name == TIMER_VC_RESEND:
            self._resend_view_change(now)
        return self._take()

    # ------------------------------------------------------------------ effects helpers

    def _take(self) -> list[Effect]:
        out, self._out = self._out, []
        return out

    def _emit(self, effect: Effect) -> None:
        if not self._silent:
            self._out.append(effect)

    def _reject(self, reason: str, detail: str = "") -> None:
        self.rejected[reason] += 1

    def _set_timer(self, name: str, at_us: int) -> None:
        self.timers[name] = at_us
        self._emit(SetTimer(name, at_us))

    def _cancel_timer(self, name: str) -> None:
        if self.timers.pop(name, None) is not None:
            self._emit(CancelTimer(name))

    def _persist(self, record: PersistRecord) -> None:
        self._emit(Persist(record))

    def _sign_and_broadcast(self, message: object) -> Envelope:
        env = seal(self.signer, self.id, message)
        self._persist(PersistVote(env))  # durable before it leaves: a restart never votes twice
        self._emit(Broadcast(pack(env)))
        return env

    def _slot(self, seq: int) -> Slot:
        slot = self.slots.get(seq)
        if slot is None:
            slot = self.slots[seq] = Slot()
        return slot

    def _in_window(self, seq: int) -> bool:
        return self.low_watermark < seq <= self.low_watermark + self.config.watermark_window

    # ------------------------------------------------------------------ client requests

    def _on_request(self, req: Request, now: int) -> None:
        self.checker.request(req)
        record = self.client_table.get(req.client)
        if record is not None and req.timestamp <= record.timestamp:
            if req.timestamp == record.timestamp:
                self._send_reply(req.client, record)  # the client missed our reply: resend it
            return
        key = request_key(req)
        if key in self.pending:
            return
        if len(self.pending) >= MAX_PENDING:
            raise InvalidMessage("pending_full", f"{len(self.pending)} requests already pending")
        if self.pending_per_client[req.client] >= MAX_PENDING_PER_CLIENT:
            raise InvalidMessage("client_backlog_full", f"{MAX_PENDING_PER_CLIENT} requests of this client pending")
        self.pending[key] = req
        self.pending_per_client[req.client] += 1
        if self.status is Status.NORMAL and self.is_primary:
            self.unproposed.add(req)
            self._try_propose(now, flush=False)
        elif TIMER_VIEW_CHANGE not in self.timers and self.status is Status.NORMAL:
            self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())

    def _send_reply(self, client: bytes, record: ClientRecord) -> None:
        reply = Reply(self.view, client, record.timestamp, self.id, record.result)
        self._emit(SendToClient(client, pack(seal(self.signer, self.id, reply))))

    # ------------------------------------------------------------------ primary: batching

    def _try_propose(self, now: int, flush: bool) -> None:
        if self.status is not Status.NORMAL or not self.is_primary:
            return
        size = self.config.batch_size
        while self.unproposed:
            if not self._in_window(self.next_seq):
                return  # pipeline full: resumes when a checkpoint becomes stable
            if len(self.unproposed) < size and not flush and self.config.batch_delay_us > 0:
                if TIMER_BATCH not in self.timers:
                    self._set_timer(TIMER_BATCH, now + self.config.batch_delay_us)
                return
            self._propose(self.unproposed.take(size), now)
        self._cancel_timer(TIMER_BATCH)

    def _propose(self, batch: tuple[Request, ...], now: int) -> None:
        seq = self.next_seq
        self.next_seq += 1
        pp = PrePrepare(self.view, seq, PrePrepare.compute_digest(now, batch), now, batch)
        env = self._sign_and_broadcast(pp)
        self._slot(seq).pre_prepares[self.view] = (env, pp)
        self._check_slot(seq, now)

    # ------------------------------------------------------------------ envelope dispatch

    def _on_envelope(self, env: Envelope, now: int) -> None:
        if env.sender == self.id:
            raise InvalidMessage("own_message", "a message claiming to be from this replica")
        try:
            kind = Kind(env.kind)
        except ValueError:
            raise InvalidMessage("malformed", f"unknown message kind {env.kind}") from None
        self.received[kind.name.lower()] += 1
        if kind is Kind.PRE_PREPARE:
            pp = check_pre_prepare(self.checker, env)
            self._on_pre_prepare(env, pp, now)
        elif kind in (Kind.PREPARE, Kind.COMMIT):
            vote = self.checker.open(env, kind)
            self._on_vote(env, vote, now)
        elif kind is Kind.CHECKPOINT:
            self._on_checkpoint(env, self.checker.open(env, kind), now)
        elif kind is Kind.VIEW_CHANGE:
            self._on_view_change(self._check_view_change(env), now)
        elif kind is Kind.NEW_VIEW:
            self._on_new_view(env, self.checker.open(env, kind), now)
        elif kind is Kind.STATE_REQUEST:
            self._on_state_request(env.sender, self.checker.open(env, kind))
        elif kind is Kind.STATE_REPLY:
            self._on_state_reply(self.checker.open(env, kind), now)
        else:
            raise InvalidMessage("unexpected_kind", f"{kind.name} is not for replicas")

    def _normal_case_gate(self, env: Envelope, msg: PrePrepare | Prepare | Commit) -> bool:
        """True if the message is for the current view and may be processed now; messages for a
        later view are buffered (bounded) until this replica enters it."""
        self.peers.saw_view(env.sender, msg.view)
        if msg.view < self.view:
            raise InvalidMessage("stale_view", f"view {msg.view} < {self.view}")
        if msg.view > self.view or self.status is not Status.NORMAL:
            self.future.append((env, msg))
            limit = 4 * self.config.watermark_window * self.config.n
            if len(self.future) > limit:
                del self.future[: len(self.future) - limit]
                self.rejected["future_buffer_overflow"] += 1
            return False
        if not self._in_window(msg.seq):
            high = self.low_watermark + self.config.watermark_window
            if msg.seq > high:
                # Peers working beyond our window: our stable checkpoint lags (its proof may have been
                # lost), which state transfer repairs.
                self.peers.saw_beyond_window(env.sender, msg.seq)
                self._maybe_schedule_catchup(self._now)
                if msg.seq <= high + self.config.watermark_window:
                    # Each replica's checkpoint becomes stable when *it* has executed that far and
                    # counted a quorum of checkpoint votes, so the primary's window often moves first
                    # and it proposes up to its new h+L at once. Nobody sends these messages again:
                    # dropped, the slot may never gather a prepare quorum, and only a view change
                    # would unstick it. Keep them (bounded: one per sequence, kind and sender, current
                    # view only) until our window moves.
                    self.ahead.setdefault((msg.seq, msg.view, env.kind, env.sender), (env, msg))
                    return False
            raise InvalidMessage("outside_watermarks", f"seq {msg.seq} not in ({self.low_watermark}, "
                                 f"{self.low_watermark + self.config.watermark_window}]")
        return True

    # ------------------------------------------------------------------ normal case

    def _on_pre_prepare(self, env: Envelope, pp: PrePrepare, now: int) -> None:
        if not self._normal_case_gate(env, pp):
            return
        if abs(pp.timestamp_us - now) > self.config.max_clock_skew_us:
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
            self.unproposed.discard(request_key(req))
        if not self.is_primary and pp.view not in slot.sent_prepare:
            slot.sent_prepare[pp.view] = pp.batch_digest
            penv = self._sign_and_broadcast(Prepare(pp.view, pp.seq, pp.batch_digest))
            slot.prepares.setdefault(pp.view, {})[self.id] = (pp.batch_digest, penv)
        self._check_slot(pp.seq, now)

    def _on_vote(self, env: Envelope, vote: Prepare | Commit, now: int) -> None:
        if isinstance(vote, Commit):
            self.peers.saw_sequence(env.sender, vote.seq)
            # Before the view gate: a replica waiting alone in a later view must still notice that the
            # others are executing, and fetch what they executed.
            self._maybe_schedule_catchup(now)
        if not self._normal_case_gate(env, vote):
            self._maybe_schedule_catchup(now)
            return
        slot = self._slot(vote.seq)
        if isinstance(vote, Prepare):
            if env.sender == self.config.primary(vote.view):
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
        slot = self.slots.get(seq)
        v = self.view
        if slot is None or v not in slot.pre_prepares:
            return
        pp_env, pp = slot.pre_prepares[v]
        d = pp.batch_digest
        if v not in slot.sent_commit:
            primary = self.config.primary(v)
            backups = [e for e in self._matching(slot.prepares.get(v, {}), d) if e.sender != primary]
            if len(backups) < self.config.prepare_quorum:
                return
            if v > slot.prepared_view:
                slot.prepared_cert = PreparedCertificate(pp_env, tuple(backups[: self.config.prepare_quorum]))
                slot.prepared_view = v
            slot.sent_commit[v] = d
            cenv = self._sign_and_broadcast(Commit(v, seq, d))
            slot.commits.setdefault(v, {})[self.id] = (d, cenv)
        if slot.committed is None:
            commits = self._matching(slot.commits.get(v, {}), d)
            if len(commits) >= self.config.quorum:
                slot.committed = CommittedEntry(pp_env, tuple(commits[: self.config.quorum]))
                slot.committed_pp = pp
                self._try_execute(now)

    # ------------------------------------------------------------------ execution

    def _try_execute(self, now: int) -> None:
        progressed = False
        while True:
            slot = self.slots.get(self.last_executed + 1)
            if slot is None or slot.committed is None or slot.committed_pp is None:
                break
            self._execute(slot.committed, slot.committed_pp)
            progressed = True
        if progressed and self.is_primary:
            self.next_seq = max(self.next_seq, self.last_executed + 1)
        if progressed and not self._silent:
            self._after_progress(now)

    def _execute(self, entry: CommittedEntry, pp: PrePrepare) -> None:
        assert pp.seq == self.last_executed + 1, "execution must follow sequence order"
        # Exactly once and in timestamp order per client: a request runs only if its timestamp is newer
        # than the client's last executed one, counting those earlier in this same batch (a client with
        # several requests in flight must not run one twice or move its record backwards).
        fresh: list[Request] = []
        newest_in_batch: dict[bytes, int] = {}
        for req in pp.batch:
            record = self.client_table.get(req.client)
            last = newest_in_batch.get(req.client, -1 if record is None else record.timestamp)
            if req.timestamp > last:
                fresh.append(req)
                newest_in_batch[req.client] = req.timestamp
        time_us = max(pp.timestamp_us, self.last_time_us)
        ctx = ExecutionContext(pp.seq, time_us)
        ops = [Operation(r.client, r.timestamp, r.operation) for r in fresh]
        results = self.app.execute(ops, ctx) if ops else []
        assert len(results) == len(fresh), "an application must return one result per operation"
        self._persist(PersistExecuted(pp.seq, entry))  # durable before any reply leaves
        self.last_executed = pp.seq
        self.last_time_us = time_us
        self.committed_log[pp.seq] = entry
        for req, result in zip(fresh, results, strict=True):
            record = ClientRecord(req.client, req.timestamp, result)
            self.client_table[req.client] = record
            self._send_reply(req.client, record)
        for req in pp.batch:
            self._drop_pending(request_key(req))
        self._emit(
            Executed(pp.seq, pp.view, time_us, pp.batch_digest, tuple(fresh), tuple(results), entry)
        )
        if pp.seq % self.config.checkpoint_interval == 0:
            self._take_checkpoint(pp.seq)

    def _after_progress(self, now: int) -> None:
        self.vc_postponed = False
        if self.status is Status.NORMAL:
            if self.pending:
                self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())
            else:
                self._cancel_timer(TIMER_VIEW_CHANGE)
        self._maybe_schedule_catchup(now)

    # ------------------------------------------------------------------ checkpoints and GC

    def _snapshot(self) -> bytes:
        clients = tuple(self.client_table[c] for c in sorted(self.client_table))
        return encode(ReplicaSnapshot(self.app.snapshot(), clients, self.last_time_us))

    def _restore(self, snapshot: bytes) -> None:
        snap = decode(ReplicaSnapshot, snapshot)
        self.app.restore(snap.app)
        self.client_table = {c.client: c for c in snap.clients}
        self.last_time_us = snap.last_time_us

    def _take_checkpoint(self, seq: int) -> None:
        snapshot = self._snapshot()
        d = digest(snapshot)
        self.own_checkpoints[seq] = (d, snapshot)
        if self._silent:
            return
        env = self._sign_and_broadcast(Checkpoint(seq, d))
        self.checkpoint_votes.setdefault(seq, {})[self.id] = env
        self._check_stable(seq)

    def _on_checkpoint(self, env: Envelope, cp: Checkpoint, now: int) -> None:
        self.peers.saw_sequence(env.sender, cp.seq)
        if cp.seq <= self.low_watermark:
            return
        horizon = self.low_watermark + 4 * self.config.watermark_window
        if cp.seq > horizon:
            self._maybe_schedule_catchup(now)
            raise InvalidMessage("checkpoint_beyond_horizon", f"seq {cp.seq} > {horizon}")
        votes = self.checkpoint_votes.setdefault(cp.seq, {})
        if env.sender in votes:
            return
        votes[env.sender] = env
        self._check_stable(cp.seq)
        self._maybe_schedule_catchup(now)

    def _check_stable(self, seq: int) -> None:
        votes = self.checkpoint_votes.get(seq, {})
        own = self.own_checkpoints.get(seq)
        if own is None or seq <= self.low_watermark:
            return
        matching = tuple(
            env for _, env in sorted(votes.items()) if decode(Checkpoint, env.body).state_digest == own[0]
        )
        if len(matching) < self.config.quorum:
            return
        self._make_stable(seq, own[1], matching)

    def _make_stable(self, seq: int, snapshot: bytes, proof: tuple[Envelope, ...]) -> None:
        assert seq > self.low_watermark
        self.low_watermark = seq
        # Sustained progress: let the view-change timeout come down one step. Resetting it on every
        # execution instead makes a cluster on a slow network change view after every few requests.
        self.vc_attempts = max(0, self.vc_attempts - 1)
        self.stable_proof = proof
        self.stable_snapshot = snapshot
        self._persist(PersistStable(seq, snapshot, proof))
        for table in (self.slots, self.committed_log):
            for s in [s for s in table if s <= seq]:
                del table[s]
        for s in [s for s in self.checkpoint_votes if s < seq]:
            del self.checkpoint_votes[s]
        for s in [s for s in self.own_checkpoints if s < seq]:
            del self.own_checkpoints[s]
        if self.is_primary and self.next_seq <= seq:
            self.next_seq = seq + 1
        # The window moved: the primary may propose what was waiting for it, and messages held above
        # the old window may now be in it.
        self._try_propose(self._now, flush=True)
        self._process_ahead(self._now)

    def _process_ahead(self, now: int) -> None:
        """Handle the held messages that the window now covers (a nested window move is picked up by
        the loop of the outermost call)."""
        if self._replaying_ahead:
            return
        self._replaying_ahead = True
        try:
            while True:
                high = self.low_watermark + self.config.watermark_window
                ready = sorted(k for k in self.ahead if k[0] <= high)
                if not ready:
                    return
                for key in ready:
                    held = self.ahead.pop(key, None)
                    if held is None or key[0] <= self.low_watermark or key[1] != self.view:
                        continue
                    self._replay(*held, now)
        finally:
            self._replaying_ahead = False

    def _replay(self, env: Envelope, msg: PrePrepare | Prepare | Commit, now: int) -> None:
        """Handle a buffered normal-case message; a rejection is counted as if it had just arrived."""
        try:
            if isinstance(msg, PrePrepare):
                self._on_pre_prepare(env, msg, now)
            else:
                self._on_vote(env, msg, now)
        except InvalidMessage as exc:
            self._reject(exc.reason, str(exc))

    # ------------------------------------------------------------------ view change

    def _vc_timeout(self) -> int:
        base = self.config.view_change_timeout_us
        return min(self.config.max_view_change_timeout_us, base << min(self.vc_attempts, 30))

    def _start_view_change(self, new_view: int, now: int) -> None:
        assert new_view > self.view, "views only move forward"
        self.view = new_view
        self.status = Status.VIEW_CHANGE
        self.ahead.clear()  # all for the old view
        self._cancel_timer(TIMER_BATCH)
        prepared = tuple(
            slot.prepared_cert
            for seq, slot in sorted(self.slots.items())
            if seq > self.low_watermark and slot.prepared_cert is not None
        )
        vc = ViewChange(new_view, self.low_watermark, self.stable_proof, prepared)
        env = self._sign_and_broadcast(vc)
        self.own_view_change = env
        self._set_timer(TIMER_VC_RESEND, now + self.config.view_change_timeout_us)
        self._cancel_timer(TIMER_VIEW_CHANGE)
        self.vc_attempts += 1
        self._record_view_change(self._check_view_change(env))
        self._arm_view_change_timer(now)
        self._try_new_view(now)

    def _resend_view_change(self, now: int) -> None:
        """View-change messages lost to a partition are sent again until the view forms: without
        this, replicas that each hold fewer than 2f+1 of them would wait for ever."""
        if self.status is Status.VIEW_CHANGE and self.own_view_change is not None:
            self._emit(Broadcast(pack(self.own_view_change)))
            self._set_timer(TIMER_VC_RESEND, now + self.config.view_change_timeout_us)

    def _arm_view_change_timer(self, now: int) -> None:
        """PBFT's liveness rule: the timer for the next view starts only once a quorum of replicas
        asked for this view or a later one, so a lone replica whose timer fired (a pause, a partition)
        waits in its view instead of racing ahead alone, and the others find it there at their next
        view change. Requests for later views count too: a replica that moved on to view v+1 after
        asking for v (its own request for v may never have been delivered) still wants to leave every
        view below v+1, and without counting it the replicas left in v would wait below a quorum,
        with no timer, for a message that will never come."""
        if self.status is not Status.VIEW_CHANGE or TIMER_VIEW_CHANGE in self.timers:
            return
        asking = sum(1 for v in self.latest_vc_view.values() if v >= self.view)
        if asking >= self.config.quorum:
            self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())

    def _check_view_change(self, env: Envelope) -> CheckedViewChange:
        """Validated once: a NEW-VIEW repeats view changes this replica has usually seen already."""
        key = env.digest + env.signature
        checked = self._checked_vcs.get(key)
        if checked is None:
            checked = check_view_change(self.checker, env)
            self._checked_vcs[key] = checked
            if len(self._checked_vcs) > 4 * self.config.n:
                del self._checked_vcs[next(iter(self._checked_vcs))]
        return checked

    def _record_view_change(self, checked: CheckedViewChange) -> None:
        sender = checked.envelope.sender
        v = checked.message.new_view
        previous = self.latest_vc_view.get(sender)
        if previous is not None and previous >= v:
            return
        if previous is not None:
            self.view_changes.get(previous, {}).pop(sender, None)
        self.latest_vc_view[sender] = v
        self.view_changes.setdefault(v, {})[sender] = checked

    def _on_view_change(self, checked: CheckedViewChange, now: int) -> None:
        vc = checked.message
        sender = checked.envelope.sender
        self.peers.saw_sequence(sender, vc.stable_seq)
        if vc.new_view < self.view or (vc.new_view == self.view and self.status is Status.NORMAL):
            self._help_laggard(sender)
            raise InvalidMessage("stale_view_change", f"for view {vc.new_view}, current {self.view}")
        self._record_view_change(checked)
        # Join when f+1 replicas want a later view: at least one honest replica timed out.
        ahead = sorted(v for v in self.latest_vc_view.values() if v > self.view)
        if len(ahead) >= self.config.weak_quorum:
            self._start_view_change(ahead[len(ahead) - self.config.weak_quorum], now)
            return
        self._arm_view_change_timer(now)
        self._try_new_view(now)

    def _new_view_pre_prepares(self, v: int, vcs: list[CheckedViewChange]) -> tuple[int, list[PrePrepare]]:
        """One computation for the primary that builds NEW-VIEW and the backups that check it."""
        return new_view_pre_prepares(v, vcs)

    def _help_laggard(self, sender: int) -> None:
        """A replica still asks for a view below ours: show it how we got here, so that views converge
        instead of each side waiting for the other (PBFT's view synchronisation by retransmission).
        In the view we are in, that is its NEW-VIEW; while we wait for a later view, our own
        VIEW-CHANGE, which counts towards its timer (`_arm_view_change_timer`) and, with f others,
        makes it join us."""
        if self.status is Status.NORMAL and self.current_new_view is not None and self.is_primary:
            self._emit(SendToReplica(sender, pack(self.current_new_view)))
        elif (self.status is Status.VIEW_CHANGE and self.own_view_change is not None
              and self.latest_vc_view.get(sender, -1) < self.view):
            self._emit(SendToReplica(sender, pack(self.own_view_change)))

    def _try_new_view(self, now: int) -> None:
        v = self.view
        if self.status is not Status.VIEW_CHANGE or not self.is_primary or v in self.new_view_sent:
            return
        vcs = self.view_changes.get(v, {})
        if len(vcs) < self.config.quorum:
            return
        chosen = [vcs[s] for s in sorted(vcs)][: self.config.quorum]
        min_s, pps = self._new_view_pre_prepares(v, chosen)
        pp_envs = tuple(seal(self.signer, self.id, pp) for pp in pps)
        nv = NewView(v, tuple(c.envelope for c in chosen), pp_envs)
        self.new_view_sent.add(v)
        env = self._sign_and_broadcast(nv)
        self._enter_view(v, env, min_s, list(zip(pp_envs, pps, strict=True)), now)

    def _on_new_view(self, env: Envelope, nv: NewView, now: int) -> None:
        if env.sender != self.config.primary(nv.view):
            raise InvalidMessage("not_primary", f"new-view for {nv.view} from replica {env.sender}")
        if nv.view < self.view or (nv.view == self.view and self.status is Status.NORMAL):
            return  # already there
        checked: list[CheckedViewChange] = []
        senders: set[int] = set()
        for vc_env in nv.view_changes:
            c = self._check_view_change(vc_env)
            if c.message.new_view != nv.view or vc_env.sender in senders:
                raise InvalidMessage("invalid_new_view", "view-change set is for another view or repeats")
            senders.add(vc_env.sender)
            checked.append(c)
        if len(checked) < self.config.quorum:
            raise InvalidMessage("invalid_new_view", f"only {len(checked)} view-change messages")
        min_s, pairs = self._check_new_view_pre_prepares(nv, checked)
        for c in checked:
            self.peers.saw_sequence(c.envelope.sender, c.message.stable_seq)
        self._enter_view(nv.view, env, min_s, pairs, now)

    def _check_new_view_pre_prepares(
        self, nv: NewView, checked: list[CheckedViewChange]
    ) -> tuple[int, list[tuple[Envelope, PrePrepare]]]:
        """The NEW-VIEW's pre-prepares must be exactly those recomputed from its view changes: a new
        primary can neither drop nor alter a batch that may have committed."""
        min_s, expected = self._new_view_pre_prepares(nv.view, checked)
        if len(expected) != len(nv.pre_prepares):
            raise InvalidMessage("invalid_new_view", "pre-prepare set does not match the view changes")
        pairs: list[tuple[Envelope, PrePrepare]] = []
        for pp_env, want in zip(nv.pre_prepares, expected, strict=True):
            got = check_pre_prepare(self.checker, pp_env)
            if got != want:
                raise InvalidMessage("invalid_new_view", f"pre-prepare for seq {want.seq} was altered")
            pairs.append((pp_env, got))
        return min_s, pairs

    def _enter_view(
        self, v: int, nv_env: Envelope, min_s: int, pairs: list[tuple[Envelope, PrePrepare]], now: int
    ) -> None:
        self.view = v
        self.status = Status.NORMAL
        self.vc_postponed = False
        self.ahead.clear()  # all for an older view
        self.current_new_view = nv_env
        for old in [w for w in self.view_changes if w <= v]:
            del self.view_changes[old]
        self._cancel_timer(TIMER_VIEW_CHANGE)
        self._cancel_timer(TIMER_VC_RESEND)
        null_filled = sum(1 for _, pp in pairs if not pp.batch)
        self._emit(ViewEntered(v, len(pairs) - null_filled, null_filled))
        max_s = min_s
        for pp_env, pp in pairs:
            max_s = max(max_s, pp.seq)
            if pp.seq <= self.low_watermark:
                continue
            self._accept_pre_prepare(pp_env, pp, now)
        if self.is_primary:
            self.next_seq = max(max_s, self.low_watermark, self.last_executed) + 1
            in_flight = {request_key(r) for s in self.slots.values() if v in s.pre_prepares
                         for r in s.pre_prepares[v][1].batch}
            self.unproposed = FairQueue()
            for k, r in self.pending.items():
                if k not in in_flight:
                    self.unproposed.add(r)
        else:
            self.unproposed = FairQueue()
        buffered, self.future = self.future, []
        for env, msg in buffered:
            if msg.view >= v:
                self._replay(env, msg, now)
        if self.pending and TIMER_VIEW_CHANGE not in self.timers:
            self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())
        self._try_propose(now, flush=True)
        self._maybe_schedule_catchup(now)

    # ------------------------------------------------------------------ state transfer

    def _behind(self) -> bool:
        return self.peers.behind(self.last_executed, self.view, self.status is Status.VIEW_CHANGE,
                                 self.low_watermark + self.config.watermark_window)

    def _maybe_schedule_catchup(self, now: int) -> None:
        if TIMER_CATCHUP not in self.timers and self._behind():
            self.catchup_mark = self.last_executed
            self._set_timer(TIMER_CATCHUP, now + self.config.catchup_delay_us)

    def _catchup(self, now: int) -> None:
        """Ask a peer for state only when stuck: behind, and no progress since the timer was armed
        (a replica that is merely a little slower catches up on its own)."""
        if not self._behind():
            return
        if self.last_executed > self.catchup_mark and self.status is Status.NORMAL:
            self._maybe_schedule_catchup(now)
            return
        peer = self.peers.pick_peer(self.id, self.config.n, self.catchup_rotation)
        self.catchup_rotation += 1
        request = StateRequest(self.last_executed, self.low_watermark, self.view, self.status is Status.VIEW_CHANGE)
        env = seal(self.signer, self.id, request)
        self._emit(SendToReplica(peer, pack(env)))
        self._set_timer(TIMER_CATCHUP, now + self.config.catchup_delay_us)

    def _on_state_request(self, sender: int, req: StateRequest) -> None:
        reply = answer(req, ServedState(
            self.last_executed, self.low_watermark, self.view, self.status is Status.NORMAL, self.current_new_view,
            self.stable_proof, self.stable_snapshot, self.committed_log, self.config.state_reply_max_entries))
        if reply is not None:
            self._emit(SendToReplica(sender, pack(seal(self.signer, self.id, reply))))

    def _on_state_reply(self, reply: StateReply, now: int) -> None:
        if TIMER_CATCHUP not in self.timers:
            raise InvalidMessage("unsolicited_state_reply", "no state transfer in progress")
        before = self.last_executed
        self._install_checkpoint(reply)
        self._accept_committed(reply.entries)
        self._try_execute(now)
        if reply.new_view:
            nv_env = reply.new_view[0]
            nv = self.checker.open(nv_env, Kind.NEW_VIEW)
            if nv.view > self.view or (nv.view == self.view and self.status is Status.VIEW_CHANGE):
                self._on_new_view(nv_env, nv, now)
        if not self._behind():
            self._cancel_timer(TIMER_CATCHUP)
        if self.last_executed > before:
            self._after_progress(now)

    def _install_checkpoint(self, reply: StateReply) -> None:
        """The reply's stable checkpoint, proven by a quorum of signatures over the snapshot's digest:
        adopted as stable if we executed that far ourselves, installed if we are below it."""
        own = self.own_checkpoints.get(reply.checkpoint_seq)
        if self.low_watermark < reply.checkpoint_seq <= self.last_executed and own is not None:
            # We executed that far ourselves but never saw a quorum of checkpoint votes: the proof suffices.
            check_checkpoint_proof(self.checker, reply.checkpoint_proof, reply.checkpoint_seq, own[0])
            self._make_stable(reply.checkpoint_seq, own[1], reply.checkpoint_proof)
        elif reply.checkpoint_seq > self.last_executed:
            check_checkpoint_proof(self.checker, reply.checkpoint_proof, reply.checkpoint_seq,
                                   digest(reply.snapshot))
            self._install_snapshot(reply.checkpoint_seq, reply.snapshot, reply.checkpoint_proof)

    def _install_snapshot(self, seq: int, snapshot: bytes, proof: tuple[Envelope, ...]) -> None:
        try:
            self._restore(snapshot)
        except DecodeError as exc:
            raise InvalidMessage("malformed", f"snapshot: {exc}") from None
        self.last_executed = seq
        self._emit(StateRestored(seq))
        self.own_checkpoints[seq] = (digest(snapshot), snapshot)
        if seq > self.low_watermark:
            self._make_stable(seq, snapshot, proof)
        for key in [k for k, r in self.pending.items() if self._already_executed(r)]:
            self._drop_pending(key)

    def _accept_committed(self, entries: tuple[CommittedEntry, ...]) -> None:
        """Commit-certified entries above our execution point, each re-verified from its signatures."""
        for entry in entries:
            pp = check_committed(self.checker, entry)
            if pp.seq <= self.last_executed or not self._in_window(pp.seq):
                continue
            slot = self._slot(pp.seq)
            slot.committed, slot.committed_pp = entry, pp

    def _drop_pending(self, key: bytes) -> None:
        req = self.pending.pop(key, None)
        if req is not None:
            self.unproposed.discard(key)
            self.pending_per_client[req.client] -= 1
            if not self.pending_per_client[req.client]:
                del self.pending_per_client[req.client]

    def _already_executed(self, req: Request) -> bool:
        record = self.client_table.get(req.client)
        return record is not None and req.timestamp <= record.timestamp

    # ------------------------------------------------------------------ invariants

    def invariant_violations(self) -> list[str]:
        """The replica's state invariants, checked by the simulator after every step (cheap: O(L)).
        A non-empty answer is a bug in this replica, whatever the other replicas did."""
        h = self.low_watermark
        problems = []
        if self.last_executed < h:
            problems.append(f"last_executed {self.last_executed} below the stable checkpoint {h}")
        if self.slots and min(self.slots) <= h:
            problems.append(f"slot {min(self.slots)} kept at or below the stable checkpoint {h}")
        if self.committed_log and (min(self.committed_log) <= h or max(self.committed_log) > self.last_executed):
            problems.append("committed log holds entries outside (h, last_executed]")
        if self.checkpoint_votes and min(self.checkpoint_votes) < h:
            problems.append(f"checkpoint votes kept below the stable checkpoint {h}")
        if h and self.stable_proof and len({e.sender for e in self.stable_proof}) < self.config.quorum:
            problems.append("stable checkpoint without a quorum of distinct signatures")
        if self.status is Status.NORMAL and self.is_primary and self.next_seq <= self.last_executed:
            problems.append(f"primary would reuse sequence {self.next_seq} <= last executed {self.last_executed}")
        return problems

    # ------------------------------------------------------------------ crash recovery

    @classmethod
    def recover(
        cls,
        config: ClusterConfig,
        replica_id: int,
        signer: Signer,
        app: Application,
        records: list[PersistRecord],
        verifier: Verifier = ED25519,
    ) -> Replica:
        """Rebuild a replica from its persisted records: the last stable checkpoint, the executed
        entries after it (re-executed, without replies) and its own votes, so that it never
        contradicts a message it signed before the crash."""
        r = cls(config, replica_id, signer, app, verifier)
        r._silent = True
        stable = [rec for rec in records if isinstance(rec, PersistStable)]
        if stable:
            last = stable[-1]
            r._restore(last.snapshot)
            r.low_watermark = r.last_executed = last.seq
            r.stable_proof, r.stable_snapshot = last.proof, last.snapshot
            r.own_checkpoints[last.seq] = (digest(last.snapshot), last.snapshot)
        for rec in records:
            if isinstance(rec, PersistExecuted) and rec.seq == r.last_executed + 1:
                pp = decode(PrePrepare, rec.entry.pre_prepare.body)
                r._execute(rec.entry, pp)
        view, status = 0, Status.NORMAL
        for rec in records:
            if not isinstance(rec, PersistVote):
                continue
            msg = rec.envelope.open()
            if isinstance(msg, ViewChange) and msg.new_view >= view:
                view, status = msg.new_view, Status.VIEW_CHANGE
                r.own_view_change = rec.envelope
            elif isinstance(msg, NewView) and msg.view >= view:
                view, status = msg.view, Status.NORMAL
                r.current_new_view = rec.envelope
                r.new_view_sent.add(msg.view)
                # The pre-prepares inside its NEW-VIEW are its own for (view, seq): restore them and
                # propose only after them, as `_enter_view` does, or it would re-propose those numbers.
                min_s = max((decode(ViewChange, vc.body).stable_seq for vc in msg.view_changes), default=0)
                r.next_seq = max(r.next_seq, min_s + 1)
                for pp_env in msg.pre_prepares:
                    pp = decode(PrePrepare, pp_env.body)
                    r.next_seq = max(r.next_seq, pp.seq + 1)
                    if pp.seq > r.low_watermark:
                        r._slot(pp.seq).pre_prepares[pp.view] = (pp_env, pp)
            elif isinstance(msg, PrePrepare | Prepare | Commit):
                if msg.view > view:
                    view, status = msg.view, Status.NORMAL
                if msg.seq <= r.low_watermark:
                    continue
                slot = r._slot(msg.seq)
                if isinstance(msg, PrePrepare):
                    slot.pre_prepares[msg.view] = (rec.envelope, msg)
                    r.next_seq = max(r.next_seq, msg.seq + 1)
                elif isinstance(msg, Prepare):
                    slot.sent_prepare[msg.view] = msg.batch_digest
                    slot.prepares.setdefault(msg.view, {})[replica_id] = (msg.batch_digest, rec.envelope)
                else:
                    slot.sent_commit[msg.view] = msg.batch_digest
                    slot.commits.setdefault(msg.view, {})[replica_id] = (msg.batch_digest, rec.envelope)
        r.view, r.status = view, status
        r.next_seq = max(r.next_seq, r.last_executed + 1)
        r._silent = False
        return r

    def start(self, now: int) -> list[Effect]:
        """Arm the timers a (re)started replica needs."""
        self._out = []
        if self.status is Status.VIEW_CHANGE:
            self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())
            self._resend_view_change(now)
        return self._take()
