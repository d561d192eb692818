"""Applying one committed batch to the replicated state, shared by validators and observers.

The replicated state is the application plus the exactly-once client table plus consensus time; a
checkpoint's state digest covers all three (`ReplicaSnapshot`). Validators (`execution`) and
observers (`observer`) run the same function here, so an observer's snapshot at a checkpoint is byte
for byte the validators' and their signed checkpoint digests prove it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

from trustchain.app.interface import Application, ExecutionContext, Operation
from trustchain.consensus.messages import PrePrepare, Request
from trustchain.consensus.replica_state import ClientRecord, ReplicaSnapshot
from trustchain.encoding import decode, encode

__all__ = ["BatchOutcome", "apply_batch", "encode_state", "restore_state"]


@dataclass(frozen=True)
class BatchOutcome:
    """The requests that ran (not executed before), the client records they wrote, the new time."""

    fresh: tuple[Request, ...]
    records: tuple[ClientRecord, ...]
    time_us: int


def apply_batch(app: Application, clients: MutableMapping[bytes, ClientRecord], last_time_us: int,
                pp: PrePrepare) -> BatchOutcome:
    """Run `pp`'s batch on `app`, updating `clients` in place.

    Exactly once and in timestamp order per client: a request runs only if its timestamp is newer than
    the client's last executed one, counting those earlier in this same batch (a client with several
    requests in flight must not run one twice or move its record backwards)."""
    fresh: list[Request] = []
    newest_in_batch: dict[bytes, int] = {}
    for req in pp.batch:
        record = clients.get(req.client)
        last = newest_in_batch.get(req.client, -1 if record is None else record.timestamp)
        if req.timestamp > last:
            fresh.append(req)
            newest_in_batch[req.client] = req.timestamp
    time_us = max(pp.timestamp_us, last_time_us)
    ops = [Operation(r.client, r.timestamp, r.operation) for r in fresh]
    results = app.execute(ops, ExecutionContext(pp.seq, time_us)) if ops else []
    assert len(results) == len(fresh), "an application must return one result per operation"
    records = tuple(ClientRecord(req.client, req.timestamp, result) for req, result in zip(fresh, results, strict=True))
    for record in records:
        clients[record.client] = record
    return BatchOutcome(tuple(fresh), records, time_us)


def encode_state(app: Application, clients: MutableMapping[bytes, ClientRecord], last_time_us: int) -> bytes:
    """The snapshot a checkpoint digest is taken over."""
    ordered = tuple(clients[c] for c in sorted(clients))
    return encode(ReplicaSnapshot(app.snapshot(), ordered, last_time_us))


def restore_state(app: Application, snapshot: bytes) -> tuple[dict[bytes, ClientRecord], int]:
    """Install `snapshot` into `app`; returns the client table and consensus time it holds (raises
    DecodeError for a malformed snapshot)."""
    snap = decode(ReplicaSnapshot, snapshot)
    app.restore(snap.app)
    return {c.client: c for c in snap.clients}, snap.last_time_us
