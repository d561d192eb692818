"""`python -m sim sweep` (grid, cache, resume, parameter validation), modelled signatures, and
`python -m sim report --quick` (sections and plots)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sim.__main__ import main
from sim.modelled import MODELLED, ModelledSigner, use_modelled
from sim.runner import run
from sim.scenario import from_dict
from sim.sweep import SweepError, apply_params, parse_params, sweep

TINY = {
    "name": "tiny",
    "seed": 1,
    "duration_s": 30,
    "cluster": {"n": 4, "batch_size": 4, "batch_delay_ms": 2, "checkpoint_interval": 8, "watermark_window": 16},
    "network": {"latency": {"model": "lognormal", "median_ms": 10, "sigma": 0.2}},
    "workload": {"clients": 4, "mode": "closed", "requests": 12},
    "expect": {"safety": "hold", "liveness": True, "liveness_bound_s": 20},
}


def test_sweep_runs_grid_then_resumes_from_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    params = {"n": [4, 5], "batch": [1, 4]}
    first = sweep(TINY, params, [1, 2], cache_dir=cache, jobs=2, progress=False)
    assert first.executed == 8 and first.cached == 0
    assert [r["status"] for r in first.records] == ["ok"] * 8
    assert {(r["n"], r["batch"], r["seed"]) for r in first.records} == {
        (n, b, s) for n in (4, 5) for b in (1, 4) for s in (1, 2)}
    assert all(r["completed"] == 12 and r["expectation_met"] for r in first.records)
    assert len(list(cache.glob("*.json"))) == 8

    second = sweep(TINY, params, [1, 2], cache_dir=cache, jobs=2, progress=False)
    assert second.executed == 0 and second.cached == 8
    assert [r["key"] for r in second.records] == [r["key"] for r in first.records]
    assert [r["trace_digest"] for r in second.records] == [r["trace_digest"] for r in first.records]

    # A larger grid runs only the new points.
    third = sweep(TINY, {"n": [4, 5, 7], "batch": [1, 4]}, [1, 2], cache_dir=cache, jobs=1, progress=False)
    assert third.executed == 4 and third.cached == 8


def test_sweep_command_writes_jsonl_and_csv_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out" / "tiny.jsonl"
    argv = ["sweep", str(scenario), "--param", "n=4", "--param", "latency=5,20", "--seeds", "2",
            "--cache", str(tmp_path / "cache"), "--out", str(out), "--jobs", "2", "--quiet"]
    assert main(argv) == 0
    assert "4 executed, 0 from cache" in capsys.readouterr().out
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 4 and {x["params"]["latency"] for x in lines} == {5.0, 20.0}
    assert out.with_suffix(".csv").read_text().count("\n") == 5
    assert main(argv) == 0
    assert "0 executed, 4 from cache" in capsys.readouterr().out


def test_unknown_params_are_rejected_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SweepError, match=r"unknown parameter.*bogus.*nodes"):
        parse_params(["n=4", "bogus=1", "nodes=3"])
    with pytest.raises(SweepError, match="not a valid int"):
        parse_params(["n=four"])
    with pytest.raises(SweepError, match="not one of"):
        parse_params(["signatures=fake"])
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(TINY))
    assert main(["sweep", str(scenario), "--param", "colour=red", "--cache", str(tmp_path)]) == 2
    assert "colour" in capsys.readouterr().err


def test_params_map_onto_scenario_fields() -> None:
    d = apply_params(TINY, {"n": 10, "batch": 100, "latency": 50.0, "checkpoint": 40, "loss": 0.01})
    assert d["cluster"]["n"] == 10 and d["cluster"]["batch_size"] == 100
    assert d["network"]["latency"]["median_ms"] == 50.0 and d["network"]["loss"] == 0.01
    assert d["cluster"]["checkpoint_interval"] == 40 and d["cluster"]["watermark_window"] == 80
    assert d["workload"]["clients"] == 4  # not scaled unless asked
    assert apply_params(TINY, {"n": 8}, scale_clients=True)["workload"]["clients"] == 8
    wan = apply_params(TINY, {"regions": 3})
    assert wan["network"]["latency"]["model"] == "wan" and len(wan["network"]["latency"]["regions"]) == 3
    with pytest.raises(SweepError, match="wan"):
        apply_params(wan, {"latency": 10.0})
    assert TINY["cluster"]["n"] == 4  # the base is not modified
    from_dict(d)  # still a valid scenario


def test_invalid_grid_points_are_reported_not_fatal(tmp_path: Path) -> None:
    base = dict(TINY, byzantine=[{"node": 3, "behaviours": ["silent"]}])
    res = sweep(base, {"n": [4]}, [1], cache_dir=tmp_path, jobs=1, progress=False)
    assert res.records[0]["status"] == "ok"
    res = sweep(base, {"n": [5, 6]}, [1], cache_dir=tmp_path, jobs=1, progress=False)
    assert [r["status"] for r in res.records] == ["ok", "ok"]
    bad = dict(TINY, byzantine=[{"node": 6, "behaviours": ["silent"]}])
    res = sweep(bad, {"n": [4, 7]}, [1], cache_dir=tmp_path, jobs=1, progress=False)
    assert [r["status"] for r in res.records] == ["invalid", "ok"]
    assert "byzantine[0].node" in res.records[0]["error"]


def test_modelled_signatures_are_cheap_but_unforgeable() -> None:
    a, b = ModelledSigner(b"\x01" * 32), ModelledSigner(b"\x02" * 32)
    sig = a.sign(b"vote")
    assert len(sig) == 64 and MODELLED.verify(a.public_key, b"vote", sig)
    assert not MODELLED.verify(b.public_key, b"vote", sig)
    assert not MODELLED.verify(a.public_key, b"vote!", sig)
    assert not MODELLED.verify(a.public_key, b"vote", bytes(64))

    scenario = from_dict(use_modelled({**TINY, "name": "bad-sigs",
                          "byzantine": [{"node": 2, "behaviours": ["bad_signatures"], "params": {"p": 1.0}}]}))
    result = run(scenario)
    assert result.world.signers[0].algorithm == "hmac-sha512-model"
    assert result.expectation_met and all(v.ok for v in result.verdicts)
    rejected = sum(sum(n.replica.counters.rejected.values()) for name, n in result.world.nodes.items() if name != "2")
    assert rejected > 0  # the corrupted signatures were caught
    assert apply_params(TINY, {"signatures": "modelled"})["cluster"]["signatures"] == "modelled"
    assert run(from_dict(TINY)).world.signers[0].algorithm == "ed25519"


@pytest.mark.slow
def test_report_quick_writes_readme_and_plots(tmp_path: Path) -> None:
    from sim.report import generate

    out = tmp_path / "reports"
    readme = generate(out, quick=True, jobs=2, cache=tmp_path / "cache", progress=False)
    text = readme.read_text()
    for section in ("## The design document's claims, one row each", "## Microbenchmarks",
                    "## Finality and cost against cluster",
                    "## Finality against the network model", "## Throughput against batch size",
                    "## Recovery after a primary crash", "## Safety and liveness against each adversary",
                    "## Simulator scale", "## Scaling with observers", "## Capacity with CPU",
                    "not yet measured", "- commit:", "- machine:", "- date:", "simulated"):
        assert section in text, section
    for claim in ("Certificate generation", "DNS resolution", "Certificate validation", "Consensus finality",
                  "Throughput", "Scaling", "Byzantine tolerance"):
        assert f"| {claim} |" in text, claim
    pngs = {p.name for p in out.glob("*.png")}
    assert pngs >= {"finality_vs_n.png", "finality_vs_latency.png", "finality_vs_wan_regions.png",
                    "throughput_vs_batch.png", "messages_per_request_vs_n.png", "bytes_per_request_vs_n.png",
                    "recovery.png", "adversaries.png", "simulator_scale.png",
                    "observer_scale.png", "capacity_with_cpu.png"}
    for png in pngs:
        assert f"({png})" in text
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "data" / "micro.json").exists() and (out / "data" / "scaling.jsonl").exists()


def test_sweep_on_a_dask_distributed_scheduler(tmp_path: Path) -> None:
    distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] not installed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  dashboard_address=None, host="127.0.0.1") as cluster:
        address = cluster.scheduler_address.removeprefix("tcp://")
        result = sweep(TINY, {"n": [4]}, [1, 2], cache_dir=tmp_path / "cache", progress=False,
                       executor=f"dask://{address}")
    assert result.executed == 2
    assert all(r["status"] == "ok" and r["expectation_met"] for r in result.records)
    local = sweep(TINY, {"n": [4]}, [1, 2], cache_dir=tmp_path / "local", jobs=1, progress=False)
    assert [r["trace_digest"] for r in result.records] == [r["trace_digest"] for r in local.records]
