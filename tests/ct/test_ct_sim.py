"""The CT scenarios end to end in the simulator: prefix logs, SCTs within the MMD, split views caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.runner import run
from sim.scenario import load

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def verdicts(name: str) -> tuple[bool, dict[str, object], object]:
    result = run(load(SCENARIOS / name))
    return result.expectation_met, {v.name: v for v in result.verdicts}, result


@pytest.mark.parametrize(("scenario", "split_keys"), [
    ("ct-split-view.yaml", {"validator-3", "validator-5"}),
    ("ct-byzantine33.yaml", {"validator-4"}),
])
def test_ct_scenario(scenario: str, split_keys: set[str]) -> None:
    met, v, result = verdicts(scenario)
    details = {name: (x.ok, x.detail) for name, x in v.items()}  # type: ignore[attr-defined]
    assert met, details
    for name in ("agreement", "validity", "certificates", "liveness", "ct_prefix", "ct_mmd", "ct_split_view"):
        assert v[name].ok, (name, details[name])  # type: ignore[attr-defined]
    app = result.world.app  # type: ignore[attr-defined]
    assert app.scts_handed >= 300
    convicted = {key for a in app.auditors for key in a.peer.auditor.evidence}
    assert convicted == split_keys
    for a in app.auditors:  # gossip spread every conviction to every auditor, each re-verifiable
        assert set(a.peer.auditor.evidence) == split_keys
        for key, ev in a.peer.auditor.evidence.items():
            ev.verify()
            assert ev.public_key == result.world.signers[int(key.split("-")[1])].public_key  # type: ignore[attr-defined]
    for split in app.splits.values():
        assert split.first_served_us is not None
        first = min(a.convicted[split.key_name] for a in app.auditors)
        assert first - split.first_served_us <= app.detect_within_us
