"""The PBFT replica as a sans-I/O state machine.

Inputs are wire bytes (`receive`), timer firings (`on_timer`) and the current time in integer
microseconds; outputs are effects (see `effects.py`), which drivers carry out under the contract in
`durability.py`. The replica never reads a clock, never draws randomness and never performs I/O, so
the simulator and the reference node run the same code and a simulation replays exactly.

Structure follows Castro & Liskov. `Replica` is one state machine assembled from one class per part
of the protocol, each in the module named after it (see `core.py` for the state they share and the
steps they take in one another):

- `intake`: client requests, replies, the primary's batching;
- `normal_case`: pre-prepare, prepare, commit, and the messages held for a later view or window;
- `execution`: in-order, exactly-once execution and the replicated client table;
- `checkpoints`: checkpoints, stable checkpoints and garbage collection;
- `viewchange`: view change with backing-off timers, NEW-VIEW building and checking;
- `state_transfer`: catching up from a stable checkpoint plus commit-certified entries (and the STATUS
  a replica sends over a link that came up);
- `recovery`: rebuilding a replica from its persisted records.

The boundary. Drivers use the methods below and read `status` (a frozen `ReplicaStatus`); the
protocol state is private. Two seams exist for test doubles only: `internals` (read-only references
for the simulator's Byzantine behaviours and unit tests), and the underscore step methods, which the
simulator's mutant catalogue (`sim/mutants.py`) overrides one at a time in subclasses to inject
known bugs.
"""

from __future__ import annotations

from types import MappingProxyType

from trustchain.consensus.certificates import InvalidMessage, check_pre_prepare
from trustchain.consensus.checkpoints import Checkpointing
from trustchain.consensus.core import (
    TIMER_BATCH,
    TIMER_CATCHUP,
    TIMER_VC_RESEND,
    TIMER_VIEW_CHANGE,
)
from trustchain.consensus.effects import Effect
from trustchain.consensus.execution import Execution
from trustchain.consensus.intake import MAX_PENDING, MAX_PENDING_PER_CLIENT, RequestIntake
from trustchain.consensus.messages import Envelope, Kind, Request, pack, unpack
from trustchain.consensus.normal_case import NormalCase
from trustchain.consensus.recovery import Recovery
from trustchain.consensus.replica_state import (
    ClientRecord,
    Phase,
    ReplicaCounters,
    ReplicaInternals,
    ReplicaSnapshot,
    ReplicaStatus,
)
from trustchain.consensus.state_transfer import StateTransfer
from trustchain.consensus.viewchange import ViewChanging
from trustchain.encoding import DecodeError

__all__ = [
    "MAX_PENDING",
    "MAX_PENDING_PER_CLIENT",
    "TIMER_BATCH",
    "TIMER_CATCHUP",
    "TIMER_VC_RESEND",
    "TIMER_VIEW_CHANGE",
    "ClientRecord",
    "Phase",
    "Replica",
    "ReplicaCounters",
    "ReplicaInternals",
    "ReplicaSnapshot",
    "ReplicaStatus",
]


