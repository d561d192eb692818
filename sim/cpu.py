"""CPU per simulated validator: `cores` per node and a cost per operation, charged in virtual time.

Without a `cpu` section a scenario charges no CPU (every message is handled the instant it arrives).
With one, each validator has `cores` cores and a FIFO queue: a message (or timer) is handled when a core
is free, the replica's step runs at that moment, and the core stays busy for the step's cost; the
step's effects (messages, writes, replies) leave when its cost has elapsed, in the order the steps ran,
so a node with more cores handles more messages at once but never reorders what it emits. A step's
application work on the requests of an executed batch (independent per request) is split over the
cores that are free, the rest of a step runs on one core.

A step's cost is what its real work would take: the packet's fixed handling cost, decoding and hashing
it (per KiB), each signature the replica actually verified (its own counter), each message it signs
and encodes, each fsync'd commit, and the application's work per executed request (`profile`). The
`certificate` profile charges, per executed request, what one certificate issuance costs each
validator: CSR verification and TBS construction on every validator, a FROST round-1 commitment and
signature share on each of the t = 2f+1 signers (rotated by sequence number and position), aggregation
plus verification of the group signature and signing of the finalize request on one of them, and
checking and assembling the certificate on every validator.

Costs are parameters, so runs stay deterministic: `costs: fixed` (the default) uses FIXED_COSTS below,
measured on the reference machine and rounded; `costs: calibrated` times the real library calls once
per process (sim/calibrate.py) and uses those figures; `costs_us` overrides single entries. The report
calibrates once and passes the figures as `costs_us`, so each of its runs is a pure function of its
scenario and seed.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from trustchain.consensus.effects import Broadcast, Effect, Executed, Persist, SendToClient, SendToReplica

if TYPE_CHECKING:
    from sim.world import ReplicaNode, World

__all__ = ["COST_NAMES", "FIXED_COSTS", "PROFILES", "CostTable", "CpuModel", "CpuSpec", "NodeCpu", "StepCost"]

PROFILES = ("kv", "certificate")


@dataclass(frozen=True)
class CostTable:
    """CPU cost of each operation, in microseconds of one core."""

    message: float  # fixed cost of handling one packet (unpack, dispatch) or of sending one
    codec_per_kb: float  # encoding or decoding, per KiB (trustchain.encoding)
    hash_per_kb: float  # the packet and batch digest (BLAKE3) per KiB
    ed25519_sign: float
    ed25519_verify: float
    frost_commit: float  # a signer's round-1 nonces and commitments
    frost_share: float  # a signer's own group commitment, binding factors and signature share
    frost_aggregate: float  # the aggregator's group signature from t shares, and its verification
    csr_verify: float  # parse a PKCS#10 request and verify its signature
    x509_tbs: float  # build a leaf certificate's TBS
    x509_finalize: float  # verify the group signature over the TBS and assemble the certificate
    sqlite_commit: float  # an INSERT and COMMIT (CPU only, not the wait for the disk)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


COST_NAMES = tuple(f.name for f in fields(CostTable))

#: `python -m sim calibrate --rounds 400` on the reference machine (AMD EPYC, 2 cores shared with other
#: jobs, Python 3.11; medians of process CPU time), rounded. Deterministic runs use these unless a scenario
#: overrides entries in `costs_us`.
FIXED_COSTS = CostTable(
    message=8.0, codec_per_kb=0.15, hash_per_kb=0.4, ed25519_sign=35.0, ed25519_verify=95.0, frost_commit=90.0,
    frost_share=1040.0, frost_aggregate=120.0, csr_verify=200.0, x509_tbs=380.0, x509_finalize=240.0,
    sqlite_commit=45.0,
)


@dataclass(frozen=True)
class CpuSpec:
    """The scenario's `cpu` section."""

    cores: int = 1
    costs: str = "fixed"  # "fixed" | "calibrated"
    costs_us: dict[str, float] = field(default_factory=dict)  # per-operation overrides
    profile: str = "kv"  # the application's work per executed request: "kv" (none) | "certificate"


@dataclass(frozen=True)
class StepCost:
    """A step's core time (µs): `serial` runs on one core; `parallel` is per-request application work
    split into `units` equal pieces that any free cores may take (requests are independent)."""

    serial: int
    parallel: int = 0
    units: int = 0


@dataclass
class NodeCpu:
    """One validator's cores (when each is next free) and queue, and what they did."""

    cores: int
    free_at: list[int] = field(default_factory=list)  # a min-heap, one entry per core
    queue: deque[Callable[[], None]] = field(default_factory=deque)
    wake_at: int | None = None  # a pending wake-up to start the next queued step
    release_at: int = 0  # when the last started step's effects leave (they leave in order)
    busy_us: int = 0  # total core time charged
    steps: int = 0
    max_queue: int = 0
    charged: tuple[StepCost, Callable[[], None] | None] | None = None  # set by `charge` during a step

    def __post_init__(self) -> None:
        self.free_at = [0] * self.cores

    def place(self, now: int, cost: StepCost) -> int:
        """Put a step starting at `now` on the cores (a free one runs its serial part, the least busy
        ones its parallel pieces); returns when its last piece finishes."""
        done = now + cost.serial
        heapq.heapreplace(self.free_at, done)
        if cost.units:
            piece = cost.parallel // cost.units
            rest = cost.parallel - piece * cost.units
            for i in range(cost.units):
                end = max(now, self.free_at[0]) + piece + (1 if i < rest else 0)
                heapq.heapreplace(self.free_at, end)
                done = max(done, end)
        self.busy_us += cost.serial + cost.parallel
        self.steps += 1
        return done


