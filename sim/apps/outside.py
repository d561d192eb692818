"""Outside-name validation against a modelled public DNS, with lying and poisoned validators.

Every replica runs the whole `TrustChainApplication` (as in sim/apps/authz.py), and the validators'
nodes observe the public DNS exactly as `reference_node/observer.py` does: when their replica executes
an account's `ready`, each looks the challenge record up in its own view of the outside DNS
(sim/outside_dns.py) and orders an observation signed by its validator account, through consensus,
retransmitting until its replica executed it. The decision is the replicated quorum rule; nothing
here decides anything.

Workload: honest client c really controls some outside names (ground truth). For each it opens a
validation, publishes the TXT record the replicas derived (in the outside DNS, where only it can), says
`ready`, polls (with key-value writes) until the validation is decided, opens it again if it failed or
expired (at most `max_attempts` times) and creates the zone once it is validated. The first `attackers`
clients are Mallory: she opens a validation of every other outside name (honest clients' and unclaimed
ones), whose answers in the poisoned validators' resolvers she controls from the start (they never see
the real records), plants her own record there, says `ready`, tries while it is
undecided to vote herself, to vote in a validator's name, to ready another account's validation or her
own twice, then tries to create the zone; she also abandons a validation or two, which must expire.

Checks (sim/apps/outside_checks.py) are computed from the ground truth and the cluster size alone.
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim.apps.authz import CLOCK_OFFSET_S, CLUSTER, AuthzSimApp
from sim.apps.outside_checks import outside_checks
from sim.outside_dns import (
    PARAM_TYPES,
    OutsideDNS,
    OutsideDNSConfig,
    check_params,
    honest_names,
    unclaimed_names,
)
from sim.params import ParamRule, count
from trustchain.accounts import ACCOUNTS, Ed25519AccountSigner, account_id
from trustchain.app import kvstore, validation
from trustchain.app import trustchain as tcapp
from trustchain.app.gate import OBSERVE
from trustchain.app.interface import Application
from trustchain.app.validation import VALIDATE
from trustchain.authorization.observations import FAILED, OPEN, VALIDATED, ValidationLimits, ValidationOpened
from trustchain.consensus.messages import Request, pack
from trustchain.crypto.signing import Ed25519Signer
from trustchain.dns import app as dnsapp

if TYPE_CHECKING:
    from sim.checkers import Verdict
    from sim.world import ReplicaNode, World
    from trustchain.consensus.effects import Executed

__all__ = ["OutsideDNSSimApp"]

FILLER_ATTACKS = ("observe_forged", "observe_as_validator", "ready_foreign", "ready_twice")
RETRANSMIT_US = 1_000_000
MAX_RETRANSMITS = 30
POLL_MARGIN_US = 500_000  # past a validation's time to live, the client opens it again
ABANDONED = 2  # validations each attacker opens and never readies
WRITE_VALIDITY_US = 300_000_000


@dataclass
class Step:
    kind: str  # "honest:<what>", "attack:<what>" or "setup:<what>"
    target: str  # the sub-application addressed (how its result decodes)
    expect_ok: bool | None  # None: not judged (the outcome depends on timing, not on who is asking)


@dataclass
class Attempt:
    """One validation a client opened for `name`."""

    name: str
    phase: str = "opened"  # opened (its result not read yet) -> waiting (readied)
    validation_id: int = 0
    record_name: str = ""
    expected: str = ""
    opened_us: int = 0


@dataclass
class ClientPlan:
    index: int
    account: bytes
    honest: bool
    names: list[str]  # honest: names it controls, in order; attacker: names it goes after
    current: Attempt | None = None
    attempts: dict[str, int] = field(default_factory=dict)  # name -> validations opened for it
    abandoned: int = 0
    readied: list[int] = field(default_factory=list)


def _zone_command(name: str) -> bytes:
    """Create the zone of outside name `name` (its nameservers are elsewhere, as any zone's may be)."""
    ns = "ns1.dns-host.net."
    return dnsapp.create_command(name + ".", primary_ns=ns, admin="hostmaster.dns-host.net.", nameservers=[ns])


def validator_signer(seed: int, replica_id: int) -> Ed25519AccountSigner:
    """Validator `replica_id`'s account key: its consensus key (sim/world.py derives it the same way)."""
    return Ed25519AccountSigner(hashlib.sha256(f"trustchain-sim/{seed}/replica/{replica_id}".encode()).digest())


class OutsideDNSSimApp(AuthzSimApp):
    name = "outside_dns"
    param_types = {"attackers": count(0), **PARAM_TYPES, "open_ttl_s": ParamRule(float, minimum=0.5),
                   "max_attempts": count(1)}

    @classmethod
    def check_params(cls, params: dict[str, Any], n: int) -> tuple[str, str] | None:
        return check_params(params, n)

    @classmethod
    def faulty_nodes(cls, params: dict[str, Any]) -> set[int]:
        return set(OutsideDNSConfig.from_params(params).faulty)

    def __init__(self, params: dict[str, Any], world: World, rng: random.Random) -> None:
        super().__init__(params, world, rng)
        n = world.scenario.cluster.n
        self.config = OutsideDNSConfig.from_params(params)
        self.limits = ValidationLimits(open_ttl_us=round(float(params.get("open_ttl_s", 600.0)) * 1e6))
        self.max_attempts = int(params.get("max_attempts", 4))
        self.dns = OutsideDNS(self.config, n, world.seed)
        self.vsigners = [validator_signer(world.seed, i) for i in range(n)]
        assert all(s.key.public == k for s, k in zip(self.vsigners, self.validator_keys, strict=True)), \
            "outside validation needs Ed25519 validator keys (cluster.signatures: ed25519)"
        self.vaccounts = [account_id(s.key) for s in self.vsigners]
        clients = world.scenario.workload.clients
        honest = list(range(min(self.attackers, clients), clients))
        self.plans: dict[int, ClientPlan] = {}
        for c in range(clients):
            self.plans[c] = ClientPlan(c, account_id(self._signer(c).key), c in honest, [])
        for i, name in enumerate(honest_names(self.config.names)):
            if honest:
                owner = self.plans[honest[i % len(honest)]]
                owner.names.append(name)
                self.dns.control(name, owner.account)
        targets = honest_names(self.config.names) + unclaimed_names(self.config.unclaimed)
        for c in range(min(self.attackers, clients)):
            self.plans[c].names = self.rng.sample(targets, len(targets))
            self.dns.attackers.add(self.plans[c].account)
            for name in targets:  # from the start: the poisoned validators never see the real records
                self.dns.poison(name)
        self.steps_of: dict[int, list[Step]] = {}
        self.submitted: dict[tuple[int, int], bool] = {}  # (validator, validation id) -> what it ordered
        self.withheld: set[tuple[int, int]] = set()
        self._looked: set[tuple[int, int]] = set()
        self.retransmits = 0
        self.expiry_counted = False

    def create_application(self, replica_id: int) -> Application:
        return tcapp.TrustChainApplication(
            self.policy, hashlib.sha256(b"authz-dns").digest(), self.world.signers[replica_id], f"v{replica_id}",
            "sim.example/outside", cluster=CLUSTER, validator_keys=self.validator_keys,
            dns_clock_offset_s=CLOCK_OFFSET_S, registry_suffixes=("example",), validation_limits=self.limits)

    # ------------------------------------------------------------------ workload

    def next_operation(self, client: int) -> bytes:
        steps = self.steps_of.setdefault(client, [])
        plan = self.plans[client]
        if not steps:
            op, step = self._register(client), Step("setup:register", ACCOUNTS, True)
        elif plan.honest:
            op, step = self._honest_step(plan)
        else:
            op, step = self._attack_step(plan)
        steps.append(step)
        return op

    def _last_result(self, c: int) -> bytes | None:
        name = f"c{c}"
        last = max((r for r in self.world.requests.values() if r.client == name), key=lambda r: r.timestamp,
                   default=None)
        return None if last is None else last.result

    def _opened(self, plan: ClientPlan, a: Attempt) -> bool:
        """Read the open result of attempt `a` (the client's last request); False if it was refused."""
        result = self._last_result(plan.index)
        res = None if result is None else tcapp.decode_routed(result, validation.decode_result)
        if not isinstance(res, validation.ValidationResult) or res.status != validation.STATUS_OPEN:
            return False
        a.validation_id, a.record_name, a.expected = res.validation_id, res.record_name, res.expected
        return True

    def _state(self, validation_id: int) -> str | None:
        """The validation's state as the honest replicas that are up hold it (what a node's API says)."""
        states = {app.validation.validations.state_of(validation_id)
                  for name, app in self._honest_apps().items() if self.world.nodes[name].up}
        return next((s for s in (VALIDATED, FAILED, OPEN) if s in states), None)

    def _open(self, plan: ClientPlan, name: str, kind: str) -> tuple[bytes, Step]:
        plan.current = Attempt(name, "opened", opened_us=self.world.now)
        plan.attempts[name] = plan.attempts.get(name, 0) + 1
        return self._write(plan.index, VALIDATE, validation.open_command(name)), Step(kind, VALIDATE, True)

    def _kv(self, plan: ClientPlan, kind: str) -> tuple[bytes, Step]:
        key = b"o/%d/%d" % (plan.index, self.rng.randrange(8))
        return self._write(plan.index, tcapp.KV, kvstore.put(key, self.rng.randbytes(16))), Step(kind, tcapp.KV, True)

    def _honest_step(self, plan: ClientPlan) -> tuple[bytes, Step]:
        a = plan.current
        if a is None:
            if not plan.names:
                return self._kv(plan, "honest:kv")
            return self._open(plan, plan.names[0], "honest:open")
        if a.phase == "opened":
            if not self._opened(plan, a):
                return self._retry(plan, a)
            self.dns.publish(a.name, a.record_name, a.expected, plan.account)
            a.phase = "waiting"
            return self._write(plan.index, VALIDATE, validation.ready_command(a.validation_id)), \
                Step("honest:ready", VALIDATE, None)  # may come after expiry: the liveness check judges
        state = self._state(a.validation_id)
        if state == VALIDATED:
            plan.current = None
            plan.names.pop(0)
            create = self._write(plan.index, tcapp.DNS, _zone_command(a.name))
            return create, Step("honest:create_zone", tcapp.DNS, True)
        if state == FAILED or self.world.now - a.opened_us > self.limits.open_ttl_us + POLL_MARGIN_US:
            return self._retry(plan, a)
        return self._kv(plan, "honest:poll")

    def _retry(self, plan: ClientPlan, a: Attempt) -> tuple[bytes, Step]:
        if plan.attempts.get(a.name, 0) < self.max_attempts:
            return self._open(plan, a.name, "honest:reopen")
        plan.current = None
        plan.names.pop(0)  # given up: the liveness check reports the name
        return self._kv(plan, "honest:kv")

    def _attack_step(self, plan: ClientPlan) -> tuple[bytes, Step]:
        c = plan.index
        if plan.abandoned < ABANDONED and self.config.unclaimed + self.config.names > 0:
            plan.abandoned += 1  # opened and never readied: it must expire
            name = self.rng.choice(honest_names(self.config.names) + unclaimed_names(self.config.unclaimed))
            return self._write(c, VALIDATE, validation.open_command(name)), Step("setup:abandon", VALIDATE, True)
        a = plan.current
        if a is None and plan.names:
            return self._open(plan, plan.names.pop(0), "setup:open")
        if a is not None and a.phase == "opened":
            if not self._opened(plan, a):
                plan.current = None
                return self._filler(plan)
            self.dns.plant(a.record_name, a.expected)
            a.phase = "waiting"
            plan.readied.append(a.validation_id)
            ready = self._write(c, VALIDATE, validation.ready_command(a.validation_id))
            return ready, Step("setup:ready", VALIDATE, None)  # may come after expiry on a slow network
        if a is not None:
            state = self._state(a.validation_id)
            if state != OPEN or self.world.now - a.opened_us > self.limits.open_ttl_us + POLL_MARGIN_US:
                plan.current = None
                entitled = self.dns.controllers.get(a.name) == plan.account
                return self._write(c, tcapp.DNS, _zone_command(a.name)), Step("attack:create_zone", tcapp.DNS, entitled)
        return self._filler(plan)

    def _filler(self, plan: ClientPlan) -> tuple[bytes, Step]:
        """An attack on the validation protocol itself, while Mallory's own validation is undecided."""
        c = plan.index
        what = self.rng.choice(FILLER_ATTACKS)
        own = plan.readied[-1] if plan.readied else 1
        foreign = [p.current.validation_id for p in self.plans.values()
                   if p.honest and p.current is not None and p.current.validation_id]
        if what == "ready_foreign" and foreign:
            return self._write(c, VALIDATE, validation.ready_command(self.rng.choice(foreign))), \
                Step("attack:ready_foreign", VALIDATE, False)
        if what == "ready_twice" and plan.readied:
            return self._write(c, VALIDATE, validation.ready_command(own)), Step("attack:ready_twice", VALIDATE, False)
        if what == "observe_as_validator":
            v = self.rng.randrange(len(self.vaccounts))
            return self._write(c, OBSERVE, validation.observe_command(own, True), as_account=self.vaccounts[v]), \
                Step("attack:observe_as_validator", OBSERVE, False)
        return self._write(c, OBSERVE, validation.observe_command(own, True)), Step("attack:observe_forged", OBSERVE,
                                                                                    False)

    # ------------------------------------------------------------------ the validators' observers

    def on_executed(self, node: ReplicaNode, event: Executed) -> None:
        app = node.replica.app
        assert isinstance(app, tcapp.TrustChainApplication)
        if not node.byzantine:
            self._count_paths(event)
        events = app.validation.take_events()
        if not node.up:
            return
        for ev in events:
            key = (node.replica_id, ev.validation_id)
            if isinstance(ev, ValidationOpened) and key not in self._looked:
                self._looked.add(key)  # a node looks once per validation (twins share the replica id)
                self.world.after(self.dns.latency_us(node.replica_id),
                                 functools.partial(self._answered, node, node.incarnation, ev))

    def _count_paths(self, event: Executed) -> None:
        cov = self.world.coverage
        for req, result in zip(event.requests, event.results, strict=True):
            if tcapp.operation_target(req.operation) not in (VALIDATE, OBSERVE):
                continue
            res = tcapp.decode_routed(result, validation.decode_result)
            if isinstance(res, tcapp.RouteError) or res.status == validation.STATUS_ERROR:
                cov["validation_refused"] += 1
            elif res.status in (validation.STATUS_RECORDED, validation.STATUS_DECIDED):
                cov["validation_observe"] += 1
                if res.outcome:
                    cov[f"validation_{res.outcome}"] += 1
            else:
                cov[f"validation_{res.status}"] += 1

    def _answered(self, node: ReplicaNode, incarnation: int, ev: ValidationOpened) -> None:
        """This validator's lookup answered: order what it saw (a crash in between loses the lookup)."""
        if not node.up or node.incarnation != incarnation:
            return
        if node.paused:
            self.world.after(50_000, lambda: self._answered(node, incarnation, ev))
            return
        rid, vid = node.replica_id, ev.validation_id
        seen = self.dns.report(rid, ev.account, ev.record_name, ev.expected)
        self.world.trace.record(self.world.now, "outside_look", node.name, vid, str(seen))
        if seen is None:
            self.withheld.add((rid, vid))
            return
        self.submitted[(rid, vid)] = seen
        operation = tcapp.signed_operation(
            self.vsigners[rid], self.vaccounts[rid], CLUSTER, OBSERVE, validation.observe_command(vid, seen),
            nonce=hashlib.sha256(b"observe/%d/%d" % (rid, vid)).digest()[:16],
            deadline_us=self.world.now + WRITE_VALIDITY_US)
        # One PBFT client key per observation: a node never has two requests of one key outstanding.
        client = Ed25519Signer(hashlib.sha256(f"outside/{self.world.seed}/{rid}/{vid}".encode()).digest())
        packet = pack(Request.create(client, 1, operation))
        self.world.submit_as(node, packet)
        self.world.after(RETRANSMIT_US, lambda: self._retransmit(node, incarnation, vid, client.public_key,
                                                                 packet, 1))

    def _retransmit(self, node: ReplicaNode, incarnation: int, vid: int, client: bytes, packet: bytes,
                    tries: int) -> None:
        """Send again until this node's replica executed the observation or the validation is decided."""
        if not node.up or node.incarnation != incarnation or tries > MAX_RETRANSMITS:
            return
        app = node.replica.app
        assert isinstance(app, tcapp.TrustChainApplication)
        if node.replica.client_record(client) is not None or app.validation.validations.state_of(vid) != OPEN:
            return
        if not node.paused:
            self.retransmits += 1
            self.world.submit_as(node, packet)
        self.world.after(RETRANSMIT_US, lambda: self._retransmit(node, incarnation, vid, client, packet, tries + 1))

    # ------------------------------------------------------------------ checks

    def checks(self) -> list[Verdict]:
        return outside_checks(self)

