"""Scenario validation: every invalid scenario is rejected before a run, naming the file, the dotted field
path and the reason (`python -m sim run` exits 2, never with a traceback), and every shipped scenario
still loads."""

from __future__ import annotations

import ast
import inspect
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from sim_helpers import scenario

from sim.__main__ import main
from sim.adversaries import BEHAVIOURS as BEHAVIOUR_CLASSES
from sim.adversaries.base import Behaviour
from sim.apps import APPS
from sim.params import ParamRule
from sim.scenario import ScenarioError, from_dict, known_behaviours, load

ROOT = Path(__file__).resolve().parents[2]
NAN, INF = math.nan, math.inf


def _data(change: dict[Any, Any]) -> dict[Any, Any]:
    """sim_helpers.BASE with `change` merged in, one level deep."""
    data: dict[Any, Any] = scenario()
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return data


def _byz(behaviours: list[Any], node: int = 3, **params: Any) -> dict[str, Any]:
    return {"byzantine": [{"node": node, "behaviours": behaviours, "params": params}]}


def _app(name: str, **params: Any) -> dict[str, Any]:
    return {"application": {"name": name, "params": params}}


def _partition(**spec: Any) -> dict[str, Any]:
    return {"network": {"partitions": [{"start_s": 1, "heal_s": 2, **spec}]}}


