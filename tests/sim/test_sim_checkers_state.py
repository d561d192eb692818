"""The state-agreement, client-history and votes-persisted checkers: each passes on real runs (crashes,
restarts, view changes, lossy links) and fails, with a message naming the replica and what it did, when a
broken replica is injected the way `--mutant` injects one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sim_helpers import scenario

from sim.checkers import EffectRecorder, Verdict
from sim.mutants import MUTANTS, Mutant
from sim.runner import RunResult, format_summary, run
from sim.scenario import from_dict
from sim.world import ReplicaNode
from trustchain.app.interface import Application, ExecutionContext, Operation
from trustchain.app.kvstore import STATUS_OK, KVResult, put
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import Broadcast, Persist, PersistRecord, PersistVote, SendToReplica
from trustchain.consensus.messages import (
    CommittedEntry,
    Envelope,
    Kind,
    Prepare,
    PrePrepare,
    Request,
    ViewChange,
    pack,
    seal,
)
from trustchain.consensus.replica import ClientRecord, Replica, ReplicaSnapshot
from trustchain.crypto.signing import ED25519, Ed25519Signer, Signer, Verifier
from trustchain.encoding import encode

NEW_CHECKS = ("state_agreement", "client_history", "votes_persisted")
#: the checkers that ran before these three: the bugs below get past all of them
EARLIER_CHECKS = ("agreement", "validity", "certificates", "invariants", "ordering", "durability", "liveness")

#: the initial primary crashes and comes back: a view change, a recovery from storage, state transfer
CRASH_RESTART = scenario(faults=[{"type": "crash", "node": 0, "at_s": 1.0},
                                 {"type": "restart", "node": 0, "at_s": 2.0}],
                         workload={"clients": 4, "mode": "closed", "requests": 200})
#: lost and duplicated messages before GST: clients retransmit, replicas resend replies from their client table
LOSSY = scenario(network={"latency": {"model": "uniform", "low_ms": 2, "high_ms": 20}, "gst_s": 4.0,
                          "pre_gst_loss": 0.15, "duplicate": 0.05})


def _run(data: dict[str, Any], replica_class: type[Replica] | None = None,
         monkeypatch: pytest.MonkeyPatch | None = None) -> RunResult:
    mutant = None
    if replica_class is not None:
        assert monkeypatch is not None
        mutant = f"test-{replica_class.__name__}"
        monkeypatch.setitem(MUTANTS, mutant, Mutant(mutant, replica_class.__doc__ or "", replica_class))
    return run(from_dict(data, "<test>"), mutant=mutant)


def _verdict(result: RunResult, name: str) -> Verdict:
    return next(v for v in result.verdicts if v.name == name)


def _missed_by_earlier_checks(result: RunResult) -> bool:
    return all(_verdict(result, name).ok for name in EARLIER_CHECKS)


# ---------------------------------------------------------------------------- broken replicas


class _LocalWrites:
    """An application that also writes something of its own after every batch: its state drifts away
    from its peers' while its results stay the same."""

    def __init__(self, inner: Application) -> None:
        self.inner = inner

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        results = self.inner.execute(operations, context)
        self.inner.execute([Operation(b"local", context.seq, put(b"local", b"%d" % context.seq))], context)
        return results

    def snapshot(self) -> bytes:
        return self.inner.snapshot()

    def restore(self, snapshot: bytes) -> None:
        self.inner.restore(snapshot)


class DivergingReplica(Replica):
    """Replica 2's application diverges from the others'."""

    def __init__(self, config: ClusterConfig, replica_id: int, signer: Signer, app: Application,
                 verifier: Verifier = ED25519) -> None:
        super().__init__(config, replica_id, signer, _LocalWrites(app) if replica_id == 2 else app, verifier)


class DigestWithoutApp(DivergingReplica):
    """Replica 2's application diverges, and every replica's checkpoint digest leaves the application
    out, so the announced digests still agree."""

    def _snapshot(self) -> bytes:
        clients = tuple(self._client_table[c] for c in sorted(self._client_table))
        return encode(ReplicaSnapshot(b"", clients, self._last_time_us))


