"""PBFT (Castro & Liskov, OSDI'99 / TOCS'02) as sans-I/O state machines.

The public API: `Replica` and `Client` (the state machines), `ClusterConfig`, the effects they return
(`Effect` is their union) with the driver contract for persisting them (`durability`), what drivers
may read of a replica (`ReplicaStatus`, `ReplicaCounters`, `ClientRecord`), and the wire messages.
`docs/consensus.md` maps the modules to the parts of the protocol.
"""

from __future__ import annotations

from trustchain.consensus.certificates import InvalidMessage
from trustchain.consensus.client import Client, ClientBusy
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.durability import Sync, compact, record_seq, survives, truncation_point, with_syncs
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
    Rejected,
    RequestCompleted,
    SendToClient,
    SendToReplica,
    SetTimer,
    StateRestored,
    ViewEntered,
)
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
    Status,
    ViewChange,
    pack,
    peek_kind,
    seal,
    unpack,
)
from trustchain.consensus.replica import Replica
from trustchain.consensus.replica_state import (
    ClientRecord,
    Phase,
    ReplicaCounters,
    ReplicaInternals,
    ReplicaSnapshot,
    ReplicaStatus,
)

__all__ = [
    "Broadcast",
    "CancelTimer",
    "Checkpoint",
    "Client",
    "ClientBusy",
    "ClientRecord",
    "ClusterConfig",
    "Commit",
    "CommittedEntry",
    "Effect",
    "Envelope",
    "Executed",
    "InvalidMessage",
    "Kind",
    "NewView",
    "Persist",
    "PersistExecuted",
    "PersistRecord",
    "PersistStable",
    "PersistVote",
    "Phase",
    "PrePrepare",
    "Prepare",
    "PreparedCertificate",
    "Rejected",
    "Replica",
    "ReplicaCounters",
    "ReplicaInternals",
    "ReplicaSnapshot",
    "ReplicaStatus",
    "Reply",
    "Request",
    "RequestCompleted",
    "SendToClient",
    "SendToReplica",
    "SetTimer",
    "StateReply",
    "StateRequest",
    "StateRestored",
    "Status",
    "Sync",
    "ViewChange",
    "ViewEntered",
    "compact",
    "pack",
    "peek_kind",
    "record_seq",
    "seal",
    "survives",
    "truncation_point",
    "unpack",
    "with_syncs",
]
