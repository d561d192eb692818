"""Observers in the simulator: thousands of non-voting replicas fed by the validators through the
overlay, some of them Byzantine, some cut off by a partition that heals.

Each honest observer is a real `trustchain.consensus.observer.Observer` with its own application
replica; the layer only carries out their effects (messages through the network model, timers) and
records what they executed. Nothing here decides anything an observer would decide.

What keeps 10,000 observers inside one core: observers in this process share one `CertificateCache`
(a certificate is verified once, then recognised by its packet digest, as a real node recognises a
copy it already checked), packets are immutable bytes passed by reference, a copy an observer already
has is dropped on its header before any decoding, and observer events are not written to the trace
one by one (the run's trace ends with one digest over every observer's execution record instead).

Byzantine observers withhold what they receive and send forged batches to their children instead
(one commit too few, a commit by a key outside the validator set, a batch not matching its digest, a
batch "committed" by the f Byzantine validators alone); Byzantine validators do the same to theirs.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sim.modelled import ModelledSigner
from sim.observer_reads import ReadTimes
from sim.scenario import ObserverSpec
from trustchain.app.interface import Application
from trustchain.consensus.effects import (
    CancelTimer,
    Effect,
    Executed,
    Rejected,
    SetTimer,
    StateRestored,
)
from trustchain.consensus.feed import FEED_BATCH, CertificateCache, feed_header, is_feed_packet, pack_feed
from trustchain.consensus.messages import PROTOCOL_VERSION, Commit, CommittedEntry, Envelope, Kind, PrePrepare, seal
from trustchain.consensus.observer import Observer, ObserverEffect, ObserverParams, SendToPeer, ValidatorFeed
from trustchain.consensus.overlay import build_overlay, overlay_salt
from trustchain.crypto.signing import Ed25519Signer, Signer
from trustchain.encoding import decode, encode

if TYPE_CHECKING:
    from sim.world import ReplicaNode, World

__all__ = ["ObserverLayer", "ObserverNode", "validator_name"]

FORGERIES = ("one_too_few", "wrong_signer", "wrong_digest", "byzantine_quorum")


def validator_name(rid: int) -> str:
    return f"v{rid}"


@dataclass
class ObserverNode:
    name: str
    observer: Observer | None  # None for a Byzantine observer (it runs no replica)
    byzantine: bool = False
    timer_token: int = 0
    executed: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, batch digest) in execution order
    restored: list[int] = field(default_factory=list)
    forged_sent: set[int] = field(default_factory=set)


class Forger:
    """Builds each forged variant of a committed batch once (shared by every Byzantine sender)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.byzantine_signers = [world.signers[b.node] for b in world.scenario.byzantine]
        seed = hashlib.sha256(b"trustchain-sim/outsider").digest()
        self.outsider: Signer = (ModelledSigner(seed) if world.scenario.cluster.signatures == "modelled"
                                 else Ed25519Signer(seed))
        self._made: dict[tuple[int, str], bytes] = {}

    def forged(self, packet: bytes, kind: str) -> bytes:
        _, seq = feed_header(packet)
        key = (seq, kind)
        if key not in self._made:
            self._made[key] = pack_feed(FEED_BATCH, seq, self._forge(decode(CommittedEntry, packet[9:]), kind))
        return self._made[key]

    def _forge(self, entry: CommittedEntry, kind: str) -> CommittedEntry:
        quorum = self.world.config.quorum
        pp = decode(PrePrepare, entry.pre_prepare.body)
        if kind == "one_too_few":
            return replace(entry, commits=entry.commits[: quorum - 1])
        if kind == "wrong_signer":
            first = entry.commits[0]
            return replace(entry, commits=(seal(self.outsider, first.sender, first.open()), *entry.commits[1:quorum]))
        if kind == "wrong_digest":
            body = encode(replace(pp, timestamp_us=pp.timestamp_us + 1))
            env = Envelope(PROTOCOL_VERSION, int(Kind.PRE_PREPARE), entry.pre_prepare.sender, body,
                           entry.pre_prepare.signature)
            return replace(entry, pre_prepare=env)
        # the f Byzantine validators "commit" a batch of their own at this sequence number
        fake = replace(pp, batch=(), timestamp_us=pp.timestamp_us + 7,
                       batch_digest=PrePrepare.compute_digest(pp.timestamp_us + 7, ()))
        rids = [b.node for b in self.world.scenario.byzantine]
        commits = tuple(seal(s, rid, Commit(fake.view, fake.seq, fake.batch_digest))
                        for s, rid in zip(self.byzantine_signers, rids, strict=True))
        pre = seal(self.byzantine_signers[0], rids[0], fake) if rids else entry.pre_prepare
        return CommittedEntry(pre, commits)


