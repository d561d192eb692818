"""Scenario files: a documented, validated YAML schema (see scenarios/README.md).

Every error names the file, the field (as a dotted path) and the reason, and is raised before any
simulation starts. Times in the file are seconds or milliseconds as the field name says; inside the
simulator everything is integer microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LATENCY_MODELS = ("constant", "uniform", "lognormal", "wan")
FAULT_TYPES = ("crash", "restart", "pause", "clock_skew")
BEHAVIOURS = (
    "silent",
    "crash_worst_moment",
    "equivocate",
    "double_vote",
    "bad_signatures",
    "replay_stale",
    "selective_delay",
    "impersonate_primary",
    "corrupt_batch",
    "twins",
)
#: ML-DSA is not offered: `cryptography` signs it hedged (randomised inside), so a run could not replay
#: byte for byte; FN-DSA-1024 signs deterministically from the seeded RNG. "modelled" is a cheap HMAC
#: stand-in for scale runs (sim/scale.py): it models the cost of signatures, not their security.
SIGNATURE_SCHEMES = ("ed25519", "fn-dsa-1024", "modelled")
WAN_REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast", "sa-east")


class ScenarioError(ValueError):
    def __init__(self, source: str, path: str, reason: str) -> None:
        super().__init__(f"{source}: {path}: {reason}")
        self.source, self.path, self.reason = source, path, reason


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


@dataclass(frozen=True)
class ClusterSpec:
    n: int
    batch_size: int = 16
    batch_delay_ms: float = 2.0
    checkpoint_interval: int = 16
    watermark_window: int = 32
    view_change_timeout_ms: float = 2000.0
    max_clock_skew_ms: float = 5000.0
    catchup_delay_ms: float = 500.0
    signatures: str = "ed25519"  # replicas' scheme: ed25519 | fn-dsa-1024 (quantum-resistant) | modelled

    @property
    def f(self) -> int:
        return (self.n - 1) // 3


@dataclass(frozen=True)
class LatencySpec:
    model: str = "constant"
    ms: float = 10.0  # constant
    low_ms: float = 5.0  # uniform
    high_ms: float = 20.0
    median_ms: float = 20.0  # lognormal
    sigma: float = 0.4
    regions: tuple[str, ...] = ()  # wan: node i lives in regions[i % len]


@dataclass(frozen=True)
class PartitionSpec:
    start_s: float
    heal_s: float
    groups: tuple[tuple[int, ...], ...] = ()  # symmetric: no traffic between groups
    one_way_from: tuple[int, ...] = ()  # one-way: traffic from -> to is dropped
    one_way_to: tuple[int, ...] = ()


@dataclass(frozen=True)
class LinkChangeSpec:
    """A period in which the whole network gets worse (on top of the base settings)."""

    start_s: float
    end_s: float
    loss: float = 0.0
    extra_delay_ms: float = 0.0
    duplicate: float = 0.0


@dataclass(frozen=True)
class NetworkSpec:
    latency: LatencySpec = field(default_factory=LatencySpec)
    jitter_ms: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0  # probability that a message takes an extra delay of up to reorder_ms
    reorder_ms: float = 50.0
    gst_s: float = 0.0
    pre_gst_loss: float = 0.0
    pre_gst_extra_delay_ms: float = 0.0
    partitions: tuple[PartitionSpec, ...] = ()
    changes: tuple[LinkChangeSpec, ...] = ()


@dataclass(frozen=True)
class FaultSpec:
    type: str
    node: int
    at_s: float = 0.0
    duration_s: float = 0.0  # pause
    skew_ms: float = 0.0  # clock_skew


@dataclass(frozen=True)
class ByzantineSpec:
    node: int
    behaviours: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadSpec:
    clients: int = 4
    mode: str = "closed"
    requests: int = 100
    rate_per_s: float = 50.0
    think_ms: float = 0.0
    start_s: float = 0.5
    value_bytes: int = 64


@dataclass(frozen=True)
class ApplicationSpec:
    name: str = "kv"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExpectSpec:
    safety: str = "hold"  # "hold" | "violation"
    liveness: bool = True
    liveness_bound_s: float = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    seed: int
    duration_s: float
    cluster: ClusterSpec
    network: NetworkSpec
    faults: tuple[FaultSpec, ...]
    byzantine: tuple[ByzantineSpec, ...]
    workload: WorkloadSpec
    expect: ExpectSpec
    application: ApplicationSpec = field(default_factory=ApplicationSpec)
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def faulty_nodes(self) -> set[int]:
        """Replicas that count against f: Byzantine, and crashed (while down)."""
        nodes = {b.node for b in self.byzantine}
        nodes |= {f.node for f in self.faults if f.type == "crash"}
        return nodes


# ---------------------------------------------------------------------------- parsing


class _Reader:
    """Reads one mapping, remembering its dotted path, and rejects unknown keys."""

    def __init__(self, source: str, path: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(source, path or "(top level)", f"expected a mapping, got {type(data).__name__}")
        self.source, self.path, self.data = source, path, data
        self.used: set[str] = set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, reason: str) -> ScenarioError:
        return ScenarioError(self.source, self._p(key), reason)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, minimum: float | None = None,
            maximum: float | None = None, choices: tuple[str, ...] | None = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.error(key, "is required")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and type(value) is int:
            value = float(value)
        if type(value) is bool and bool not in kinds:
            raise self.error(key, f"expected {'/'.join(k.__name__ for k in kinds)}, got a boolean")
        if not isinstance(value, kinds):
            raise self.error(key, f"expected {'/'.join(k.__name__ for k in kinds)}, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {value}")
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def child(self, key: str) -> _Reader:
        self.used.add(key)
        return _Reader(self.source, self._p(key), self.data.get(key, {}))

    def items(self, key: str) -> list[_Reader]:
        self.used.add(key)
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {type(value).__name__}")
        return [_Reader(self.source, f"{self._p(key)}[{i}]", v) for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown field")


def _node_list(r: _Reader, key: str, n: int) -> tuple[int, ...]:
    values = r.get(key, list, [])
    for v in values:
        if type(v) is not int or not 0 <= v < n:
            raise r.error(key, f"node ids must be integers in 0..{n - 1}, got {v!r}")
    return tuple(values)


def _parse(source: str, data: Any) -> Scenario:
    top = _Reader(source, "", data)
    name = top.get("name", str)
    description = top.get("description", str, "")
    seed = top.get("seed", int, 1, minimum=0)
    duration_s = top.get("duration_s", float, 60.0, minimum=0.001)

    c = top.child("cluster")
    cluster = ClusterSpec(
        n=c.get("n", int, minimum=4, maximum=1000),
        batch_size=c.get("batch_size", int, 16, minimum=1, maximum=10_000),
        batch_delay_ms=c.get("batch_delay_ms", float, 2.0, minimum=0),
        checkpoint_interval=c.get("checkpoint_interval", int, 16, minimum=1),
        watermark_window=c.get("watermark_window", int, 32, minimum=1),
        view_change_timeout_ms=c.get("view_change_timeout_ms", float, 2000.0, minimum=1),
        max_clock_skew_ms=c.get("max_clock_skew_ms", float, 5000.0, minimum=0),
        catchup_delay_ms=c.get("catchup_delay_ms", float, 500.0, minimum=1),
        signatures=c.get("signatures", str, "ed25519", choices=SIGNATURE_SCHEMES),
    )
    c.done()
    if cluster.watermark_window < cluster.checkpoint_interval:
        raise ScenarioError(source, "cluster.watermark_window",
                            f"must be >= checkpoint_interval ({cluster.checkpoint_interval})")
    n = cluster.n

    nw = top.child("network")
    lat = nw.child("latency")
    model = lat.get("model", str, "constant", choices=LATENCY_MODELS)
    regions = tuple(lat.get("regions", list, list(WAN_REGIONS[:3]) if model == "wan" else []))
    for reg in regions:
        if reg not in WAN_REGIONS:
            raise lat.error("regions", f"unknown region {reg!r}; known: {', '.join(WAN_REGIONS)}")
    latency = LatencySpec(
        model=model,
        ms=lat.get("ms", float, 10.0, minimum=0),
        low_ms=lat.get("low_ms", float, 5.0, minimum=0),
        high_ms=lat.get("high_ms", float, 20.0, minimum=0),
        median_ms=lat.get("median_ms", float, 20.0, minimum=0),
        sigma=lat.get("sigma", float, 0.4, minimum=0, maximum=3),
        regions=regions,
    )
    lat.done()
    if latency.high_ms < latency.low_ms:
        raise ScenarioError(source, "network.latency.high_ms", "must be >= low_ms")
    partitions = []
    for p in nw.items("partitions"):
        spec = PartitionSpec(
            start_s=p.get("start_s", float, minimum=0),
            heal_s=p.get("heal_s", float, minimum=0),
            groups=tuple(_group(p, g, n) for g in p.get("groups", list, [])),
            one_way_from=_node_list(p, "from", n),
            one_way_to=_node_list(p, "to", n),
        )
        p.done()
        if spec.heal_s <= spec.start_s:
            raise p.error("heal_s", f"must be after start_s ({spec.start_s})")
        if not spec.groups and not (spec.one_way_from and spec.one_way_to):
            raise p.error("groups", "a partition needs groups (symmetric) or from/to (one-way)")
        seen: set[int] = set()
        for g in spec.groups:
            if seen & set(g):
                raise p.error("groups", f"node {sorted(seen & set(g))[0]} is in two groups")
            seen |= set(g)
        partitions.append(spec)
    changes = []
    for ch in nw.items("changes"):
        change = LinkChangeSpec(
            start_s=ch.get("start_s", float, minimum=0),
            end_s=ch.get("end_s", float, minimum=0),
            loss=ch.get("loss", float, 0.0, minimum=0, maximum=1),
            extra_delay_ms=ch.get("extra_delay_ms", float, 0.0, minimum=0),
            duplicate=ch.get("duplicate", float, 0.0, minimum=0, maximum=0.9),
        )
        ch.done()
        if change.end_s <= change.start_s:
            raise ch.error("end_s", f"must be after start_s ({change.start_s})")
        changes.append(change)
    network = NetworkSpec(
        latency=latency,
        jitter_ms=nw.get("jitter_ms", float, 0.0, minimum=0),
        loss=nw.get("loss", float, 0.0, minimum=0, maximum=0.9),
        duplicate=nw.get("duplicate", float, 0.0, minimum=0, maximum=0.9),
        reorder=nw.get("reorder", float, 0.0, minimum=0, maximum=1),
        reorder_ms=nw.get("reorder_ms", float, 50.0, minimum=0),
        gst_s=nw.get("gst_s", float, 0.0, minimum=0),
        pre_gst_loss=nw.get("pre_gst_loss", float, 0.0, minimum=0, maximum=1),
        pre_gst_extra_delay_ms=nw.get("pre_gst_extra_delay_ms", float, 0.0, minimum=0),
        partitions=tuple(partitions),
        changes=tuple(changes),
    )
    nw.done()

    faults = []
    for fr in top.items("faults"):
        ftype = fr.get("type", str, choices=FAULT_TYPES)
        fault = FaultSpec(
            type=ftype,
            node=fr.get("node", int, minimum=0, maximum=n - 1),
            at_s=fr.get("at_s", float, 0.0, minimum=0),
            duration_s=fr.get("duration_s", float, 0.0, minimum=0),
            skew_ms=fr.get("skew_ms", float, 0.0),
        )
        fr.done()
        if ftype == "pause" and fault.duration_s <= 0:
            raise fr.error("duration_s", "a pause needs a positive duration_s")
        faults.append(fault)
    for fr_i, fault in enumerate(faults):
        if fault.type == "restart" and not any(
            f.type == "crash" and f.node == fault.node and f.at_s < fault.at_s for f in faults
        ):
            raise ScenarioError(source, f"faults[{fr_i}]", f"restart of node {fault.node} without an earlier crash")

    byz = []
    for br in top.items("byzantine"):
        node = br.get("node", int, minimum=0, maximum=n - 1)
        raw_b = br.get("behaviours", (list, str))
        behaviours = (raw_b,) if isinstance(raw_b, str) else tuple(raw_b)
        from sim.apps import APP_BEHAVIOURS

        known = BEHAVIOURS + tuple(APP_BEHAVIOURS)
        for b in behaviours:
            if b not in known:
                raise br.error("behaviours", f"unknown behaviour {b!r}; known: {', '.join(known)}")
        params = br.get("params", dict, {})
        br.done()
        if any(b.node == node for b in byz):
            raise br.error("node", f"node {node} is listed twice")
        byz.append(ByzantineSpec(node, behaviours, dict(params)))

    w = top.child("workload")
    workload = WorkloadSpec(
        clients=w.get("clients", int, 4, minimum=1, maximum=100_000),
        mode=w.get("mode", str, "closed", choices=("closed", "open")),
        requests=w.get("requests", int, 100, minimum=0),
        rate_per_s=w.get("rate_per_s", float, 50.0, minimum=0.001),
        think_ms=w.get("think_ms", float, 0.0, minimum=0),
        start_s=w.get("start_s", float, 0.5, minimum=0),
        value_bytes=w.get("value_bytes", int, 64, minimum=0, maximum=1 << 20),
    )
    w.done()

    from sim.apps import APP_BEHAVIOURS, APPS

    a = top.child("application")
    application = ApplicationSpec(
        name=a.get("name", str, "kv", choices=tuple(APPS)),
        params=dict(a.get("params", dict, {})),
    )
    a.done()
    for i, b in enumerate(byz):
        for behaviour in b.behaviours:
            if behaviour in APP_BEHAVIOURS and APP_BEHAVIOURS[behaviour] != application.name:
                raise ScenarioError(source, f"byzantine[{i}].behaviours",
                                    f"{behaviour!r} needs application {APP_BEHAVIOURS[behaviour]!r}")

    e = top.child("expect")
    expect = ExpectSpec(
        safety=e.get("safety", str, "hold", choices=("hold", "violation")),
        liveness=e.get("liveness", bool, True),
        liveness_bound_s=e.get("liveness_bound_s", float, 30.0, minimum=0.001),
    )
    e.done()
    top.done()

    scenario = Scenario(name, source, seed, duration_s, cluster, network, tuple(faults), tuple(byz),
                        workload, expect, application, description, data)
    if expect.safety == "hold" and len({b.node for b in byz}) > cluster.f:
        raise ScenarioError(
            source, "byzantine",
            f"{len(byz)} Byzantine replicas exceed f={cluster.f} for n={n} "
            "(set expect.safety: violation to run beyond the threshold)",
        )
    if expect.safety == "hold" and expect.liveness and len(scenario.faulty_nodes()) > cluster.f:
        raise ScenarioError(
            source, "faults",
            f"{len(scenario.faulty_nodes())} faulty replicas (Byzantine or crashed) exceed f={cluster.f} "
            "for n={n}, so liveness cannot be expected (set expect.liveness: false)".replace("{n}", str(n)),
        )
    return scenario


def _group(r: _Reader, value: Any, n: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(v) is int and 0 <= v < n for v in value):
        raise r.error("groups", f"each group is a list of node ids in 0..{n - 1}, got {value!r}")
    return tuple(value)


def load(path: str | Path) -> Scenario:
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ScenarioError(source, "(file)", f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(source, "(yaml)", f"not valid YAML: {exc}") from None
    return _parse(source, data)


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Scenario:
    return _parse(source, data)
