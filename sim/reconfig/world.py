"""The simulator driver for a changing validator set: `EpochReplica`s on the simulated network, in
virtual time (SimPy), with a load of KV writes, the validators' votes for each change, their FROST
dealings, and certificates signed by whichever set holds the key.

Like `sim.world` it holds no protocol logic: it carries out the effects, schedules the scenario's
inputs and records what the checkers (`sim.reconfig.checks`) judge. Validators vote and deal through
an administrative PBFT client signed with their consensus key, as an operator's CLI would.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import simpy

from sim.network import Network
from sim.reconfig.scenario import ReconfigScenario
from sim.world import derive_seed
from trustchain.app.kvstore import KVCommand, KVStore
from trustchain.authorization.validator_votes import STATUS_ERROR, VoteResult, vote_command
from trustchain.ca import frost, sharebox
from trustchain.consensus.client import TIMER_RETRANSMIT, Client
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import (
    Broadcast,
    CancelTimer,
    Executed,
    RequestCompleted,
    SendToClient,
    SetTimer,
)
from trustchain.consensus.messages import Checkpoint, Commit, Envelope, Prepare, digest, pack, seal, unpack
from trustchain.crypto.signing import Ed25519Signer
from trustchain.encoding import DecodeError, decode, encode
from trustchain.membership.app import MembershipApplication, app_operation, dealing_operation, vote_operation
from trustchain.membership.epochs import ConfigurationChanged, EpochEffect, EpochReplica, Multicast, SendToKey
from trustchain.membership.reshare import GroupRecord, ReshareDealing, complete, deal
from trustchain.membership.rules import signing_threshold
from trustchain.membership.state import MEMBERSHIP, OP_ADD, OP_REMOVE, MembershipChange, Validator, ValidatorSet

__all__ = ["Certificate", "ReconfigWorld"]

_RETRY_US = 1_000_000


@dataclass
class _ClientNode:
    client: Client
    queue: deque[bytes] = field(default_factory=deque)
    token: int = 0
    submitted_at: dict[int, int] = field(default_factory=dict)  # timestamp -> submit time
    ops: dict[int, bytes] = field(default_factory=dict)  # timestamp -> operation (administrative client)


@dataclass
class _Node:
    sid: int
    signer: Ed25519Signer
    box_key: sharebox.RecipientKey
    app: MembershipApplication
    byzantine: bool
    admin: _ClientNode
    er: EpochReplica | None = None
    timers: dict[str, int] = field(default_factory=dict)
    key_package: frost.KeyPackage | None = None
    key_epoch: int = -1
    dealt: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return f"v{self.sid}"


@dataclass(frozen=True)
class Certificate:
    """A message signed by the FROST group of `epoch` (the set holding the shares then)."""

    at_us: int
    epoch: int
    signers: tuple[int, ...]
    message: bytes
    signature: bytes


class ReconfigWorld:
    def __init__(self, sc: ReconfigScenario, seed: int) -> None:
        self.sc, self.seed = sc, seed
        self.env = simpy.Environment()
        self.rng = random.Random(f"{seed}/frost")
        self.net = Network(sc.network, sc.total, random.Random(f"{seed}/network"))
        self.template = ClusterConfig(
            replicas=(b"\0" * 32,), batch_size=sc.batch_size, batch_delay_us=round(sc.batch_delay_ms * 1000),
            checkpoint_interval=sc.checkpoint_interval, watermark_window=sc.watermark_window,
            view_change_timeout_us=round(sc.view_change_timeout_ms * 1000),
            catchup_delay_us=round(sc.catchup_delay_ms * 1000))
        signers = [Ed25519Signer(derive_seed(seed, f"replica/{i}")) for i in range(sc.total)]
        box_keys = [sharebox.RecipientKey.generate(random.Random(f"{seed}/box/{i}").randbytes) for i in range(sc.total)]
        self.validators = [Validator(s.public_key, b.public_key().to_bytes()) for s, b in zip(signers, box_keys,
                                                                                                strict=True)]
        genesis = ValidatorSet(0, 0, tuple(self.validators[:sc.n]))
        dealer = frost.trusted_dealer_keygen(sc.n, signing_threshold(sc.n), self.rng.randbytes)
        self.group_key = dealer.public.group_public_key
        group = GroupRecord(0, self.group_key, tuple(dealer.public.verifying_shares[i] for i in range(1, sc.n + 1)),
                            signing_threshold(sc.n))
        self.genesis, self.genesis_group = genesis, group
        self.nodes: list[_Node] = []
        for i in range(sc.total):
            app = MembershipApplication(KVStore(), genesis, group, sc.checkpoint_interval)
            admin = _ClientNode(Client(self._client_config(genesis), signers[i]))
            node = _Node(i, signers[i], box_keys[i], app, i in sc.byzantine, admin)
            if i < sc.n:
                node.key_package, node.key_epoch = dealer.key_packages[i + 1], 0
                node.er = EpochReplica(self.template, signers[i], app, genesis)
            self.nodes.append(node)
            self.net.place(node.name, i)
        self.by_key = {n.signer.public_key: n for n in self.nodes}
        self.clients = [_ClientNode(Client(self._client_config(genesis),
                                           Ed25519Signer(derive_seed(seed, f"client/{c}")))) for c in range(sc.clients)]
        self.client_by_key = {c.client.id: c for c in [*self.clients, *(n.admin for n in self.nodes)]}
        # What the checkers read.
        self.executed: list[tuple[int, int, bytes]] = []  # (validator, seq, batch digest), honest only
        self.vote_log: list[tuple[int, bytes, VoteResult]] = []  # (seq, voter key, result) at validator 0's view
        # (validator, epoch, base, keys, member) of every honest switch
        self.switches: list[tuple[int, int, int, tuple[bytes, ...], bool]] = []
        self.switch_at: list[int] = []  # when each of those happened
        self.latencies: list[tuple[int, int]] = []  # (submitted at, completed at) of workload requests
        self.submitted = 0
        self.certificates: list[Certificate] = []
        self.retired_packages: dict[int, tuple[int, frost.KeyPackage]] = {}  # validator -> (epoch, last old share)
        self.bogus_dealings = 0
        self._timer_token = 0
        self._logged: set[int] = set()

    def _client_config(self, s: ValidatorSet) -> ClusterConfig:
        return ClusterConfig(replicas=s.keys, epoch=s.epoch, base_seq=s.base_seq,
                             checkpoint_interval=self.sc.checkpoint_interval,
                             watermark_window=self.sc.watermark_window)

    @property
    def now(self) -> int:
        return int(self.env.now)

    def at(self, at_us: int, action: object) -> None:
        ev = self.env.timeout(max(0, at_us - self.now))
        ev.callbacks.append(lambda _e: action())  # type: ignore[operator]

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        for node in self.nodes:
            if node.er is not None:
                self._apply(node, node.er.start(0))
        self._schedule_workload()
        for ch in self.sc.changes:
            self.at(round(ch.at_s * 1e6), lambda ch=ch: self._propose_change(ch.op, ch.validator))
        for part in self.sc.network.partitions:
            self.at(round(part.heal_s * 1e6), self._links_up)
        every = round(self.sc.certificate_every_s * 1e6)
        for t in range(every, round(self.sc.duration_s * 1e6), every):
            self.at(t, self._issue_certificate)
        self.env.run(until=round(self.sc.duration_s * 1e6))

    def _schedule_workload(self) -> None:
        gap = 1e6 / self.sc.rate_per_s
        for k in range(self.sc.requests):
            c = self.clients[k % len(self.clients)]
            op = app_operation(encode(KVCommand("put", f"k{k % 50}".encode(), f"v{k}".encode())))
            self.at(round(500_000 + k * gap), lambda c=c, op=op: self._enqueue(c, op))

    def _links_up(self) -> None:
        """A partition healed: every connection comes back, as a node's transport reports it."""
        for node in self.nodes:
            if node.er is None:
                continue
            for peer in self.nodes:
                if peer is not node and peer.er is not None:
                    self._apply(node, node.er.link_up(peer.signer.public_key, self.now))

    # ------------------------------------------------------------------ clients

    def _enqueue(self, c: _ClientNode, op: bytes) -> None:
        c.queue.append(op)
        if c in self.clients:
            self.submitted += 1
        self._next(c)

    def _next(self, c: _ClientNode) -> None:
        if c.client.outstanding is not None or not c.queue:
            return
        op = c.queue.popleft()
        effects = c.client.submit(op, self.now)
        c.submitted_at[c.client.timestamp] = self.now
        if c not in self.clients:
            c.ops[c.client.timestamp] = op
        self._client_effects(c, effects)

    def _client_effects(self, c: _ClientNode, effects: Sequence[object]) -> None:
        for e in effects:
            match e:
                case Broadcast(data):
                    for key in c.client.config.replicas:
                        self._transmit(None, key, data)
                case SetTimer(_, at_us):
                    c.token += 1
                    token = c.token
                    self.at(at_us, lambda c=c, token=token: self._client_timer(c, token))
                case CancelTimer(_):
                    c.token += 1
                case RequestCompleted(ts, result):
                    self._completed(c, ts, result)
                    self._next(c)

    def _client_timer(self, c: _ClientNode, token: int) -> None:
        if token == c.token:
            self._client_effects(c, c.client.on_timer(TIMER_RETRANSMIT, self.now))

    def _completed(self, c: _ClientNode, ts: int, result: bytes) -> None:
        sent = c.submitted_at.pop(ts, self.now)
        if c in self.clients:
            self.latencies.append((sent, self.now))
            return
        try:
            vr = decode(VoteResult, result)
        except DecodeError:
            return
        op = c.ops.pop(ts, None)
        if vr.status == STATUS_ERROR and vr.detail.startswith("pending") and op is not None:
            self.at(self.now + _RETRY_US, lambda: self._enqueue(c, op))

    # ------------------------------------------------------------------ the network

    def _transmit(self, src: _Node | None, key: bytes, data: bytes) -> None:
        dst = self.by_key.get(key)
        if dst is None:
            return
        if src is not None and src.byzantine and self.sc.behaviour == "equivocate":
            data = self._equivocate(src, dst, data)
        src_name = src.name if src is not None else "client"
        for delay in self.net.route(src_name, dst.name, self.now):
            self.at(self.now + delay, lambda dst=dst, data=data, src=src: self._deliver(dst, data, src))

    def _deliver(self, dst: _Node, data: bytes, src: _Node | None) -> None:
        if dst.er is None:
            return
        if src is None:
            try:
                msg = unpack(data)
            except DecodeError:
                return
            if isinstance(msg, Envelope):
                return
            self._apply(dst, dst.er.submit(msg, self.now))
        else:
            self._apply(dst, dst.er.receive(data, src.signer.public_key, self.now))

    def _equivocate(self, src: _Node, dst: _Node, data: bytes) -> bytes:
        """Prepare, commit and checkpoint votes to every other peer carry a different digest, signed
        with the Byzantine validator's own key: it votes both ways."""
        if dst.sid % 2 == 0:
            return data
        try:
            env = unpack(data)
        except DecodeError:
            return data
        if not isinstance(env, Envelope):
            return data
        msg = env.open()
        if isinstance(msg, Prepare | Commit):
            forged: object = type(msg)(msg.view, msg.seq, digest(msg.batch_digest))
        elif isinstance(msg, Checkpoint):
            forged = Checkpoint(msg.seq, digest(msg.state_digest))
        else:
            return data
        return pack(seal(src.signer, env.sender, forged, env.epoch))

    # ------------------------------------------------------------------ effects

    def _apply(self, node: _Node, effects: list[EpochEffect]) -> None:
        for e in effects:
            match e:
                case SendToKey(key, data):
                    self._transmit(node, key, data)
                case Multicast(keys, data):
                    for key in keys:
                        self._transmit(node, key, data)
                case SendToClient(client, data):
                    c = self.client_by_key.get(client)
                    if c is not None:
                        self.at(self.now + 2_000, lambda c=c, data=data: self._client_effects(
                            c, c.client.receive(data, self.now)))
                case SetTimer(name, at_us):
                    self._timer_token += 1
                    node.timers[name] = token = self._timer_token
                    self.at(at_us, lambda node=node, name=name, token=token: self._fire(node, name, token))
                case CancelTimer(name):
                    node.timers.pop(name, None)
                case Executed():
                    if not node.byzantine:
                        self.executed.append((node.sid, e.seq, e.batch_digest))
                    if node.sid == self.reference():
                        self._log_votes(e)
                case ConfigurationChanged(s, member):
                    self._switched(node, s, member)
                case _:
                    pass
        self._after_step(node)

    def _fire(self, node: _Node, name: str, token: int) -> None:
        if node.timers.get(name) == token and node.er is not None:
            del node.timers[name]
            self._apply(node, node.er.on_timer(name, self.now))

    def reference(self) -> int:
        """An honest validator of the current set: the simulator's view of the replicated state."""
        return next(n.sid for n in self.nodes if not n.byzantine and n.er is not None and n.er.replica is not None)

    def _log_votes(self, e: Executed) -> None:
        if e.seq in self._logged:
            return  # the reference moved to another validator, which executes what was logged already
        self._logged.add(e.seq)
        for req, result in zip(e.requests, e.results, strict=True):
            if req.operation[:1] == vote_operation(b"")[:1]:
                self.vote_log.append((e.seq, req.client, decode(VoteResult, result)))

    def _switched(self, node: _Node, s: ValidatorSet, member: bool) -> None:
        if not node.byzantine:
            self.switches.append((node.sid, s.epoch, s.base_seq, s.keys, member))
            self.switch_at.append(self.now)
            for c in [*self.clients, *(n.admin for n in self.nodes)]:
                c.client.learn_config(self._client_config(s))

    # ------------------------------------------------------------------ membership, dealings, shares

    def _propose_change(self, op: str, sid: int) -> None:
        v = self.validators[sid]
        change = MembershipChange(op, v if op == OP_ADD else Validator(v.key, b""))
        payload = vote_operation(vote_command(MEMBERSHIP, encode(change)))
        for node in self.nodes:
            if node.er is None or node.er.replica is None:
                continue
            if node.byzantine:
                # It votes alone to remove an honest validator instead: one vote is never a quorum.
                victim = next(n for n in self.nodes if not n.byzantine and n.er is not None and n.sid != sid)
                bogus = MembershipChange(OP_REMOVE, Validator(victim.signer.public_key, b""))
                self._admin(node, vote_operation(vote_command(MEMBERSHIP, encode(bogus))))
            else:
                self._admin(node, payload)

    def _admin(self, node: _Node, op: bytes) -> None:
        self._enqueue(node.admin, op)

    def _after_step(self, node: _Node) -> None:
        app = node.app
        pending = app.membership.pending
        if pending is not None and not node.byzantine:
            for key in pending.keys:
                joiner = self.by_key[key]
                if joiner.er is None:
                    # The operator starts the new validator with the set it joins after.
                    joiner.er = EpochReplica(self.template, joiner.signer, joiner.app, app.membership.current)
                    self._apply(joiner, joiner.er.start(self.now))
        tally = app.reshare
        idx = app.holders.index(node.signer.public_key)
        if (tally is not None and idx is not None and tally.epoch not in node.dealt and node.key_package is not None
                and node.key_epoch == tally.old.epoch):
            node.dealt.add(tally.epoch)
            nxt = app.membership.configuration(tally.epoch)
            assert nxt is not None
            recipients = [sharebox.RecipientPublicKey.from_bytes(v.box_key) for v in nxt.validators]
            dealing = deal(node.key_package, tally.epoch, recipients, tally.new_threshold, self.rng.randbytes)
            if node.byzantine:
                # A dealing whose constant term is not its share: the tally must refuse it.
                dealing = ReshareDealing(dealing.epoch, dealing.dealer,
                                         (dealing.commitment[1], *dealing.commitment[1:]), dealing.boxes)
                self.bogus_dealings += 1
            self._admin(node, dealing_operation(dealing))
        done = app.completed
        if done is not None and app.group.epoch > node.key_epoch:
            holder = app.holders.index(node.signer.public_key)
            if node.key_package is not None:
                self.retired_packages[node.sid] = (node.key_epoch, node.key_package)
            node.key_package, node.key_epoch = None, app.group.epoch  # the old share is erased
            if holder is not None:
                node.key_package = complete(holder + 1, node.box_key, done)

    def _issue_certificate(self) -> None:
        ref = self.nodes[self.reference()]
        group = ref.app.group
        holders = [n for n in self.nodes if not n.byzantine and n.key_package is not None
                   and n.key_epoch == group.epoch]
        if len(holders) < group.threshold:
            return
        chosen = holders[:group.threshold]
        msg = f"certificate {len(self.certificates)} at {self.now}".encode()
        keys = {n.key_package.identifier: n.key_package for n in chosen if n.key_package is not None}
        sig = frost.sign_with_quorum(keys, group.public(), msg, self.rng.randbytes)
        self.certificates.append(Certificate(self.now, group.epoch, tuple(n.sid for n in chosen), msg, sig))
