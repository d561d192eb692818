"""What every part of the replica shares: its identity, its state, how it emits effects, and the steps
one part of the protocol takes in another.

`Replica` (`replica.py`) is one state machine assembled from one class per part of the protocol, each
in the module named after it: request intake and batching (`intake`), the normal case (`normal_case`),
execution (`execution`), checkpoints and garbage collection (`checkpoints`), view change
(`viewchange`), state transfer (`state_transfer`) and crash recovery (`recovery`). Each derives from
`ReplicaCore`, which holds the state they share and declares, as abstract methods, the steps one part
calls in another, so that a reader sees every cross-part dependency here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable

from trustchain.app.interface import Application
from trustchain.consensus.certificates import SignatureChecker
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import (
    Broadcast,
    CancelTimer,
    Effect,
    Persist,
    PersistRecord,
    PersistVote,
    Rejected,
    SetTimer,
)
from trustchain.consensus.fair_queue import FairQueue
from trustchain.consensus.messages import (
    CommittedEntry,
    Envelope,
    NewView,
    PrePrepare,
    Request,
    pack,
    seal,
)
from trustchain.consensus.peer_progress import PeerProgress
from trustchain.consensus.replica_state import (
    CheckpointState,
    ClientRecord,
    NormalCaseMessage,
    Phase,
    Slot,
    ViewChangeState,
)
from trustchain.crypto.signing import ED25519, Signer, Verifier

__all__ = ["TIMER_BATCH", "TIMER_CATCHUP", "TIMER_VC_RESEND", "TIMER_VIEW_CHANGE", "ReplicaCore"]

TIMER_BATCH = "batch"
TIMER_VIEW_CHANGE = "view_change"
TIMER_CATCHUP = "catchup"
TIMER_VC_RESEND = "view_change_resend"


class ReplicaCore(ABC):
    """The shared state and effect plumbing of a replica. Not a replica by itself: see `Replica`."""

    def __init__(
        self,
        config: ClusterConfig,
        replica_id: int,
        signer: Signer,
        app: Application,
        verifier: Verifier = ED25519,
        epoch_end: Callable[[], int | None] | None = None,
    ) -> None:
        if not 0 <= replica_id < config.n:
            raise ValueError(f"replica_id {replica_id} not in 0..{config.n - 1}")
        if signer.public_key != config.replicas[replica_id]:
            raise ValueError(f"signer's public key is not replica {replica_id}'s key in the config")
        self._config = config
        self._id = replica_id
        self._signer = signer
        self._app = app
        self._checker = SignatureChecker(config, verifier)
        # The last sequence number of this configuration once the replicated state decided one (a
        # validator-set change executed): nothing above it is proposed or executed in this epoch.
        self._epoch_end = epoch_end

        # Where this replica is.
        self._view = 0
        self._phase = Phase.NORMAL
        self._last_executed = 0
        self._last_time_us = 0  # consensus time of the last executed batch
        self._next_seq = 1  # primary only

        # Requests (`intake`) and the exactly-once client table (`execution`).
        self._pending: dict[bytes, Request] = {}  # known, not yet executed (insertion ordered)
        self._unproposed = FairQueue()  # primary: pending and not yet in a pre-prepare
        self._pending_per_client: Counter[bytes] = Counter()
        self._client_table: dict[bytes, ClientRecord] = {}

        # The normal case (`normal_case`): per-sequence slots and messages held for later.
        self._slots: dict[int, Slot] = {}
        self._future: list[tuple[Envelope, NormalCaseMessage]] = []  # for a later view (or ours, forming)
        # Current-view normal-case messages for (h+L, h+2L], one per (seq, view, kind, sender): processed
        # when our window moves.
        self._ahead: dict[tuple[int, int, int, int], tuple[Envelope, NormalCaseMessage]] = {}
        self._replaying_ahead = False

        self._cp = CheckpointState()  # `checkpoints`
        self._vc = ViewChangeState()  # `viewchange`

        # State transfer (`state_transfer`).
        self._peers = PeerProgress(config.weak_quorum)
        self._catchup_rotation = 0
        self._catchup_mark = -1
        self._transfer_requested = False  # a state request went out since we last found ourselves caught up

        self._timers: dict[str, int] = {}  # name -> when it fires (as last armed)
        self._rejected: Counter[str] = Counter()
        self._received: Counter[str] = Counter()
        self._out: list[Effect] = []  # effects of the input being handled
        self._now = 0

    # ------------------------------------------------------------------ identity

    @property
    def config(self) -> ClusterConfig:
        return self._config

    @property
    def id(self) -> int:
        return self._id

    @property
    def app(self) -> Application:
        """The application this replica executes (the driver's own object, handed in at creation)."""
        return self._app

    @property
    def primary(self) -> int:
        return self._config.primary(self._view)

    @property
    def is_primary(self) -> bool:
        return self._config.primary(self._view) == self._id

    # ------------------------------------------------------------------ effects

    def _take(self) -> list[Effect]:
        out, self._out = self._out, []
        return out

    def _emit(self, effect: Effect) -> None:
        self._out.append(effect)

    def _reject(self, reason: str, detail: str = "") -> None:
        self._rejected[reason] += 1
        self._emit(Rejected(reason, detail))

    def _set_timer(self, name: str, at_us: int) -> None:
        self._timers[name] = at_us
        self._emit(SetTimer(name, at_us))

    def _cancel_timer(self, name: str) -> None:
        if self._timers.pop(name, None) is not None:
            self._emit(CancelTimer(name))

    def _persist(self, record: PersistRecord) -> None:
        self._emit(Persist(record))

    def _sign_and_broadcast(self, message: object) -> Envelope:
        env = seal(self._signer, self._id, message, self._config.epoch)
        self._persist(PersistVote(env))  # durable before it leaves: a restart never votes twice
        self._emit(Broadcast(pack(env)))
        return env

    # ------------------------------------------------------------------ shared helpers

    def _slot(self, seq: int) -> Slot:
        slot = self._slots.get(seq)
        if slot is None:
            slot = self._slots[seq] = Slot()
        return slot

    def _ceiling(self) -> int | None:
        """The epoch's last sequence number, if the replicated state has fixed it (else None)."""
        return None if self._epoch_end is None else self._epoch_end()

    def _above_ceiling(self, seq: int) -> bool:
        ceiling = self._ceiling()
        return ceiling is not None and seq > ceiling

    def _in_window(self, seq: int) -> bool:
        low = self._cp.low_watermark
        return low < seq <= low + self._config.watermark_window

    # ------------------------------------------------------------------ steps across parts

    # intake
    @abstractmethod
    def _try_propose(self, now: int, flush: bool) -> None:
        """Primary: propose what is waiting, as far as the window allows."""

    @abstractmethod
    def _send_reply(self, client: bytes, record: ClientRecord) -> None: ...

    @abstractmethod
    def _drop_pending(self, key: bytes) -> None:
        """Forget a pending request (executed, here or inside an installed snapshot)."""

    @abstractmethod
    def _already_executed(self, req: Request) -> bool: ...

    # normal case
    @abstractmethod
    def _accept_pre_prepare(self, env: Envelope, pp: PrePrepare, now: int) -> None:
        """Take a verified pre-prepare for the current view into its slot and prepare it."""

    @abstractmethod
    def _check_slot(self, seq: int, now: int) -> None:
        """Move a slot on (commit, execute) if it gathered the votes it needs."""

    @abstractmethod
    def _replay(self, env: Envelope, msg: NormalCaseMessage, now: int) -> None:
        """Handle a held normal-case message as if it had just arrived."""

    @abstractmethod
    def _process_ahead(self, now: int) -> None:
        """Handle the held messages that the moved window now covers."""

    # execution
    @abstractmethod
    def _try_execute(self, now: int) -> None:
        """Execute committed slots in sequence order."""

    @abstractmethod
    def _after_progress(self, now: int) -> None:
        """Re-arm the timers after executing something."""

    @abstractmethod
    def _apply_batch(self, entry: CommittedEntry, pp: PrePrepare) -> tuple[list[Request], list[ClientRecord]]:
        """Execute the next batch on the state alone, emitting nothing: the requests that ran (not
        executed before) and the client records they wrote, in batch order."""

    @abstractmethod
    def _snapshot(self) -> bytes: ...

    @abstractmethod
    def _restore(self, snapshot: bytes) -> None: ...

    # checkpoints
    @abstractmethod
    def _take_checkpoint(self, seq: int) -> None: ...

    @abstractmethod
    def _record_own_checkpoint(self, seq: int) -> tuple[bytes, bytes]:
        """Snapshot the state at `seq`, keep it as our checkpoint, return (digest, snapshot)."""

    @abstractmethod
    def _make_stable(self, seq: int, snapshot: bytes, proof: tuple[Envelope, ...]) -> None:
        """Move the low watermark to `seq` and collect the garbage below it."""

    # view change
    @abstractmethod
    def _vc_timeout(self) -> int:
        """The request timer's current period (it backs off with view-change attempts)."""

    @abstractmethod
    def _on_new_view(self, env: Envelope, nv: NewView, now: int) -> None: ...

    # state transfer
    @abstractmethod
    def _behind(self) -> bool:
        """Whether f+1 peers showed progress beyond ours."""

    @abstractmethod
    def _maybe_schedule_catchup(self, now: int) -> None:
        """Arm the catch-up timer if we are behind."""