class ObserverLayer:
    def __init__(self, world: World, spec: ObserverSpec) -> None:
        self.world = world
        self.spec = spec
        n = world.config.n
        self.validators = tuple(validator_name(i) for i in range(n))
        names = [f"o{i}" for i in range(spec.count)]
        self.names = tuple(names)
        rng = random.Random(f"{world.seed}/observers")
        byz = set(rng.sample(range(spec.count), spec.byzantine))
        cut = rng.sample(range(spec.count), round(spec.partition_fraction * spec.count)) if spec.partition else []
        self.isolated = frozenset(names[i] for i in cut)
        # the simulated cluster's genesis digest: the run's seed names the cluster, as a genesis does
        salt = overlay_salt(hashlib.sha256(f"trustchain-sim/{world.seed}/genesis".encode()).digest())
        self.overlay = build_overlay(self.validators, names, salt, spec.trees, spec.fanout, spec.validator_fanout)
        self.certs = CertificateCache(world.config, world.verifier)
        self.params = ObserverParams(sync_interval_us=round(spec.sync_interval_ms * 1000))
        self.forger = Forger(world)
        self.nodes: dict[str, ObserverNode] = {}
        for i, name in enumerate(names):
            if i in byz:
                self.nodes[name] = ObserverNode(name, None, byzantine=True)
            else:
                obs = Observer(world.config, name, self._application(), self.certs, self.overlay[name].children,
                               self.validators, self.names, random.Random(f"{world.seed}/observer/{i}"), self.params)
                self.nodes[name] = ObserverNode(name, obs)
            world.network.place(name, i % n)
        self.feeds = {rid: ValidatorFeed(self.overlay[validator_name(rid)].children, self.params) for rid in range(n)}
        self.sent: Counter[str] = Counter()  # messages sent by node name
        self.sent_bytes: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.received_bytes: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.dropped = 0
        self.reads = ReadTimes()  # commit-to-observer times, for reads at an observer
        self._start_rng = random.Random(f"{world.seed}/observer-start")

    def _application(self) -> Application:
        return self.world.app.create_application(-1)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        interval = self.params.sync_interval_us
        for node in self.nodes.values():
            if node.observer is not None:
                offset = self._start_rng.randrange(interval)  # spread the sync timers over one interval
                obs = node.observer
                self.world.after(offset, functools.partial(self._apply_now, node, obs.start))

    def _apply_now(self, node: ObserverNode, step: object) -> None:
        assert callable(step)
        self._apply(node, step(self.world.now))

    # ------------------------------------------------------------------ validators' side

    def on_validator_effects(self, node: ReplicaNode, effects: list[Effect]) -> None:
        if not node.up or node.name != str(node.replica_id):
            return  # a twin's copy feeds nobody
        feed = self.feeds[node.replica_id]
        sends = feed.on_effects(effects)
        src = validator_name(node.replica_id)
        if not node.byzantine:
            for e in effects:
                if isinstance(e, Executed):
                    self.reads.validator_executed(e.seq, self.world.now)
        if node.byzantine:
            for e in effects:
                if isinstance(e, Executed):
                    packet = pack_feed(FEED_BATCH, e.seq, e.certificate)
                    forged = self.forger.forged(packet, FORGERIES[e.seq % len(FORGERIES)])
                    for child in feed.children:
                        self.send(src, child, forged)
            return
        for s in sends:
            self.send(src, s.peer, s.data)

    # ------------------------------------------------------------------ message flow

    def _cut(self, a: str, b: str, now: int) -> bool:
        p = self.spec.partition
        if p is None or not p.start_s * 1e6 <= now < p.heal_s * 1e6:
            return False
        return (a in self.isolated) != (b in self.isolated)

    def send(self, src: str, dst: str, data: bytes) -> None:
        w = self.world
        self.sent[src] += 1
        self.sent_bytes[src] += len(data)
        self.by_kind[f"feed_{data[0]:02x}"] += 1
        now = w.now
        if self._cut(src, dst, now):
            self.dropped += 1
            return
        for delay in w.network.route(src, dst, now):
            w.after(delay, functools.partial(self.deliver, dst, src, data))

    def deliver(self, dst: str, src: str, data: bytes) -> None:
        w = self.world
        self.received[dst] += 1
        self.received_bytes[dst] += len(data)
        if dst[0] == "v":
            rid = int(dst[1:])
            rnode = w.nodes.get(str(rid))
            if rnode is None or not rnode.up or rnode.byzantine:
                return  # a Byzantine validator serves no catch-up
            try:
                replies = self.feeds[rid].receive(src, data, w.now)
            except Exception:  # a refused request: counted like any rejection
                self.by_kind["validator_refused"] += 1
                return
            for r in replies:
                self.send(dst, r.peer, r.data)
            return
        node = self.nodes[dst]
        if node.observer is None:
            self._byzantine_receive(node, src, data)
            return
        self._apply(node, node.observer.receive(src, data, w.now))

    def _byzantine_receive(self, node: ObserverNode, src: str, data: bytes) -> None:
        """Withhold everything; send each child one forged variant of each batch instead."""
        if not is_feed_packet(data) or data[0] != FEED_BATCH:
            return
        _, seq = feed_header(data)
        if seq in node.forged_sent:
            return
        node.forged_sent.add(seq)
        forged = self.forger.forged(data, FORGERIES[(seq + int(node.name[1:])) % len(FORGERIES)])
        for child in self.overlay[node.name].children:
            self.send(node.name, child, forged)

    def _apply(self, node: ObserverNode, effects: list[ObserverEffect]) -> None:
        for e in effects:
            if isinstance(e, SendToPeer):
                self.send(node.name, e.peer, e.data)
            elif isinstance(e, SetTimer):
                node.timer_token += 1
                self.world.after(max(0, e.at_us - self.world.now), functools.partial(self._fire, node,
                                                                                     node.timer_token, e.name))
            elif isinstance(e, CancelTimer):
                node.timer_token += 1
            elif isinstance(e, Executed):
                node.executed.append((e.seq, e.batch_digest))
                self.reads.observer_executed(e.seq, self.world.now)
            elif isinstance(e, StateRestored):
                node.restored.append(e.seq)
            else:
                assert isinstance(e, Rejected)

    def _fire(self, node: ObserverNode, token: int, name: str) -> None:
        if token == node.timer_token and node.observer is not None:
            self._apply(node, node.observer.on_timer(name, self.world.now))

    # ------------------------------------------------------------------ end of run

    def honest(self) -> list[ObserverNode]:
        return [n for n in self.nodes.values() if n.observer is not None]

    def settled(self, target: int) -> bool:
        """Every honest observer executed up to `target` (the honest validators' highest sequence)."""
        return all(n.observer is not None and n.observer.last_executed >= target for n in self.honest())

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for node in self.honest():
            h.update(node.name.encode())
            for seq, d in node.executed:
                h.update(seq.to_bytes(8, "big") + d)
            for seq in node.restored:
                h.update(b"r" + seq.to_bytes(8, "big"))
        return h.hexdigest()

    def rejected(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for node in self.honest():
            assert node.observer is not None
            out.update(node.observer.rejected)
        return out
