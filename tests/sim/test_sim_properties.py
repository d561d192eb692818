"""Property suites over generated fault schedules (a bounded example budget in CI; set
TRUSTCHAIN_EXAMPLES for a larger one)."""

from __future__ import annotations

import copy
import os

from hypothesis import HealthCheck, given, settings

from sim.explore import DEFAULT_BEHAVIOURS, EXPLORE_BASE, SIZES, schedule_strategy, to_scenario
from sim.runner import RunResult, run
from sim.scenario import ScenarioError, from_dict

EXAMPLES = int(os.environ.get("TRUSTCHAIN_EXAMPLES", "12"))
PROPERTY_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))


def _run(schedule: dict[str, object]) -> RunResult | None:
    base = copy.deepcopy(EXPLORE_BASE)
    try:
        scenario = from_dict(to_scenario(base, schedule, "property"), "<property>")
    except ScenarioError:
        return None
    return run(scenario)


@PROPERTY_SETTINGS
@given(schedule_strategy(SIZES, DEFAULT_BEHAVIOURS))
def test_safety_and_liveness_hold_for_any_schedule_within_f(schedule: dict[str, object]) -> None:
    """Any cluster size from 4 to 13 (every residue of n mod 3), any schedule with at most f faults."""
    result = _run(schedule)
    if result is None:
        return
    failed = [f"{v.name}: {v.detail}" for v in result.verdicts if not v.ok
              and (v.name != "liveness" or result.scenario.expect.liveness)]
    assert not failed, (failed, schedule)


@PROPERTY_SETTINGS
@given(schedule_strategy((5, 6, 7), DEFAULT_BEHAVIOURS))
def test_safety_holds_where_two_f_plus_one_is_not_a_quorum(schedule: dict[str, object]) -> None:
    result = _run(schedule)
    if result is None:
        return
    assert all(v.ok for v in result.verdicts if v.name != "liveness"), schedule


@PROPERTY_SETTINGS
@given(schedule_strategy(SIZES, DEFAULT_BEHAVIOURS))
def test_completed_requests_are_never_lost(schedule: dict[str, object]) -> None:
    """Checkpoints, garbage collection, view changes and state transfer never drop a request a client
    saw complete: every honest replica that reached the end of the log holds it in its state."""
    result = _run(schedule)
    if result is None:
        return
    world = result.world
    honest = [n for n in world.nodes.values() if not n.byzantine and n.up]
    if not honest:
        return
    furthest = max(n.replica.status.last_executed for n in honest)
    client_keys = {c.name: key for key, c in world.clients.items()}
    for rec in world.requests.values():
        if rec.completed_us is None:
            continue
        for node in honest:
            if node.replica.status.last_executed == furthest:
                held = node.replica.client_record(client_keys[rec.client])
                assert held is not None and held.timestamp >= rec.timestamp, (node.name, rec, schedule)


@settings(max_examples=max(3, EXAMPLES // 4), deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(schedule_strategy(4, DEFAULT_BEHAVIOURS))
def test_replays_are_identical(schedule: dict[str, object]) -> None:
    first, second = _run(schedule), _run(schedule)
    if first is None or second is None:
        return
    assert first.trace_digest == second.trace_digest