class WrongReply(Replica):
    """Replies carry a result other than the one executed."""

    def _send_reply(self, client: bytes, record: ClientRecord) -> None:
        super()._send_reply(client, ClientRecord(record.client, record.timestamp, record.result + b"!"))


class ProposeTwice(Replica):
    """The primary proposes every batch twice, at two sequence numbers."""

    def _propose(self, batch: tuple[Request, ...], now: int) -> None:
        super()._propose(batch, now)
        if self._in_window(self._next_seq):
            super()._propose(batch, now)


class ProposeTwiceNoExactlyOnce(ProposeTwice):
    """The primary proposes every batch twice, and execution forgets which requests already ran."""

    def _execute(self, entry: CommittedEntry, pp: PrePrepare) -> None:
        table, self._client_table = self._client_table, {}
        super()._execute(entry, pp)
        self._client_table = {**table, **self._client_table}


class SendBeforePersist(Replica):
    """Every vote is broadcast first and persisted after."""

    def _sign_and_broadcast(self, message: object) -> Envelope:
        env = seal(self._signer, self._id, message)
        self._emit(Broadcast(pack(env)))
        self._persist(PersistVote(env))
        return env


class CommitsNeverPersisted(Replica):
    """Commit votes are sent but never persisted."""

    def _persist(self, record: PersistRecord) -> None:
        if isinstance(record, PersistVote) and record.envelope.kind == Kind.COMMIT:
            return
        super()._persist(record)


# ---------------------------------------------------------------------------- passing runs


@pytest.mark.parametrize("data", [scenario(), CRASH_RESTART, LOSSY], ids=["clean", "crash-restart", "lossy"])
def test_new_checks_pass_on_real_runs_and_are_printed(data: dict[str, Any]) -> None:
    result = _run(data)
    assert result.expectation_met, format_summary(result, "-")
    out = format_summary(result, "-")
    for name in NEW_CHECKS:
        verdict = _verdict(result, name)
        assert verdict.ok, verdict.detail
        assert verdict.checked > 0
        assert f"PASS  {name} " in out
    assert result.summary["checks"]["state_agreement"]["ok"]


def test_passing_runs_exercise_what_the_checkers_must_tolerate() -> None:
    crash = _run(CRASH_RESTART)
    world = crash.world
    assert world.view_entries, "the primary's crash forced a view change"
    assert world.nodes["0"].incarnation == 1, "replica 0 recovered from its storage"
    assert crash.summary["messages"]["by_type"].get("state_reply", 0) > 0, "and caught up by state transfer"
    assert world.effect_recorder.stable > 0 and world.effect_recorder.announced > 0
    lossy = _run(LOSSY)
    assert sum(c.client.retransmissions for c in lossy.world.clients.values()) > 0


# ---------------------------------------------------------------------------- state_agreement


