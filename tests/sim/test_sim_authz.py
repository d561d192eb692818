"""The simulator runs the real authorization code: clients attacking each other's zones, names,
certificates and data are refused on every honest replica, and the checks catch a broken rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.runner import run
from sim.scenario import load
from trustchain.dns.app import DNSApplication

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "authz-attack.yaml"


def _authz(verdicts: list) -> dict[str, bool]:  # type: ignore[type-arg]
    return {v.name: v.ok for v in verdicts if v.name.startswith("authz_")}


def test_attacking_clients_take_nothing_and_every_honest_step_succeeds() -> None:
    result = run(load(str(SCENARIO)))
    assert all(v.ok for v in result.verdicts), [(v.name, v.detail) for v in result.verdicts if not v.ok]
    assert set(_authz(result.verdicts)) == {"authz_zones", "authz_certificates", "authz_kv", "authz_attacks"}
    attacks = next(v for v in result.verdicts if v.name == "authz_attacks")
    assert "attacks refused" in attacks.detail and attacks.checked > 100


def test_the_checks_catch_a_zone_rule_that_lets_anyone_update(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DNSApplication, "_check_update", lambda self, account, origin: None)
    monkeypatch.setattr(DNSApplication, "_check_create", lambda self, account, origin: None)
    verdicts = _authz(run(load(str(SCENARIO))).verdicts)
    assert verdicts["authz_attacks"] is False and verdicts["authz_zones"] is False
