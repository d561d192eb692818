"""Every Byzantine behaviour, within f: it must act (its effect is visible) and safety and liveness hold."""

from __future__ import annotations

import pytest
from sim_helpers import run_dict, scenario


def _byz(node: int, behaviour: str, **params: object) -> dict[str, object]:
    return {"byzantine": [{"node": node, "behaviours": [behaviour], "params": params}]}


def _assert_correct(result: object) -> None:
    from sim.runner import RunResult

    assert isinstance(result, RunResult)
    failed = [f"{v.name}: {v.detail}" for v in result.verdicts if not v.ok]
    assert not failed, failed
    assert result.expectation_met


def test_silent_replica_sends_nothing_and_the_rest_carry_on() -> None:
    r = run_dict(scenario(**_byz(3, "silent")))
    _assert_correct(r)
    assert r.world.sent_by["3"] == 0
    assert r.world.nodes["3"].replica.counters.received["pre_prepare"] > 0


def test_primary_crashing_mid_broadcast_forces_a_view_change() -> None:
    r = run_dict(scenario(**_byz(0, "crash_worst_moment", after_s=1.0)))
    _assert_correct(r)
    assert any("crash_worst_moment" in what for _, _, what in r.world.fault_log)
    assert not r.world.nodes["0"].up
    assert r.summary["views"]["highest"] >= 1


def test_equivocating_primary_cannot_split_the_honest_replicas() -> None:
    r = run_dict(scenario(**_byz(0, "equivocate")))
    _assert_correct(r)
    assert r.world.faults["equivocation"] > 0
    assert r.summary["views"]["highest"] >= 1, "equivocation stalls view 0 until the view changes"


def test_double_voting_replica() -> None:
    r = run_dict(scenario(**_byz(2, "double_vote")))
    _assert_correct(r)
    assert r.world.faults["double_vote"] > 0


def test_bad_signatures_are_rejected_by_honest_replicas() -> None:
    r = run_dict(scenario(**_byz(3, "bad_signatures", p=0.5)))
    _assert_correct(r)
    assert r.world.faults["bad_signature"] > 0
    assert r.summary["rejected_by_honest_replicas"]["bad_signature"] > 0


def test_stale_replays_are_rejected() -> None:
    r = run_dict(scenario(**_byz(3, "replay_stale", p=0.5), workload={"requests": 200}))
    _assert_correct(r)
    assert r.world.faults["stale_replay"] > 0
    rejected = r.summary["rejected_by_honest_replicas"]
    assert sum(rejected.get(k, 0) for k in ("stale_view", "outside_watermarks", "own_message")) > 0


def test_selective_delay_by_the_primary() -> None:
    r = run_dict(scenario(**_byz(0, "selective_delay", delay_ms=400)))
    _assert_correct(r)
    assert r.world.faults["selective_delay"] > 0


def test_twins_with_partial_connectivity() -> None:
    r = run_dict(scenario(byzantine=[{"node": 0, "behaviours": ["twins"],
                                      "params": {"peers_a": [1, 2], "peers_b": [2, 3]}}]))
    _assert_correct(r)
    assert "0'" in r.world.nodes and r.world.sent_by["0'"] > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mixed_adversaries_in_seven_replicas(seed: int) -> None:
    data = scenario(
        cluster={"n": 7},
        byzantine=[{"node": 0, "behaviours": ["equivocate", "bad_signatures"]},
                   {"node": 5, "behaviours": ["double_vote", "replay_stale", "selective_delay"]}],
        network={"latency": {"model": "lognormal", "median_ms": 10, "sigma": 0.5}, "loss": 0.01},
    )
    _assert_correct(run_dict(data, seed))
