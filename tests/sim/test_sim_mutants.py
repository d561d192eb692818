"""Every catalogued PBFT bug is caught by the checkers on a schedule that exposes it, the production
code passes the same schedule, and exploration finds, shrinks and replays a counterexample."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sim.explore import EXPLORE_BASE, explore, mutant_base, schedule_size, to_scenario
from sim.mutants import MUTANTS
from sim.runner import run
from sim.scenario import from_dict

ISOLATE_NEXT_PRIMARY = {"events": [{"type": "one_way", "at_s": 0.5, "duration_s": 0.5, "from": [0, 2, 3],
                                    "to": [1]}, {"type": "crash", "node": 0, "at_s": 0.6}], "byzantine": []}
EXPOSING = {
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
    "no-view-change-backoff": {"events": [{"type": "slow", "at_s": 0.5, "extra_delay_ms": 600},
                                          {"type": "crash", "node": 0, "at_s": 1.0}], "byzantine": []},
}


def _result(schedule: dict[str, object], mutant: str | None):  # type: ignore[no-untyped-def]
    return run(from_dict(to_scenario(copy.deepcopy(EXPLORE_BASE), schedule, "mutant-test"), "<t>"), mutant=mutant)


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
    finding = explore(base, 40, "drop-prepared-certificates", behaviours, tmp_path, focus=focus)
    assert finding is not None and finding.path is not None
    assert finding.verdict.name == "agreement"
    assert schedule_size(finding.schedule) <= 10
    assert finding.reproducible
    assert finding.replay == f"python -m sim run {finding.path} --mutant drop-prepared-certificates"
    replayed = run(from_dict(__import__("yaml").safe_load(finding.path.read_text()), str(finding.path)),
                   mutant="drop-prepared-certificates")
    assert not replayed.expectation_met


def test_explore_without_a_bug_finds_nothing(tmp_path: Path) -> None:
    assert explore(copy.deepcopy(EXPLORE_BASE), 6, None, out_dir=tmp_path) is None
