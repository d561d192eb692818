"""SQLite storage: records round-trip across a reopen, truncation at stable checkpoints, max_size
refusal, and a replica recovers its application state from the records a live cluster persisted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reference_node import cluster
from reference_node import config as cfgmod
from reference_node.runtime import build_node
from reference_node.storage import Storage, StorageFull
from trustchain.app import kvstore
from trustchain.consensus.effects import PersistExecuted, PersistStable, PersistVote
from trustchain.consensus.messages import Commit, CommittedEntry, Prepare, PrePrepare, seal
from trustchain.crypto.signing import Ed25519Signer

SIGNER = Ed25519Signer(b"\x01" * 32)


def _vote(seq: int) -> PersistVote:
    return PersistVote(seal(SIGNER, 0, Prepare(0, seq, b"\x02" * 32)))


def _executed(seq: int) -> PersistExecuted:
    pp = PrePrepare(0, seq, PrePrepare.compute_digest(1, ()), 1, ())
    commit = seal(SIGNER, 0, Commit(0, seq, pp.batch_digest))
    return PersistExecuted(seq, CommittedEntry(seal(SIGNER, 0, pp), (commit,)))


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    s = Storage(tmp_path)
    records = [_vote(1), _executed(1), _vote(2), _executed(2)]
    for r in records:
        s.append(r)
    s.commit()
    s.db.close()  # no close(): what was committed must be there, nothing else
    s2 = Storage(tmp_path)
    assert s2.records() == records
    assert s2.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s2.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s2.close()


def test_uncommitted_records_are_not_durable(tmp_path: Path) -> None:
    s = Storage(tmp_path)
    s.append(_vote(1))
    s.commit()
    s.append(_vote(2))  # appended, never committed: a crash here loses it (and nothing was sent yet)
    s.db.close()
    assert Storage(tmp_path).records() == [_vote(1)]


def test_stable_checkpoint_truncates(tmp_path: Path) -> None:
    s = Storage(tmp_path)
    for seq in range(1, 6):
        s.append(_vote(seq))
        s.append(_executed(seq))
    stable = PersistStable(4, b"snapshot", ())
    s.append(stable)
    s.commit()
    assert s.records() == [_vote(5), _executed(5), stable]


def test_max_size_refuses_writes(tmp_path: Path) -> None:
    s = Storage(tmp_path, max_size=64 * 1024)
    with pytest.raises(StorageFull, match=r"storage\.max_size"):
        for seq in range(1, 10_000):
            s.append(_executed(seq))
            s.commit()
    assert s.full


def test_recover_application_state_from_records(tmp_path: Path) -> None:
    paths = cluster.generate(tmp_path, 4, 3, checkpoint_interval=4, dns_listeners=False)

    async def run() -> None:
        nodes = [build_node(cfgmod.load(p, environ={})) for p in paths]
        for n in nodes:
            await n.start()
        for i in range(10):  # crosses two checkpoints: truncation + replay of the tail
            reply = await nodes[i % 4].submit("kv", kvstore.put(b"k%d" % i, b"v%d" % i), timeout_s=10)
            assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
        await asyncio.sleep(0.2)
        expected = [n.app.snapshot() for n in nodes]
        executed = [n.replica.status.last_executed for n in nodes]
        for n in nodes:
            await n.stop()
        again = [build_node(cfgmod.load(p, environ={})) for p in paths]
        for n, snap, last in zip(again, expected, executed, strict=True):
            assert n.replica.status.last_executed == last and n.app.snapshot() == snap
            assert n.replica.status.low_watermark >= 4 and n.recovered_records < 10 * 4
            assert n.app.kv.data[b"k9"] == b"v9"
            n.storage.close()

    asyncio.run(run())