def test_state_agreement_catches_a_replica_whose_state_diverges(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(scenario(), DivergingReplica, monkeypatch)
    verdict = _verdict(result, "state_agreement")
    assert not verdict.ok
    assert verdict.detail.startswith("seq 8: honest replicas hold different state digests (replicas 0, 1, 3: ")
    assert "; replica 2: " in verdict.detail
    assert verdict.first_violation is not None and verdict.first_violation["seq"] == 8
    assert _missed_by_earlier_checks(result)
    assert not result.expectation_met
    assert "FAIL  state_agreement seq 8" in format_summary(result, "-")


def test_state_agreement_compares_application_snapshots_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replicas' own digests leave the diverging application out and agree; the end-of-run comparison
    of application snapshots does not depend on them."""
    result = _run(scenario(), DigestWithoutApp, monkeypatch)
    verdict = _verdict(result, "state_agreement")
    assert not verdict.ok
    assert verdict.detail.startswith("end of run: honest replicas that executed up to seq ")
    assert verdict.detail.endswith("hold 2 different application snapshots (replicas 0, 1, 3; replica 2)")
    assert not result.world.effect_recorder.state_conflicts, "the announced digests agreed"
    assert _missed_by_earlier_checks(result)


# ---------------------------------------------------------------------------- client_history


def test_client_history_catches_replies_that_differ_from_the_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(scenario(), WrongReply, monkeypatch)
    verdict = _verdict(result, "client_history")
    assert not verdict.ok
    executed = encode(KVResult(STATUS_OK, size=64))  # a put of the default 64-byte value
    assert f"accepted {executed + b'!'!r} for request c" in verdict.detail
    assert f"with result {executed!r}" in verdict.detail
    assert verdict.first_violation is not None and "client" in verdict.first_violation
    assert _missed_by_earlier_checks(result), "no earlier checker looks at the results clients accept"


def test_client_history_catches_a_request_executed_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(scenario(), ProposeTwiceNoExactlyOnce, monkeypatch)
    verdict = _verdict(result, "client_history")
    assert not verdict.ok
    assert "executed request c" in verdict.detail and " twice: at seq 1 and at seq 2" in verdict.detail


def test_client_history_accepts_a_request_proposed_twice_but_executed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(scenario(), ProposeTwice, monkeypatch)
    assert max(rec.seq for rec in result.world.executions) > 80 // 4, "batches were proposed twice"
    assert _verdict(result, "client_history").ok, _verdict(result, "client_history").detail
    assert result.expectation_met


# ---------------------------------------------------------------------------- votes_persisted


def test_votes_persisted_catches_a_vote_sent_before_it_is_persisted(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(scenario(), SendBeforePersist, monkeypatch)
    verdict = _verdict(result, "votes_persisted")
    assert not verdict.ok
    assert verdict.detail.startswith("replica 0 sent its pre-prepare (view 0, seq 1) before persisting it (")
    assert verdict.detail.endswith("more unpersisted votes, from replicas 0, 1, 2, 3)")
    assert _missed_by_earlier_checks(result)


def test_votes_persisted_catches_a_vote_never_persisted(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(scenario(), CommitsNeverPersisted, monkeypatch)
    verdict = _verdict(result, "votes_persisted")
    assert not verdict.ok
    assert re.fullmatch(r"replica \d sent its commit \(view 0, seq \d+\) before persisting it \(\d+ more "
                        r"unpersisted votes, from replicas 0, 1, 2, 3\)", verdict.detail), verdict.detail


def test_recorder_judges_votes_by_envelope_and_only_the_replicas_own() -> None:
    """A vote persisted in an earlier effect list (a view-change resent after a restart) passes; a vote
    relayed from another replica is not this replica's to persist; a vote that differs from the one
    persisted is not the envelope that was persisted."""
    mine, other = Ed25519Signer(b"\x01" * 32), Ed25519Signer(b"\x02" * 32)
    node = cast(ReplicaNode, SimpleNamespace(name="1", replica_id=1))
    rec = EffectRecorder()
    vc = seal(mine, 1, ViewChange(1, 0, (), ()))
    rec.observe(node, [Persist(PersistVote(vc)), Broadcast(pack(vc))], 10, 0)
    rec.observe(node, [Broadcast(pack(vc))], 20, 1)  # resent later
    rec.observe(node, [SendToReplica(3, pack(seal(other, 2, Prepare(0, 1, b"d" * 32))))], 30, 2)  # relayed
    assert (rec.votes_sent, rec.unpersisted_count) == (2, 0)
    persisted = seal(mine, 1, Prepare(0, 1, b"a" * 32))
    rec.observe(node, [Persist(PersistVote(persisted)), Broadcast(pack(seal(mine, 1, Prepare(0, 1, b"b" * 32))))],
                40, 3)
    assert rec.unpersisted_count == 1
    assert rec.unpersisted[0].at.trace_index == 3 and rec.unpersisted[0].kind == "prepare"
