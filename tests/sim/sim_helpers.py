"""Small scenarios built in code, for tests that need many variations."""

from __future__ import annotations

from typing import Any

from sim.runner import RunResult, run
from sim.scenario import from_dict, with_overrides

BASE: dict[str, Any] = {
    "name": "test",
    "seed": 1,
    "duration_s": 60,
    "cluster": {"n": 4, "batch_size": 4, "batch_delay_ms": 5, "checkpoint_interval": 8,
                "watermark_window": 16, "view_change_timeout_ms": 800},
    "network": {"latency": {"model": "uniform", "low_ms": 2, "high_ms": 20}},
    "workload": {"clients": 4, "mode": "closed", "requests": 80},
    "expect": {"safety": "hold", "liveness": True, "liveness_bound_s": 20},
}


def scenario(**overrides: Any) -> dict[str, Any]:
    return with_overrides(BASE, **overrides)


def run_dict(data: dict[str, Any], seed: int | None = None) -> RunResult:
    return run(from_dict(data, "<test>"), seed)