# (scenario changes on top of sim_helpers.BASE (n = 4), the field path, a part of the reason)
INVALID: list[tuple[str, dict[Any, Any], str, str]] = [
    # NaN and infinities, wherever a number is read
    ("nan-duration", {"duration_s": NAN}, "duration_s", "finite"),
    ("inf-latency", {"network": {"latency": {"model": "constant", "ms": INF}}}, "network.latency.ms", "finite"),
    ("nan-sigma", {"network": {"latency": {"model": "lognormal", "sigma": NAN}}}, "network.latency.sigma",
     "finite"),
    ("nan-jitter", {"network": {"jitter_ms": NAN}}, "network.jitter_ms", "finite"),
    ("nan-loss", {"network": {"loss": NAN}}, "network.loss", "finite"),
    ("inf-gst", {"network": {"gst_s": INF}}, "network.gst_s", "finite"),
    ("minus-inf-skew", {"faults": [{"type": "clock_skew", "node": 1, "skew_ms": -INF}]}, "faults[0].skew_ms",
     "finite"),
    ("inf-heal", _partition(heal_s=INF, groups=[[0, 1], [2, 3]]), "network.partitions[0].heal_s", "finite"),
    ("nan-change", {"network": {"changes": [{"start_s": 1, "end_s": 2, "extra_delay_ms": NAN}]}},
     "network.changes[0].extra_delay_ms", "finite"),
    ("inf-rate", {"workload": {"mode": "open", "rate_per_s": INF}}, "workload.rate_per_s", "finite"),
    ("nan-timeout", {"cluster": {"n": 4, "view_change_timeout_ms": NAN}}, "cluster.view_change_timeout_ms",
     "finite"),
    ("nan-bound", {"expect": {"liveness_bound_s": NAN}}, "expect.liveness_bound_s", "finite"),
    ("nan-byz-param", _byz(["bad_signatures"], p=NAN), "byzantine[0].params.p", "finite"),
    ("inf-byz-param", _byz(["selective_delay"], delay_ms=INF), "byzantine[0].params.delay_ms", "finite"),
    ("nan-app-param", _app("ct", mmd_s=NAN), "application.params.mmd_s", "finite"),
    ("inf-int-app-param", _app("kv", keys=INF), "application.params.keys", "expected int"),
    ("huge-int-as-float", {"duration_s": 10**400}, "duration_s", "too large"),
    ("huge-int-param", _byz(["bad_signatures"], p=10**400), "byzantine[0].params.p", "too large"),
    # booleans where numbers are expected
    ("bool-n", {"cluster": {"n": True}}, "cluster.n", "boolean"),
    ("bool-loss", {"network": {"loss": True}}, "network.loss", "boolean"),
    ("bool-requests", {"workload": {"requests": False}}, "workload.requests", "boolean"),
    ("bool-fault-node", {"faults": [{"type": "crash", "node": True}]}, "faults[0].node", "boolean"),
    ("bool-group-node", _partition(groups=[[True, 1], [2, 3]]), "network.partitions[0].groups[0][0]",
     "node ids must be integers"),
    ("bool-byz-param", _byz(["bad_signatures"], p=True), "byzantine[0].params.p", "expected float"),
    ("bool-app-param", _app("dns", zones=True), "application.params.zones", "expected int"),
    ("fraction-for-int", {"cluster": {"n": 4.5}}, "cluster.n", "expected int"),
    # negative delays, durations, latencies and rates
    ("negative-batch-delay", {"cluster": {"n": 4, "batch_delay_ms": -1}}, "cluster.batch_delay_ms", ">= 0"),
    ("negative-latency", {"network": {"latency": {"model": "uniform", "low_ms": -5, "high_ms": 5}}},
     "network.latency.low_ms", ">= 0"),
    ("negative-at", {"faults": [{"type": "crash", "node": 1, "at_s": -1}]}, "faults[0].at_s", ">= 0"),
    ("negative-pause", {"faults": [{"type": "pause", "node": 1, "at_s": 1, "duration_s": -2}]},
     "faults[0].duration_s", ">= 0"),
    ("negative-reorder-ms", {"network": {"reorder_ms": -1}}, "network.reorder_ms", ">= 0"),
    ("negative-extra-delay", {"network": {"changes": [{"start_s": 1, "end_s": 2, "extra_delay_ms": -10}]}},
     "network.changes[0].extra_delay_ms", ">= 0"),
    ("negative-think", {"workload": {"think_ms": -1}}, "workload.think_ms", ">= 0"),
    ("negative-rate", {"workload": {"mode": "open", "rate_per_s": -5}}, "workload.rate_per_s", ">="),
    ("negative-start", _partition(start_s=-1, groups=[[0, 1], [2, 3]]), "network.partitions[0].start_s", ">= 0"),
    ("negative-delay-param", _byz(["selective_delay"], delay_ms=-100), "byzantine[0].params.delay_ms", ">= 0"),
    ("negative-after-param", _byz(["crash_worst_moment"], node=0, after_s=-1), "byzantine[0].params.after_s",
     ">= 0"),
    ("negative-app-time", _app("ca", issue_bound_s=-3), "application.params.issue_bound_s", ">= 0"),
    # probabilities outside [0, 1]
    ("loss-above-cap", {"network": {"loss": 1.5}}, "network.loss", "<= 0.9"),
    ("negative-reorder", {"network": {"reorder": -0.1}}, "network.reorder", ">= 0"),
    ("pre-gst-loss", {"network": {"pre_gst_loss": 2}}, "network.pre_gst_loss", "<= 1"),
    ("change-loss", {"network": {"changes": [{"start_s": 1, "end_s": 2, "loss": 1.2}]}},
     "network.changes[0].loss", "<= 1"),
    ("probability-param", _byz(["bad_signatures"], p=1.5), "byzantine[0].params.p", "<= 1"),
    ("probability-app-param", _app("dns", invalid_fraction=-0.1), "application.params.invalid_fraction", ">= 0"),
    ("fractions-over-one", _app("ca", invalid_fraction=0.7, revoke_fraction=0.5),
     "application.params.invalid_fraction", "at most 1"),
    # nodes out of range (n = 4)
    ("fault-node", {"faults": [{"type": "crash", "node": 4}]}, "faults[0].node", "<= 3"),
    ("negative-fault-node", {"faults": [{"type": "crash", "node": -1}]}, "faults[0].node", ">= 0"),
    ("group-node", _partition(groups=[[0, 1], [2, 7]]), "network.partitions[0].groups[1][1]", "0..3"),
    ("byzantine-node", {"byzantine": [{"node": 9, "behaviours": ["silent"]}]}, "byzantine[0].node", "<= 3"),
    ("one-way-from", _partition(**{"from": [5], "to": [1]}), "network.partitions[0].from[0]", "0..3"),
    ("one-way-to", _partition(**{"from": [0], "to": [1, -1]}), "network.partitions[0].to[1]", "0..3"),
    ("targets-param", _byz(["selective_delay"], targets=[1, 4]), "byzantine[0].params.targets[1]", "0..3"),
    ("twins-peers", _byz(["twins"], node=0, peers_a=[1, 10], peers_b=[2]), "byzantine[0].params.peers_a[1]",
     "0..3"),
    # duplicate nodes
    ("duplicate-in-group", _partition(groups=[[0, 1, 1], [2, 3]]), "network.partitions[0].groups[0][2]",
     "listed twice"),
    ("node-in-two-groups", _partition(groups=[[0, 1], [1, 2, 3]]), "network.partitions[0].groups[1]",
     "in two groups"),
    ("duplicate-from", _partition(**{"from": [0, 0], "to": [1]}), "network.partitions[0].from[1]",
     "listed twice"),
    ("duplicate-target", _byz(["selective_delay"], targets=[1, 1]), "byzantine[0].params.targets[1]",
     "listed twice"),
    ("empty-group", _partition(groups=[[0, 1, 2, 3], []]), "network.partitions[0].groups[1]", "non-empty"),
    ("duplicate-byzantine", {"cluster": {"n": 7}, "byzantine": [{"node": 1, "behaviours": ["silent"]},
                                                                {"node": 1, "behaviours": ["double_vote"]}]},
     "byzantine[1].node", "listed twice"),
    # heal before start
    ("heal-before-start", _partition(start_s=5, heal_s=2, groups=[[0, 1], [2, 3]]),
     "network.partitions[0].heal_s", "must be after start_s"),
    ("heal-at-start", _partition(start_s=5, heal_s=5, groups=[[0, 1], [2, 3]]), "network.partitions[0].heal_s",
     "must be after start_s"),
    ("change-ends-first", {"network": {"changes": [{"start_s": 4, "end_s": 1}]}}, "network.changes[0].end_s",
     "must be after start_s"),
    # unknown Byzantine behaviours
    ("unknown-behaviour", _byz(["teleport"]), "byzantine[0].behaviours", "unknown behaviour 'teleport'"),
    ("non-string-behaviour", _byz([3]), "byzantine[0].behaviours", "unknown behaviour 3"),
    ("app-behaviour-elsewhere", _byz(["dns_forge"]), "byzantine[0].behaviours", "needs application 'dns'"),
    # unknown or ill-typed behaviour params
    ("param-of-silent", _byz(["silent"], p=0.5), "byzantine[0].params.p", "unknown parameter"),
    ("misspelt-param", _byz(["bad_signatures"], probability=0.5), "byzantine[0].params.probability",
     "accepted: p"),
    ("param-of-other-behaviour", _byz(["replay_stale"], delay_ms=5), "byzantine[0].params.delay_ms",
     "unknown parameter"),
    ("string-bool-param", _byz(["equivocate"], node=0, collude="yes"), "byzantine[0].params.collude",
     "expected bool"),
    ("scalar-for-list-param", _byz(["selective_delay"], targets=3), "byzantine[0].params.targets",
     "expected list"),
    ("float-for-int-param", _byz(["crash_worst_moment"], node=0, reach=1.5), "byzantine[0].params.reach",
     "expected int"),
    ("null-param", _byz(["crash_worst_moment"], node=0, deadline_s=None), "byzantine[0].params.deadline_s",
     "got null"),
    ("non-string-param-key", {"byzantine": [{"node": 3, "behaviours": ["bad_signatures"], "params": {1: 0.5}}]},
     "byzantine[0].params", "must be strings"),
    ("params-not-mapping", {"byzantine": [{"node": 3, "behaviours": ["silent"], "params": [1]}]},
     "byzantine[0].params", "expected dict"),
    ("app-behaviour-param", _app("ct") | _byz(["ct_split_view"], victims=[-1]),
     "byzantine[0].params.victims[0]", ">= 0"),
    ("app-behaviour-param-type", _app("ct") | _byz(["ct_split_view"], split_start_s="soon"),
     "byzantine[0].params.split_start_s", "expected float"),
    # application params
    ("unknown-app-param", _app("kv", colour="red"), "application.params.colour", "unknown parameter for kv"),
    ("string-app-param", _app("ct", origin=5), "application.params.origin", "expected str"),
    ("app-choice", _app("ca", keygen="magic"), "application.params.keygen", "must be one of dkg, dealer"),
    ("ca-threshold", _app("ca", threshold=1), "application.params.threshold", "between f+1"),
    ("dns-policy", _app("dns", validity_s=30, refresh_s=20), "application.params.validity_s", "twice refresh_s"),
    ("zero-interval", _app("ct", audit_interval_ms=0), "application.params.audit_interval_ms", ">= 0.001"),
    ("zero-zones", _app("dns", zones=0), "application.params.zones", ">= 1"),
    ("app-params-not-mapping", {"application": {"name": "kv", "params": [1]}}, "application.params",
     "expected dict"),
    ("unknown-app", {"application": {"name": "ftp"}}, "application.name", "must be one of"),
    # workload counts
    ("zero-requests", {"workload": {"requests": 0}}, "workload.requests", ">= 1"),
    ("negative-requests", {"workload": {"requests": -5}}, "workload.requests", ">= 1"),
    ("zero-clients", {"workload": {"clients": 0}}, "workload.clients", ">= 1"),
    ("negative-clients", {"workload": {"clients": -1}}, "workload.clients", ">= 1"),
    # odd shapes
    ("non-string-top-key", {1: "x"}, "1", "unknown field"),
    ("null-section", {"network": None}, "network", "expected a mapping"),
]


