"""Outside-name validation against a modelled public DNS: with at most f lying or poisoned validators
no name is validated for an account that does not control it and every honestly published name is
validated, at every cluster size; with more, the ground-truth checks report the damage."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

import trustchain.app.trustchain as tcapp_module
from sim.apps.outside import OutsideDNSSimApp
from sim.apps.outside_checks import thresholds
from sim.explore import BASES, base_spare, explore, format_coverage
from sim.outside_dns import HONEST, LYING, POISONED, OutsideDNS, OutsideDNSConfig
from sim.runner import RunResult, run
from sim.scenario import ScenarioError, from_dict, load
from trustchain.app.trustchain import TrustChainApplication

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "outside-dns.yaml"
#: f and the quorum q = ceil((n+f+1)/2), worked out by hand for each size
BY_HAND = {4: (1, 3), 5: (1, 4), 6: (1, 4), 7: (2, 5), 10: (3, 7)}
PATHS = ("validation_open", "validation_ready", "validation_observe", "validation_expire")


def _scenario(n: int, params: dict[str, Any], *, safety: str = "hold") -> dict[str, Any]:
    return {
        "name": f"outside-dns-n{n}", "seed": 3, "duration_s": 120,
        "cluster": {"n": n, "batch_size": 8, "batch_delay_ms": 10, "checkpoint_interval": 10,
                    "watermark_window": 30, "view_change_timeout_ms": 1500},
        "network": {"latency": {"model": "uniform", "low_ms": 5, "high_ms": 30}},
        "application": {"name": "outside_dns", "params": {
            "attackers": 1, "names": 3, "unclaimed": 1, "lookup_min_ms": 20, "lookup_max_ms": 200,
            "open_ttl_s": 2.0, "max_attempts": 4, **params}},
        "workload": {"clients": 4, "mode": "closed", "requests": 100, "think_ms": 200, "start_s": 0.5},
        "expect": {"safety": safety, "liveness": True, "liveness_bound_s": 30},
    }


@functools.cache
def _run(n: int, params_json: str, safety: str = "hold") -> RunResult:
    return run(from_dict(_scenario(n, json.loads(params_json), safety=safety), "<test>"))


def _verdicts(result: RunResult) -> dict[str, tuple[bool, str]]:
    return {v.name: (v.ok, v.detail) for v in result.verdicts}


def test_the_checker_thresholds_are_the_worked_out_ones() -> None:
    assert {n: thresholds(n) for n in BY_HAND} == BY_HAND


# ---------------------------------------------------------------------------- within f


WITHIN_F = [
    (4, {"lying": [1]}),
    (4, {"poisoned": [3], "lookup_failure": 0.05}),
    (5, {"poisoned": [2]}),
    (5, {"lying": [4], "lie_to_honest": "deny"}),
    (6, {"lying": [3], "lie_to_honest": "deny", "lookup_failure": 0.05}),
    (7, {"lying": [2], "poisoned": [5]}),
    (10, {"lying": [1, 4], "poisoned": [8]}),
]


@pytest.mark.parametrize(("n", "params"), WITHIN_F, ids=[f"n{n}-{'-'.join(p)}" for n, p in WITHIN_F])
def test_within_f_no_name_is_taken_and_every_honest_name_is_validated(n: int, params: dict[str, Any]) -> None:
    result = _run(n, json.dumps(params))
    failed = [(v.name, v.detail) for v in result.verdicts if not v.ok]
    assert failed == []
    verdicts = _verdicts(result)
    assert "3/3 honestly published names validated" in verdicts["outside_liveness"][1]
    safety = next(v for v in result.verdicts if v.name == "outside_safety")
    assert safety.checked >= 3 * n  # three names, validated and their zones created, on every replica
    assert "create_zone 4" in verdicts["outside_attacks"][1]  # each of the four names Mallory went after
    app = result.world.app
    assert isinstance(app, OutsideDNSSimApp)
    # the production quorum is the one worked out by hand
    replica = result.world.nodes["0"].replica.app
    assert isinstance(replica, TrustChainApplication) and replica.validation.validations.threshold == BY_HAND[n][1]
    # the faulty views were really exercised
    if "lying" in params:
        liar_votes = {seen for (v, _), seen in app.submitted.items() if v in params["lying"]}
        if params.get("lie_to_honest") == "deny":
            assert not app.withheld and liar_votes == {True, False}
        else:
            assert app.withheld and liar_votes == {True}
    if "poisoned" in params:
        assert app.dns.lookups["poisoned"] > 0
    for path in PATHS:
        assert result.world.coverage[path] > 0, path


def test_the_scenario_file_meets_its_expectation() -> None:
    result = run(load(str(SCENARIO)))
    assert result.exit_code == 0, [(v.name, v.detail) for v in result.verdicts if not v.ok]
    verdicts = _verdicts(result)
    assert "8/8 honestly published names validated" in verdicts["outside_liveness"][1]
    assert "lying [2], poisoned [5]" in verdicts["outside_safety"][1]
    assert all(result.world.coverage[p] > 0 for p in PATHS)


def test_a_run_replays_exactly() -> None:
    first = _run(4, json.dumps({"lying": [1]}))
    again = run(from_dict(_scenario(4, {"lying": [1]}), "<test>"))
    assert again.trace_digest == first.trace_digest


# ---------------------------------------------------------------------------- beyond f


@pytest.mark.parametrize(("n", "params"), [
    (4, {"lying": [1, 2], "poisoned": [3]}),
    (7, {"lying": [0, 1, 2], "poisoned": [3, 4]}),
])
def test_a_quorum_of_liars_and_poisoned_views_takes_a_name_and_the_checks_say_so(
        n: int, params: dict[str, Any]) -> None:
    assert len(params["lying"]) + len(params["poisoned"]) == BY_HAND[n][1]
    result = _run(n, json.dumps(params), "violation")
    assert result.expectation_met and result.exit_code == 0
    verdicts = _verdicts(result)
    ok, detail = verdicts["outside_safety"]
    assert not ok and "does not control it and never published the record" in detail and "BEYOND f" in detail
    ok, detail = verdicts["outside_attacks"]
    assert not ok and "attack:create_zone succeeded" in detail
    assert verdicts["outside_votes"][0]  # the replicas counted right: the votes themselves lied
    assert all(ok for name, (ok, _) in verdicts.items() if not name.startswith("outside_"))  # consensus held


def test_f_plus_one_faulty_views_at_n4_cannot_take_a_name_but_stall_honest_ones() -> None:
    result = _run(4, json.dumps({"lying": [1], "poisoned": [2]}), "violation")
    assert result.expectation_met  # the liveness of honest names is what broke
    verdicts = _verdicts(result)
    assert verdicts["outside_safety"][0] and verdicts["outside_attacks"][0]
    ok, detail = verdicts["outside_liveness"]
    assert not ok and "0/3 honestly published names validated" in detail


def test_f_plus_one_faulty_views_at_n6_are_still_within_the_quorum_margin() -> None:
    # q = 4 <= n - (f+1) = 4 and f+1 = 2 < q: two faulty views neither take a name nor stall one
    result = _run(6, json.dumps({"lying": [1], "poisoned": [2]}), "violation")
    assert all(v.ok for v in result.verdicts), [(v.name, v.detail) for v in result.verdicts if not v.ok]
    assert not result.expectation_met  # the violation the scenario allowed for did not happen


def test_the_checks_catch_a_quorum_weakened_to_f_plus_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcapp_module, "quorum_size", lambda n: (n - 1) // 3 + 1)
    result = run(from_dict(_scenario(4, {"lying": [1], "poisoned": [2]}, safety="violation"), "<test>"))
    verdicts = _verdicts(result)
    assert not verdicts["outside_safety"][0]
    ok, detail = verdicts["outside_votes"]
    assert not ok and "validated with fewer than q yes votes" in detail


# ---------------------------------------------------------------------------- the model and its params


def test_each_perspective_sees_what_it_should() -> None:
    cfg = OutsideDNSConfig(poisoned=frozenset({1}), lying=frozenset({2}))
    dns = OutsideDNS(cfg, 4, seed=1)
    alice, mallory = b"A" * 32, b"M" * 32
    dns.control("site0.test", alice)
    dns.attackers.add(mallory)
    dns.poison("site0.test")
    dns.publish("site0.test", "_acme-challenge.site0.test", "alice-proof", alice)
    dns.plant("_acme-challenge.site0.test", "mallory-proof")
    assert [dns.perspective(v) for v in range(4)] == [HONEST, POISONED, LYING, HONEST]
    assert dns.txt(0, "_acme-challenge.site0.test") == ["alice-proof"]
    assert dns.txt(1, "_acme-challenge.site0.test") == ["mallory-proof"]
    assert dns.report(0, alice, "_acme-challenge.site0.test", "alice-proof") is True
    assert dns.report(0, mallory, "_acme-challenge.site0.test", "mallory-proof") is False
    assert dns.report(1, alice, "_acme-challenge.site0.test", "alice-proof") is False
    assert dns.report(1, mallory, "_acme-challenge.site0.test", "mallory-proof") is True
    assert dns.report(2, alice, "_acme-challenge.site0.test", "alice-proof") is None
    assert dns.report(2, mallory, "_acme-challenge.site0.test", "anything") is True
    assert dns.publisher("_acme-challenge.site0.test", "alice-proof") == alice
    assert dns.publisher("_acme-challenge.site0.test", "mallory-proof") is None
    with pytest.raises(AssertionError):
        dns.publish("site0.test", "_acme-challenge.site0.test", "x", mallory)  # only the controller publishes


def test_a_failed_lookup_is_reported_as_not_seen() -> None:
    dns = OutsideDNS(OutsideDNSConfig(lookup_failure=1.0), 4, seed=1)
    dns.control("site0.test", b"A" * 32)
    dns.publish("site0.test", "_acme-challenge.site0.test", "proof", b"A" * 32)
    assert dns.txt(0, "_acme-challenge.site0.test") is None
    assert dns.report(0, b"A" * 32, "_acme-challenge.site0.test", "proof") is False


@pytest.mark.parametrize(("params", "path", "reason"), [
    ({"poisoned": [4]}, "application.params.poisoned[0]", "node ids must be integers in 0..3"),
    ({"lying": [1, 1]}, "application.params.lying[1]", "listed twice"),
    ({"lying": [1], "poisoned": [1]}, "application.params.lying", "also listed as poisoned"),
    ({"lookup_min_ms": 50, "lookup_max_ms": 10}, "application.params.lookup_max_ms", "at least lookup_min_ms"),
    ({"lookup_failure": 1.5}, "application.params.lookup_failure", ""),
    ({"lie_to_honest": "shout"}, "application.params.lie_to_honest", "withhold, deny"),
    ({"open_ttl_s": 0.1}, "application.params.open_ttl_s", ""),
    ({"names": 0, "unclaimed": 0}, "application.params.names", "no outside names"),
    ({"resolver": "8.8.8.8"}, "application.params.resolver", "unknown parameter"),
    ({"lying": [1], "poisoned": [2]}, "application.params", "2 faulty validators (Byzantine, or made faulty"),
])
def test_bad_outside_dns_params_are_refused_naming_the_field(params: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as err:
        from_dict(_scenario(4, params), "<test>")
    assert err.value.path == path and reason in err.value.reason


# ---------------------------------------------------------------------------- the explorer


def test_the_explorer_reaches_and_counts_the_validation_paths() -> None:
    base = BASES["outside-dns"]
    assert base_spare(base) == 1  # the lying validator leaves room for f - 1 more faults
    record = explore(base, budget=1)
    assert record.finding is None and record.tried == 1
    for path in PATHS:
        assert record.coverage[path] > 0 and record.runs_with[path] == 1, path
    report = format_coverage([record])
    assert all(path in report for path in PATHS)
