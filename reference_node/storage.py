"""The node's durable store: one SQLite database (WAL mode) per node under [storage].path.

What is stored: the replica's `Persist` records (its own signed votes, executed entries with their
commit certificates, stable checkpoints with their 2f+1 proofs), in the order they were produced.
`Replica.recover` rebuilds the replica and its application from them, so application state needs no
separate store: it is the last stable checkpoint's snapshot plus the executed entries after it.

Durability. `append` writes in the open transaction; `commit` makes everything appended durable. The
runtime commits before carrying out any effect that follows a `Persist` (a message, a reply, a
timer), so nothing leaves the node before the record it depends on is on disk. `synchronous=FULL` is
the default: in WAL mode it fsyncs the WAL on every commit. NORMAL in WAL mode is crash-safe for the
database but can lose the last commits on power loss, i.e. forget a vote already sent: a safety risk
for a BFT replica, so it is only offered for test rigs and benchmarks.

Truncation happens only at a stable checkpoint (`PersistStable`), by the rule every driver shares
(`trustchain.consensus.durability`): every record with a sequence number at or below it, older
checkpoints included, is deleted in the transaction that appends it. Votes without a sequence number
(view-change, new-view) are kept, except that those older than `prune_age` are deleted once a newer
one exists (a policy of this node's only). `max_size` is a hard limit: an append that would grow the
database beyond it raises `StorageFull` (the runtime then stops taking part in consensus and reports
it in /health and the metrics), because a replica that cannot persist must not vote.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from trustchain.consensus.durability import record_seq, truncation_point
from trustchain.consensus.effects import PersistExecuted, PersistRecord, PersistStable, PersistVote
from trustchain.encoding import decode, encode
from trustchain.errors import TrustChainError

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    seq INTEGER,
    created_us INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_seq ON records(seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""
DB_NAME = "node.sqlite3"
MEASURE_EVERY = 64
_KINDS: dict[str, type[PersistVote] | type[PersistExecuted] | type[PersistStable]] = {
    "vote": PersistVote,
    "executed": PersistExecuted,
    "stable": PersistStable,
}


class StorageFull(TrustChainError, RuntimeError):
    pass


class Storage:
    def __init__(self, directory: Path, *, max_size: int = 1 << 40, prune_age_us: int = 90 * 86_400_000_000,
                 synchronous: str = "full") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / DB_NAME
        self.max_size = max_size
        self.prune_age_us = prune_age_us
        self.db = sqlite3.connect(self.path, isolation_level=None)  # explicit BEGIN/COMMIT below
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self.db.executescript(SCHEMA)
        self._in_tx = False
        self.commits = 0
        self.appended = 0
        self.full = False
        self._estimate = self.usage_bytes()

    # -- writing ---------------------------------------------------------------------------------

    def _begin(self) -> None:
        if not self._in_tx:
            self.db.execute("BEGIN")
            self._in_tx = True

    def append(self, record: PersistRecord, now_us: int | None = None) -> None:
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        kind = {PersistVote: "vote", PersistExecuted: "executed", PersistStable: "stable"}[type(record)]
        data = encode(record)
        # The size on disk is measured every MEASURE_EVERY appends, or sooner when the estimate (the last
        # measurement plus what was appended since) would exceed the limit: measuring costs two queries
        # and a stat, too much for every append. (WAL pages can grow faster than the rows written.)
        if self._estimate + len(data) > self.max_size or self.appended % MEASURE_EVERY == 0:
            self._estimate = self.usage_bytes()
        if self._estimate + len(data) > self.max_size:
            self.full = True
            raise StorageFull(f"storage.max_size ({self.max_size} bytes) reached at {self.path}: refusing to write "
                              f"a {kind} record; free space or raise the limit")
        self._begin()
        seq = record_seq(record)
        upto = truncation_point(record)
        if upto is not None:
            # Exactly the records `durability.survives` does not keep: older checkpoints have lower seqs.
            self.db.execute("DELETE FROM records WHERE seq IS NOT NULL AND seq <= ?", (upto,))
            self._prune_unsequenced(now_us)
        self.db.execute("INSERT INTO records(kind, seq, created_us, data) VALUES (?, ?, ?, ?)",
                        (kind, seq, now_us, data))
        self.appended += 1
        self._estimate += len(data) + 64  # a row's overhead, generously

    def _prune_unsequenced(self, now_us: int) -> None:
        """View-change and new-view votes older than prune_age, except the newest one."""
        newest = self.db.execute("SELECT MAX(id) FROM records WHERE seq IS NULL").fetchone()[0]
        if newest is not None:
            self.db.execute("DELETE FROM records WHERE seq IS NULL AND id < ? AND created_us < ?",
                            (newest, now_us - self.prune_age_us))

    def commit(self) -> None:
        """Make every appended record durable (fsync under synchronous=FULL)."""
        if self._in_tx:
            self.db.execute("COMMIT")
            self._in_tx = False
            self.commits += 1

    def set_meta(self, key: str, value: bytes) -> None:
        self._begin()
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    # -- reading ---------------------------------------------------------------------------------

    def records(self) -> list[PersistRecord]:
        """Every stored record in the order it was appended: what `Replica.recover` takes."""
        out: list[PersistRecord] = []
        for kind, data in self.db.execute("SELECT kind, data FROM records ORDER BY id"):
            out.append(decode(_KINDS[kind], bytes(data)))
        return out

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def usage_bytes(self) -> int:
        page_count = self.db.execute("PRAGMA page_count").fetchone()[0]
        page_size = self.db.execute("PRAGMA page_size").fetchone()[0]
        wal = self.path.with_name(self.path.name + "-wal")
        return int(page_count * page_size) + (wal.stat().st_size if wal.exists() else 0)

    def close(self) -> None:
        self.commit()
        self.db.close()
