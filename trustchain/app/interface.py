"""The contract between consensus and a replicated application (KV store, CA, CT log, DNS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Operation:
    client: bytes
    timestamp: int
    payload: bytes


@dataclass(frozen=True)
class ExecutionContext:
    """Everything an application may depend on besides its state and the operations: identical on
    every honest replica. `time_us` is consensus time, never a local clock. There is deliberately no
    view number: one batch can commit at one sequence number in view v on some replicas and, re-proposed
    by a view change, in view v+1 on others, so anything derived from the view would diverge."""

    seq: int
    time_us: int


class Application(Protocol):
    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        """Apply ordered operations; return one result per operation. Must be deterministic and must
        not raise on bad input: a rejected operation is a result, not an exception."""
        ...

    def snapshot(self) -> bytes: ...

    def restore(self, snapshot: bytes) -> None: ...
