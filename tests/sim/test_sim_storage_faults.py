"""Simulated storage (sim/storage.py) and its faults: framed records with explicit write and fsync,
recovery that drops a torn or unsynced tail and refuses corrupt durable data, crashes at every fsync
boundary, and the checks that an honest replica never contradicts a vote it sent and never sends a
vote before it is durable."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sim_helpers import scenario

from sim.conflicts import check_equivocation, check_persisted_before_sent
from sim.mutants import MUTANTS, Mutant
from sim.runner import RunResult, run
from sim.scenario import ScenarioError, from_dict
from sim.storage import HEADER_BYTES, SimStorage, StorageCorrupt, crash_points, frame
from trustchain.app.interface import Application
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import (
    Broadcast,
    Persist,
    PersistExecuted,
    PersistRecord,
    PersistStable,
    PersistVote,
)
from trustchain.consensus.messages import CommittedEntry, Envelope, Prepare, PrePrepare, ViewChange, pack, seal
from trustchain.consensus.replica import Replica
from trustchain.crypto.signing import ED25519, Ed25519Signer, Signer, Verifier

SIGNER = Ed25519Signer(bytes(range(32)))


def _vote(seq: int, tag: bytes = b"a") -> PersistVote:
    return PersistVote(seal(SIGNER, 0, Prepare(0, seq, tag * 32)))


def _view_change(view: int) -> PersistVote:
    return PersistVote(seal(SIGNER, 0, ViewChange(view, 0, (), ())))


def _executed(seq: int) -> PersistExecuted:
    pp = seal(SIGNER, 0, PrePrepare(0, seq, b"d" * 32, 0, ()))
    return PersistExecuted(seq, CommittedEntry(pp, ()))


def _stable(seq: int) -> PersistStable:
    return PersistStable(seq, b"snapshot-%d" % seq, ())


def _store(*batches: list[PersistRecord]) -> SimStorage:
    """A log with each batch written and then fsynced."""
    s = SimStorage()
    for batch in batches:
        for record in batch:
            s.write(record)
        s.fsync()
    return s


# ---------------------------------------------------------------------------- the log itself


def test_recovery_reads_back_every_synced_record() -> None:
    records: list[PersistRecord] = [_vote(1), _executed(1), _view_change(1), _vote(2, b"b")]
    s = _store(records[:2], records[2:])
    assert s.fsyncs == 2 and s.writes == 4 and not s.dirty
    got = s.recover()
    assert got.records == records and got.dropped_bytes == 0


def test_a_process_crash_keeps_unsynced_records_and_a_power_loss_drops_them() -> None:
    for mode, expect in (("keep", 4), ("lose", 2)):
        s = _store([_vote(1), _vote(2)])
        s.write(_vote(3))
        s.write(_vote(4))
        assert s.unsynced == 2
        s.crash(mode, random.Random(0))
        got = s.recover()
        assert [r.envelope.open().seq for r in got.records] == list(range(1, expect + 1))  # type: ignore[union-attr]
        assert got.dropped_bytes == 0


def test_a_torn_write_is_detected_by_its_checksum_and_dropped_whatever_reached_the_disk() -> None:
    size = len(frame(_vote(4)))
    seen = set()
    for seed in range(200):
        s = _store([_vote(1), _vote(2)])
        s.write(_vote(3))
        s.write(_vote(4))
        s.crash("torn", random.Random(seed))
        on_disk = len(s.image) - s.frames[-1].offset - s.frames[-1].size
        seen.add(on_disk < HEADER_BYTES)
        got = s.recover()
        assert len(got.records) == 3, "the synced records and the intact unsynced one survive"
        assert got.dropped_frames == 1 and 0 < got.dropped_bytes < size
        assert not s.dirty and len(s.image) == s.synced_len, "recovery truncates the tail and syncs"
        assert s.recover().dropped_bytes == 0
    assert seen == {True, False}, "tears inside the header and inside the payload were both tried"


def test_a_bit_flip_anywhere_in_synced_data_keeps_the_node_from_starting() -> None:
    """Every bit of the last synced frame, which no valid frame follows: the synced length in the
    superblock still tells it from a torn tail."""
    base = _store([_vote(1), _executed(1)], [_vote(2)])
    last = base.frames[-1]
    for byte in range(last.size):
        s = _store([_vote(1), _executed(1)], [_vote(2)])
        s.image[last.offset + byte] ^= 1 << (byte % 8)
        with pytest.raises(StorageCorrupt, match="inside the synced log"):
            s.recover()


def test_corrupt_picks_a_synced_record_and_recovery_refuses() -> None:
    for seed in range(50):
        s = _store([_vote(1), _vote(2)], [_executed(1)])
        s.write(_vote(3))  # unsynced: never the one corrupted
        what = s.corrupt(random.Random(seed))
        assert what is not None and "synced record" in what
        with pytest.raises(StorageCorrupt):
            s.recover()
    assert SimStorage().corrupt(random.Random(0)) is None


def test_a_bad_frame_followed_by_a_valid_one_is_corruption_even_past_the_synced_length() -> None:
    s = _store([_vote(1)])
    s.write(_vote(2))
    s.write(_vote(3))
    s.image[s.frames[1].offset + HEADER_BYTES + 3] ^= 0x10
    with pytest.raises(StorageCorrupt, match="a valid record follows"):
        s.recover()


def test_a_stable_checkpoint_compacts_the_log_only_once_durable() -> None:
    s = _store([_vote(1), _vote(2), _view_change(1), _executed(1), _executed(2), _vote(3)])
    s.write(_stable(2))
    assert len(s.frames) == 7, "nothing is dropped before the checkpoint is durable"
    s.crash("lose", random.Random(0))
    assert len(s.recover().records) == 6, "a crash before its fsync leaves the old log whole"
    s.write(_stable(2))
    s.write(_vote(2, b"z"))  # after the checkpoint in the same fsync: kept, as the reference node keeps it
    s.fsync()
    kept = s.recover().records
    assert [type(r).__name__ for r in kept] == ["PersistVote", "PersistVote", "PersistStable", "PersistVote"]
    assert isinstance(kept[0], PersistVote) and isinstance(kept[0].envelope.open(), ViewChange)
    assert kept[1] == _vote(3)
    s.write(_stable(4))
    s.fsync()
    assert [type(r).__name__ for r in s.recover().records] == ["PersistVote", "PersistStable"]


def test_synced_votes_are_known_by_their_wire_bytes() -> None:
    s = SimStorage()
    vote = _vote(1)
    s.write(vote)
    assert not s.has_synced_vote(pack(vote.envelope)[1:])
    s.fsync()
    assert s.has_synced_vote(pack(vote.envelope)[1:])


# ---------------------------------------------------------------------------- faults in a run


def _run(faults: list[dict[str, Any]], mutant: str | None = None, **overrides: Any) -> RunResult:
    data = scenario(faults=faults, **{"workload": {"requests": 40}, **overrides})
    return run(from_dict(data, "<storage-test>"), mutant=mutant)


def _clean(r: RunResult) -> None:
    """Safety, liveness, no equivocation and every vote durable before it left."""
    assert r.expectation_met, [v.detail for v in r.verdicts if not v.ok]
    for check in (check_equivocation, check_persisted_before_sent):
        verdict = check(r.world)
        assert verdict.ok, verdict.detail
        assert verdict.checked > 0


def test_crash_after_persist_fires_at_the_fsync_and_the_node_recovers() -> None:
    r = _run([{"type": "crash_after_persist", "node": 0, "k": 9, "restart_after_s": 0.05}])
    _clean(r)
    assert r.world.faults["crash_after_persist"] == 1 and r.world.faults["restart"] == 1
    assert any("at fsync #9" in what for _, _, what in r.world.fault_log)
    assert r.world.nodes["0"].up and r.world.nodes["0"].incarnation == 1


@pytest.mark.parametrize("kind", ["lose_unsynced", "torn_write"])
def test_a_crash_between_write_and_fsync_loses_the_unsynced_tail(kind: str) -> None:
    r = _run([{"type": kind, "node": 1, "k": 7, "restart_after_s": 0.05}])
    _clean(r)
    assert r.world.faults[kind] == 1 and r.world.faults["restart"] == 1
    log = [what for _, node, what in r.world.fault_log if node == "1"]
    assert log[0].startswith(f"{kind} at write #7")
    if kind == "torn_write":
        assert "torn" in log[0] and r.world.faults["recovery_truncated"] == 1, log
    else:
        assert "lost" in log[0] and r.world.faults["recovery_truncated"] == 0, log


def test_corrupt_synced_data_keeps_the_node_down_and_it_counts_as_faulty() -> None:
    r = _run([{"type": "corrupt_synced", "node": 2, "at_s": 1.0, "restart_after_s": 0.1}],
             workload={"requests": 80})
    assert r.world.faults["corrupt_synced"] == 1 and r.world.faults["storage_corrupt"] == 1
    node = r.world.nodes["2"]
    assert not node.up and node.refused is not None and node.incarnation == 0
    assert r.scenario.faulty_nodes() == {2}
    _clean(r)  # three replicas out of four carry on


def test_a_window_draws_k_from_the_seed_and_replays() -> None:
    faults = [{"type": "crash_after_persist", "node": 0, "window": [5, 30], "restart_after_s": 0.05}]
    first, again = _run(faults), _run(faults)
    assert first.trace_digest == again.trace_digest
    ks = {int(what.split("#")[1].split()[0]) for _, _, what in first.world.fault_log if "#" in what}
    assert len(ks) == 1 and 5 <= ks.pop() <= 30


# ---------------------------------------------------------------------------- a crash at every fsync boundary


@pytest.mark.parametrize("ks", [range(k, k + 10) for k in range(1, 61, 10)],
                         ids=lambda ks: f"k{ks.start}-{ks.stop - 1}")
def test_primary_crash_at_every_fsync_boundary_never_equivocates(ks: range) -> None:
    """The primary crashes right after its k-th fsync, before the sends that fsync guards, and is back
    10 ms later: soon enough to be asked to propose again in the same view."""
    for fault in crash_points(0, ks, restart_after_s=0.01):
        r = _run([fault])
        assert r.world.faults["crash_after_persist"] == 1, f"{fault} never fired"
        _clean(r)


def test_new_primary_crash_at_every_fsync_around_its_new_view_never_equivocates() -> None:
    """Replica 1 lags (it missed some of view 0), replica 0 crashes, and replica 1, primary of view 1,
    crashes at each fsync from just before its view change on. At k = 2 it crashes after persisting
    its NEW-VIEW and before sending it: the recovered primary must keep the pre-prepares inside that
    NEW-VIEW and propose after them, or it re-proposes their sequence numbers with other batches."""
    network = {"latency": {"model": "uniform", "low_ms": 2, "high_ms": 20},
               "partitions": [{"start_s": 0.55, "heal_s": 0.69, "from": [0, 2, 3], "to": [1]}]}
    for k in range(1, 9):
        r = _run([{"type": "crash", "node": 0, "at_s": 0.7},
                  {"type": "crash_after_persist", "node": 1, "at_s": 1.0, "k": k, "restart_after_s": 0.01}],
                 network=network, expect={"liveness": False})
        assert r.world.faults["crash_after_persist"] == 1
        _clean(r)


# ---------------------------------------------------------------------------- the checks can fail


class _ForgetVotesOnRecovery(Replica):
    """A broken recovery: rebuilds state from checkpoints and executed entries but ignores its own
    persisted votes."""

    @classmethod
    def recover(cls, config: ClusterConfig, replica_id: int, signer: Signer, app: Application,
                records: list[PersistRecord], verifier: Verifier = ED25519) -> Replica:
        kept = [r for r in records if not isinstance(r, PersistVote)]
        return super().recover(config, replica_id, signer, app, kept, verifier)


class _BroadcastBeforePersist(Replica):
    """Sends each signed vote before persisting it."""

    def _sign_and_broadcast(self, message: object) -> Envelope:
        start = len(self._out)
        env = super()._sign_and_broadcast(message)
        tail = self._out[start:]
        if [type(e) for e in tail] == [Persist, Broadcast]:
            self._out[start:] = [tail[1], tail[0]]
        return env


def test_a_recovery_that_forgets_its_votes_is_caught_as_equivocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MUTANTS, "forget-votes-on-recovery",
                        Mutant("forget-votes-on-recovery", "recovery ignores the replica's persisted votes",
                               _ForgetVotesOnRecovery))
    for k in range(1, 11):
        faults = [{"type": "crash_after_persist", "node": 0, "k": k, "restart_after_s": 0.01}]
        mutated = _run(faults, mutant="forget-votes-on-recovery")
        verdict = check_equivocation(mutated.world)
        if not verdict.ok:
            assert "replica 0: sent two different pre-prepare" in verdict.detail
            assert "incarnation 0" in verdict.detail and "incarnation 1" in verdict.detail
            _clean(_run(faults))  # the production recovery passes the same schedule
            return
    pytest.fail("no crash point in k = 1..10 exposed the forgetful recovery")


def test_a_vote_sent_before_it_is_durable_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MUTANTS, "broadcast-before-persist",
                        Mutant("broadcast-before-persist", "sends a signed vote before persisting it",
                               _BroadcastBeforePersist))
    verdict = check_persisted_before_sent(_run([], mutant="broadcast-before-persist").world)
    assert not verdict.ok and "before it was in its synced storage" in verdict.detail


# ---------------------------------------------------------------------------- scenario files


@pytest.mark.parametrize(("fault", "path", "reason"), [
    ({"type": "crash", "node": 1, "k": 3}, "faults[0].k", "only for fault types"),
    ({"type": "corrupt_synced", "node": 1, "window": [1, 2]}, "faults[0].window", "only for fault types"),
    ({"type": "pause", "node": 1, "duration_s": 1, "restart_after_s": 1}, "faults[0].restart_after_s",
     "only for fault types"),
    ({"type": "torn_write", "node": 1, "k": 0}, "faults[0].k", ">= 1"),
    ({"type": "torn_write", "node": 1, "k": 2, "window": [1, 3]}, "faults[0].window", "not both"),
    ({"type": "lose_unsynced", "node": 1, "window": [3, 1]}, "faults[0].window", "1 <= lo <= hi"),
    ({"type": "lose_unsynced", "node": 1, "window": [0, 3]}, "faults[0].window", "1 <= lo <= hi"),
    ({"type": "crash_after_persist", "node": 1, "restart_after_s": -1}, "faults[0].restart_after_s", ">= 0"),
])
def test_storage_fault_fields_are_validated(fault: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as err:
        from_dict(scenario(faults=[fault]), "<t>")
    assert err.value.path == path and reason in err.value.reason


def test_storage_fault_defaults_and_a_later_restart() -> None:
    sc = from_dict(scenario(faults=[{"type": "torn_write", "node": 1, "at_s": 1},
                                    {"type": "restart", "node": 1, "at_s": 3},
                                    {"type": "crash_after_persist", "node": 1, "window": [2, 9]}]), "<t>")
    torn, _, windowed = sc.faults
    assert (torn.k, torn.restart_after_s) == (1, None)
    assert (windowed.k, windowed.window) == (0, (2, 9))
    assert sc.faulty_nodes() == {1}
