"""What a replica or client asks its driver to do. Drivers (the simulator, the reference node) carry
effects out in list order; a `Persist` must be durable before any later effect is performed, except a
`Rejected` report (the rule, and when storage may be truncated, is `durability`).

`Effect` is the union of every effect type, so a driver can dispatch with `match` and end with
`typing.assert_never`."""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.consensus.messages import CommittedEntry, Envelope, Request

__all__ = [
    "Broadcast",
    "CancelTimer",
    "Effect",
    "Executed",
    "Persist",
    "PersistExecuted",
    "PersistRecord",
    "PersistStable",
    "PersistVote",
    "Rejected",
    "RequestCompleted",
    "SendToClient",
    "SendToReplica",
    "SetTimer",
    "StateRestored",
    "ViewEntered",
]


@dataclass(frozen=True)
class SendToReplica:
    to: int
    data: bytes


@dataclass(frozen=True)
class Broadcast:
    """Send to every other replica."""

    data: bytes


@dataclass(frozen=True)
class SendToClient:
    client: bytes
    data: bytes


@dataclass(frozen=True)
class SetTimer:
    """Arm (or re-arm) the named timer; at most one timer per name is pending."""

    name: str
    at_us: int


@dataclass(frozen=True)
class CancelTimer:
    name: str


@dataclass(frozen=True)
class PersistVote:
    """A message this replica signed; persisted so that a restarted replica never votes twice."""

    envelope: Envelope


@dataclass(frozen=True)
class PersistExecuted:
    seq: int
    entry: CommittedEntry


@dataclass(frozen=True)
class PersistStable:
    """A stable checkpoint: storage may drop every record at or below `seq`."""

    seq: int
    snapshot: bytes
    proof: tuple[Envelope, ...]


PersistRecord = PersistVote | PersistExecuted | PersistStable


@dataclass(frozen=True)
class Persist:
    record: PersistRecord


@dataclass(frozen=True)
class Executed:
    """Observation for checkers and APIs: a batch executed at `seq` with its commit certificate."""

    seq: int
    view: int
    timestamp_us: int
    batch_digest: bytes
    requests: tuple[Request, ...]
    results: tuple[bytes, ...]
    certificate: CommittedEntry


@dataclass(frozen=True)
class ViewEntered:
    """The replica entered `view` through a NEW-VIEW that re-proposed `reproposed` prepared batches
    and filled `null_filled` gaps with null batches."""

    view: int
    reproposed: int = 0
    null_filled: int = 0


@dataclass(frozen=True)
class StateRestored:
    """State transfer installed a peer's checkpoint snapshot at `seq`: executions up to `seq` happened
    inside it, so no `Executed` effect comes for them."""

    seq: int


@dataclass(frozen=True)
class Rejected:
    """Report: an input (a packet, or a buffered message handled later) was refused. `reason` is the
    short stable key the replica also counts (`ReplicaStatus.rejected`); `detail` says what exactly.
    Nothing was persisted for it, so a driver may log it before syncing earlier records."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class RequestCompleted:
    """Client side: f+1 matching replies arrived."""

    timestamp: int
    result: bytes


Effect = (
    SendToReplica
    | Broadcast
    | SendToClient
    | SetTimer
    | CancelTimer
    | Persist
    | Executed
    | ViewEntered
    | StateRestored
    | Rejected
    | RequestCompleted
)
