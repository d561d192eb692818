"""Observers in the simulator: honest observers follow the validators exactly through forged batches,
withholding neighbours and a partition; the independent checker notices an observer that diverged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sim.observer_checks import check_observers
from sim.observer_reads import render_observer_reads
from sim.runner import RunResult, run
from sim.scenario import ScenarioError, from_dict


def _scenario(**observers: Any) -> dict[str, Any]:
    return {
        "name": "observers-test", "seed": 3, "duration_s": 60,
        "cluster": {"n": 4, "batch_size": 8, "batch_delay_ms": 20, "checkpoint_interval": 4,
                    "watermark_window": 16, "signatures": "modelled"},
        "network": {"latency": {"model": "lognormal", "median_ms": 20, "sigma": 0.3}},
        "byzantine": [{"node": 3, "behaviours": ["silent"]}],
        "workload": {"clients": 4, "mode": "open", "rate_per_s": 40, "requests": 60, "value_bytes": 8},
        "application": {"name": "kv", "params": {"keys": 16}},
        "observers": {"count": 120, "byzantine": 8, "partition": {"fraction": 0.33, "start_s": 0.8, "heal_s": 1.8},
                      **observers},
        "expect": {"safety": "hold", "liveness": True, "liveness_bound_s": 30},
    }


@pytest.fixture(scope="module")
def result() -> RunResult:
    return run(from_dict(_scenario()))


def test_every_honest_observer_follows_the_validators(result: RunResult) -> None:
    assert result.expectation_met
    checks = {v.name: v for v in result.verdicts}
    for name in ("observer_agreement", "observer_state", "observer_liveness"):
        assert checks[name].ok, checks[name].detail
    obs = result.summary["observers"]
    assert obs["honest"] == 112 and obs["partitioned"] == 40
    top = result.summary["commits"]["highest_seq"]
    assert obs["last_executed"] == {"min": top, "max": top}


def test_forgeries_were_sent_and_refused(result: RunResult) -> None:
    refused = result.summary["observers"]["rejected"]
    for reason in ("committed_without_quorum", "bad_signature", "bad_digest"):
        assert refused.get(reason, 0) > 0, refused


def test_the_partition_dropped_traffic_and_healed(result: RunResult) -> None:
    assert result.summary["observers"]["dropped_by_partition"] > 0
    layer = result.world.observers
    assert layer is not None
    isolated = [layer.nodes[n] for n in layer.isolated if not layer.nodes[n].byzantine]
    assert all(n.observer is not None and n.observer.received.get("pull_reply", 0) >= 1 for n in isolated[:5])


def test_checker_flags_an_observer_that_executed_another_batch(result: RunResult) -> None:
    layer = result.world.observers
    assert layer is not None
    node = layer.honest()[0]
    seq, d = node.executed[2]
    node.executed[2] = (seq, bytes(32))
    try:
        safety, _ = check_observers(result.world)
        agreement = safety[0]
        assert not agreement.ok and f"{node.name} executed batch" in agreement.detail
    finally:
        node.executed[2] = (seq, d)


def test_observer_section_is_validated() -> None:
    with pytest.raises(ScenarioError, match=r"observers\.partition\.heal_s"):
        from_dict(_scenario(partition={"fraction": 0.3, "start_s": 2, "heal_s": 1}))
    with pytest.raises(ScenarioError, match=r"observers\.fanout"):
        from_dict(_scenario(fanout=0))


def test_run_with_an_output_directory_writes_the_observer_summary(tmp_path: Path) -> None:
    d = _scenario(count=30, byzantine=2)
    d["workload"]["requests"] = 16
    result = run(from_dict(d), out_dir=tmp_path)
    assert result.expectation_met
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["observers"]["count"] == 30
    assert '"observers"' in (tmp_path / "trace.jsonl").read_text().splitlines()[-1]


def test_reads_at_an_observer_are_one_round_trip_and_staleness_is_recorded(result: RunResult) -> None:
    """A read at an observer costs one client round trip (two one-way delays of the 20 ms-median model,
    no consensus step); every batch an honest observer executed left a staleness sample, and the
    partitioned third's catching up makes the tail longer than a round trip."""
    reads = result.summary["observers"]["reads"]
    rtt, stale = reads["read_latency_ms"], reads["staleness_ms"]
    assert rtt["count"] > 1000 and 20 < rtt["p50"] < 80 and rtt["p99"] < 200, rtt
    assert stale["count"] > 0 and 0 < stale["p50"] <= stale["p99"] <= stale["max"], stale
    assert stale["max"] > 1000 * (1.8 - 0.8) / 2, stale  # some observers waited out the partition
    text = "\n".join(render_observer_reads([{"nodes": 124, "reads": reads,
                                             "write_latency_ms": result.summary["requests"]["latency_ms"]}]))
    assert "### Reads at an observer" in text and "| 124 |" in text
