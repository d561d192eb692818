"""Regression tests for the simulator's MMD check (`ct_mmd`).

An SCT's timestamp is its batch's consensus time, set when the primary proposed the batch. A batch a
faulty primary proposed just after GST and a later view re-proposed (the timestamp is part of the batch
digest, so it is kept) commits with a timestamp older than the MMD: ct-byzantine33 seed 1 did, and the
check reported SCTs that no validator could have signed before their deadline as MMD violations. The
MMD clock now starts when the SCT can first exist; the commit delay is consensus latency, which the
liveness check bounds. The run also goes on until every SCT is decided, so none passes unchecked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sim.apps import APPS
from sim.apps.ct import CTSimApp
from sim.checkers import Verdict
from sim.runner import RunResult, run
from sim.scenario import from_dict, load
from trustchain.app.interface import Application, ExecutionContext, Operation
from trustchain.ct.app import CTApplication
from trustchain.ct.auditor import MMD_VIOLATION, SCT_INCLUDED

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
MMD_S = 2.0
BACKDATE_US = 5_000_000  # more than the MMD
FROZEN_SIZE = 10


def _scenario() -> dict[str, Any]:
    return {
        "name": "ct-mmd-regression", "seed": 7, "duration_s": 60,
        "cluster": {"n": 4, "batch_size": 4, "batch_delay_ms": 5, "checkpoint_interval": 10,
                    "watermark_window": 30},
        "network": {"latency": {"model": "uniform", "low_ms": 5, "high_ms": 20}},
        "workload": {"clients": 4, "mode": "open", "rate_per_s": 40, "requests": 60, "start_s": 6.0},
        "application": {"name": "ct", "params": {"mmd_s": MMD_S, "audit_interval_ms": 300, "auditors": 2}},
        "expect": {"safety": "hold", "liveness": True, "liveness_bound_s": 10},
    }


def _run(monkeypatch: pytest.MonkeyPatch, app_cls: type[CTSimApp]) -> tuple[RunResult, CTSimApp, Verdict]:
    monkeypatch.setitem(APPS, "ct", app_cls)
    result = run(from_dict(_scenario(), "test"), 7)
    app = result.world.app
    assert isinstance(app, app_cls)
    return result, app, {v.name: v for v in result.verdicts}["ct_mmd"]


class _BackdatedApplication(CTApplication):
    """Sees every batch's consensus time BACKDATE_US in the past, as after a view change re-proposed it."""

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        return super().execute(operations, dataclasses.replace(context, time_us=max(0, context.time_us - BACKDATE_US)))


class _BackdatedCT(CTSimApp):
    def create_application(self, replica_id: int) -> Application:
        return _BackdatedApplication(self.world.signers[replica_id], self.key_name(replica_id), self.origin)


class _FrozenCheckpointsCT(CTSimApp):
    """Validators keep logging but only ever sign checkpoints up to FROZEN_SIZE: a real MMD violation."""

    def _checkpoint_for(self, rid: int, auditor: int) -> bytes:
        app = self.replica_app(str(rid))
        return app.signed_checkpoint(min(app.size, FROZEN_SIZE)).encode()


def test_sct_committed_after_its_mmd_is_timed_from_issuance(monkeypatch: pytest.MonkeyPatch) -> None:
    result, app, mmd = _run(monkeypatch, _BackdatedCT)
    assert result.expectation_met, [(v.name, v.detail) for v in result.verdicts if not v.ok]
    assert mmd.ok, mmd.detail
    assert app.scts_handed == 60
    # every SCT came into existence after timestamp + MMD, and each was still checked: included in time
    assert app.issued_late == app.scts_handed
    included = [e for _, _, e in app.events if e.kind == SCT_INCLUDED]
    assert len(included) == app.scts_handed
    assert not [e for _, _, e in app.events if e.kind == MMD_VIOLATION]
    assert all(a.peer.auditor.pending_scts == 0 for a in app.auditors)


def test_real_mmd_violation_is_caught_and_the_run_waits_for_every_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    result, app, mmd = _run(monkeypatch, _FrozenCheckpointsCT)
    assert not mmd.ok
    assert "not in a signed tree within the MMD" in mmd.detail, mmd.detail
    violations = [e for _, _, e in app.events if e.kind == MMD_VIOLATION]
    included = [e for _, _, e in app.events if e.kind == SCT_INCLUDED]
    # nothing left undecided: the run went on past the last deadline instead of ending with SCTs pending
    assert all(a.peer.auditor.pending_scts == 0 for a in app.auditors)
    assert len(included) == FROZEN_SIZE
    assert len(violations) == app.scts_handed - FROZEN_SIZE
    last_done = max(r.completed_us for r in result.world.requests.values() if r.completed_us is not None)
    assert result.world.now > last_done + MMD_S * 1e6


@pytest.mark.slow
def test_ct_byzantine33_sct_committed_after_view_change() -> None:
    """The original failure, in the full fault mix: SCTs of batches a Byzantine primary proposed around GST
    that committed only after a view change. Seed 1 showed it first; view changes have become rarer since
    (lagging replicas postpone theirs once, and hold messages just above their window), and seed 14 is the
    one of seeds 1..49 with the most such SCTs (24; seeds 16, 20, 26 and 44 have some too)."""
    result = run(load(SCENARIOS / "ct-byzantine33.yaml"), 14)
    verdicts = {v.name: v for v in result.verdicts}
    assert result.expectation_met, [(v.name, v.detail) for v in result.verdicts if not v.ok]
    app = result.world.app
    assert isinstance(app, CTSimApp)
    assert app.issued_late > 0, verdicts["ct_mmd"].detail
    assert all(a.peer.auditor.pending_scts == 0 for a in app.auditors)
