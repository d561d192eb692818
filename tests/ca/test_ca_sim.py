"""The threshold CA in the simulator: FROST signing beside PBFT, end to end, under Byzantine faults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from sim.apps.ca import CASimApp
from sim.runner import RunResult, run
from sim.scenario import from_dict, load
from trustchain.ca import frost

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
CA_CHECKS = ("ca_decisions", "ca_chain", "ca_approval", "ca_agreement", "ca_bad_shares", "ca_liveness")
CONSENSUS_CHECKS = ("agreement", "validity", "certificates", "liveness")

_cache: dict[str, RunResult] = {}


def result_of(name: str) -> RunResult:
    if name not in _cache:
        _cache[name] = run(load(SCENARIOS / name))
    return _cache[name]


def ca_app(result: RunResult) -> CASimApp:
    app = result.world.app
    assert isinstance(app, CASimApp)
    return app


def assert_all_checks(result: RunResult) -> dict[str, Any]:
    v = {x.name: x for x in result.verdicts}
    details = {name: (x.ok, x.detail) for name, x in v.items()}
    assert result.expectation_met, details
    for name in CONSENSUS_CHECKS + CA_CHECKS:
        assert v[name].ok, (name, details[name])
    return v


@pytest.mark.parametrize(("scenario", "n", "t", "bad"), [
    ("ca-3of5.yaml", 5, 3, {1}),
    ("ca-byzantine33.yaml", 10, 7, {4}),
])
def test_ca_scenario(scenario: str, n: int, t: int, bad: set[int]) -> None:
    result = result_of(scenario)
    assert_all_checks(result)
    world = result.world
    app = ca_app(result)
    assert (app.n, app.t, app.public.min_signers) == (n, t, t)
    # certificates were actually issued, identically on the honest replicas, and verify under the group key
    issued = app.issued_certificates()
    assert len(issued) >= 30
    honest = app.honest_apps()
    top = max(world.nodes[k].replica.status.last_executed for k in honest)
    caught_up = [a for name, a in honest.items() if world.nodes[name].replica.status.last_executed == top]
    assert all(set(a.issued) == set(issued) for a in caught_up)
    for rec in issued.values():
        cert = x509.load_der_x509_certificate(rec.certificate_der)
        assert frost.verify_signature(app.public.group_public_key, cert.tbs_certificate_bytes, cert.signature)
    assert app.revoked_us, "some certificates were revoked"
    # the invalid requests were all rejected, and none of them became a pending issuance
    kinds = app.request_kinds()
    assert sum(1 for k in kinds.values() if k in ("bad_csr", "not_owned", "caa_other_ca", "caa_other_account")) >= 5
    assert all(kinds.get(cr.request) == "valid" for cr in app.creations.values())
    # the bad-share validator was named by honest services, and only it
    honest_accusations = {(who, accused) for _, who, accused, _ in app.accusations if not world.nodes[who].byzantine}
    assert {accused - 1 for _, accused in honest_accusations} == bad
    assert len({who for who, _ in honest_accusations}) >= 2
    assert app.finalize_submissions >= len(issued)
    assert not app.finalize_rejected


def test_ca_3of5_replays_identically() -> None:
    first = result_of("ca-3of5.yaml")
    again = run(load(SCENARIOS / "ca-3of5.yaml"))
    assert again.trace_digest == first.trace_digest
    assert set(ca_app(again).issued_certificates()) == set(ca_app(first).issued_certificates())


def test_ca_restarted_validator_gets_a_fresh_service() -> None:
    data = yaml.safe_load((SCENARIOS / "ca-3of5.yaml").read_text())
    data.update(name="ca-3of5-restart", byzantine=[],
                faults=[{"type": "crash", "node": 3, "at_s": 3.0}, {"type": "restart", "node": 3, "at_s": 6.0}])
    data["workload"]["requests"] = 100
    result = run(from_dict(data))
    v = assert_all_checks(result)
    app = ca_app(result)
    assert app.service_incarnation["3"] == 1
    assert app.issued_certificates()
    assert "no validator accused" in v["ca_bad_shares"].detail


def test_threshold_must_exceed_f() -> None:
    data = yaml.safe_load((SCENARIOS / "ca-3of5.yaml").read_text())
    data["application"]["params"]["threshold"] = 1
    with pytest.raises(ValueError, match="threshold"):
        run(from_dict(data))


def test_ca_runs_with_modelled_signatures() -> None:
    """The signing service and the approval check take the world's verifier, and CA accounts are the world's
    clients: with modelled signatures (the scale experiments' mode) issuance works as with Ed25519."""
    doc = yaml.safe_load((SCENARIOS / "ca-3of5.yaml").read_text())
    doc["cluster"]["signatures"] = "modelled"
    result = run(from_dict(doc, "ca-3of5-modelled"))
    assert_all_checks(result)
    app = ca_app(result)
    assert len(app.issued_certificates()) >= 30
    assert {a.key for a in app.accounts} == set(result.world.clients)
