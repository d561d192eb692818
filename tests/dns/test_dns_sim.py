"""The dns-byzantine33 scenario end to end: consensus safety and liveness plus the DNS checks
(identical results, digests and signed answers across honest replicas; the forger is caught)."""

from __future__ import annotations

from pathlib import Path

from sim.runner import run
from sim.scenario import load

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "dns-byzantine33.yaml"


def test_dns_byzantine33() -> None:
    result = run(load(SCENARIO))
    verdicts = {v.name: v for v in result.verdicts}
    assert result.expectation_met, [(v.name, v.detail) for v in result.verdicts if not v.ok]
    for name in ("agreement", "validity", "certificates", "liveness", "dns_results", "dns_zone_digests",
                 "dns_answers", "dns_forgery"):
        assert verdicts[name].ok, (name, verdicts[name].detail)
    assert verdicts["dns_results"].extra["rejected"] > 0  # invalid updates really were sent and refused
    assert verdicts["dns_zone_digests"].extra["resigns"] >= 1  # epochs passed: zones re-signed on their own
    assert verdicts["dns_forgery"].extra["forged_rejected"] == 3  # one forged answer per zone, all caught
    assert int(verdicts["dns_answers"].detail.split()[0]) >= 7  # all 7 honest replicas caught up
