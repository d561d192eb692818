"""Byzantine behaviours aimed at view changes, NEW-VIEW, checkpoints and state transfer, and Byzantine
clients. Each test forces the protocol path the attack targets (a paused or crashed primary for view
changes, the liar as the next primary for NEW-VIEW, small checkpoint intervals and a cut-off replica
for checkpoints and state transfer) and checks that the attack fired, that honest replicas rejected
what they must, for the right reason, and that safety and liveness held."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sim_helpers import run_dict, scenario

from sim.adversaries.nv_forge import REJECTED_AS as NV_REJECTED_AS
from sim.adversaries.nv_forge import NvForge
from sim.adversaries.state_lie import REJECTED_AS as STATE_REJECTED_AS
from sim.adversaries.vc_equivocate import VcEquivocate
from sim.adversaries.vc_forge import REJECTED_AS as VC_REJECTED_AS
from sim.adversaries.vc_forge import VcForge
from sim.checkers import honest_nodes
from sim.runner import RunResult
from sim.scenario import ScenarioError, from_dict, with_overrides
from trustchain.consensus.messages import Checkpoint, NewView, pack
from trustchain.encoding import decode

CLUSTER = {"checkpoint_interval": 4, "watermark_window": 8}
WORKLOAD = {"clients": 4, "mode": "open", "rate_per_s": 40, "requests": 160}


def _data(n: int = 4, **overrides: Any) -> dict[str, Any]:
    data = scenario(cluster={**CLUSTER, "n": n}, workload={**WORKLOAD, "clients": max(4, n - 1)})
    return with_overrides(data, **overrides)


def _byz(*specs: tuple[int, str | list[str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"node": node, "behaviours": [b] if isinstance(b, str) else b, "params": params}
            for node, b, params in specs]


def _pause(node: int, at_s: float = 2.0, duration_s: float = 4.0) -> list[dict[str, Any]]:
    return [{"type": "pause", "node": node, "at_s": at_s, "duration_s": duration_s}]


def _crash(node: int, at_s: float = 2.0) -> list[dict[str, Any]]:
    return [{"type": "crash", "node": node, "at_s": at_s}]


def _cut_off(node: int, n: int, start_s: float = 2.0, heal_s: float = 5.0) -> dict[str, Any]:
    rest = [r for r in range(n) if r != node]
    return {"partitions": [{"start_s": start_s, "heal_s": heal_s, "groups": [rest, [node]]}]}


def _assert_safe_and_live(r: RunResult) -> None:
    failed = [f"{v.name}: {v.detail}" for v in r.verdicts if not v.ok]
    assert not failed, failed
    assert r.expectation_met
    assert r.summary["requests"]["completed"] == r.summary["requests"]["submitted"] > 0


def _rejected(r: RunResult) -> Counter[str]:
    return Counter(r.summary["rejected_by_honest_replicas"])


def _fired(r: RunResult, prefix: str) -> dict[str, int]:
    """Fault counters `prefix<variant>`, by variant."""
    return {k[len(prefix):]: v for k, v in r.world.faults.items() if k.startswith(prefix) and v > 0}


def _assert_rejected_as(r: RunResult, fired: dict[str, int], reasons: dict[str, str | None]) -> None:
    """Every kind of forgery that went out was refused by honest recipients for the reason it must be.
    (Not one refusal per copy: a copy may reach a crashed replica, or one already past that view,
    which ignores it unread.)"""
    rejected = _rejected(r)
    for variant in fired:
        reason = reasons[variant]
        if reason is not None:
            assert rejected[reason] > 0, (variant, reason, dict(rejected))


def _behaviour(r: RunResult, node: int, cls: type[Any]) -> Any:
    return next(b for b in r.world.nodes[str(node)].behaviours if isinstance(b, cls))


def _assert_stable_proofs_honest(r: RunResult) -> None:
    """Every honest replica's stable checkpoint is its own state, proved by 2f+1 distinct votes for
    that very digest (a replica that installed a doctored snapshot, or counted a lying vote, fails)."""
    quorum = r.world.config.quorum
    for name in honest_nodes(r.world):
        cp = r.world.nodes[name].replica.internals.checkpoints
        assert cp.low_watermark > 0, name
        own = cp.own[cp.low_watermark][0]
        digests = {decode(Checkpoint, env.body).state_digest for env in cp.stable_proof}
        assert digests == {own}, name
        assert len({env.sender for env in cp.stable_proof}) >= quorum


def _assert_checkpoints_agree(r: RunResult) -> None:
    """Honest replicas that computed a checkpoint for the same sequence computed the same state."""
    held: dict[int, set[bytes]] = {}
    for name in honest_nodes(r.world):
        for seq, (state, _) in r.world.nodes[name].replica.internals.checkpoints.own.items():
            held.setdefault(seq, set()).add(state)
    assert held and all(len(states) == 1 for states in held.values()), held


# ---------------------------------------------------------------------------- VIEW-CHANGE


def test_vc_equivocate_n4_new_view_built_on_the_lie_is_safe() -> None:
    r = run_dict(_data(byzantine=_byz((2, "vc_equivocate", {})), faults=_pause(0)))
    _assert_safe_and_live(r)
    assert r.world.faults["vc_equivocation"] > 0
    assert r.summary["views"]["highest"] >= 1
    # The new primary got the alternative VIEW-CHANGE and built its NEW-VIEW on it; the replicas that
    # had received the other copy accepted that NEW-VIEW all the same (both copies are genuine).
    behaviour = _behaviour(r, 2, VcEquivocate)
    alternatives = {alt for _, alt in behaviour.plans.values() if alt is not None}
    carried = {pack(env) for name in honest_nodes(r.world)
               if (nv_env := r.world.nodes[name].replica.internals.view_change.current_new_view) is not None
               for env in decode(NewView, nv_env.body).view_changes}
    assert alternatives & carried


def test_vc_equivocate_n7_two_equivocators_and_a_paused_primary() -> None:
    r = run_dict(_data(7, byzantine=_byz((3, "vc_equivocate", {"mode": "old_checkpoint"}),
                                         (5, "vc_equivocate", {"mode": "no_prepared"})),
                       faults=[{"type": "pause", "node": 0, "at_s": 2.0, "duration_s": 4.0}]))
    _assert_safe_and_live(r)
    assert r.world.faults["vc_equivocation"] >= 2
    assert r.summary["views"]["highest"] >= 1


def test_vc_forge_n4_every_forgery_is_rejected_for_its_reason() -> None:
    # Three primaries paused in turn: three view changes, each VIEW-CHANGE forged per recipient.
    faults = [*_pause(0, 1.5, 1.5), *_pause(1, 4.0, 1.5), *_pause(2, 6.5, 1.5)]
    r = run_dict(_data(byzantine=_byz((3, "vc_forge", {})), faults=faults,
                       workload={"requests": 280}))
    _assert_safe_and_live(r)
    fired = _fired(r, "vc_forged_")
    assert set(fired) == set(VC_REJECTED_AS), fired
    _assert_rejected_as(r, fired, dict(VC_REJECTED_AS))
    _assert_vc_forgeries_never_accepted(r, 3)
    assert r.summary["views"]["highest"] >= 3


def _assert_vc_forgeries_never_accepted(r: RunResult, node: int) -> None:
    """No honest replica recorded a forged VIEW-CHANGE, nor entered a view on a NEW-VIEW carrying one."""
    forged = {data for data in _behaviour(r, node, VcForge).forged.values() if data is not None}
    assert forged
    for name in honest_nodes(r.world):
        vc = r.world.nodes[name].replica.internals.view_change
        held = {pack(c.envelope) for vcs in vc.received.values() for c in vcs.values()}
        if vc.current_new_view is not None:
            held |= {pack(e) for e in decode(NewView, vc.current_new_view.body).view_changes}
        assert not held & forged, name


def test_vc_forge_n4_forged_only_view_change_still_completes() -> None:
    """Its only VIEW-CHANGE is a forgery: the view change must complete on the honest ones alone
    (once the paused primary is back, 2f+1 honest replicas ask)."""
    r = run_dict(_data(byzantine=_byz((2, "vc_forge", {"also_honest": False})), faults=_pause(0, 2.0, 2.0)))
    _assert_safe_and_live(r)
    fired = _fired(r, "vc_forged_")
    assert fired
    _assert_rejected_as(r, fired, dict(VC_REJECTED_AS))
    _assert_vc_forgeries_never_accepted(r, 2)
    assert r.summary["views"]["highest"] >= 1


def test_vc_forge_n7_crashed_primary() -> None:
    r = run_dict(_data(7, byzantine=_byz((3, "vc_forge", {})), faults=_crash(0)))
    _assert_safe_and_live(r)
    fired = _fired(r, "vc_forged_")
    assert len(fired) >= 3, fired
    _assert_rejected_as(r, fired, dict(VC_REJECTED_AS))
    _assert_vc_forgeries_never_accepted(r, 3)
    assert r.summary["views"]["highest"] >= 1


def test_vc_withhold_n4_from_the_new_primary() -> None:
    r = run_dict(_data(byzantine=_byz((2, "vc_withhold", {})), faults=_pause(0)))
    _assert_safe_and_live(r)
    assert r.world.faults["vc_withheld"] > 0 and r.world.faults["vc_late"] > 0
    assert r.summary["views"]["highest"] >= 1


def test_vc_withhold_n4_from_everyone_or_late_to_everyone() -> None:
    for params in ({"drop": 3, "late": 0}, {"drop": 0, "late": 3, "delay_ms": 3000}):
        r = run_dict(_data(byzantine=_byz((2, "vc_withhold", params)), faults=_pause(0, 2.0, 2.0)))
        _assert_safe_and_live(r)
        assert r.world.faults["vc_withheld" if params["drop"] else "vc_late"] >= 3
        assert r.summary["views"]["highest"] >= 1


def test_vc_withhold_n5() -> None:
    r = run_dict(_data(5, byzantine=_byz((3, "vc_withhold", {"late": 2})), faults=_pause(0, 2.0, 3.0)))
    _assert_safe_and_live(r)
    assert r.world.faults["vc_withheld"] > 0 and r.world.faults["vc_late"] > 0
    assert r.summary["views"]["highest"] >= 1


def test_vc_withhold_n7_two_withholders() -> None:
    r = run_dict(_data(7, byzantine=_byz((3, "vc_withhold", {"drop": 2}), (5, "vc_withhold", {"drop": 2})),
                       faults=_pause(0, 2.0, 3.0)))
    _assert_safe_and_live(r)
    assert r.world.faults["vc_withheld"] >= 4
    assert r.summary["views"]["highest"] >= 1


# ---------------------------------------------------------------------------- NEW-VIEW


def _assert_invalid_new_views_never_accepted(r: RunResult, node: int) -> None:
    """No honest replica is in a view entered on one of the invalid NEW-VIEWs."""
    shown = _behaviour(r, node, NvForge).shown
    assert shown
    invalid = {data for variant, data in shown.values() if NV_REJECTED_AS[variant] is not None}
    for name in honest_nodes(r.world):
        current = r.world.nodes[name].replica.internals.view_change.current_new_view
        assert current is None or pack(current) not in invalid, name


@pytest.mark.parametrize("variants", [["omit", "alter", "too_few"], ["duplicate_vc", "forged_vc", "equivocate"]])
def test_nv_forge_n4_byzantine_next_primary(variants: list[str]) -> None:
    r = run_dict(_data(byzantine=_byz((1, "nv_forge", {"variants": variants})), faults=_pause(0)))
    _assert_safe_and_live(r)
    fired = _fired(r, "nv_forged_")
    assert set(fired) == set(variants), fired
    _assert_rejected_as(r, fired, dict(NV_REJECTED_AS))
    _assert_invalid_new_views_never_accepted(r, 1)
    # every recipient but those shown a valid NEW-VIEW refused view 1, and the cluster moved on
    assert r.summary["views"]["highest"] >= (1 if "equivocate" in variants else 2)


def test_nv_forge_n4_equivocating_new_view_only() -> None:
    """Every recipient gets a different, valid NEW-VIEW: they enter view 1 on different messages and
    must still agree on everything they execute."""
    r = run_dict(_data(byzantine=_byz((1, "nv_forge", {"variants": ["equivocate"]})), faults=_pause(0)))
    _assert_safe_and_live(r)
    assert r.world.faults["nv_forged_equivocate"] >= 3
    assert not _rejected(r)["invalid_new_view"]
    entered = {pack(nv) for name in honest_nodes(r.world)
               if (nv := r.world.nodes[name].replica.internals.view_change.current_new_view) is not None
               and decode(NewView, nv.body).view == 1}
    assert len(entered) >= 2, "the honest replicas should be in view 1 on different NEW-VIEWs"
    _assert_checkpoints_agree(r)


def test_nv_forge_n7_every_variant() -> None:
    r = run_dict(_data(7, byzantine=_byz((1, "nv_forge", {})), faults=_crash(0)))
    _assert_safe_and_live(r)
    fired = _fired(r, "nv_forged_")
    assert set(fired) == set(NV_REJECTED_AS), fired
    _assert_rejected_as(r, fired, dict(NV_REJECTED_AS))
    _assert_invalid_new_views_never_accepted(r, 1)
    assert r.summary["views"]["highest"] >= 1


# ---------------------------------------------------------------------------- CHECKPOINT


def test_checkpoint_lie_n4_with_an_honest_replica_paused() -> None:
    """While replica 2 is paused, the liar's vote is the one a checkpoint would need: nothing becomes
    stable on a wrong digest, and checkpoints become stable again when replica 2 is back."""
    r = run_dict(_data(byzantine=_byz((3, "checkpoint_lie", {})), faults=_pause(2, 2.0, 2.0)))
    _assert_safe_and_live(r)
    fired = _fired(r, "checkpoint_")
    assert {"wrong_digest", "split", "withheld", "far"} <= set(fired), fired
    assert _rejected(r)["checkpoint_beyond_horizon"] >= fired["far"]
    _assert_stable_proofs_honest(r)
    _assert_checkpoints_agree(r)


def test_checkpoint_lie_n4_wrong_digest_through_a_long_pause() -> None:
    r = run_dict(_data(byzantine=_byz((3, "checkpoint_lie", {"modes": ["wrong"]})), faults=_pause(2, 2.0, 4.0)))
    _assert_safe_and_live(r)
    assert r.world.faults["checkpoint_wrong_digest"] > 0
    _assert_stable_proofs_honest(r)


def test_checkpoint_lie_n7_two_liars() -> None:
    r = run_dict(_data(7, byzantine=_byz((3, "checkpoint_lie", {"modes": ["split", "far"]}),
                                         (5, "checkpoint_lie", {"modes": ["wrong", "withhold"]})),
                       faults=_pause(6, 2.0, 2.0)))
    _assert_safe_and_live(r)
    fired = _fired(r, "checkpoint_")
    assert {"wrong_digest", "split", "withheld", "far"} <= set(fired), fired
    assert _rejected(r)["checkpoint_beyond_horizon"] > 0
    _assert_stable_proofs_honest(r)


# ---------------------------------------------------------------------------- state transfer


@pytest.mark.parametrize("variants", [["snapshot", "proof_short", "proof_duplicate"],
                                      ["commits_short", "commits_forged", "wrong_seq", "gap"]])
def test_state_lie_n4_doctored_replies_are_rejected(variants: list[str]) -> None:
    """Replica 3 is cut off and falls behind; the liar (replica 0) is the first peer it asks."""
    r = run_dict(_data(byzantine=_byz((0, "state_lie", {"variants": variants})), network=_cut_off(3, 4),
                       workload={"requests": 240}))
    _assert_safe_and_live(r)
    fired = _fired(r, "state_lie_")
    assert fired, "the liar was never asked for state"
    assert set(fired) <= set(variants)
    _assert_rejected_as(r, fired, dict(STATE_REJECTED_AS))
    _assert_stable_proofs_honest(r)
    _assert_checkpoints_agree(r)


def test_state_lie_n7_two_liars() -> None:
    r = run_dict(_data(7, byzantine=_byz((0, "state_lie", {"variants": ["snapshot", "commits_forged"]}),
                                         (1, "state_lie", {"variants": ["proof_duplicate", "wrong_seq"]})),
                       network=_cut_off(6, 7), workload={"requests": 240}))
    _assert_safe_and_live(r)
    fired = _fired(r, "state_lie_")
    assert fired
    _assert_rejected_as(r, fired, dict(STATE_REJECTED_AS))
    _assert_stable_proofs_honest(r)
    _assert_checkpoints_agree(r)


# ---------------------------------------------------------------------------- Byzantine clients


def _client_data(n: int, behaviours: list[str], **params: Any) -> dict[str, Any]:
    return scenario(cluster={"n": n}, workload={"clients": 4, "mode": "closed", "requests": 80},
                    byzantine_clients=[{"behaviours": behaviours, "params": {"start_s": 0.5, **params}}])


def _byzantine_client_executions(r: RunResult) -> dict[str, list[tuple[int, int, bytes]]]:
    """Per honest replica, (seq, timestamp, digest) of each Byzantine-client request it executed."""
    keys = {bc.signer.public_key for bc in r.world.byzantine_clients}
    honest = honest_nodes(r.world)
    out: dict[str, list[tuple[int, int, bytes]]] = {}
    for rec in r.world.executions:
        if rec.node in honest:
            out.setdefault(rec.node, []).extend(
                (rec.seq, req.timestamp, req.digest) for req in rec.event.requests if req.client in keys)
    return out


def test_byzantine_clients_in_the_scenario_schema() -> None:
    sc = from_dict(_client_data(4, ["flood", "replay"], rate_per_s=5, burst=3, stop_s=9))
    spec = sc.byzantine_clients[0]
    assert (spec.behaviours, spec.rate_per_s, spec.burst, spec.start_s, spec.stop_s) == (("flood", "replay"), 5, 3,
                                                                                         0.5, 9)
    for bad, path in ((_client_data(4, ["nonsense"]), "byzantine_clients[0].behaviours"),
                      (_client_data(4, ["flood"], speed=3), "byzantine_clients[0].params.speed"),
                      (_client_data(4, ["flood"], burst=0), "byzantine_clients[0].params.burst")):
        with pytest.raises(ScenarioError) as err:
            from_dict(bad)
        assert err.value.path == path


@pytest.mark.parametrize("n", [4, 7])
def test_byzantine_client_forged_replayed_and_equivocating_requests(n: int) -> None:
    r = run_dict(_client_data(n, ["bad_signature", "replay", "equivocate"], rate_per_s=10))
    _assert_safe_and_live(r)
    for kind in ("client_bad_signature", "client_replay", "client_equivocation"):
        assert r.world.faults[kind] > 0, kind
    assert _rejected(r)["bad_client_signature"] >= n * r.world.faults["client_bad_signature"]
    executed = _byzantine_client_executions(r)
    assert executed, "none of the Byzantine client's valid requests executed"
    # one operation per timestamp, the same one everywhere, however many versions were sent
    per_timestamp: dict[int, set[bytes]] = {}
    for rows in executed.values():
        for _, ts, d in rows:
            per_timestamp.setdefault(ts, set()).add(d)
    assert all(len(ds) == 1 for ds in per_timestamp.values())


def test_byzantine_client_flood_and_replay_execute_each_request_once() -> None:
    r = run_dict(_client_data(4, ["flood", "replay"], rate_per_s=10, burst=8))
    assert r.world.faults["client_flood"] > 0 and r.world.faults["client_replay"] > 0
    _assert_safe_and_live(r)


def test_byzantine_client_flood_executes_in_timestamp_order() -> None:
    r = run_dict(_client_data(4, ["flood"], rate_per_s=10, burst=8))
    assert r.world.faults["client_flood"] > 0
    for node, rows in _byzantine_client_executions(r).items():
        timestamps = [ts for _, ts, _ in rows]
        assert timestamps == sorted(set(timestamps)), f"replica {node} executed timestamps {timestamps}"


# ---------------------------------------------------------------------------- all at once


@pytest.mark.slow
def test_every_protocol_adversary_at_once_n7_replays_exactly() -> None:
    data = _data(7, byzantine=_byz((1, ["nv_forge", "vc_forge", "checkpoint_lie"], {}),
                                   (2, ["vc_equivocate", "vc_withhold", "state_lie"], {})),
                 faults=_pause(0, 2.0, 3.0), network=_cut_off(6, 7, 6.0, 9.0),
                 byzantine_clients=[{"behaviours": ["bad_signature", "replay", "equivocate"],
                                     "params": {"rate_per_s": 5}}],
                 workload={"requests": 300})
    first = run_dict(data)
    _assert_safe_and_live(first)
    assert first.trace_digest == run_dict(data).trace_digest
