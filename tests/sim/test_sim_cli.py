"""`python -m sim`: exit codes, invalid scenarios named precisely, outputs, determinism across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sim_helpers import scenario

from sim.__main__ import main
from sim.scenario import ScenarioError, from_dict

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: dict[str, object], name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"byzantine": [{"node": i, "behaviours": ["silent"]} for i in range(4)],
          "cluster": {"n": 10}}, "byzantine", "4 Byzantine replicas exceed f=3 for n=10"),
        ({"cluster": {"n": 4, "bogus": 1}}, "cluster.bogus", "unknown field"),
        ({"cluster": {"n": "four"}}, "cluster.n", "expected int"),
        ({"cluster": {"n": 3}}, "cluster.n", "must be >= 4"),
        ({"faults": [{"type": "restart", "node": 1, "at_s": 2}]}, "faults[0]", "without an earlier crash"),
        ({"faults": [{"type": "explode", "node": 1}]}, "faults[0].type", "must be one of"),
        ({"network": {"partitions": [{"start_s": 5, "heal_s": 2, "groups": [[0], [1]]}]}},
         "network.partitions[0].heal_s", "must be after start_s"),
        ({"byzantine": [{"node": 1, "behaviours": ["teleport"]}]}, "byzantine[0].behaviours", "unknown behaviour"),
        ({"network": {"latency": {"model": "warp"}}}, "network.latency.model", "must be one of"),
    ],
)
def test_invalid_scenarios_name_field_and_reason(change: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as err:
        from_dict(scenario(**change), "bad.yaml")
    assert err.value.path == field
    assert reason in err.value.reason
    assert str(err.value).startswith("bad.yaml: ")


def test_invalid_scenario_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, scenario(cluster={"n": 4, "batch_size": 0}))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "cluster.batch_size" in err and "must be >= 1" in err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2


def test_failed_expectation_exits_1_with_first_violation_and_replay(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    never_heals = scenario(duration_s=8, network={"partitions": [
        {"start_s": 0.1, "heal_s": 1000, "groups": [[0, 1], [2, 3]]}]}, expect={"liveness_bound_s": 2})
    path = _write(tmp_path, never_heals)
    assert main(["run", str(path), "--seed", "4"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  liveness" in out
    assert f"replay: python -m sim run {path} --seed 4" in out


def test_out_dir_gets_summary_and_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, scenario(workload={"requests": 20}))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    lines = (tmp_path / "out" / "trace.jsonl").read_text().splitlines()
    assert summary["requests"]["completed"] == 20
    assert summary["trace"]["events"] == len(lines)
    assert all(isinstance(json.loads(line), list) for line in lines[:50])
    assert summary["trace"]["digest"] in capsys.readouterr().out


def test_determinism_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    path = _write(tmp_path, scenario(byzantine=[{"node": 3, "behaviours": ["replay_stale", "bad_signatures"]}],
                                     network={"latency": {"model": "lognormal"}, "loss": 0.02}))
    digests = set()
    for hashseed in ("0", "12345", "random"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        proc = subprocess.run([sys.executable, "-m", "sim", "digest", str(path), "--seed", "9"], cwd=ROOT,
                              env=env, capture_output=True, text=True, check=True)
        digests.add(proc.stdout.strip())
    assert len(digests) == 1 and len(next(iter(digests))) == 64


def test_check_determinism_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, scenario(workload={"requests": 10}))
    assert main(["run", str(path), "--check-determinism"]) == 0
    assert "determinism: identical trace digests across 3 processes" in capsys.readouterr().out


def test_summary_names_the_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = scenario(name="named-run", workload={"requests": 5},
                    byzantine=[{"node": 3, "behaviours": ["selective_delay"]}])
    assert main(["run", str(_write(tmp_path, data))]) == 0
    assert capsys.readouterr().out.startswith("scenario named-run (")
