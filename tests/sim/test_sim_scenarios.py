"""The shipped scenarios run to their stated expectations, and the checkers can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.runner import run
from sim.scenario import load

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
CONSENSUS = ["primary-crash", "partition-heal", "lossy-wan", "twins", "beyond-threshold", "equivocators-n5",
             "equivocators-n6", "view-sync-n4", "view-sync-n7", "client-flood"]


@pytest.mark.parametrize("name", CONSENSUS)
def test_scenario_meets_its_expectation(name: str) -> None:
    result = run(load(SCENARIOS / f"{name}.yaml"))
    assert result.expectation_met, [f"{v.name}: {v.detail}" for v in result.verdicts if not v.ok]


def test_byzantine33_holds_safety_and_liveness_and_exercises_every_fault() -> None:
    result = run(load(SCENARIOS / "byzantine33.yaml"))
    s = result.summary
    assert result.expectation_met, [f"{v.name}: {v.detail}" for v in result.verdicts if not v.ok]
    assert all(v.ok for v in result.verdicts)
    assert s["requests"]["completed"] == s["requests"]["submitted"] == 900
    for fault in ("crash_worst_moment", "equivocation", "double_vote", "bad_signature", "stale_replay",
                  "selective_delay", "pause", "clock_skew"):
        assert s["faults_injected"].get(fault, 0) > 0, fault
    assert s["messages"]["dropped_by_network"] > 0
    assert s["views"]["highest"] >= 4, "view changes reached the equivocating primary's view"
    assert s["cluster"]["f"] == 3 and len(s["cluster"]["byzantine"]) == 3


def test_beyond_threshold_violation_is_found_at_a_named_event() -> None:
    result = run(load(SCENARIOS / "beyond-threshold.yaml"))
    agreement = next(v for v in result.verdicts if v.name == "agreement")
    assert not agreement.ok
    assert agreement.first_violation is not None and agreement.first_violation["seq"] == 1
    assert result.exit_code == 0, "the violation was expected"


def test_same_seed_same_trace_and_other_seed_other_trace() -> None:
    sc = load(SCENARIOS / "twins.yaml")
    a, b, c = run(sc, 5), run(sc, 5), run(sc, 6)
    assert a.trace_digest == b.trace_digest
    assert a.trace_digest != c.trace_digest


def test_restarted_primary_recovers_its_state_and_catches_up() -> None:
    result = run(load(SCENARIOS / "primary-crash.yaml"))
    assert result.expectation_met
    nodes = result.world.nodes
    restarted = nodes["0"].replica
    assert any(what.startswith("restart (recovered") for _, _, what in result.world.fault_log)
    assert restarted.counters.received["state_reply"] >= 1, "caught up by state transfer"
    assert {n.replica.status.last_executed for n in nodes.values()} == {restarted.status.last_executed}
    assert {n.replica.status.view for n in nodes.values()} == {1}
    stable = {n.replica.internals.checkpoints.own[n.replica.status.low_watermark][0] for n in nodes.values()}
    assert len(stable) == 1


@pytest.mark.parametrize("name", ["view-sync-n4", "view-sync-n7"])
def test_replicas_split_across_views_converge(name: str) -> None:
    """The view-1 primary ends up asking for view 3 while the others wait in view 2; all must meet in
    one view and every request complete (a deadlock that never executed again before)."""
    result = run(load(SCENARIOS / f"{name}.yaml"))
    assert result.expectation_met, [f"{v.name}: {v.detail}" for v in result.verdicts if not v.ok]
    live = [n.replica.status for n in result.world.nodes.values() if n.up]
    assert len({r.view for r in live}) == 1 and live[0].view >= 3
    assert result.summary["requests"]["completed"] == 300
