"""Replicas across a validator-set change, at every size from 2 to 10 before and after.

Each example runs the reconfiguration simulator (virtual time, lossless network) through one change
and judges it with the simulator's checkers, which recompute quorums and verify signatures without
the production code: one batch per sequence number, every replica switching at the same
checkpoint, the change authorized by a quorum of the old set, every request completed, and
certificates after the change verifying under the genesis group key.
"""

from __future__ import annotations

import dataclasses

import pytest

from sim.reconfig.run import run_reconfiguration
from sim.reconfig.scenario import ChangeSpec, ReconfigScenario
from sim.scenario import LatencySpec, NetworkSpec, PartitionSpec
from trustchain.app.kvstore import KVStore
from trustchain.consensus.certificates import InvalidMessage, SignatureChecker
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.messages import Prepare, seal
from trustchain.crypto.signing import ED25519, Ed25519Signer
from trustchain.membership.app import MembershipApplication
from trustchain.membership.epochs import ConfigurationChanged, EpochReplica, Handoff

_BASE = ReconfigScenario(
    name="property", description="", seed=1, duration_s=8.0, n=4, total=4, checkpoint_interval=5,
    watermark_window=15, batch_size=4, batch_delay_ms=5.0, view_change_timeout_ms=1000.0, catchup_delay_ms=300.0,
    network=NetworkSpec(latency=LatencySpec(model="lognormal", median_ms=5.0, sigma=0.2)), byzantine=(),
    behaviour="honest", changes=(), clients=2, requests=24, rate_per_s=12.0, certificate_every_s=1.5,
    liveness_bound_s=10.0)


_SIZES = [(n, "add") for n in range(2, 10)] + [(n, "remove") for n in range(3, 11)]


@pytest.mark.parametrize(("n", "op"), _SIZES)
def test_one_change_at_every_size(n: int, op: str) -> None:
    """n before the change from 2 to 10, after it from 2 to 10 (a set never shrinks below two)."""
    seed = 7 * n + len(op)
    change = ChangeSpec(1.0, "add", n) if op == "add" else ChangeSpec(1.0, "remove", seed % n)
    sc = dataclasses.replace(_BASE, n=n, total=n + 1 if op == "add" else n, changes=(change,), seed=seed)
    result = run_reconfiguration(sc)
    failed = [f"{c.name}: {c.detail}" for c in result.checks if not c.ok and c.name != "retired shares"]
    assert not failed, failed
    assert {e for _, e, *_ in result.world.switches} == {0, 1}
    final = [keys for _, e, _, keys, _ in result.world.switches if e == 1]
    assert len(final[0]) == (n + 1 if op == "add" else n - 1)


def test_two_changes_with_a_byzantine_validator() -> None:
    sc = dataclasses.replace(_BASE, n=4, total=5, byzantine=(3,), behaviour="equivocate", duration_s=16.0,
                             changes=(ChangeSpec(1.0, "add", 4), ChangeSpec(5.0, "remove", 1)), requests=60)
    result = run_reconfiguration(sc)
    assert all(c.ok for c in result.checks), [c for c in result.checks if not c.ok]


def test_an_envelope_of_one_epoch_never_verifies_in_another() -> None:
    signers = [Ed25519Signer(bytes([i]) * 32) for i in range(4)]
    keys = tuple(s.public_key for s in signers)
    old, new = ClusterConfig(keys), ClusterConfig(keys, epoch=1, base_seq=16)
    vote = seal(signers[1], 1, Prepare(0, 17, b"d" * 32), epoch=0)
    SignatureChecker(old, ED25519).envelope(vote)
    for forged in (vote, dataclasses.replace(vote, epoch=1)):  # as sent, and relabelled
        try:
            SignatureChecker(new, ED25519).envelope(forged)
        except InvalidMessage as exc:
            assert exc.reason in ("wrong_epoch", "bad_signature")
        else:
            raise AssertionError("an old-epoch vote verified in the new epoch")


def test_a_new_validator_takes_only_a_handoff_certified_by_the_old_set() -> None:
    sc = dataclasses.replace(_BASE, n=4, total=5, changes=(ChangeSpec(1.0, "add", 4),), seed=3)
    world = run_reconfiguration(sc).world
    genuine = world.nodes[0].er.handoffs[0] if world.nodes[0].er else None
    assert genuine is not None and genuine.seq > 0
    joiner = world.nodes[4]

    def fresh() -> EpochReplica:
        app = MembershipApplication(KVStore(), world.genesis, world.genesis_group, sc.checkpoint_interval)
        er = EpochReplica(world.template, joiner.signer, app, world.genesis)
        er.start(0)
        return er

    def switched(er: EpochReplica, h: Handoff) -> bool:
        out = er.receive(h.packet(), world.nodes[0].signer.public_key, 10_000_000)
        return any(isinstance(e, ConfigurationChanged) for e in out)

    quorum = -(-(4 + 1 + 1) // 2)  # ceil((n + f + 1) / 2) at n = 4
    short = dataclasses.replace(genuine, proof=genuine.proof[:quorum - 1])
    assert not switched(fresh(), short)
    tampered = dataclasses.replace(genuine, snapshot=genuine.snapshot + b"\0")
    assert not switched(fresh(), tampered)
    wrong_seq = dataclasses.replace(genuine, seq=genuine.seq - sc.checkpoint_interval)
    assert not switched(fresh(), wrong_seq)
    er = fresh()
    assert switched(er, genuine)
    assert er.epoch == 1 and er.replica is not None
    assert er.replica.status.last_executed == genuine.seq and er.replica.config.n == 5


def test_a_validator_cut_off_across_two_changes_catches_up_one_epoch_at_a_time() -> None:
    cut = NetworkSpec(latency=LatencySpec(model="lognormal", median_ms=5.0, sigma=0.2),
                      partitions=(PartitionSpec(0.5, 9.0, ((0, 1, 3, 4), (2,))),))
    sc = dataclasses.replace(_BASE, n=4, total=5, network=cut, duration_s=16.0, requests=60,
                             changes=(ChangeSpec(1.0, "add", 4), ChangeSpec(4.0, "remove", 1)))
    result = run_reconfiguration(sc)
    assert all(c.ok for c in result.checks), [c for c in result.checks if not c.ok]
    lagger = result.world.nodes[2].er
    assert lagger is not None and lagger.epoch == 2 and lagger.handoffs_installed == 2
    # It switched to each epoch at the same boundary as everyone else.
    bases = {(e, base) for sid, e, base, *_ in result.world.switches if sid == 2}
    assert bases == {(e, base) for sid, e, base, *_ in result.world.switches if sid == 0}
