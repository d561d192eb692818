"""The driver contract for persistence, written once for every driver (the simulator's world and
storage, the reference node's runtime and SQLite store, the unit-test harness).

Persist before acting. A replica emits a `Persist` for every message it signs before the effect that
sends it, for every executed batch before the replies, and for every stable checkpoint. A driver
writes the records as they come and makes them durable (one fsync for consecutive records) before it
performs any later effect, except a `Rejected` report, which depends on nothing persisted: a vote or
reply must never leave a node that could forget it in a crash and then vote differently. `with_syncs`
marks where the syncs go.

Truncate at stable checkpoints. Once a `PersistStable` record is durable, every record written before
it with a sequence number at or below the checkpoint's may be dropped (`truncation_point`, `survives`):
executed entries and normal-case votes for those sequences, checkpoint votes and older checkpoints.
View-change and new-view votes carry no sequence number and are kept, so a restarted replica never
contradicts the views it asked for. `Replica.recover` needs no more than what survives.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from trustchain.consensus.effects import Effect, Persist, PersistRecord, PersistStable, PersistVote, Rejected

__all__ = ["SYNC", "Sync", "compact", "needs_durable", "record_seq", "survives", "truncation_point", "with_syncs"]


@dataclass(frozen=True)
class Sync:
    """Make every record written so far durable before going on."""


SYNC = Sync()


def needs_durable(effect: Effect) -> bool:
    """Whether `effect` may be performed only once every earlier `Persist` record is durable."""
    return not isinstance(effect, Persist | Rejected)


def with_syncs(effects: Iterable[Effect]) -> Iterator[Effect | Sync]:
    """`effects` in order, with a `SYNC` before the first effect that needs the records persisted
    before it, and one at the end if records were written after the last such effect."""
    unsynced = False
    for effect in effects:
        if isinstance(effect, Persist):
            unsynced = True
        elif unsynced and needs_durable(effect):
            yield SYNC
            unsynced = False
        yield effect
    if unsynced:
        yield SYNC


def record_seq(record: PersistRecord) -> int | None:
    """The sequence number a record is truncated by; None for a record kept across checkpoints
    (a view-change or new-view vote)."""
    if isinstance(record, PersistVote):
        seq = getattr(record.envelope.open(), "seq", None)
        return seq if isinstance(seq, int) else None
    return record.seq


def truncation_point(record: PersistRecord) -> int | None:
    """For a stable checkpoint record: the sequence number at or below which the records written
    before it may be dropped once it is durable. None for every other record."""
    return record.seq if isinstance(record, PersistStable) else None


def survives(seq: int | None, checkpoint: int) -> bool:
    """Whether a record with sequence number `seq` (see `record_seq`), written before a durable stable
    checkpoint at `checkpoint`, must be kept."""
    return seq is None or seq > checkpoint


def compact(records: Iterable[PersistRecord], stable: PersistStable) -> list[PersistRecord]:
    """What an in-memory log keeps of `records` once `stable`, written after them, is durable
    (`stable` itself is not included)."""
    return [r for r in records if survives(record_seq(r), stable.seq)]
