"""The simulated world: replica and client nodes on a SimPy clock, wired through the network model.

Nodes hold the real `trustchain` state machines and carry out their effects: messages go through
`Network.route`, timers become SimPy timeouts, `Persist` records are written to a per-node log
(sim/storage.py) and fsynced before the next effect is performed, so a crash can fall between a write
and its fsync, or between an fsync and the sends it guards. Nothing here decides anything a protocol
would decide.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, assert_never

import simpy

from sim.adversaries import BEHAVIOURS, Behaviour, ByzantineClient, Coalition, Outgoing
from sim.apps import APPS
from sim.calibrate import resolve_costs
from sim.checkers import EffectRecorder
from sim.conflicts import SentVotes
from sim.cpu import CpuModel
from sim.network import Network
from sim.observers import ObserverLayer
from sim.scenario import Scenario
from sim.storage import STORAGE_CRASHES, ArmedCrash, SimStorage, StorageCorrupt
from sim.trace import Trace
from trustchain.consensus.client import Client
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.durability import Sync, with_syncs
from trustchain.consensus.effects import (
    Broadcast,
    CancelTimer,
    Effect,
    Executed,
    Persist,
    PersistExecuted,
    PersistRecord,
    PersistStable,
    Rejected,
    RequestCompleted,
    SendToClient,
    SendToReplica,
    SetTimer,
    StateRestored,
    ViewEntered,
)
from trustchain.consensus.messages import Envelope, PrePrepare, Reply, Request, peek_kind, unpack
from trustchain.consensus.replica import Replica, ReplicaSnapshot
from trustchain.crypto.schemes import ANY_SCHEME, make_signer
from trustchain.crypto.signing import ED25519, Ed25519Signer, Signer, Verifier
from trustchain.encoding import decode


def derive_seed(seed: int, label: str) -> bytes:
    return hashlib.sha256(f"trustchain-sim/{seed}/{label}".encode()).digest()


@dataclass
class ExecutionRecord:
    node: str
    seq: int
    view: int
    batch_digest: bytes
    request_digests: tuple[bytes, ...]
    time_us: int
    trace_index: int
    event: Executed


@dataclass
class RequestRecord:
    client: str
    timestamp: int
    digest: bytes
    submitted_us: int
    completed_us: int | None = None
    arrived_us: int | None = None  # open-loop (poisson) arrival, when it differs from the submission
    result: bytes | None = None  # what the client accepted
    completed_trace_index: int = -1


@dataclass
class ReplicaNode:
    name: str
    replica_id: int
    signer: Signer
    replica: Replica
    byzantine: bool = False
    behaviours: list[Behaviour] = field(default_factory=list)
    peers: frozenset[int] | None = None  # twins: the replicas this instance can talk to
    up: bool = True
    paused: bool = False
    paused_inbox: list[tuple[str, bytes]] = field(default_factory=list)
    paused_side: list[Callable[[], None]] = field(default_factory=list)
    deferred_timers: list[str] = field(default_factory=list)
    skew_us: int = 0
    storage: SimStorage = field(default_factory=SimStorage)
    armed: list[ArmedCrash] = field(default_factory=list)  # storage crashes waiting for their boundary
    refused: str | None = None  # why recovery refused to start the node (its durable data is corrupt)
    timer_tokens: dict[str, int] = field(default_factory=dict)
    incarnation: int = 0
    durable: set[tuple[bytes, int]] = field(default_factory=set)  # (client, timestamp) persisted as executed
    last_seq_executed: int = 0


@dataclass
class Violation:
    """A broken driver-level or replica-level invariant, observed while the simulation ran."""

    kind: str  # "invariants" | "ordering" | "durability" | "equivocation" | "unpersisted_vote"
    node: str
    time_us: int
    trace_index: int
    detail: str


class World:
    def __init__(self, scenario: Scenario, seed: int, trace: Trace, mutant: str | None = None) -> None:
        self.scenario = scenario
        self.seed = seed
        self.trace = trace
        self.env = simpy.Environment()
        spec = scenario.cluster
        self.signers, self.verifier = self._signature_scheme(spec.signatures, seed, spec.n)
        self.config = ClusterConfig(
            tuple(s.public_key for s in self.signers),
            batch_size=spec.batch_size,
            batch_delay_us=round(spec.batch_delay_ms * 1000),
            checkpoint_interval=spec.checkpoint_interval,
            watermark_window=spec.watermark_window,
            view_change_timeout_us=round(spec.view_change_timeout_ms * 1000),
            max_clock_skew_us=round(spec.max_clock_skew_ms * 1000),
            catchup_delay_us=round(spec.catchup_delay_ms * 1000),
        )
        self.network = Network(scenario.network, spec.n, random.Random(f"{seed}/network"))
        self.adversary_rng = random.Random(f"{seed}/adversary")
        self.workload_rng = random.Random(f"{seed}/workload")
        self.coalition = Coalition()
        self.byzantine_ids = {b.node for b in scenario.byzantine}
        self.nodes: dict[str, ReplicaNode] = {}
        self.instances: dict[int, list[ReplicaNode]] = {}
        self.clients: dict[bytes, ClientNode] = {}
        self.client_names: dict[str, ClientNode] = {}
        self.request_index: dict[tuple[str, int], bytes] = {}
        self.executions: list[ExecutionRecord] = []
        self.requests: dict[bytes, RequestRecord] = {}
        self.side_requests: set[bytes] = set()  # sent by replicas' own components (submit_as)
        self.messages_sent: Counter[str] = Counter()
        self.sent_by: Counter[str] = Counter()
        self.bytes_sent = 0
        self.faults: Counter[str] = Counter()
        self.fault_log: list[tuple[int, str, str]] = []
        self.view_entries: list[tuple[int, str, int]] = []
        #: how often each protocol path ran on honest replicas (the explorer's coverage)
        self.coverage: Counter[str] = Counter()
        self.done = self.env.event()
        self._settling = False
        self._timer_seq = 0
        self.mutant = mutant
        self.violations: list[Violation] = []
        self.sent_votes = SentVotes()
        self.effect_recorder = EffectRecorder()
        self.replica_class: type[Replica] = Replica
        self.replica_config = self.config
        if mutant is not None:
            from sim.mutants import MUTANTS

            self.replica_class, self.replica_config = MUTANTS[mutant].instantiate(self.config)
        app_spec = scenario.application
        params = dict(app_spec.params)
        if app_spec.name == "kv":
            params.setdefault("value_bytes", scenario.workload.value_bytes)
        self.app = APPS[app_spec.name](params, self, random.Random(f"{seed}/application"))
        self.cpu = CpuModel(self, scenario.cpu, resolve_costs(scenario.cpu)) if scenario.cpu is not None else None
        #: poisson workload: arrival times, the clients free to take one, and the arrivals waiting for one
        self.arrivals: list[int] = []
        self.completed = 0  # client requests completed (counted as they complete: the check runs per completion)
        self.idle_clients: deque[ClientNode] = deque()
        self.waiting: deque[int] = deque()
        self._build()
        self.observers = ObserverLayer(self, scenario.observers) if scenario.observers is not None else None

    # ------------------------------------------------------------------ construction

    def _signature_scheme(self, scheme: str, seed: int, n: int) -> tuple[list[Signer], Verifier]:
        """Replica keys from the seed. Post-quantum signing draws from a per-replica seeded RNG, so
        its signatures replay too; clients keep Ed25519 (the verifier accepts both, by key size)."""
        if scheme == "modelled":
            from sim.modelled import MODELLED, ModelledSigner

            return [ModelledSigner(derive_seed(seed, f"replica/{i}")) for i in range(n)], MODELLED
        signers = [make_signer(scheme, derive_seed(seed, f"replica/{i}"),
                               random.Random(f"{seed}/signing/{i}").randbytes) for i in range(n)]
        return signers, (ED25519 if scheme == "ed25519" else ANY_SCHEME)

    def client_signer(self, client: int) -> Signer:
        """Client `client`'s key, from the seed (modelled when the replicas' signatures are)."""
        seed = derive_seed(self.seed, f"client/{client}")
        if self.scenario.cluster.signatures == "modelled":
            from sim.modelled import ModelledSigner

            return ModelledSigner(seed)
        return Ed25519Signer(seed)

    def _new_replica(self, rid: int) -> Replica:
        return self.replica_class(self.replica_config, rid, self.signers[rid], self.app.create_application(rid),
                                  self.verifier)

    def _add_node(self, name: str, rid: int) -> ReplicaNode:
        node = ReplicaNode(name, rid, self.signers[rid], self._new_replica(rid), byzantine=rid in self.byzantine_ids)
        self.nodes[name] = node
        self.instances.setdefault(rid, []).append(node)
        self.network.place(name, rid)
        return node

    def _build(self) -> None:
        sc = self.scenario
        for rid in range(sc.cluster.n):
            self._add_node(str(rid), rid)
        for b in sc.byzantine:
            node = self.nodes[str(b.node)]
            for name in b.behaviours:
                if name == "twins":
                    twin = self._add_node(f"{b.node}'", b.node)
                    a_peers = b.params.get("peers_a")
                    b_peers = b.params.get("peers_b")
                    node.peers = frozenset(a_peers) if a_peers is not None else None
                    twin.peers = frozenset(b_peers) if b_peers is not None else None
                    continue
                if name not in BEHAVIOURS:
                    continue  # an application-level behaviour, implemented by the app plug-in
                cls = BEHAVIOURS[name]
                node.behaviours.append(cls(b.params, self, node, random.Random(f"{self.seed}/{b.node}/{name}")))
        for i, fault in enumerate(sc.faults):
            self.schedule(round(fault.at_s * 1e6), self._fault_action(fault.type, fault.node, fault, i))
        w = sc.workload
        for c in range(w.clients):
            signer = self.client_signer(c)
            cnode = ClientNode(self, c, Client(self.config, signer, self.verifier), c % sc.cluster.n)
            self.clients[signer.public_key] = cnode
            self.client_names[cnode.name] = cnode
            self.network.place(cnode.name, cnode.site)
        self.byzantine_clients = [ByzantineClient(self, i, spec) for i, spec in enumerate(sc.byzantine_clients)]
        self.env.process(self._workload())

    def _fault_action(self, kind: str, rid: int, fault: Any, index: int) -> Callable[[], None]:
        def act() -> None:
            for node in self.instances[rid]:
                rng = random.Random(f"{self.seed}/storage-fault/{index}/{node.name}")
                restart_us = None if fault.restart_after_s is None else round(fault.restart_after_s * 1e6)
                if kind in STORAGE_CRASHES:
                    k = fault.k if fault.k > 0 else rng.randint(*fault.window)
                    node.armed.append(ArmedCrash(kind, k, restart_us, rng))
                elif kind == "corrupt_synced":
                    self.corrupt_storage(node, rng, restart_us)
                elif kind == "crash":
                    self.crash(node, "crash")
                elif kind == "restart":
                    self.restart(node)
                elif kind == "pause":
                    self.pause(node, round(fault.duration_s * 1e6))
                elif kind == "clock_skew":
                    node.skew_us = round(fault.skew_ms * 1000)
                    self.log_fault(node, f"clock_skew {fault.skew_ms} ms")
        return act

    def start(self) -> None:
        self.app.start()
        for node in self.nodes.values():
            for b in node.behaviours:
                b.start()
        for bc in self.byzantine_clients:
            bc.start()
        if self.observers is not None:
            self.observers.start()

    # ------------------------------------------------------------------ scheduling helpers

    def schedule(self, at_us: int, action: Callable[[], None]) -> None:
        delay = max(0, at_us - int(self.env.now))
        ev = self.env.timeout(delay)
        ev.callbacks.append(lambda _e: action())

    def after(self, delay_us: int, action: Callable[[], None]) -> None:
        ev = self.env.timeout(max(0, delay_us))
        ev.callbacks.append(lambda _e: action())

    @property
    def now(self) -> int:
        return int(self.env.now)

    def count_fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def log_fault(self, node: ReplicaNode, what: str) -> None:
        self.fault_log.append((self.now, node.name, what))
        self.faults[what.split(" ")[0]] += 1
        self.trace.record(self.now, "fault", node.name, what)

    # ------------------------------------------------------------------ node faults

    def crash(self, node: ReplicaNode, why: str) -> None:
        if not node.up:
            return
        node.up = False
        node.timer_tokens.clear()
        node.paused_inbox.clear()
        node.paused_side.clear()
        node.deferred_timers.clear()
        self.log_fault(node, why)

    def restart(self, node: ReplicaNode) -> None:
        """Recover the replica from what its log holds. A torn or unsynced tail is dropped; corrupt
        durable data keeps the node down for good (a faulty node, never one running on bad data)."""
        if node.up or node.refused is not None:
            return
        try:
            recovered = node.storage.recover()
        except StorageCorrupt as exc:
            node.refused = str(exc)
            self.log_fault(node, f"storage_corrupt (refusing to start: {exc})")
            return
        if recovered.dropped_bytes:
            self.log_fault(node, f"recovery_truncated {recovered.dropped_bytes} bytes of a torn or unsynced "
                           "record at the tail of the log")
        node.incarnation += 1
        app = self.app.create_application(node.replica_id)
        node.replica = self.replica_class.recover(self.replica_config, node.replica_id, node.signer, app,
                                                  recovered.records, self.verifier)
        node.up = True
        status = node.replica.status
        self.log_fault(node, f"restart (recovered view {status.view}, executed {status.last_executed})")
        self.apply(node, node.replica.start(self.local_now(node)))
        for peer in self.nodes.values():  # as in the reference transport: the peers' links to it come back up
            if peer.up and peer.replica_id != node.replica_id:
                self.apply(peer, peer.replica.link_up(node.replica_id, self.local_now(peer)))

    def corrupt_storage(self, node: ReplicaNode, rng: random.Random, restart_after_us: int | None) -> None:
        """Flip a bit in a synced record. The damage shows at the node's next restart; with
        `restart_after_us` the node is also crashed now and restarted that much later."""
        what = node.storage.corrupt(rng)
        self.log_fault(node, f"corrupt_synced {what or 'found no synced record to corrupt'}")
        if restart_after_us is not None:
            self.crash(node, "crash (after corrupt_synced)")
            self.after(restart_after_us, lambda: self.restart(node))

    def _storage_crash(self, node: ReplicaNode, armed: ArmedCrash) -> None:
        """An armed storage crash reached its boundary, in the middle of carrying out effects."""
        node.armed.remove(armed)
        what = node.storage.crash(armed.mode, armed.rng)
        self.crash(node, f"{armed.kind} at {armed.point} #{armed.k} ({what})")
        if armed.restart_after_us is not None:
            self.after(armed.restart_after_us, lambda: self.restart(node))

    def _boundary(self, node: ReplicaNode, point: str) -> None:
        for armed in list(node.armed):
            if armed.reached(point):
                self._storage_crash(node, armed)
                return

    def pause(self, node: ReplicaNode, duration_us: int) -> None:
        node.paused = True
        self.log_fault(node, f"pause {duration_us / 1e6:.3f} s")

        def resume() -> None:
            node.paused = False
            inbox, node.paused_inbox = node.paused_inbox, []
            side, node.paused_side = node.paused_side, []
            timers, node.deferred_timers = node.deferred_timers, []
            for src, data in inbox:
                self.deliver(node, src, data)
            for arrival in side:
                arrival()
            for name in timers:
                self.fire_timer(node, name)

        self.after(duration_us, resume)

    def local_now(self, node: ReplicaNode) -> int:
        return max(0, self.now + node.skew_us)

    # ------------------------------------------------------------------ message flow

    def deliver(self, node: ReplicaNode, src: str, data: bytes) -> None:
        if not node.up:
            return
        if node.paused:
            node.paused_inbox.append((src, data))
            return
        if self.cpu is not None:  # handled when one of the node's cores is free
            self.cpu.submit(node, functools.partial(self._handle, node, src, data),
                            functools.partial(node.paused_inbox.append, (src, data)))
            return
        self._handle(node, src, data)

    def _handle(self, node: ReplicaNode, src: str, data: bytes) -> None:
        self.trace.record(self.now, "recv", node.name, src, len(data), hashlib.blake2b(data, digest_size=6).hexdigest())
        for b in node.behaviours:
            b.incoming(data, self.now)
        self._step(node, lambda: node.replica.receive(data, self.local_now(node)), len(data))

    def fire_timer(self, node: ReplicaNode, name: str) -> None:
        if not node.up:
            return
        if node.paused:
            node.deferred_timers.append(name)
            return
        if self.cpu is not None:
            self.cpu.submit(node, functools.partial(self._on_timer, node, name),
                            functools.partial(node.deferred_timers.append, name))
            return
        self._on_timer(node, name)

    def _on_timer(self, node: ReplicaNode, name: str) -> None:
        self.trace.record(self.now, "timer", node.name, name)
        self._step(node, lambda: node.replica.on_timer(name, self.local_now(node)), 0)

    def transmit(self, src: str, dst_node: str, data: bytes, extra_delay_us: int = 0) -> None:
        kind = peek_kind(data)
        self.messages_sent[kind] += 1
        self.sent_by[src] += 1
        self.bytes_sent += len(data)
        for delay in self.network.route(src, dst_node, self.now):
            total = delay + extra_delay_us
            if dst_node in self.nodes:
                target = self.nodes[dst_node]
                incarnation = target.incarnation

                def arrive(t: ReplicaNode = target, i: int = incarnation) -> None:
                    if t.incarnation == i:
                        self.deliver(t, src, data)

                self.after(total, arrive)
            else:
                cnode = self.client_names[dst_node]
                self.after(total, functools.partial(cnode.deliver, data))

    def submit_as(self, node: ReplicaNode, request_packet: bytes) -> None:
        """A replica's own component (e.g. its threshold signer) submits a request to every replica,
        over the network like a client would. The request is recorded as legitimately sent, so the
        validity checker accepts its execution."""
        request = unpack(request_packet)
        assert isinstance(request, Request)
        self.side_requests.add(request.digest)
        for rid in range(self.config.n):
            for target in self._replica_targets(node, rid):
                if target == node.name:
                    self.after(0, lambda: self.deliver(node, node.name, request_packet))
                else:
                    self.transmit(node.name, target, request_packet)

    def send_side(self, src: ReplicaNode, dst_rid: int, handler: Callable[[ReplicaNode], None]) -> None:
        """Deliver an application-level message (outside consensus) from `src` to every instance of
        replica `dst_rid`, through the network model: `handler(receiving_node)` runs on arrival."""
        self.messages_sent["side"] += 1
        self.sent_by[src.name] += 1
        for target in self._replica_targets(src, dst_rid):
            dst = self.nodes[target]
            for delay in self.network.route(src.name, target, self.now):
                incarnation = dst.incarnation
                self.after(delay, functools.partial(self._side_arrival, dst, incarnation, handler))

    def _side_arrival(self, node: ReplicaNode, incarnation: int, handler: Callable[[ReplicaNode], None]) -> None:
        """A paused process's socket buffers what arrives, as for consensus messages; a crash loses it."""
        if not node.up or node.incarnation != incarnation:
            return
        if node.paused:
            node.paused_side.append(lambda: handler(node))
        else:
            handler(node)

    def _replica_targets(self, node: ReplicaNode, rid: int) -> list[str]:
        targets = []
        for inst in self.instances[rid]:
            if node.peers is not None and rid not in node.peers:
                continue
            if inst.peers is not None and node.replica_id not in inst.peers:
                continue
            targets.append(inst.name)
        return targets

    def apply(self, node: ReplicaNode, effects: list[Effect]) -> None:
        """Carry out one step's effects: route them (storage, timers, observations, messages to send), let
        a Byzantine node's behaviours rewrite what it sends, check the replica's invariants, send, and
        hand what executed to the application plug-in."""
        if not node.byzantine:
            self.effect_recorder.observe(node, effects, self.now, self.trace.events - 1)
        outgoing, stop = self._route(node, effects)
        outgoing = self._adversary_rewrite(node, outgoing)
        executed = [e for e in effects[:stop] if isinstance(e, Executed)]
        self._check_invariants(node)
        if not node.up and not outgoing:
            return
        self._send(node, outgoing)
        if self.observers is not None:
            self.observers.on_validator_effects(node, effects[:stop])
        for e in executed:
            self.app.on_executed(node, e)

    def _route(self, node: ReplicaNode, effects: list[Effect]) -> tuple[list[Outgoing], int]:
        """Carry out `effects` in order and collect the messages they send. A `Persist` is fsynced before
        any later effect; an armed storage crash may strike at a write or an fsync, and then the effects
        after it are not performed. Returns the messages and how many effects were carried out."""
        outgoing: list[Outgoing] = []
        done = 0
        for e in with_syncs(effects):  # the persist-before-acting contract of trustchain.consensus.durability
            if isinstance(e, Sync):
                if not self._sync(node):
                    return outgoing, done
                continue
            done += 1
            if isinstance(e, Persist):
                self._persist(node, e.record)
                if not node.up:
                    return outgoing, done
                continue
            self._perform(node, e, outgoing)
        return outgoing, done

    def _perform(self, node: ReplicaNode, e: Effect, outgoing: list[Outgoing]) -> None:
        """One effect other than `Persist`; messages are appended to `outgoing`, not sent yet."""
        match e:
            case Broadcast():
                self._observe_sent(node, e.data)
                outgoing.extend(Outgoing(r, e.data) for r in range(self.config.n) if r != node.replica_id)
            case SendToReplica():
                self._observe_sent(node, e.data)
                outgoing.append(Outgoing(e.to, e.data))
            case SendToClient():
                self._check_durable(node, e.data)
                outgoing.append(Outgoing(e.client, e.data))
            case SetTimer():
                self._set_timer(node, e.name, e.at_us)
            case CancelTimer():
                node.timer_tokens.pop(e.name, None)
            case Executed():
                idx = self.trace.record(self.now, "exec", node.name, e.seq, e.view, e.batch_digest.hex()[:16],
                                        len(e.requests))
                self.executions.append(ExecutionRecord(
                    node.name, e.seq, e.view, e.batch_digest, tuple(r.digest for r in e.requests), self.now,
                    idx, e))
                if e.seq <= node.last_seq_executed:
                    self.violate("ordering", node, f"executed seq {e.seq} after seq {node.last_seq_executed}")
                node.last_seq_executed = max(node.last_seq_executed, e.seq)
            case ViewEntered():
                self.view_entries.append((self.now, node.name, e.view))
                self.trace.record(self.now, "view", node.name, e.view)
                if not node.byzantine:
                    self.coverage["view_change"] += 1
                    self.coverage["new_view_reproposal"] += e.reproposed > 0
                    self.coverage["new_view_null_fill"] += e.null_filled > 0
            case StateRestored():
                if not node.byzantine:
                    self.coverage["state_transfer_snapshot"] += 1
                node.last_seq_executed = max(node.last_seq_executed, e.seq)
            case RequestCompleted():
                pass  # a PBFT client's effect: a replica never emits it
            case Rejected():
                pass  # counted in the replica's status; the explorer reads the counts
            case Persist():
                raise AssertionError("Persist is written and synced by _route, never performed")
            case _:
                assert_never(e)

    def _adversary_rewrite(self, node: ReplicaNode, outgoing: list[Outgoing]) -> list[Outgoing]:
        """A Byzantine node's behaviours, in order, rewrite the messages it is about to send."""
        for b in node.behaviours:
            if node.up:
                outgoing = b.outgoing(outgoing, self.now)
        return outgoing

    def _check_invariants(self, node: ReplicaNode) -> None:
        """An honest replica that is still up must satisfy its own invariants after every step."""
        if node.up and not node.byzantine:
            problems = node.replica.invariant_violations()
            if problems:
                self.violate("invariants", node, "; ".join(problems))

    def _send(self, node: ReplicaNode, outgoing: list[Outgoing]) -> None:
        """Put each message on the network: to every instance of a replica (twins), or to a client."""
        for item in outgoing:
            if isinstance(item.dst, int):
                for target in self._replica_targets(node, item.dst):
                    self.transmit(node.name, target, item.data, item.delay_us)
            else:
                cnode = self.clients.get(item.dst)
                if cnode is not None:
                    self.transmit(node.name, cnode.name, item.data, item.delay_us)

    def _set_timer(self, node: ReplicaNode, name: str, at_local_us: int) -> None:
        self._timer_seq += 1
        token = self._timer_seq  # unique across re-arms, so a superseded firing can never match
        node.timer_tokens[name] = token
        delay = max(0, at_local_us - self.local_now(node))

        def fire() -> None:
            if node.timer_tokens.get(name) == token:
                del node.timer_tokens[name]
                self.fire_timer(node, name)

        self.after(delay, fire)

    def _step(self, node: ReplicaNode, step: Callable[[], list[Effect]], in_bytes: int) -> None:
        """One input (of `in_bytes` bytes; 0 for a timer) to a replica. An exception escaping the replica
        is a bug in it (it must reject bad input, not raise): it is recorded as a broken invariant and the
        replica is taken down, as a real process would be, so the run can go on and the checkers can
        report it. With a CPU model, the step's effects are carried out once its cost has elapsed."""
        verified = node.replica.counters.signature_verifications if self.cpu is not None else 0
        try:
            effects = step()
        except Exception as exc:  # any escape is the finding
            self.violate("invariants", node, f"replica raised {type(exc).__name__}: {exc}")
            self.crash(node, f"replica raised {type(exc).__name__}")
            return
        if self.cpu is None:
            self.apply(node, effects)
            return
        verified = node.replica.counters.signature_verifications - verified
        cost = self.cpu.step_cost(node, in_bytes, verified, effects)
        incarnation = node.incarnation

        def release() -> None:
            if node.incarnation == incarnation and node.up:
                self.apply(node, effects)

        self.cpu.charge(node, cost, release)

    def violate(self, kind: str, node: ReplicaNode, detail: str) -> None:
        if node.byzantine or any(v.kind == kind and v.node == node.name for v in self.violations):
            return  # the first violation of each kind per node is what matters
        idx = self.trace.record(self.now, "violation", kind, node.name, detail)
        self.violations.append(Violation(kind, node.name, self.now, idx, detail))

    def _check_durable(self, node: ReplicaNode, data: bytes) -> None:
        """The driver contract: a reply leaves only after the execution it reports was persisted."""
        env = unpack(data)
        assert isinstance(env, Envelope)
        reply = env.open()
        assert isinstance(reply, Reply)
        if (reply.client, reply.timestamp) not in node.durable:
            self.violate("durability", node, f"reply to request #{reply.timestamp} sent before its execution "
                         "was persisted")

    def _persist(self, node: ReplicaNode, record: PersistRecord) -> None:
        """Write one record to the node's log. It is not durable until `_sync`, which `apply` calls
        before performing the next effect: an armed storage crash may strike in between."""
        node.storage.write(record)
        self._boundary(node, "write")

    def _sync(self, node: ReplicaNode) -> bool:
        """fsync the node's log (a stable checkpoint compacts it). False if an armed storage crash
        struck right after the fsync, before the effects it guards."""
        for record in node.storage.fsync():
            if isinstance(record, PersistExecuted):
                batch = decode(PrePrepare, record.entry.pre_prepare.body).batch
                node.durable.update((r.client, r.timestamp) for r in batch)
            elif isinstance(record, PersistStable):
                snap = decode(ReplicaSnapshot, record.snapshot)
                node.durable.update((c.client, c.timestamp) for c in snap.clients)
        self._boundary(node, "fsync")
        return node.up

    def _observe_sent(self, node: ReplicaNode, data: bytes) -> None:
        """A message an honest replica sends, at the point of its effect list where it is sent: a
        signed vote must be durable already, and must not contradict one it sent before, in this
        incarnation or an earlier one. (A Byzantine replica's behaviours rewrite what it sends; its
        messages are not judged.)"""
        if node.byzantine:
            return
        got = self.sent_votes.observe(node.name, node.incarnation, self.now, data)
        if got is None:
            return
        what, conflicts = got
        if not node.storage.has_synced_vote(data[1:]):
            self.violate("unpersisted_vote", node, f"sent its {what} vote before it was in its synced storage")
        for conflict in conflicts:
            self.violate("equivocation", node, conflict)

    # ------------------------------------------------------------------ workload

    def _workload(self) -> Any:
        w = self.scenario.workload
        yield self.env.timeout(round(w.start_s * 1e6))
        clients = list(self.clients.values())
        if w.mode == "closed":
            per = [w.requests // len(clients) + (1 if i < w.requests % len(clients) else 0)
                   for i in range(len(clients))]
            for c, count in zip(clients, per, strict=True):
                c.remaining = count
                c.next_request()
        elif w.mode == "poisson":
            self.idle_clients.extend(clients)
            gap_us = 1e6 / w.rate_per_s
            arrivals = random.Random(f"{self.seed}/arrivals")  # its own stream: nothing else draws from it
            for _ in range(w.requests):
                yield self.env.timeout(max(1, round(arrivals.expovariate(1.0) * gap_us)))
                self.arrivals.append(self.now)
                if self.idle_clients:
                    self.idle_clients.popleft().submit_one(self.now)
                else:
                    self.waiting.append(self.now)
        else:
            gap_us = 1e6 / w.rate_per_s
            for i in range(w.requests):
                yield self.env.timeout(max(1, round(self.workload_rng.expovariate(1.0) * gap_us)))
                idle = [c for c in clients if c.client.outstanding is None]
                if idle:
                    idle[i % len(idle)].submit_one()
                else:
                    clients[i % len(clients)].backlog += 1
        if w.requests == 0:
            self.done.succeed()

    def request_completed(self) -> None:
        if self._settling or self.done.triggered:
            return
        if self.completed >= self.scenario.workload.requests:
            self._settling = True
            bound = self.app.settle_bound_us
            if self.scenario.observers is not None:
                bound = max(bound, round(self.scenario.observers.liveness_bound_s * 1e6))
            self._settle(self.now + bound)

    def _settle(self, give_up_us: int) -> None:
        """Every client request completed: the run ends once the application's own work that those
        requests started (e.g. threshold signing) is done too, or at `give_up_us`."""
        if (self.app.settled() and self._observers_settled()) or self.now >= give_up_us:
            self.done.succeed()
        else:
            self.after(100_000, lambda: self._settle(give_up_us))


    def _observers_settled(self) -> bool:
        """Every honest observer executed as far as the honest validators did."""
        if self.observers is None:
            return True
        target = max((n.replica.status.last_executed for n in self.nodes.values() if not n.byzantine and n.up),
                     default=0)
        return self.observers.settled(target)


