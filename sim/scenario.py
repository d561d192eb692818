"""Scenario files: a documented, validated YAML schema (see scenarios/README.md).

Every error names the file, the field (as a dotted path) and the reason, and is raised before any
simulation starts. Times in the file are seconds or milliseconds as the field name says; inside the
simulator everything is integer microseconds.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim.cpu import COST_NAMES, PROFILES, CpuSpec
from sim.params import NODE_IDS, ParamRule, ParamSchema
from trustchain.errors import TrustChainError

LATENCY_MODELS = ("constant", "uniform", "lognormal", "wan")
#: storage faults (sim/storage.py): crashes at a write or fsync boundary, and a bit flip in synced data
STORAGE_CRASH_FAULTS = ("crash_after_persist", "lose_unsynced", "torn_write")
STORAGE_FAULTS = (*STORAGE_CRASH_FAULTS, "corrupt_synced")
FAULT_TYPES = ("crash", "restart", "pause", "clock_skew", *STORAGE_FAULTS)
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
#: behaviours the world builds itself (sim/world.py) rather than through a `Behaviour` class, with the
#: params each reads: `twins` runs a second copy of the replica, each copy talking to its own peer set
STRUCTURAL_BEHAVIOURS: dict[str, ParamSchema] = {"twins": {"peers_a": NODE_IDS, "peers_b": NODE_IDS}}
#: ML-DSA is not offered: `cryptography` signs it hedged (randomised inside), so a run could not replay
#: byte for byte; FN-DSA-1024 signs deterministically from the seeded RNG. "modelled" is a cheap HMAC
#: stand-in for scale runs (sim/scale.py): it models the cost of signatures, not their security.
SIGNATURE_SCHEMES = ("ed25519", "fn-dsa-1024", "modelled")
#: closed: each client sends its next request when the last one completed; open: Poisson arrivals handed
#: round robin to the clients (a busy client queues them and counts latency from sending); poisson: open
#: loop for capacity runs, Poisson arrivals whatever completes, taken by an idle client or queued, with
#: latency counted from the arrival
WORKLOAD_MODES = ("closed", "open", "poisson")
WAN_REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast", "sa-east")


class ScenarioError(TrustChainError, ValueError):
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
    k: int = 1  # storage crashes: at the k-th boundary counted from at_s (0: drawn from `window`)
    window: tuple[int, int] = (1, 1)  # storage crashes: k drawn uniformly from [lo, hi] by the run's seed
    restart_after_s: float | None = None  # storage faults: restart this long after the crash (None: stay down)


@dataclass(frozen=True)
class ByzantineSpec:
    node: int
    behaviours: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ByzantineClientSpec:
    """A misbehaving client beside the workload (see sim/adversaries/clients.py)."""

    behaviours: tuple[str, ...]
    start_s: float = 1.0
    stop_s: float | None = None
    rate_per_s: float = 10.0
    burst: int = 16


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
class ObserverPartitionSpec:
    """A share of the observers cut off from every other node (validators included) for a while."""

    fraction: float
    start_s: float
    heal_s: float


@dataclass(frozen=True)
class ObserverSpec:
    """Non-voting observers fed through the dissemination overlay (sim/observers.py)."""

    count: int
    trees: int = 3
    fanout: int = 4
    validator_fanout: int = 4
    sync_interval_ms: float = 1000.0
    byzantine: int = 0  # observers that withhold and forge
    partition: ObserverPartitionSpec | None = None
    liveness_bound_s: float = 30.0  # after the last request completed (or the partition healed)

    @property
    def partition_fraction(self) -> float:
        return 0.0 if self.partition is None else self.partition.fraction


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
    byzantine_clients: tuple[ByzantineClientSpec, ...] = ()
    observers: ObserverSpec | None = None
    cpu: CpuSpec | None = None  # None: no CPU is charged (sim/cpu.py)

    def faulty_nodes(self) -> set[int]:
        """Replicas that count against f: Byzantine, and crashed (while down)."""
        nodes = {b.node for b in self.byzantine}
        nodes |= {f.node for f in self.faults if f.type in ("crash", *STORAGE_FAULTS)}
        return nodes


# ---------------------------------------------------------------------------- parsing


class _Reader:
    """Reads one mapping, remembering its dotted path, and rejects unknown keys."""

    def __init__(self, source: str, path: str, data: Any) -> None:
        if not isinstance(data, dict):
            got = "null" if data is None else type(data).__name__
            raise ScenarioError(source, path or "(top level)", f"expected a mapping, got {got}")
        self.source, self.path, self.data = source, path, data
        self.used: set[str] = set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, reason: str) -> ScenarioError:
        return ScenarioError(self.source, self._p(key), reason)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, minimum: float | None = None,
            maximum: float | None = None, choices: tuple[str, ...] | None = None) -> Any:
        """The value at `key` (or `default`; `...` makes the key required), checked: one of the types in
        `kind` (a boolean is never a number; `float` accepts an integer and returns a float), finite,
        within [minimum, maximum] and, for a string, one of `choices`."""
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.error(key, "is required")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = "/".join(k.__name__ for k in kinds)
        if type(value) is bool and bool not in kinds:
            raise self.error(key, f"expected {expected}, got a boolean ({_describe(value)})")
        if float in kinds and type(value) is int:
            try:
                value = float(value)
            except OverflowError:
                raise self.error(key, "is too large") from None
        if not isinstance(value, kinds):
            raise self.error(key, f"expected {expected}, got {_describe(value)}")
        problem = _range_problem(value, minimum, maximum)
        if problem is not None:
            raise self.error(key, problem)
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {_describe(value)}")
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
        unknown = sorted((k for k in self.data if k not in self.used), key=str)
        if unknown:
            raise self.error(str(unknown[0]), "unknown field")


def _describe(value: Any) -> str:
    """A value as the scenario author wrote it, for an error message."""
    if value is None:
        return "null"
    if type(value) is bool:
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "a number too large to print"
    return text if len(text) <= 80 else text[:77] + "..."


def _range_problem(value: object, minimum: float | None, maximum: float | None) -> str | None:
    """Why a number is not finite or outside [minimum, maximum]; None for other values or when it is fine."""
    if type(value) is bool or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {_describe(value)}"
    if minimum is not None and value < minimum:
        return f"must be >= {minimum}, got {_describe(value)}"
    if maximum is not None and value > maximum:
        return f"must be <= {maximum}, got {_describe(value)}"
    return None


def _node_ids(r: _Reader, key: str, values: list[Any], n: int) -> tuple[int, ...]:
    """`values` (found at `key`) as distinct replica ids in 0..n-1."""
    seen: set[int] = set()
    for i, v in enumerate(values):
        if type(v) is not int or not 0 <= v < n:
            raise r.error(f"{key}[{i}]", f"node ids must be integers in 0..{n - 1}, got {_describe(v)}")
        if v in seen:
            raise r.error(f"{key}[{i}]", f"node {v} is listed twice")
        seen.add(v)
    return tuple(values)


def _node_list(r: _Reader, key: str, n: int) -> tuple[int, ...]:
    return _node_ids(r, key, r.get(key, list, []), n)


# ---------------------------------------------------------------------------- plug-in params


def _value_problem(value: Any, spec: type | ParamRule, n: int) -> tuple[str, str] | None:
    """What is wrong with one param value under its declared type (sim/params.py) in a cluster of n
    replicas, as (path suffix, reason), or None."""
    rule = spec if isinstance(spec, ParamRule) else ParamRule(spec)
    kind = rule.kind
    if kind is float:
        ok = type(value) in (int, float)
    elif kind in (bool, int):
        ok = type(value) is kind
    else:
        ok = isinstance(value, kind) and type(value) is not bool
    if not ok:
        return "", f"expected {kind.__name__}, got {_describe(value)}"
    if isinstance(value, list):
        if rule.items is None:
            return None
        item = ParamRule(rule.items, rule.minimum, rule.maximum, rule.choices, node_ids=rule.node_ids)
        seen: set[int] = set()
        for i, v in enumerate(value):
            problem = _value_problem(v, item, n)
            if problem is not None:
                return f"[{i}]{problem[0]}", problem[1]
            if rule.node_ids:
                if v in seen:
                    return f"[{i}]", f"node {v} is listed twice"
                seen.add(v)
        return None
    if kind is float and type(value) is int:
        try:
            float(value)
        except OverflowError:
            return "", "is too large"
    if rule.node_ids and type(value) is int and not 0 <= value < n:
        return "", f"node ids must be integers in 0..{n - 1}, got {value}"
    reason = _range_problem(value, rule.minimum, rule.maximum)
    if reason is not None:
        return "", reason
    if rule.choices and value not in rule.choices:
        return "", f"must be one of {', '.join(rule.choices)}; got {_describe(value)}"
    return None


def _check_params(r: _Reader, params: dict[Any, Any], schemas: dict[str, ParamSchema], n: int) -> None:
    """Checks the `params` mapping read from `r` against the schemas of the plug-ins that share it
    (plug-in name -> schema): every key must be declared by one of them, and its value must suit every
    declaration of it."""
    accepted = sorted({key for schema in schemas.values() for key in schema})
    for key, value in params.items():
        if not isinstance(key, str):
            raise r.error("params", f"parameter names must be strings, got {_describe(key)}")
        rules = [(name, schema[key]) for name, schema in schemas.items() if key in schema]
        if not rules:
            owners = " / ".join(schemas) or "(none)"
            raise r.error(f"params.{key}", f"unknown parameter for {owners}; accepted: "
                          + (", ".join(accepted) or "none"))
        for name, spec in rules:
            problem = _value_problem(value, spec, n)
            if problem is not None:
                where = f" (as {name} reads it)" if len(rules) > 1 else ""
                raise r.error(f"params.{key}{problem[0]}", problem[1] + where)


def _behaviour_schema(name: str) -> ParamSchema:
    """The params Byzantine behaviour `name` declares (none when it declares nothing)."""
    from sim.adversaries import BEHAVIOURS as BEHAVIOUR_CLASSES
    from sim.apps import APP_BEHAVIOURS, APPS

    if name in STRUCTURAL_BEHAVIOURS:
        return STRUCTURAL_BEHAVIOURS[name]
    if name in BEHAVIOUR_CLASSES:
        schema: ParamSchema = getattr(BEHAVIOUR_CLASSES[name], "param_types", {})
        return schema
    if name in APP_BEHAVIOURS:
        per_behaviour: dict[str, ParamSchema] = getattr(APPS[APP_BEHAVIOURS[name]], "behaviour_params", {})
        return per_behaviour.get(name, {})
    return {}


def known_behaviours() -> tuple[str, ...]:
    """Every Byzantine behaviour name a scenario may use: the consensus-level ones (including those only
    registered in sim.adversaries), the structural ones and those the applications add."""
    from sim.adversaries import BEHAVIOURS as BEHAVIOUR_CLASSES
    from sim.apps import APP_BEHAVIOURS

    return tuple(dict.fromkeys([*BEHAVIOURS, *BEHAVIOUR_CLASSES, *STRUCTURAL_BEHAVIOURS, *APP_BEHAVIOURS]))


def _storage_fault_fields(fr: _Reader, ftype: str) -> dict[str, Any]:
    """`k` or `window` (storage crashes) and `restart_after_s` (storage faults); rejected elsewhere."""
    for key, allowed in (("k", STORAGE_CRASH_FAULTS), ("window", STORAGE_CRASH_FAULTS),
                         ("restart_after_s", STORAGE_FAULTS)):
        if key in fr.data and ftype not in allowed:
            raise fr.error(key, f"only for fault types {', '.join(allowed)}")
    out: dict[str, Any] = {"restart_after_s": fr.get("restart_after_s", float, None, minimum=0)}
    k = fr.get("k", int, 0, minimum=1)
    window = fr.get("window", list, None)
    if window is not None:
        if k:
            raise fr.error("window", "give k or window, not both")
        if len(window) != 2 or not all(type(v) is int for v in window) or not 1 <= window[0] <= window[1]:
            raise fr.error("window", f"expected [lo, hi] with integers 1 <= lo <= hi, got {_describe(window)}")
        out["window"] = (window[0], window[1])
    out["k"] = k or (0 if window is not None else 1)
    return out


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
            groups=tuple(_group(p, i, g, n) for i, g in enumerate(p.get("groups", list, []))),
            one_way_from=_node_list(p, "from", n),
            one_way_to=_node_list(p, "to", n),
        )
        p.done()
        if spec.heal_s <= spec.start_s:
            raise p.error("heal_s", f"must be after start_s ({spec.start_s})")
        if not spec.groups and not (spec.one_way_from and spec.one_way_to):
            raise p.error("groups", "a partition needs groups (symmetric) or from/to (one-way)")
        seen: set[int] = set()
        for i, g in enumerate(spec.groups):
            if seen & set(g):
                raise p.error(f"groups[{i}]", f"node {sorted(seen & set(g))[0]} is in two groups")
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
            **_storage_fault_fields(fr, ftype),
        )
        fr.done()
        if ftype == "pause" and fault.duration_s <= 0:
            raise fr.error("duration_s", "a pause needs a positive duration_s")
        faults.append(fault)
    for fr_i, fault in enumerate(faults):
        if fault.type == "restart" and not any(
            f.type in ("crash", *STORAGE_FAULTS) and f.node == fault.node and f.at_s < fault.at_s for f in faults
        ):
            raise ScenarioError(source, f"faults[{fr_i}]", f"restart of node {fault.node} without an earlier crash")

    byz: list[ByzantineSpec] = []
    known = known_behaviours()
    for br in top.items("byzantine"):
        node = br.get("node", int, minimum=0, maximum=n - 1)
        raw_b = br.get("behaviours", (list, str))
        behaviours = (raw_b,) if isinstance(raw_b, str) else tuple(raw_b)
        for b in behaviours:
            if b not in known:
                raise br.error("behaviours", f"unknown behaviour {_describe(b)}; known: {', '.join(known)}")
        params = br.get("params", dict, {})
        _check_params(br, params, {b: _behaviour_schema(b) for b in behaviours}, n)
        br.done()
        if any(b.node == node for b in byz):
            raise br.error("node", f"node {node} is listed twice")
        byz.append(ByzantineSpec(node, behaviours, dict(params)))

    byz_clients = []
    for cr in top.items("byzantine_clients"):
        from sim.adversaries.clients import CLIENT_BEHAVIOURS

        raw_c = cr.get("behaviours", (list, str))
        client_behaviours = (raw_c,) if isinstance(raw_c, str) else tuple(raw_c)
        for b in client_behaviours:
            if b not in CLIENT_BEHAVIOURS:
                raise cr.error("behaviours", f"unknown client behaviour {b!r}; known: {', '.join(CLIENT_BEHAVIOURS)}")
        cp = cr.child("params")
        byz_clients.append(ByzantineClientSpec(
            client_behaviours,
            start_s=cp.get("start_s", float, 1.0, minimum=0),
            stop_s=cp.get("stop_s", float, None, minimum=0),
            rate_per_s=cp.get("rate_per_s", float, 10.0, minimum=0.001),
            burst=cp.get("burst", int, 16, minimum=1, maximum=10_000),
        ))
        cp.done()
        cr.done()

    w = top.child("workload")
    workload = WorkloadSpec(
        clients=w.get("clients", int, 4, minimum=1, maximum=100_000),
        mode=w.get("mode", str, "closed", choices=WORKLOAD_MODES),
        requests=w.get("requests", int, 100, minimum=1),
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
    app_cls = APPS[application.name]
    _check_params(a, application.params, {application.name: getattr(app_cls, "param_types", {})}, n)
    problem = app_cls.check_params(application.params, n)
    if problem is not None:
        raise a.error(f"params.{problem[0]}", problem[1])
    a.done()
    for i, b in enumerate(byz):
        for behaviour in b.behaviours:
            if behaviour in APP_BEHAVIOURS and APP_BEHAVIOURS[behaviour] != application.name:
                raise ScenarioError(source, f"byzantine[{i}].behaviours",
                                    f"{behaviour!r} needs application {APP_BEHAVIOURS[behaviour]!r}")

    observers = _observers(top) if "observers" in top.data else None
    cpu = _cpu(top) if "cpu" in top.data else None

    e = top.child("expect")
    expect = ExpectSpec(
        safety=e.get("safety", str, "hold", choices=("hold", "violation")),
        liveness=e.get("liveness", bool, True),
        liveness_bound_s=e.get("liveness_bound_s", float, 30.0, minimum=0.001),
    )
    e.done()
    top.done()

    scenario = Scenario(name, source, seed, duration_s, cluster, network, tuple(faults), tuple(byz),
                        workload, expect, application, description, data, tuple(byz_clients), observers, cpu)
    if expect.safety == "hold" and len({b.node for b in byz}) > cluster.f:
        raise ScenarioError(
            source, "byzantine",
            f"{len(byz)} Byzantine replicas exceed f={cluster.f} for n={n} "
            "(set expect.safety: violation to run beyond the threshold)",
        )
    app_faulty = {b.node for b in byz} | APPS[application.name].faulty_nodes(application.params)
    if expect.safety == "hold" and len(app_faulty) > cluster.f:
        raise ScenarioError(
            source, "application.params",
            f"{len(app_faulty)} faulty validators (Byzantine, or made faulty by the application's params) "
            f"exceed f={cluster.f} for n={n} (set expect.safety: violation to run beyond the threshold)",
        )
    if expect.safety == "hold" and expect.liveness and len(scenario.faulty_nodes()) > cluster.f:
        raise ScenarioError(
            source, "faults",
            f"{len(scenario.faulty_nodes())} faulty replicas (Byzantine or crashed) exceed f={cluster.f} "
            "for n={n}, so liveness cannot be expected (set expect.liveness: false)".replace("{n}", str(n)),
        )
    return scenario


def _cpu(top: _Reader) -> CpuSpec:
    c = top.child("cpu")
    costs_us = c.get("costs_us", dict, {})
    for key, value in costs_us.items():
        if key not in COST_NAMES:
            raise c.error(f"costs_us.{key}", f"unknown operation; known: {', '.join(COST_NAMES)}")
        if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
            raise c.error(f"costs_us.{key}", f"expected a finite number of microseconds >= 0, got {_describe(value)}")
    spec = CpuSpec(
        cores=c.get("cores", int, 1, minimum=1, maximum=4096),
        costs=c.get("costs", str, "fixed", choices=("fixed", "calibrated")),
        costs_us={k: float(v) for k, v in costs_us.items()},
        profile=c.get("profile", str, "kv", choices=PROFILES),
    )
    c.done()
    return spec


def _observers(top: _Reader) -> ObserverSpec:
    o = top.child("observers")
    count = o.get("count", int, minimum=1, maximum=1_000_000)
    partition = None
    if "partition" in o.data:
        p = o.child("partition")
        partition = ObserverPartitionSpec(
            fraction=p.get("fraction", float, minimum=0, maximum=1),
            start_s=p.get("start_s", float, minimum=0),
            heal_s=p.get("heal_s", float, minimum=0),
        )
        p.done()
        if partition.heal_s <= partition.start_s:
            raise p.error("heal_s", f"must be after start_s ({partition.start_s})")
    spec = ObserverSpec(
        count=count,
        trees=o.get("trees", int, 3, minimum=1, maximum=16),
        fanout=o.get("fanout", int, 4, minimum=1, maximum=64),
        validator_fanout=o.get("validator_fanout", int, 4, minimum=1, maximum=1024),
        sync_interval_ms=o.get("sync_interval_ms", float, 1000.0, minimum=1),
        byzantine=o.get("byzantine", int, 0, minimum=0, maximum=count),
        partition=partition,
        liveness_bound_s=o.get("liveness_bound_s", float, 30.0, minimum=0.001),
    )
    o.done()
    return spec


def _group(r: _Reader, index: int, value: Any, n: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise r.error(f"groups[{index}]", f"each group is a non-empty list of node ids in 0..{n - 1}, "
                      f"got {_describe(value)}")
    return _node_ids(r, f"groups[{index}]", value, n)


def with_overrides(data: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A deep copy of scenario data with top-level sections replaced, or merged one level deep when
    both the section and the override are mappings (`cluster={"n": 7}` keeps the other cluster keys)."""
    out = copy.deepcopy(data)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


def load(path: str | Path) -> Scenario:
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(source, "(file)", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(source, "(file)", f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: e.g. an integer too long to convert
        raise ScenarioError(source, "(yaml)", f"not valid YAML: {exc}") from None
    return _parse(source, data)


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Scenario:
    return _parse(source, data)
