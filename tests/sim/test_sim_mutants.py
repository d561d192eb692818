"""Every catalogued PBFT bug is caught by the checkers on a schedule that exposes it, the production
code passes the same schedule, and exploration finds, shrinks and replays a counterexample."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from sim.explore import BASES, EXPLORE_BASE, explore, mutant_base, schedule_size, to_scenario
from sim.mutants import MUTANTS
from sim.runner import RunResult, run
from sim.scenario import from_dict

ISOLATE_NEXT_PRIMARY = {"events": [{"type": "one_way", "at_s": 0.5, "duration_s": 0.5, "from": [0, 2, 3],
                                    "to": [1]}, {"type": "crash", "node": 0, "at_s": 0.6}], "byzantine": []}
EXPOSING: dict[str, dict[str, Any]] = {
    "quorum-2f": {"events": [], "byzantine": []},
    "accept-outside-watermarks": {"events": [], "byzantine": []},
    "drop-prepared-certificates": ISOLATE_NEXT_PRIMARY,
    "pre-prepare-from-non-primary": {"events": [], "byzantine": [{"node": 1, "behaviours": ["impersonate_primary"]}]},
    "no-digest-check": {"events": [], "byzantine": [{"node": 0, "behaviours": ["corrupt_batch"]}]},
    "count-duplicate-votes": {"events": [{"type": "network", "at_s": 0.5, "duration_s": 4.0, "loss": 0.0,
                                          "duplicate": 0.5, "extra_delay_ms": 0}], "byzantine": []},
    "commit-on-prepares": {"events": [], "byzantine": []},
    "execute-out-of-order": {"events": [{"type": "network", "at_s": 0.5, "duration_s": 4.0, "loss": 0.3,
                                         "duplicate": 0.0, "extra_delay_ms": 50}], "byzantine": []},
    "reply-before-persist": {"events": [], "byzantine": []},
    "quorum-2f+1": {"n": 5, "events": [], "byzantine": [{"node": 0, "behaviours": ["equivocate"],
                                                           "params": {"collude": True}}]},
    "view-timer-own-view-only": {"events": [{"type": "crash", "node": 0, "at_s": 1.0},
                                            {"type": "one_way", "at_s": 2.5, "duration_s": 3.5, "from": [1],
                                             "to": [0, 2, 3]}], "byzantine": []},
    "checkpoint-stable-on-f-plus-1": {"events": [], "byzantine": []},
    "commit-not-persisted": {"events": [], "byzantine": []},
    "forget-votes-on-recovery": {"events": [{"type": "crash_after_persist", "node": 0, "k": 2,
                                             "restart_after_s": 0.01}], "byzantine": []},
    "new-view-unchecked": {"events": [
        {"type": "pause", "node": 0, "at_s": 1.0, "duration_s": 3.0},
        {"type": "partition", "at_s": 0.5, "duration_s": 1.0, "groups": [[3], [0, 1, 2]]}],
                           "byzantine": [{"node": 1, "behaviours": ["nv_forge"], "params": {"variants": ["alter"]}}]},
    "state-snapshot-unverified": {"base": "long", "events": [
        {"type": "partition", "at_s": 1.0, "duration_s": 2.0, "groups": [[3], [0, 1, 2]]}],
        "byzantine": [{"node": 1, "behaviours": ["state_lie"], "params": {"variants": ["snapshot"]}}]},
    "state-entries-unverified": {"base": "long", "events": [
        {"type": "partition", "at_s": 1.0, "duration_s": 2.0, "groups": [[3], [0, 1, 2]]}],
        "byzantine": [{"node": 1, "behaviours": ["state_lie"], "params": {"variants": ["batch_forged"]}}]},
    # the livelock shows once the liveness bound (30 s) has passed: no need to watch it for 300 s
    "no-view-change-backoff": {"duration_s": 60, "events": [{"type": "slow", "at_s": 0.5, "extra_delay_ms": 600},
                                                            {"type": "crash", "node": 0, "at_s": 1.0}],
                               "byzantine": []},
}


OPEN_LOAD = {"clients": 4, "mode": "open", "rate_per_s": 10, "requests": 80, "start_s": 0.5}


def _result(schedule: dict[str, Any], mutant: str | None) -> RunResult:
    base = copy.deepcopy(BASES[schedule.get("base", "short")])
    base["duration_s"] = schedule.get("duration_s", base["duration_s"])
    if schedule is EXPOSING["view-timer-own-view-only"]:
        base["workload"] = dict(OPEN_LOAD)  # clients keep sending while the replicas are split across views
    return run(from_dict(to_scenario(base, schedule, "mutant-test"), "<t>"), mutant=mutant)


def test_catalogue_has_at_least_ten_mutants() -> None:
    assert len(MUTANTS) >= 10
    assert set(EXPOSING) == set(MUTANTS)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_caught_and_production_is_not(name: str) -> None:
    schedule = EXPOSING[name]
    assert _result(schedule, None).expectation_met, "the production code passes this schedule"
    mutated = _result(schedule, name)
    assert not mutated.expectation_met
    assert any(not v.ok for v in mutated.verdicts)


def test_explore_finds_shrinks_and_replays(tmp_path: Path) -> None:
    base, behaviours, focus = mutant_base("drop-prepared-certificates")
    record = explore(base, 40, "drop-prepared-certificates", behaviours, tmp_path, focus=focus)
    finding = record.finding
    assert finding is not None and finding.path is not None
    assert record.tried == finding.tried and record.shrink_runs > 0, "shrinking runs are counted apart"
    assert finding.verdict.name == "agreement"
    assert schedule_size(finding.schedule) <= 10
    assert finding.reproducible
    assert finding.replay == f"python -m sim run {finding.path} --mutant drop-prepared-certificates"
    replayed = run(from_dict(__import__("yaml").safe_load(finding.path.read_text()), str(finding.path)),
                   mutant="drop-prepared-certificates")
    assert not replayed.expectation_met


def test_explore_without_a_bug_finds_nothing(tmp_path: Path) -> None:
    record = explore(copy.deepcopy(EXPLORE_BASE), 6, None, out_dir=tmp_path, sizes=(4, 5, 6))
    assert record.finding is None
    assert record.tried == 6
    assert record.coverage["view_change"] > 0 and record.runs_with["checkpoint_stable"] > 0