class ClientNode:
    def __init__(self, world: World, index: int, client: Client, site: int) -> None:
        self.world = world
        self.index = index
        self.name = f"c{index}"
        self.client = client
        self.site = site
        self.remaining = 0
        self.backlog = 0
        self.timer_token = 0

    def next_request(self) -> None:
        w = self.world
        if self.remaining > 0:
            self.remaining -= 1
            self.submit_one()
        elif self.backlog > 0:
            self.backlog -= 1
            self.submit_one()
        elif w.scenario.workload.mode == "poisson":
            if w.waiting:
                self.submit_one(w.waiting.popleft())
            else:
                w.idle_clients.append(self)

    def submit_one(self, arrived_us: int | None = None) -> None:
        w = self.world
        effects = self.client.submit(w.app.next_operation(self.index), w.now)
        req = self.client.outstanding
        assert req is not None
        w.requests[req.digest] = RequestRecord(self.name, req.timestamp, req.digest, w.now, arrived_us=arrived_us)
        w.request_index[(self.name, req.timestamp)] = req.digest
        w.trace.record(w.now, "submit", self.name, req.timestamp)
        self.apply(effects)

    def deliver(self, data: bytes) -> None:
        self.apply(self.client.receive(data, self.world.now))

    def apply(self, effects: list[Effect]) -> None:
        w = self.world
        for e in effects:
            match e:
                case Broadcast():
                    for rid in range(w.config.n):
                        for inst in w.instances[rid]:
                            w.transmit(self.name, inst.name, e.data)
                case SetTimer():
                    self.timer_token += 1
                    token = self.timer_token
                    w.after(e.at_us - w.now, functools.partial(self._fire, token, e.name))
                case CancelTimer():
                    self.timer_token += 1
                case RequestCompleted():
                    rec = w.requests[w.request_index[(self.name, e.timestamp)]]
                    if rec.completed_us is None:
                        w.completed += 1
                    rec.completed_us, rec.result = w.now, e.result
                    rec.completed_trace_index = w.trace.record(w.now, "done", self.name, e.timestamp)
                    w.request_completed()
                    think = round(w.scenario.workload.think_ms * 1000)
                    w.after(think, self.next_request)
                case (SendToReplica() | SendToClient() | Persist() | Executed() | ViewEntered() | StateRestored()
                      | Rejected()):
                    pass  # replica-side effects: a client never emits them
                case _:
                    assert_never(e)

    def _fire(self, token: int, name: str) -> None:
        if token == self.timer_token:
            self.apply(self.client.on_timer(name, self.world.now))
