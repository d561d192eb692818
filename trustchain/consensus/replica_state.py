"""The replica's state, as plain data: what each part of the protocol keeps, and what drivers may read.

The protocol steps live in the modules named after them (`intake`, `normal_case`, `execution`,
`checkpoints`, `viewchange`, `state_transfer`, `recovery`); the state they share is declared here so
that it can be read in one place. Drivers read `ReplicaStatus`, a frozen copy; the live state is
private to `trustchain.consensus`. `ReplicaInternals` is the one seam through which test doubles (the
simulator's Byzantine replicas, unit tests) look further inside.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from trustchain.consensus.certificates import SignatureChecker
from trustchain.consensus.fair_queue import FairQueue
from trustchain.consensus.messages import (
    Commit,
    CommittedEntry,
    Envelope,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    ViewChange,
)

__all__ = [
    "CheckedViewChange",
    "CheckpointState",
    "ClientRecord",
    "NormalCaseMessage",
    "Phase",
    "ReplicaCounters",
    "ReplicaInternals",
    "ReplicaSnapshot",
    "ReplicaStatus",
    "Slot",
    "ViewChangeState",
]

#: A normal-case message that may be buffered and handled later (`normal_case`).
NormalCaseMessage = PrePrepare | Prepare | Commit


class Phase(enum.Enum):
    """NORMAL: taking part in the current view. VIEW_CHANGE: waiting for the current view to form."""

    NORMAL = "normal"
    VIEW_CHANGE = "view-change"


@dataclass(frozen=True)
class ClientRecord:
    """The exactly-once table's entry for one client: its last executed request and that result."""

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


@dataclass
class CheckpointState:
    """Checkpoints and what garbage collection keeps: the last stable checkpoint (its sequence number
    is the low watermark h, with its quorum proof and snapshot), this replica's own checkpoints at or
    above it with the votes counted for them, and the executed entries above h, which state transfer
    serves. Everything at or below h is dropped when a checkpoint becomes stable (`checkpoints`)."""

    low_watermark: int = 0
    stable_proof: tuple[Envelope, ...] = ()
    stable_snapshot: bytes = b""
    own: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # seq -> (state digest, snapshot)
    votes: dict[int, dict[int, Envelope]] = field(default_factory=dict)  # seq -> sender -> CHECKPOINT
    committed_log: dict[int, CommittedEntry] = field(default_factory=dict)  # executed entries above h


@dataclass(frozen=True)
class CheckedViewChange:
    """A VIEW-CHANGE whose signatures and certificates were verified (`viewchange.check_view_change`)."""

    envelope: Envelope
    message: ViewChange
    prepared: dict[int, PrePrepare]  # seq -> the pre-prepare of its prepared certificate


@dataclass
class ViewChangeState:
    """What the view-change protocol (`viewchange`) remembers across views."""

    #: new view -> sender -> its latest verified VIEW-CHANGE (one per sender, for its latest view)
    received: dict[int, dict[int, CheckedViewChange]] = field(default_factory=dict)
    #: sender -> the latest view it asked for (counts towards every view below it)
    latest: dict[int, int] = field(default_factory=dict)
    #: view changes started, less one per stable checkpoint since: the request timer doubles with each
    attempts: int = 0
    #: the request timer already waited one extra period for state transfer
    postponed: bool = False
    #: views for which this replica, as their primary, sent NEW-VIEW
    new_view_sent: set[int] = field(default_factory=set)
    #: the NEW-VIEW that formed the current view (served to replicas left behind)
    current_new_view: Envelope | None = None
    #: this replica's latest VIEW-CHANGE (re-sent until the view forms)
    own_view_change: Envelope | None = None
    #: recently verified VIEW-CHANGEs by signed bytes: a NEW-VIEW repeats those already seen
    checked: dict[bytes, CheckedViewChange] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplicaStatus:
    """A read-only copy of what drivers (the node's API and metrics, the simulator's log and
    checkers) may know about a replica. Taken on demand: it does not follow later changes."""

    replica_id: int
    view: int
    primary: int
    phase: Phase
    last_executed: int
    #: sequence number of the last stable checkpoint (h)
    low_watermark: int
    #: consensus time of the last executed batch
    last_time_us: int
    #: requests known and not yet executed
    pending: int
    #: the sequence number this replica will propose next (meaningful while it is the primary)
    next_seq: int
    #: the highest sequence number f+1 peers showed (commit votes, checkpoints, view changes): at least
    #: one honest replica got that far
    peer_executed: int = 0
    #: this replica asked a peer for state and has not caught up since
    state_transfer: bool = False

    @property
    def is_primary(self) -> bool:
        return self.primary == self.replica_id

    @property
    def in_view_change(self) -> bool:
        return self.phase is Phase.VIEW_CHANGE


@dataclass(frozen=True)
class ReplicaCounters:
    """A read-only copy of a replica's input counters, for metrics, reports and benchmarks."""

    #: packets received, by message kind ("request", "prepare", ...)
    received: Mapping[str, int]
    #: inputs rejected, by reason (`certificates.InvalidMessage.reason`; each also a `Rejected` effect)
    rejected: Mapping[str, int]
    #: signatures verified (the rest were found in the checker's cache)
    signature_verifications: int


@dataclass(frozen=True)
class ReplicaInternals:
    """Live references into a replica's protocol state, for test doubles only: the simulator's
    Byzantine behaviours (which lie with what an honest replica legitimately holds) and unit tests.
    Read, never write. Drivers use `Replica.status`, which does not change under them."""

    slots: Mapping[int, Slot]
    pending: Mapping[bytes, Request]
    #: the primary's pending requests not yet in a pre-prepare
    unproposed: FairQueue
    checkpoints: CheckpointState
    view_change: ViewChangeState
    timers: Mapping[str, int]
    #: current-view normal-case messages held for (h+L, h+2L], by (seq, view, kind, sender)
    ahead: Mapping[tuple[int, int, int, int], tuple[Envelope, NormalCaseMessage]]
    checker: SignatureChecker