class CpuModel:
    """The validators' CPUs in one world: queues steps, charges their cost, releases their effects."""

    def __init__(self, world: World, spec: CpuSpec, costs: CostTable) -> None:
        self.world, self.spec, self.costs = world, spec, costs
        self.nodes: dict[str, NodeCpu] = {}

    def node(self, name: str) -> NodeCpu:
        cpu = self.nodes.get(name)
        if cpu is None:
            cpu = self.nodes[name] = NodeCpu(self.spec.cores)
        return cpu

    def submit(self, node: ReplicaNode, job: Callable[[], None], defer: Callable[[], None]) -> None:
        """Queue `job` (one step of `node`'s replica, which calls `charge`). If the node crashed or
        restarted before a core takes the job, it is dropped; if it is paused, `defer` hands the input
        back to the pause buffer instead."""
        incarnation = node.incarnation

        def start() -> None:
            if not node.up or node.incarnation != incarnation:
                return
            if node.paused:
                defer()
                return
            job()

        cpu = self.node(node.name)
        cpu.queue.append(start)
        cpu.max_queue = max(cpu.max_queue, len(cpu.queue))
        self._pump(cpu)

    def charge(self, node: ReplicaNode, cost: StepCost, release: Callable[[], None]) -> None:
        """Called by the running step: what it costs; `release` carries out its effects."""
        self.node(node.name).charged = (cost, release)

    def _pump(self, cpu: NodeCpu) -> None:
        """Start queued steps while a core is free now; else wake up when the first one frees."""
        world = self.world
        now = world.now
        while cpu.queue and cpu.free_at[0] <= now:
            start = cpu.queue.popleft()
            cpu.charged = None
            start()
            if cpu.charged is None:
                continue  # dropped or deferred: no core time
            cost, release = cpu.charged
            cpu.charged = None
            done = cpu.place(now, cost)
            if release is not None:
                cpu.release_at = max(done, cpu.release_at)
                world.after(cpu.release_at - now, release)
        if cpu.queue and cpu.wake_at is None:
            cpu.wake_at = cpu.free_at[0]
            world.after(cpu.wake_at - now, lambda: self._wake(cpu))

    def _wake(self, cpu: NodeCpu) -> None:
        cpu.wake_at = None
        self._pump(cpu)

    # ------------------------------------------------------------------ what a step costs

    def step_cost(self, node: ReplicaNode, in_bytes: int, verifications: int, effects: list[Effect]) -> StepCost:
        """Core time of one replica step: its input, the signatures it checked, and its effects."""
        c = self.costs
        cost = parallel = 0.0
        units = 0
        if in_bytes:
            cost += c.message + (c.codec_per_kb + c.hash_per_kb) * in_bytes / 1024
        cost += verifications * c.ed25519_verify
        synced = False
        for e in effects:
            if isinstance(e, Broadcast | SendToReplica | SendToClient):
                cost += c.message + c.ed25519_sign + c.codec_per_kb * len(e.data) / 1024
            elif isinstance(e, Persist):
                synced = True
            elif isinstance(e, Executed):
                work = self._executed(node, e)
                if work:
                    parallel += work
                    units += len(e.requests)
        if synced:
            cost += c.sqlite_commit
        return StepCost(max(1, round(cost)), round(parallel), min(units, self.spec.cores) if parallel else 0)

    def _executed(self, node: ReplicaNode, e: Executed) -> float:
        if self.spec.profile != "certificate":
            return 0.0
        c = self.costs
        n = self.world.config.n
        t = min(n, 2 * ((n - 1) // 3) + 1)
        # every validator: check the request and build the TBS; later verify the finalize request's
        # signature, then check the group signature and assemble the certificate (x509_finalize)
        per_cert = c.csr_verify + c.x509_tbs + c.ed25519_verify + c.x509_finalize
        total = 0.0
        for j in range(len(e.requests)):
            first = (e.seq + j) % n
            offset = (node.replica_id - first) % n
            total += per_cert
            if offset < t:  # one of this certificate's t signers
                total += c.frost_commit + c.frost_share
            if offset == 0:  # ...and its aggregator, who signs the finalize request
                total += c.frost_aggregate + c.ed25519_sign
        return total

    def summary(self, now_us: int) -> dict[str, Any]:
        """Per node: steps, core time charged, utilisation over the run, longest queue."""
        span = max(1, now_us)
        return {
            "cores": self.spec.cores, "profile": self.spec.profile, "costs_us": self.costs.as_dict(),
            "nodes": {name: {"steps": cpu.steps, "busy_s": round(cpu.busy_us / 1e6, 6),
                             "utilisation": round(cpu.busy_us / (span * cpu.cores), 4), "max_queue": cpu.max_queue}
                      for name, cpu in sorted(self.nodes.items())},
        }
