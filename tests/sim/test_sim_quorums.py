"""Quorums at every cluster size: f colluding equivocators never break safety, and the smallest
coalition that the quorum arithmetic says can break it does, so the checkers still fail when they should.

The expected sizes are derived here from first principles, not from the production quorum code."""

from __future__ import annotations

import pytest

from sim.runner import RunResult
from tests.sim.sim_helpers import run_dict, scenario
from trustchain.consensus.config import ClusterConfig
from trustchain.crypto.signing import Ed25519Signer
from trustchain.quorum import check_signing_threshold

SIZES = range(4, 14)  # every residue of n mod 3


def _f(n: int) -> int:
    return max(k for k in range(n) if 3 * k + 1 <= n)


def _safe_quorum(n: int) -> int:
    """The smallest q for which two q-sets share an honest replica whatever f replicas are Byzantine."""
    return min(q for q in range(1, n + 1) if 2 * q - n > _f(n))


@pytest.mark.parametrize("n", range(4, 41))
def test_production_quorum_intersects_in_an_honest_replica_and_is_reachable(n: int) -> None:
    config = ClusterConfig(tuple(Ed25519Signer(bytes([i]) * 32).public_key for i in range(n)))
    f = _f(n)
    assert config.f == f
    assert config.quorum == _safe_quorum(n)
    assert config.quorum <= n - f, "the honest replicas alone form a quorum"
    assert config.weak_quorum == f + 1
    if n == 3 * f + 1:
        assert config.quorum == 2 * f + 1


def test_quorum_for_five_and_six_is_four_not_three() -> None:
    for n in (5, 6):
        config = ClusterConfig(tuple(Ed25519Signer(bytes([i]) * 32).public_key for i in range(n)))
        assert config.quorum == 4


@pytest.mark.parametrize("n", SIZES)
def test_signing_threshold_must_exceed_f_and_leave_the_honest_able_to_sign(n: int) -> None:
    f = _f(n)
    assert check_signing_threshold(n, f) is not None
    assert check_signing_threshold(n, n - f + 1) is not None
    for t in range(f + 1, n - f + 1):
        assert check_signing_threshold(n, t) is None


def _equivocators(n: int, colluders: int, seed: int) -> RunResult:
    data = scenario(
        seed=seed,
        duration_s=60,
        cluster={"n": n, "view_change_timeout_ms": 1000},
        network={"latency": {"model": "constant", "ms": 10}},
        byzantine=[{"node": i, "behaviours": ["equivocate"], "params": {"collude": True}}
                   for i in range(colluders)],
        workload={"clients": 2, "mode": "closed", "requests": 12},
        expect={"safety": "hold" if colluders <= _f(n) else "violation",
                "liveness": colluders <= _f(n), "liveness_bound_s": 20},
    )
    return run_dict(data)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", [1, 2])
def test_f_colluding_equivocators_never_break_safety(n: int, seed: int) -> None:
    result = _equivocators(n, _f(n), seed)
    assert result.summary["faults_injected"].get("equivocation", 0) > 0, "the primary equivocated"
    failed = [f"{v.name}: {v.detail}" for v in result.verdicts if not v.ok]
    assert not failed, failed
    assert result.summary["requests"]["completed"] == 12


@pytest.mark.parametrize("n", SIZES)
def test_the_smallest_breaking_coalition_breaks_safety_and_is_caught(n: int) -> None:
    """2q - n colluders (f+1, or f+2 when n = 3f+2) can each show half the honest replicas a quorum."""
    breaking = 2 * _safe_quorum(n) - n
    assert breaking in (_f(n) + 1, _f(n) + 2)
    result = _equivocators(n, breaking, 1)
    agreement = next(v for v in result.verdicts if v.name == "agreement")
    assert not agreement.ok, f"{breaking} colluders at n = {n} should split the honest replicas"