class Replica(RequestIntake, NormalCase, Execution, Checkpointing, ViewChanging, StateTransfer, Recovery):
    """One PBFT replica. Create it with `Replica(config, id, signer, app)` or, after a restart,
    `Replica.recover(..., records)`; then call `start` once and feed it inputs."""

    # ------------------------------------------------------------------ driver interface

    def start(self, now: int) -> list[Effect]:
        """Arm the timers a (re)started replica needs."""
        self._out = []
        if self._phase is Phase.VIEW_CHANGE:
            self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())
            self._resend_view_change(now)
        return self._take()

    def receive(self, data: bytes, now: int) -> list[Effect]:
        """Handle one packet from the network. Never raises on bad input: it is counted and
        reported as a `Rejected` effect instead."""
        self._out = []
        self._now = now
        try:
            payload = unpack(data)
            if isinstance(payload, Request):
                self._received["request"] += 1
                self._on_request(payload, now)
            else:
                self._on_envelope(payload, now)
        except DecodeError as exc:
            self._reject("malformed", str(exc))
        except InvalidMessage as exc:
            self._reject(exc.reason, str(exc))
        return self._take()

    def link_up(self, peer: int, now: int) -> list[Effect]:
        """The driver's link to `peer` (re)connected: send it a signed STATUS, so that a peer which
        restarted or was cut off learns how far we got even when no traffic follows."""
        self._out = []
        self._now = now
        self._status_for(peer)
        return self._take()

    def submit(self, request: Request, now: int) -> list[Effect]:
        """A request handed over directly by a co-located API (same checks as from the network)."""
        return self.receive(pack(request), now)

    def on_timer(self, name: str, now: int) -> list[Effect]:
        self._out = []
        self._now = now
        due = self._timers.get(name)
        if due is None or now < due:
            return []  # stale firing of a timer that was re-armed or cancelled
        del self._timers[name]
        if name == TIMER_BATCH:
            self._try_propose(now, flush=True)
        elif name == TIMER_VIEW_CHANGE:
            if self._phase is Phase.NORMAL and not self._vc.postponed and self._behind():
                # Peers report sequence numbers beyond ours: we may be the ones behind (just restarted), and
                # a view change now would leave us alone in the next view, a non-voting learner until the
                # others change view. Give state transfer one more timeout. Only one: commit votes show
                # what was prepared, not executed, so "behind" may also mean a stuck slot that only a view
                # change unsticks (the mutant suite's lossy schedule deadlocks if we keep waiting).
                self._vc.postponed = True
                self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())
                self._maybe_schedule_catchup(now)
            else:
                self._start_view_change(self._view + 1, now)
        elif name == TIMER_CATCHUP:
            self._catchup(now)
        elif name == TIMER_VC_RESEND:
            self._resend_view_change(now)
        return self._take()

    # ------------------------------------------------------------------ what drivers may read

    @property
    def status(self) -> ReplicaStatus:
        """A read-only copy of where this replica is (view, phase, execution point, checkpoint)."""
        return ReplicaStatus(
            replica_id=self._id,
            view=self._view,
            primary=self.primary,
            phase=self._phase,
            last_executed=self._last_executed,
            low_watermark=self._cp.low_watermark,
            last_time_us=self._last_time_us,
            pending=len(self._pending),
            next_seq=self._next_seq,
            peer_executed=self._peers.target()[0],
            state_transfer=self._transfer_requested and self._behind(),
        )

    @property
    def counters(self) -> ReplicaCounters:
        """A read-only copy of the input counters (received by kind, rejected by reason)."""
        return ReplicaCounters(
            received=MappingProxyType(dict(self._received)),
            rejected=MappingProxyType(dict(self._rejected)),
            signature_verifications=self._checker.verifications,
        )

    def client_record(self, client: bytes) -> ClientRecord | None:
        """The replicated exactly-once record of `client`: its last executed request and the result."""
        return self._client_table.get(client)

    @property
    def internals(self) -> ReplicaInternals:
        """Live protocol state for test doubles (Byzantine behaviours, unit tests); drivers use `status`."""
        return ReplicaInternals(
            slots=self._slots,
            pending=self._pending,
            unproposed=self._unproposed,
            checkpoints=self._cp,
            view_change=self._vc,
            timers=self._timers,
            ahead=self._ahead,
            checker=self._checker,
        )

    def invariant_violations(self) -> list[str]:
        """The replica's state invariants, checked by the simulator after every step (cheap: O(L)).
        A non-empty answer is a bug in this replica, whatever the other replicas did."""
        cp = self._cp
        h = cp.low_watermark
        problems = []
        if self._last_executed < h:
            problems.append(f"last_executed {self._last_executed} below the stable checkpoint {h}")
        if self._slots and min(self._slots) <= h:
            problems.append(f"slot {min(self._slots)} kept at or below the stable checkpoint {h}")
        if cp.committed_log and (min(cp.committed_log) <= h or max(cp.committed_log) > self._last_executed):
            problems.append("committed log holds entries outside (h, last_executed]")
        if cp.votes and min(cp.votes) < h:
            problems.append(f"checkpoint votes kept below the stable checkpoint {h}")
        if h and cp.stable_proof and len({e.sender for e in cp.stable_proof}) < self._config.quorum:
            problems.append("stable checkpoint without a quorum of distinct signatures")
        if self._phase is Phase.NORMAL and self.is_primary and self._next_seq <= self._last_executed:
            problems.append(f"primary would reuse sequence {self._next_seq} <= last executed {self._last_executed}")
        return problems

    # ------------------------------------------------------------------ envelope dispatch

    def _on_envelope(self, env: Envelope, now: int) -> None:
        if env.sender == self._id:
            raise InvalidMessage("own_message", "a message claiming to be from this replica")
        try:
            kind = Kind(env.kind)
        except ValueError:
            raise InvalidMessage("malformed", f"unknown message kind {env.kind}") from None
        self._received[kind.name.lower()] += 1
        if kind is Kind.PRE_PREPARE:
            pp = check_pre_prepare(self._checker, env)
            self._on_pre_prepare(env, pp, now)
        elif kind in (Kind.PREPARE, Kind.COMMIT):
            vote = self._checker.open(env, kind)
            self._on_vote(env, vote, now)
        elif kind is Kind.CHECKPOINT:
            self._on_checkpoint(env, self._checker.open(env, kind), now)
        elif kind is Kind.VIEW_CHANGE:
            self._on_view_change(self._check_view_change(env), now)
        elif kind is Kind.NEW_VIEW:
            self._on_new_view(env, self._checker.open(env, kind), now)
        elif kind is Kind.STATE_REQUEST:
            self._on_state_request(env.sender, self._checker.open(env, kind))
        elif kind is Kind.STATE_REPLY:
            self._on_state_reply(self._checker.open(env, kind), now)
        elif kind is Kind.STATUS:
            self._on_status(env.sender, self._checker.open(env, kind), now)
        else:
            raise InvalidMessage("unexpected_kind", f"{kind.name} is not for replicas")
