"""Scenarios of a changing validator set (`kind: reconfiguration`): which validators start, which are
added and removed when, who is Byzantine, the network, the load and the issued certificates.

Validators are numbered by scenario id (0..total-1); ids >= `cluster.n` join later by an `add`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sim.scenario import LatencySpec, NetworkSpec, PartitionSpec
from trustchain.errors import TrustChainError

__all__ = ["ChangeSpec", "ReconfigScenario", "ReconfigScenarioError", "is_reconfiguration", "load_reconfiguration"]

BEHAVIOURS = ("honest", "equivocate")


class ReconfigScenarioError(TrustChainError, ValueError):
    """A scenario field out of range or of the wrong type; the message names it."""


@dataclass(frozen=True)
class ChangeSpec:
    at_s: float
    op: str  # "add" | "remove"
    validator: int


@dataclass(frozen=True)
class ReconfigScenario:
    name: str
    description: str
    seed: int
    duration_s: float
    n: int  # genesis validators: ids 0..n-1
    total: int  # every validator that ever exists: ids 0..total-1
    checkpoint_interval: int
    watermark_window: int
    batch_size: int
    batch_delay_ms: float
    view_change_timeout_ms: float
    catchup_delay_ms: float
    network: NetworkSpec
    byzantine: tuple[int, ...]
    behaviour: str
    changes: tuple[ChangeSpec, ...]
    clients: int
    requests: int
    rate_per_s: float
    certificate_every_s: float
    liveness_bound_s: float


def is_reconfiguration(path: str | Path) -> bool:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("kind") == "reconfiguration"


def _get(d: dict[str, Any], where: str, key: str, kind: type, default: Any = None, lo: float | None = None,
         hi: float | None = None) -> Any:
    if key not in d:
        if default is None:
            raise ReconfigScenarioError(f"{where}{key}: required")
        return default
    value = d[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ReconfigScenarioError(f"{where}{key}: must be {kind.__name__}, got {type(value).__name__}")
    if isinstance(value, int | float) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        raise ReconfigScenarioError(f"{where}{key}: {value} outside [{lo}, {hi}]")
    return value


def _section(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key, {})
    if not isinstance(value, dict):
        raise ReconfigScenarioError(f"{key}: must be a mapping")
    return value


def load_reconfiguration(path: str | Path) -> ReconfigScenario:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ReconfigScenarioError(f"(file): cannot read a YAML mapping: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "reconfiguration":
        raise ReconfigScenarioError("kind: must be 'reconfiguration'")
    c, nw, w = _section(data, "cluster"), _section(data, "network"), _section(data, "workload")
    n = _get(c, "cluster.", "n", int, lo=2, hi=32)
    changes = []
    for i, ch in enumerate(data.get("changes", [])):
        if not isinstance(ch, dict) or len([k for k in ("add", "remove") if k in ch]) != 1:
            raise ReconfigScenarioError(f"changes[{i}]: needs exactly one of add, remove")
        op = "add" if "add" in ch else "remove"
        changes.append(ChangeSpec(_get(ch, f"changes[{i}].", "at_s", float, lo=0), op,
                                  _get(ch, f"changes[{i}].", op, int, lo=0, hi=63)))
    total = max([n, *(ch.validator + 1 for ch in changes)])
    for i, ch in enumerate(changes):
        if ch.op == "add" and ch.validator < n:
            raise ReconfigScenarioError(f"changes[{i}].add: validator {ch.validator} is a genesis validator")
    lat = _section(nw, "latency")
    partitions = []
    for i, p in enumerate(nw.get("partitions", [])):
        groups = p.get("groups") if isinstance(p, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, list) and all(isinstance(x, int) and 0 <= x < total
                                                                              for x in g) for g in groups):
            raise ReconfigScenarioError(f"network.partitions[{i}].groups: lists of validator ids below {total}")
        start = _get(p, f"network.partitions[{i}].", "start_s", float, lo=0)
        heal = _get(p, f"network.partitions[{i}].", "heal_s", float, lo=start)
        partitions.append(PartitionSpec(start, heal, tuple(tuple(g) for g in groups)))
    network = NetworkSpec(
        latency=LatencySpec(model="lognormal", median_ms=_get(lat, "network.latency.", "median_ms", float, 10.0, 0),
                            sigma=_get(lat, "network.latency.", "sigma", float, 0.3, 0, 3)),
        loss=_get(nw, "network.", "loss", float, 0.0, 0, 0.5),
        partitions=tuple(partitions),
    )
    byz = _section(data, "byzantine")
    byzantine = tuple(byz.get("nodes", []))
    if not all(isinstance(b, int) and 0 <= b < total for b in byzantine):
        raise ReconfigScenarioError(f"byzantine.nodes: validator ids below {total}")
    behaviour = _get(byz, "byzantine.", "behaviour", str, "honest")
    if behaviour not in BEHAVIOURS:
        raise ReconfigScenarioError(f"byzantine.behaviour: one of {', '.join(BEHAVIOURS)}")
    return ReconfigScenario(
        name=_get(data, "", "name", str),
        description=_get(data, "", "description", str, ""),
        seed=_get(data, "", "seed", int, 1, lo=0),
        duration_s=_get(data, "", "duration_s", float, 60.0, 1, 3600),
        n=n, total=total,
        checkpoint_interval=_get(c, "cluster.", "checkpoint_interval", int, 10, 1, 1000),
        watermark_window=_get(c, "cluster.", "watermark_window", int, 30, 1, 10_000),
        batch_size=_get(c, "cluster.", "batch_size", int, 4, 1, 1000),
        batch_delay_ms=_get(c, "cluster.", "batch_delay_ms", float, 5.0, 0),
        view_change_timeout_ms=_get(c, "cluster.", "view_change_timeout_ms", float, 1000.0, 1),
        catchup_delay_ms=_get(c, "cluster.", "catchup_delay_ms", float, 300.0, 1),
        network=network, byzantine=byzantine, behaviour=behaviour, changes=tuple(changes),
        clients=_get(w, "workload.", "clients", int, 4, 1, 100),
        requests=_get(w, "workload.", "requests", int, 200, 0, 100_000),
        rate_per_s=_get(w, "workload.", "rate_per_s", float, 20.0, 0.01),
        certificate_every_s=_get(_section(data, "certificates"), "certificates.", "every_s", float, 2.0, 0.01),
        liveness_bound_s=_get(_section(data, "expect"), "expect.", "liveness_bound_s", float, 30.0, 0.1),
    )