@pytest.mark.parametrize(("change", "path", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_loader_names_field_and_reason(change: dict[Any, Any], path: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as err:
        from_dict(_data(change), "bad.yaml")
    assert err.value.path == path, str(err.value)
    assert reason in err.value.reason, str(err.value)
    assert str(err.value).startswith(f"bad.yaml: {path}: ")


@pytest.mark.parametrize(("change", "path", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_run_exits_2_naming_file_field_and_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  change: dict[Any, Any], path: str, reason: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump(_data(change)))
    assert main(["run", str(file)]) == 2
    err = capsys.readouterr().err
    assert f"{file}: {path}: " in err and reason in err, err


# YAML spellings the loader must reject through the real command line: exit 2, the file, the field path,
# the reason, and no traceback.
YAML_CASES = [
    ("duration_s: .nan", "duration_s", "finite"),
    ("duration_s: .inf", "duration_s", "finite"),
    ("duration_s: 60\nfaults:\n  - {type: clock_skew, node: 1, skew_ms: -.inf}", "faults[0].skew_ms", "finite"),
    ("duration_s: 60\nnetwork:\n  partitions:\n    - {start_s: 1, heal_s: .NaN, groups: [[0, 1], [2, 3]]}",
     "network.partitions[0].heal_s", "finite"),
    ("duration_s: 60\nnetwork: {loss: yes}", "network.loss", "boolean"),
    ("duration_s: 60\nbyzantine:\n  - {node: 3, behaviours: [bad_signatures], params: {p: .inf}}",
     "byzantine[0].params.p", "finite"),
    ("duration_s: 60\nbyzantine:\n  - {node: 3, behaviours: [silent], params: {delay_ms: 5}}",
     "byzantine[0].params.delay_ms", "unknown parameter"),
    ("duration_s: 1" + "0" * 5000, "(yaml)", "not valid YAML"),
    ("duration_s: [unclosed", "(yaml)", "not valid YAML"),
]

BASE_YAML = """\
name: cli-case
cluster: {n: 4}
workload: {clients: 2, requests: 10}
"""


@pytest.mark.parametrize(("text", "path", "reason"), YAML_CASES, ids=[c[1] + ":" + c[2] for c in YAML_CASES])
def test_cli_rejects_yaml_spellings(tmp_path: Path, text: str, path: str, reason: str) -> None:
    file = tmp_path / "case.yaml"
    file.write_text(BASE_YAML + text + "\n")
    proc = subprocess.run([sys.executable, "-m", "sim", "run", str(file)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"{file}: {path}: " in proc.stderr and reason in proc.stderr, proc.stderr


def test_cli_rejects_unreadable_files(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    for file, path in ((binary, "(file)"), (not_mapping, "(top level)"), (tmp_path / "missing.yaml", "(file)")):
        proc = subprocess.run([sys.executable, "-m", "sim", "run", str(file)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{file}: {path}: " in proc.stderr, proc.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_scenario_loads(path: Path) -> None:
    from sim.reconfig.scenario import is_reconfiguration, load_reconfiguration

    if is_reconfiguration(path):  # a changing validator set: its own format and loader
        assert load_reconfiguration(path).name
        return
    sc = load(path)
    assert sc.name and sc.cluster.n >= 4


def test_valid_params_are_accepted() -> None:
    sc = from_dict(scenario(**_byz(["bad_signatures", "replay_stale", "selective_delay"], p=0, delay_ms=800,
                                   targets=[0, 1])))
    assert sc.byzantine[0].params == {"p": 0, "delay_ms": 800, "targets": [0, 1]}
    sc = from_dict(scenario(**_byz(["crash_worst_moment"], node=0, after_s=1, reach=0, deadline_s=2.5)))
    assert sc.byzantine[0].params["reach"] == 0
    sc = from_dict(scenario(**_app("ca", threshold=3, keygen="dealer", pool_size=4)))
    assert sc.application.params["keygen"] == "dealer"
    sc = from_dict(scenario(**_app("ct", auditors=2) | _byz(["ct_split_view"], victims=[0], split_start_s=1)))
    assert sc.byzantine[0].params["victims"] == [0]


def test_shared_params_must_suit_every_behaviour_that_reads_them() -> None:
    """`p` is read by both bad_signatures and replay_stale: a value must be valid for each."""
    with pytest.raises(ScenarioError) as err:
        from_dict(scenario(**_byz(["bad_signatures", "replay_stale"], p=2)))
    assert err.value.path == "byzantine[0].params.p" and "as bad_signatures reads it" in err.value.reason


def test_every_known_behaviour_is_registered_somewhere() -> None:
    from sim.apps import APP_BEHAVIOURS
    from sim.scenario import STRUCTURAL_BEHAVIOURS

    for name in known_behaviours():
        assert name in BEHAVIOUR_CLASSES or name in STRUCTURAL_BEHAVIOURS or name in APP_BEHAVIOURS, name


def _read_keys(cls: type, receivers: tuple[str, ...]) -> set[str]:
    """The literal keys a class reads with `<receiver>("key", ...)` or `<receiver>.get("key", ...)`."""
    keys = set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(cls)))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func in receivers and isinstance(node.args[0].value, str):
                keys.add(node.args[0].value)
    return keys


@pytest.mark.parametrize("name", sorted(BEHAVIOUR_CLASSES))
def test_declared_behaviour_params_cover_what_the_behaviour_reads(name: str) -> None:
    """A behaviour that declares `param_types` declares every param it reads (one that declares none
    yet accepts none, which the loader enforces)."""
    cls = BEHAVIOUR_CLASSES[name]
    declared = any("param_types" in vars(k) for k in cls.__mro__ if k is not Behaviour)
    read = _read_keys(cls, ("self.param",))
    if not declared and read:
        pytest.skip(f"{name} reads {sorted(read)} but declares no params yet, so it accepts none")
    assert read <= set(cls.param_types), read - set(cls.param_types)
    for rule in cls.param_types.values():
        assert isinstance(rule, ParamRule | type)


@pytest.mark.parametrize("name", sorted(APPS))
def test_declared_application_params_cover_what_the_application_reads(name: str) -> None:
    cls = APPS[name]
    read = _read_keys(cls, ("params.get", "self.params.get"))
    assert read <= set(cls.param_types), read - set(cls.param_types)
    behaviour_read = _read_keys(cls, ("b.params.get",))
    declared = {k for schema in cls.behaviour_params.values() for k in schema}
    assert behaviour_read <= declared, behaviour_read - declared
