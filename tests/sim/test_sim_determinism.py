"""The determinism gate: a sample of seeds, each run in two separate processes with different
PYTHONHASHSEED values, must give identical trace digests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sim_helpers import scenario

ROOT = Path(__file__).resolve().parents[2]


def _digest(path: Path, seed: int, hashseed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    proc = subprocess.run([sys.executable, "-m", "sim", "digest", str(path), "--seed", str(seed)], cwd=ROOT,
                          env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@pytest.mark.parametrize("seed", [1, 17, 4242])
def test_seed_replays_identically_across_processes(tmp_path: Path, seed: int) -> None:
    data = scenario(
        cluster={"n": 7},
        byzantine=[{"node": 0, "behaviours": ["equivocate", "replay_stale"]},
                   {"node": 3, "behaviours": ["double_vote", "bad_signatures", "selective_delay"]}],
        network={"latency": {"model": "wan", "regions": ["us-east", "eu-west"], "sigma": 0.3}, "loss": 0.01,
                 "duplicate": 0.01, "reorder": 0.1,
                 "partitions": [{"start_s": 1, "heal_s": 3, "groups": [[0, 1, 2], [3, 4, 5, 6]]}], "gst_s": 3},
        faults=[{"type": "pause", "node": 5, "at_s": 2, "duration_s": 1}],
        workload={"requests": 60},
    )
    path = tmp_path / "det.yaml"
    path.write_text(yaml.safe_dump(data))
    first, second = _digest(path, seed, "0"), _digest(path, seed, "987654")
    assert first == second and len(first) == 64
