"""The threshold certificate authority on every replica, with FROST signing running beside consensus.

Setup (deterministic from the world seed): a Pedersen DKG (``keygen: dkg``, the default; ``dealer`` for
a trusted dealer) among the n validators with threshold ``threshold`` (default 2f+1) produces two
group keys, a root and an issuing key; the genesis root and the issuing intermediate are signed by
FROST quorums of those keys. The DKG runs in-process before the run (round-2 shares are handed over
directly instead of sealed in sharebox boxes, whose ML-KEM randomness would not replay). FROST
identifier = replica id + 1. Every replica gets a ``CAApplication`` over one shared, append-only
``StaticDNS`` view holding CAA records for every workload domain and the dns-01 TXT records clients
publish before they request (records are only ever added, each matches only the challenge and account it
was made for, so every replica reaches the same decision whenever it executes a request).

Why t = 2f+1 by default: t > f so Byzantine validators cannot sign alone, and t <= n - f so the honest
ones can; 2f+1 is the largest such t for n = 3f+1 and equals the consensus quorum, so every
certificate signature shows that f+1 honest validators signed the TBS their own replica recorded.

Workload: client c is CA account ``World.client_signer(c).public_key`` and owns
``acct<c>.example``. Jobs: a valid issuance (challenge, publish TXT, request with a fresh Ed25519 CSR for
1-2 owned names), an invalid one (``invalid_fraction``, default 0.25: a CSR whose signature does not
verify, a name the client does not own, or a domain whose CAA names another CA or pins another
account), or a revocation of one of its issued certificates (``revoke_fraction``, default 0.1). Every
request's expected decision is known when it is generated.

Serials: every serial carries the randomness of f+1 validators (``trustchain.ca.serials``). Each
validator has a ``Contributor`` (seeded from the world seed; its values survive restarts, as on a node's
disk) whose commitments and reveals are ordered as that validator's own requests after each executed
batch, resent while the replicated state still asks for them, and an empty commitment is ordered once a
reveal deadline passed so that the draw is redrawn even when nothing else is ordered.

Signing: one ``SigningService`` per replica node, fed the events its replica's application emits after
each executed batch; its effects travel through ``World.send_side`` (Send), ``World.after`` (SetTimer,
dropped when the node crashed or restarted since), ``World.submit_as`` (SubmitFinalize, a request signed
by the validator's own key with a per-node increasing timestamp). A restarted node gets a fresh service
that is fed the pending issuances its recovered state holds (``SigningService.reconcile`` over
``CAApplication.pending_items()``, also after every executed batch, which covers state transfer) and
starts a new nonce epoch (its incarnation).

Byzantine behaviour ``ca_bad_shares``: that validator's service answers sign requests with shares that do
not verify (consensus behaviours listed for the same node still apply to its consensus messages).

Checks: ``ca_decisions`` (every honest replica decided every request as expected, identically),
``ca_chain`` (every issued certificate verifies under the issuing group key and chains to the genesis
root, for names its account owns), ``ca_approval`` (each issued certificate's request was executed at a
sequence number with a valid 2f+1 commit certificate, and was a valid request), ``ca_agreement`` (honest
replicas' issued/revoked state agrees at every sequence number two of them executed, and at the end),
``ca_bad_shares`` (every bad-share validator named by an honest service, no honest one ever),
``ca_liveness`` (every approved issuance finalized within ``issue_bound_s`` of max(approval, GST)).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from sim.apps.base import SimApp
from sim.params import DURATION, PROBABILITY, ParamRule, count
from trustchain.app.interface import Application
from trustchain.ca import caa, dkg, frost, group, issuance, ownership, serials
from trustchain.ca import commands as cacommands
from trustchain.ca import consensus_time as catime
from trustchain.ca import events as caevents
from trustchain.ca import policy as capolicy
from trustchain.ca import records as carecords
from trustchain.ca import signing_service as ss
from trustchain.ca import validate as cavalidate
from trustchain.ca import x509 as cax509
from trustchain.consensus.certificates import InvalidMessage, SignatureChecker, check_committed
from trustchain.consensus.messages import Request, pack
from trustchain.encoding import DecodeError
from trustchain.quorum import check_signing_threshold

if TYPE_CHECKING:
    from sim.checkers import Verdict
    from sim.world import ReplicaNode, World
    from trustchain.consensus.effects import Executed

BAD_SHARES = "ca_bad_shares"
CA_DOMAIN = "trustchain.example"
OTHER_CA = "other-ca.example"
GENESIS = catime.consensus_datetime(0)  # simulated consensus time starts at 0

# expected decision per kind of request on every honest replica: the result's status and error field
EXPECT = {
    "challenge": (cacommands.STATUS_CHALLENGE, ""),
    "valid": (cacommands.STATUS_PENDING, ""),
    "bad_csr": (cacommands.STATUS_ERROR, "csr"),
    "not_owned": (cacommands.STATUS_ERROR, "ownership"),
    "caa_other_ca": (cacommands.STATUS_ERROR, "caa"),
    "caa_other_account": (cacommands.STATUS_ERROR, "caa"),
    "revoke": (cacommands.STATUS_OK, ""),
}
INVALID_KINDS = ("bad_csr", "not_owned", "caa_other_ca", "caa_other_account")


def _decoded(result: bytes) -> cacommands.CAResult | None:
    """The typed result, or None for bytes that are not a ``CAResult`` (a malformed result)."""
    try:
        return cacommands.decode_result(result)
    except DecodeError:
        return None


def _describe(result: bytes) -> str:
    res = _decoded(result)
    return "a malformed result" if res is None else f"{res.status} {res.detail}".rstrip()


def _ca_name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TrustChain Sim"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _profile(name: x509.Name, key: bytes, tag: str) -> cax509.IssuerProfile:
    return cax509.IssuerProfile(name, key, f"http://crl.{CA_DOMAIN}/{tag}.crl", f"http://ocsp.{CA_DOMAIN}/",
                                f"http://certs.{CA_DOMAIN}/{tag}.der")


def run_dkg(n: int, t: int, context: bytes, seed: str) -> tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage]:
    """Every participant's three DKG parts, in-process; identifiers 1..n. Shares are handed over directly:
    share boxes use ML-KEM, whose randomised bytes would not replay."""
    return dkg.run_local(n, t, context, lambda i: random.Random(f"{seed}/{i}").randbytes)


def frost_sign(keys: dict[int, frost.KeyPackage], public: frost.PublicKeyPackage, signers: list[int],
               msg: bytes, rng: random.Random) -> bytes:
    """One complete FROST session among ``signers`` (genesis only; issuance goes through the services)."""
    return frost.sign_with_quorum({i: keys[i] for i in signers}, public, msg, rng.randbytes)


class BadShareService(ss.SigningService):
    """``ca_bad_shares``: every signature share this validator produces is off by one."""

    def _make_share(self, nonces: frost.SigningNonces, ctx: frost.SigningContext) -> bytes:
        return group.scalar_add(super()._make_share(nonces, ctx), group.ONE)


@dataclass
class _Job:
    kind: str
    names: tuple[str, ...]


@dataclass
class _Account:
    index: int
    key: bytes
    domain: str
    hosts: int = 0
    jobs: int = 0
    job: _Job | None = None  # challenged, request not sent yet
    serials: list[bytes] = field(default_factory=list)  # from its approved requests
    revoking: set[bytes] = field(default_factory=set)


@dataclass
class _Expectation:
    kind: str
    account: int
    names: tuple[str, ...] = ()


@dataclass
class _Creation:
    """The honest executions of the request that created a pending issuance; its serial once the
    validators' reveals fixed it."""

    request: bytes
    pending_id: int
    time_us: int
    account: int | None
    serial: bytes = b""
    executions: list[tuple[str, int, bytes, Any]] = field(default_factory=list)  # node, seq, batch, cert


class CASimApp(SimApp):
    name = "ca"
    behaviours = (BAD_SHARES,)
    param_types = {"threshold": count(1), "keygen": ParamRule(str, choices=("dkg", "dealer")),
                   "invalid_fraction": PROBABILITY, "revoke_fraction": PROBABILITY, "issue_bound_s": DURATION,
                   "pool_size": count(1), "attempt_timeout_ms": ParamRule(float, minimum=0.001),
                   "session_timeout_ms": ParamRule(float, minimum=0.001)}

    @classmethod
    def check_params(cls, params: dict[str, Any], n: int) -> tuple[str, str] | None:
        if "threshold" in params:
            problem = check_signing_threshold(n, params["threshold"])
            if problem is not None:
                return "threshold", problem
        if params.get("invalid_fraction", 0.25) + params.get("revoke_fraction", 0.1) > 1:
            return "invalid_fraction", "invalid_fraction + revoke_fraction must be at most 1"
        return None

    def __init__(self, params: dict[str, Any], world: World, rng: random.Random) -> None:
        super().__init__(params, world, rng)
        sc = world.scenario
        n, f = sc.cluster.n, sc.cluster.f
        self.n = n
        self.t = int(params.get("threshold", 2 * f + 1))
        problem = check_signing_threshold(n, self.t)
        if problem is not None:
            raise ValueError(f"ca: {problem}")
        self.invalid_fraction = float(params.get("invalid_fraction", 0.25))
        self.revoke_fraction = float(params.get("revoke_fraction", 0.1))
        self.bound_us = round(float(params.get("issue_bound_s", sc.expect.liveness_bound_s)) * 1e6)
        self.config = ss.SigningConfig(
            pool_size=int(params.get("pool_size", 8)),
            attempt_timeout_us=round(float(params.get("attempt_timeout_ms", 2000)) * 1000),
            session_timeout_us=round(float(params.get("session_timeout_ms", 1000)) * 1000),
        )
        self.bad_nodes = {b.node for b in sc.byzantine if BAD_SHARES in b.behaviours}
        self._genesis(str(params.get("keygen", "dkg")), world.seed)
        self.peers = {rid + 1: world.signers[rid].public_key for rid in range(n)}
        # one replicated DNS view for all replicas (append-only TXT, fixed CAA)
        self.caa_records: dict[str, list[caa.CAARecord]] = {}
        self.txt_records: dict[str, list[str]] = {}
        self.dns = caa.StaticDNS(self.caa_records, self.txt_records)
        self.policy = capolicy.CAPolicy(self.issuing_profile, CA_DOMAIN, root_keys=(self.root_public.group_public_key,),
                                        validator_keys=tuple(world.signers[rid].public_key for rid in range(n)),
                                        serial_contributors=f + 1)
        self.accounts: list[_Account] = []
        for c in range(sc.workload.clients):
            key = world.client_signer(c).public_key
            acct = _Account(c, key, f"acct{c}.example")
            self.accounts.append(acct)
            self.caa_records[acct.domain] = [caa.CAARecord(0, "issue", CA_DOMAIN)]
            self.caa_records[f"locked{c}.example"] = [caa.CAARecord(0, "issue", OTHER_CA)]
        for c in range(len(self.accounts)):  # pinned to the next account (RFC 8657 accounturi)
            other = self.accounts[(c + 1) % len(self.accounts)].key if len(self.accounts) > 1 else bytes(32)
            self.caa_records[f"pinned{c}.example"] = [
                caa.CAARecord(0, "issue", f"{CA_DOMAIN}; accounturi=trustchain:account:{other.hex()}")]
        self.by_key = {a.key: a for a in self.accounts}
        # requests and their outcomes
        self.expect: dict[tuple[bytes, int], _Expectation] = {}
        self.results: dict[bytes, bytes] = {}  # request digest -> first honest result
        self.result_conflicts: list[str] = []
        self.creations: dict[int, _Creation] = {}  # pending id -> creating request
        self.issued_us: dict[bytes, int] = {}  # serial -> first honest Finalized
        self.revoked_us: dict[bytes, int] = {}
        self.finalize_rejected: list[tuple[str, int, bytes]] = []
        self.state_digests: dict[int, dict[str, bytes]] = {}  # seq -> honest node -> CA state digest
        # signing beside consensus
        self.services: dict[str, ss.SigningService] = {}
        self.service_incarnation: dict[str, int] = {}
        self.submit_ts: dict[str, int] = {}
        self.finalize_submissions = 0
        self.accusations: list[tuple[int, str, int, str]] = []  # time, accuser node, accused FROST id, reason
        # serial randomness: one contributor per validator (its values outlive restarts, as on disk)
        self.contributors = {rid: serials.Contributor(rid, random.Random(f"{world.seed}/ca/serials/{rid}").randbytes)
                             for rid in range(n)}
        self.randomness_sent: dict[tuple[str, str], tuple[bytes, int]] = {}  # (node, kind) -> (payload, time)
        self.deadline_checks: set[tuple[str, int]] = set()

    # ------------------------------------------------------------------ genesis

    def _genesis(self, keygen: str, seed: int) -> None:
        n, t = self.n, self.t
        if keygen == "dkg":
            root_keys, root_public = run_dkg(n, t, b"trustchain-sim/ca/root", f"{seed}/ca/dkg/root")
            keys, public = run_dkg(n, t, b"trustchain-sim/ca/issuing", f"{seed}/ca/dkg/issuing")
        elif keygen == "dealer":
            root = frost.trusted_dealer_keygen(n, t, random.Random(f"{seed}/ca/dealer/root").randbytes)
            issuing = frost.trusted_dealer_keygen(n, t, random.Random(f"{seed}/ca/dealer/issuing").randbytes)
            root_keys, root_public = dict(root.key_packages), root.public
            keys, public = dict(issuing.key_packages), issuing.public
        else:
            raise ValueError(f"ca: keygen must be dkg or dealer, got {keygen!r}")
        self.root_public, self.key_packages, self.public = root_public, keys, public
        rng = random.Random(f"{seed}/ca/genesis")
        root_profile = _profile(_ca_name("TrustChain Sim Root R1"), root_public.group_public_key, "root")
        self.issuing_profile = _profile(_ca_name("TrustChain Sim Issuing E1"), public.group_public_key, "issuing")

        def root_sign(tbs: bytes) -> bytes:
            return frost_sign(root_keys, root_public, rng.sample(range(1, n + 1), t), tbs, rng)

        self.root_cert = cax509.issue(cax509.root_tbs(root_profile.name, root_profile.public_key, GENESIS),
                                      root_sign, root_profile.public_key)
        self.intermediate_cert = cax509.issue(
            cax509.intermediate_tbs(self.issuing_profile.name, self.issuing_profile.public_key, root_profile,
                                    GENESIS, 1), root_sign, root_profile.public_key)

    # ------------------------------------------------------------------ SimApp interface

    def create_application(self, replica_id: int) -> Application:
        return issuance.CAApplication(self.policy, self.dns)

    def start(self) -> None:
        self.settle_bound_us = self.bound_us
        for node in self.world.nodes.values():
            self._service(node)

    def next_operation(self, client: int) -> bytes:
        acct = self.accounts[client]
        cnode = self.world.client_names[f"c{client}"]
        ts = cnode.client.timestamp + 1  # the timestamp the payload will be submitted with
        job = acct.job
        if job is not None:
            acct.job = None
            prev = self.world.request_index.get((cnode.name, ts - 1))
            result = self.results.get(prev) if prev is not None else None
            challenge = _decoded(result) if result is not None else None
            if challenge is not None and challenge.status == cacommands.STATUS_CHALLENGE:
                return self._request(acct, job, challenge, ts)
            # no honest result seen for our challenge: challenge again
            return self._challenge(acct, job, ts)
        acct.jobs += 1
        roll = self.rng.random()
        if roll < self.revoke_fraction:
            serial = next((s for s in acct.serials if s in self.issued_us and s not in acct.revoking), None)
            if serial is not None:
                acct.revoking.add(serial)
                self._expect(acct, ts, "revoke")
                return cacommands.revoke_command(int.from_bytes(serial, "big"), self.rng.choice((0, 1, 4, 5)))
        elif roll < self.revoke_fraction + self.invalid_fraction:
            kind = self.rng.choice(INVALID_KINDS)
            if kind == "not_owned":
                victim = self.accounts[(acct.index + 1 + self.rng.randrange(max(1, len(self.accounts) - 1)))
                                       % len(self.accounts)]
                domain = victim.domain if victim is not acct else f"unowned{acct.index}.example"
            elif kind == "caa_other_ca":
                domain = f"locked{acct.index}.example"
            elif kind == "caa_other_account":
                domain = f"pinned{acct.index}.example"
            else:
                domain = acct.domain
            return self._challenge(acct, _Job(kind, self._hosts(acct, domain)), ts)
        return self._challenge(acct, _Job("valid", self._hosts(acct, acct.domain)), ts)

    # ------------------------------------------------------------------ workload

    def _hosts(self, acct: _Account, domain: str) -> tuple[str, ...]:
        count = 1 + (self.rng.random() < 0.3)
        out = []
        for _ in range(count):
            acct.hosts += 1
            out.append(f"h{acct.hosts}.{domain}")
        return tuple(out)

    def _expect(self, acct: _Account, ts: int, kind: str, names: tuple[str, ...] = ()) -> None:
        self.expect[(acct.key, ts)] = _Expectation(kind, acct.index, names)

    def _challenge(self, acct: _Account, job: _Job, ts: int) -> bytes:
        acct.job = job
        self._expect(acct, ts, "challenge", job.names)
        return cacommands.challenge_command(job.names)

    def _request(self, acct: _Account, job: _Job, challenge: cacommands.CAResult, ts: int) -> bytes:
        proofs = challenge.proofs()
        if job.kind != "not_owned":  # the client publishes dns-01 TXT only in zones it controls
            for name in job.names:
                owner = f"{ownership.CHALLENGE_LABEL}.{name}"
                self.txt_records.setdefault(owner, []).append(ownership.dns01_txt(proofs[name]))
        key = Ed25519PrivateKey.from_private_bytes(self.rng.randbytes(32))
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in job.names]), critical=False)
            .sign(key, None)
            .public_bytes(Encoding.DER)
        )
        if job.kind == "bad_csr":  # the signature BIT STRING ends the DER: flip one of its bits
            csr = csr[:-1] + bytes([csr[-1] ^ 0x01])
        self._expect(acct, ts, job.kind, job.names)
        req = cacommands.IssueRequest(csr, job.names, tuple(proofs[n] for n in job.names), f"client-{acct.index}",
                                    f"pay-{acct.index}-{ts}")
        return cacommands.request_command(req)

    # ------------------------------------------------------------------ observing execution

    def on_executed(self, node: ReplicaNode, event: Executed) -> None:
        w = self.world
        honest = not node.byzantine
        app = node.replica.app
        assert isinstance(app, issuance.CAApplication)
        if honest:
            for req, result in zip(event.requests, event.results, strict=True):
                held = self.results.setdefault(req.digest, result)
                if held != result and len(self.result_conflicts) < 10:
                    self.result_conflicts.append(f"request {req.digest.hex()[:16]} at seq {event.seq}: replica "
                                                 f"{node.name} decided {_describe(result)[:80]!r}, another "
                                                 f"{_describe(held)[:80]!r}")
                exp = self.expect.get((req.client, req.timestamp))
                decoded = _decoded(result)
                if decoded is not None and decoded.status == cacommands.STATUS_PENDING:
                    pid = decoded.pending_id
                    account = exp.account if exp is not None and exp.kind == "valid" else None
                    cr = self.creations.setdefault(pid, _Creation(req.digest, pid, w.now, account))
                    cr.executions.append((node.name, event.seq, event.batch_digest, event.certificate))
            if node.replica.status.last_executed == event.seq:  # a later batch of the same step changes the state
                self.state_digests.setdefault(event.seq, {})[node.name] = _state_digest(app)
        events = app.take_events()
        if not node.up:
            return
        svc = self._service(node)
        now = w.local_now(node)
        effects: list[ss.Effect] = []
        for ev in events:
            if isinstance(ev, caevents.PendingRecorded):
                effects += svc.on_pending(ev.pending.pending_id, ev.pending.tbs, now)
                created = self.creations.get(ev.pending.request_id or ev.pending.pending_id)
                if honest and created is not None and not created.serial:
                    created.serial = ev.pending.serial
                    if created.account is not None:
                        self.accounts[created.account].serials.append(created.serial)
            elif isinstance(ev, caevents.Finalized):
                effects += svc.on_finalized(ev.pending_id, now)
                if honest:
                    self.issued_us.setdefault(ev.serial, w.now)
            elif isinstance(ev, caevents.PendingExpired):
                effects += svc.on_finalized(ev.pending_id)
            elif isinstance(ev, caevents.Revoked):
                if honest:
                    self.revoked_us.setdefault(ev.serial, w.now)
            elif isinstance(ev, caevents.FinalizeRejected) and honest:
                self.finalize_rejected.append((node.name, ev.pending_id, ev.submitter))
        # A replica that caught up by state transfer restored its pending set from a snapshot, which emits
        # no events: the service follows the replicated pending set itself.
        effects += svc.reconcile(app.pending_items(), now)
        self._apply(node, svc, effects)
        self._randomness(node)

    # ------------------------------------------------------------------ serial randomness

    def _randomness(self, node: ReplicaNode) -> None:
        """Order this validator's reveals and commitments the replicated state asks for (resent after a
        second without effect), and an empty commitment once a reveal deadline passed."""
        if not node.up:
            return
        app = node.replica.app
        assert isinstance(app, issuance.CAApplication)
        state, contributor, now = app.serials, self.contributors[node.replica_id], self.world.local_now(node)
        contributor.forget(state)
        reveals = contributor.reveals(state)
        if reveals:
            self._order_randomness(node, "reveal", cacommands.serial_reveal_command(reveals))
        fresh = contributor.new_commitments(state) if (node.name, "commit") not in self.randomness_sent else ()
        if fresh:
            self._order_randomness(node, "commit", cacommands.serial_commit_command(fresh))
        elif state.unused_count(node.replica_id) >= contributor.low:
            self.randomness_sent.pop((node.name, "commit"), None)
        deadline = state.next_deadline()
        if deadline is not None and (node.name, deadline) not in self.deadline_checks:
            self.deadline_checks.add((node.name, deadline))
            self.world.after(max(0, deadline - now) + 100_000,
                             functools.partial(self._deadline_passed, node, node.incarnation, deadline))

    def _order_randomness(self, node: ReplicaNode, kind: str, payload: bytes) -> None:
        now = self.world.now
        sent = self.randomness_sent.get((node.name, kind))
        if sent is not None and sent[0] == payload and now - sent[1] < 1_000_000:
            return
        self.randomness_sent[(node.name, kind)] = (payload, now)
        ts = self.submit_ts.get(node.name, 0) + 1
        self.submit_ts[node.name] = ts
        self.world.submit_as(node, pack(Request.create(node.signer, ts, payload)))
        self.world.after(1_100_000, functools.partial(self._retry_randomness, node, node.incarnation))

    def _retry_randomness(self, node: ReplicaNode, incarnation: int) -> None:
        if node.up and node.incarnation == incarnation:
            self.randomness_sent.pop((node.name, "commit"), None)
            self._randomness(node)

    def _deadline_passed(self, node: ReplicaNode, incarnation: int, deadline: int) -> None:
        app = node.replica.app
        assert isinstance(app, issuance.CAApplication)
        if node.up and node.incarnation == incarnation and app.serials.next_deadline() == deadline:
            self._order_randomness(node, "tick", cacommands.serial_commit_command([]))

    # ------------------------------------------------------------------ signing services

    def _service(self, node: ReplicaNode) -> ss.SigningService:
        """The node's service for its current incarnation (a fresh one after a restart)."""
        svc = self.services.get(node.name)
        if svc is not None and self.service_incarnation[node.name] == node.incarnation:
            return svc
        rid = node.replica_id
        cls = BadShareService if rid in self.bad_nodes else ss.SigningService
        rand = random.Random(f"{self.world.seed}/ca/service/{node.name}/{node.incarnation}").randbytes
        # A restarted service starts a new epoch: its nonce ids never repeat the ones its previous
        # incarnation published (still in peers' pools, which drop them when the new epoch's arrive).
        svc = cls(self.key_packages[rid + 1], self.public, node.signer, self.peers, rand, self.config,
                  epoch=node.incarnation, verifier=self.world.verifier)
        self.services[node.name] = svc
        self.service_incarnation[node.name] = node.incarnation
        now = self.world.local_now(node)
        effects = svc.start(now)
        app = node.replica.app
        assert isinstance(app, issuance.CAApplication)
        self._apply(node, svc, effects + svc.reconcile(app.pending_items(), now))  # recovered state: keep signing
        self._randomness(node)
        return svc

    def _live(self, node: ReplicaNode, svc: ss.SigningService) -> bool:
        return node.up and self.services.get(node.name) is svc and self.service_incarnation[node.name] == \
            node.incarnation

    def _apply(self, node: ReplicaNode, svc: ss.SigningService, effects: list[ss.Effect]) -> None:
        w = self.world
        finalizing = [e for e in effects if isinstance(e, ss.SubmitFinalize)]
        for command in cacommands.finalize_batch_commands([(e.pending_id, e.signature) for e in finalizing]):
            # one input's signatures in one ordered request (``finalize_batch``), as the node does
            ts = self.submit_ts.get(node.name, 0) + 1
            self.submit_ts[node.name] = ts
            w.submit_as(node, pack(Request.create(node.signer, ts, command)))
        for f in finalizing:
            self.finalize_submissions += 1
            w.trace.record(w.now, "ca_finalize", node.name, f.pending_id, self.submit_ts[node.name])
        for e in effects:
            if isinstance(e, ss.Send):
                w.send_side(node, e.to - 1, functools.partial(self._on_message, data=e.data))
            elif isinstance(e, ss.SetTimer):
                w.after(e.at_us - w.local_now(node), functools.partial(self._on_timer, node, svc, e.key))
            elif isinstance(e, ss.Misbehaviour):
                self.accusations.append((w.now, node.name, e.accused, e.reason))
                w.trace.record(w.now, "ca_accuse", node.name, e.accused)

    def _on_message(self, node: ReplicaNode, data: bytes) -> None:
        svc = self._service(node)
        self._apply(node, svc, svc.on_message(data, self.world.local_now(node)))

    def _on_timer(self, node: ReplicaNode, svc: ss.SigningService, key: ss.TimerKey) -> None:
        if not self._live(node, svc):
            return
        if node.paused:  # a paused process fires its timers when it resumes
            self.world.after(50_000, lambda: self._on_timer(node, svc, key))
            return
        self._apply(node, svc, svc.on_timer(key, self.world.local_now(node)))

    # ------------------------------------------------------------------ checks

    def honest_apps(self) -> dict[str, issuance.CAApplication]:
        return self.honest_replica_apps(issuance.CAApplication)

    def issued_certificates(self) -> dict[bytes, carecords.IssuedCertificate]:
        """Every certificate any honest replica recorded, by serial (first seen)."""
        out: dict[bytes, carecords.IssuedCertificate] = {}
        for app in self.honest_apps().values():
            for serial, rec in sorted(app.issued.items()):
                out.setdefault(serial, rec)
        return out

    def request_kinds(self) -> dict[bytes, str]:
        """Client request digest -> the kind of request it was generated as."""
        out = {}
        for (_, ts), exp in self.expect.items():
            digest = self.world.request_index.get((f"c{exp.account}", ts))
            if digest is not None:
                out[digest] = exp.kind
        return out

    def settled(self) -> bool:
        """Every approved issuance is finalized, and no honest replica that is up still holds one."""
        if any(cr.serial not in self.issued_us for cr in self.creations.values()):
            return False
        return all(not app.pending and not app.serials.draws for name, app in self.honest_apps().items()
                   if self.world.nodes[name].up)

    def checks(self) -> list[Verdict]:
        return [self._check_decisions(), self._check_chain(), self._check_approval(), self._check_agreement(),
                self._check_bad_shares(), self._check_liveness()]

    def _check_decisions(self) -> Verdict:
        from sim.checkers import Verdict

        if self.result_conflicts:
            return Verdict("ca_decisions", False, f"honest replicas decided differently: {self.result_conflicts[0]}")
        seen: Counter[str] = Counter()
        for (_, ts), exp in sorted(self.expect.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            digest = self.world.request_index.get((f"c{exp.account}", ts))
            result = self.results.get(digest) if digest is not None else None
            if result is None:
                continue  # never executed by an honest replica (the liveness check covers it)
            decoded = _decoded(result)
            status, error_field = EXPECT[exp.kind]
            if decoded is None or decoded.status != status or decoded.field != error_field:
                expected = f"{status} {error_field}:" if error_field else status
                return Verdict("ca_decisions", False, f"client c{exp.account} #{ts} ({exp.kind} {list(exp.names)}): "
                               f"expected {expected!r}, got {_describe(result)[:120]!r}",
                               {"client": f"c{exp.account}", "timestamp": ts})
            seen[exp.kind] += 1
        invalid = sum(seen[k] for k in INVALID_KINDS)
        if seen["valid"] == 0 or invalid == 0:
            return Verdict("ca_decisions", False, f"workload too small to judge: {dict(seen)}")
        return Verdict("ca_decisions", True, f"{sum(seen.values())} requests decided as expected, identically on "
                       f"every honest replica: {seen['valid']} approved, {invalid} rejected ("
                       + ", ".join(f"{k} {seen[k]}" for k in INVALID_KINDS) + f"), {seen['challenge']} challenges, "
                       f"{seen['revoke']} revocations", checked=sum(seen.values()))

    def _check_chain(self) -> Verdict:
        from sim.checkers import Verdict

        issued = self.issued_certificates()
        gpk = self.public.group_public_key
        for serial, rec in issued.items():
            cert = x509.load_der_x509_certificate(rec.certificate_der)
            dns = cax509.dns_names(cert)
            problem = None
            if not frost.verify_signature(gpk, cert.tbs_certificate_bytes, cert.signature):
                problem = "signature does not verify under the issuing group key"
            else:
                try:
                    cavalidate.verify_chain(cert, [self.intermediate_cert], [self.root_cert],
                                            cert.not_valid_before_utc, dns[0])
                except cavalidate.ChainError as exc:
                    problem = f"does not chain to the genesis root: {exc}"
            acct = self.by_key.get(rec.account)
            if problem is None and (acct is None or any(not (n == acct.domain or n.endswith("." + acct.domain))
                                                        for n in dns)):
                problem = f"names {dns} are not all owned by the requesting account"
            if problem is not None:
                return Verdict("ca_chain", False, f"certificate {serial.hex()}: {problem}", checked=len(issued))
        if not issued:
            return Verdict("ca_chain", False, "no certificate was issued")
        return Verdict("ca_chain", True, f"{len(issued)} issued certificates verify under the FROST group key "
                       f"({self.t}-of-{self.n}) and chain to the genesis root, for names their accounts own",
                       checked=len(issued))

    def _check_approval(self) -> Verdict:
        from sim.checkers import Verdict

        checker = SignatureChecker(self.world.config, self.world.verifier)
        verified: set[tuple[int, bytes]] = set()
        issued = self.issued_certificates()
        kinds = self.request_kinds()
        by_serial = {cr.serial: cr for cr in self.creations.values() if cr.serial}
        for serial in issued:
            cr = by_serial.get(serial)
            if cr is None:
                return Verdict("ca_approval", False, f"certificate {serial.hex()}: no honest replica executed a "
                               "request that approved it")
            req_kind = kinds.get(cr.request)
            if req_kind != "valid":
                return Verdict("ca_approval", False, f"certificate {serial.hex()} was created by a {req_kind} "
                               "request that every honest replica must reject")
            for node, seq, batch_digest, certificate in cr.executions:
                if (seq, batch_digest) in verified:
                    continue
                try:
                    pp = check_committed(checker, certificate)
                except InvalidMessage as exc:
                    return Verdict("ca_approval", False, f"certificate {serial.hex()}: its request's execution at seq "
                                   f"{seq} on replica {node} has no valid commit certificate: {exc}")
                if pp.seq != seq or pp.batch_digest != batch_digest or cr.request not in {r.digest for r in pp.batch}:
                    return Verdict("ca_approval", False, f"certificate {serial.hex()}: the commit certificate at seq "
                                   f"{seq} is not for the batch holding its request")
                verified.add((seq, batch_digest))
        rejected_pending = [p for p, cr in sorted(self.creations.items()) if kinds.get(cr.request) != "valid"]
        if rejected_pending:
            return Verdict("ca_approval", False, f"an invalid request created pending issuance "
                           f"{rejected_pending[0]}")
        return Verdict("ca_approval", True, f"{len(issued)} certificates each approved by a request executed under "
                       f"a valid 2f+1 commit certificate ({len(verified)} certificates, {checker.verifications} "
                       "signatures); no rejected request created a pending issuance", checked=len(issued))

    def _check_agreement(self) -> Verdict:
        from sim.checkers import Verdict

        compared = 0
        for seq in sorted(self.state_digests):
            digests = self.state_digests[seq]
            if len(set(digests.values())) > 1:
                return Verdict("ca_agreement", False, f"after seq {seq} honest replicas hold different issued/revoked "
                               f"state: {sorted((n, d.hex()[:12]) for n, d in digests.items())}", {"seq": seq})
            compared += len(digests) > 1
        apps = self.honest_apps()
        top = max(self.world.nodes[n].replica.status.last_executed for n in apps)
        final = {n: _state_digest(a) for n, a in apps.items()
                 if self.world.nodes[n].replica.status.last_executed == top}
        if len(set(final.values())) > 1:
            return Verdict("ca_agreement", False, f"honest replicas at seq {top} end with different CA state")
        ref = apps[min(final)]
        revoked = sum(1 for r in ref.issued.values() if r.revoked_us is not None)
        return Verdict("ca_agreement", True, f"issued/revoked state agrees after each of {compared} sequence numbers "
                       f"executed by several honest replicas; {len(final)}/{len(apps)} honest replicas end at seq "
                       f"{top} with the same {len(ref.issued)} certificates, {revoked} revoked",
                       checked=compared)

    def _check_bad_shares(self) -> Verdict:
        from sim.checkers import Verdict

        honest_acc = [(t, who, accused) for t, who, accused, _ in self.accusations
                      if not self.world.nodes[who].byzantine]
        bad_ids = {rid + 1 for rid in self.bad_nodes}
        wrong = [a for a in honest_acc if a[2] not in bad_ids]
        stats = f"{self.finalize_submissions} finalize submissions, {len(self.finalize_rejected)} rejected"
        if wrong:
            t, who, accused = wrong[0]
            return Verdict("ca_bad_shares", False, f"honest service {who} accused honest validator {accused - 1} "
                           f"(FROST id {accused}) at {t / 1e6:.3f} s", {"time_us": t})
        if self.finalize_rejected:
            return Verdict("ca_bad_shares", False, f"an honest replica rejected a finalize submission: "
                           f"{self.finalize_rejected[0]}; {stats}")
        details = []
        for rid in sorted(self.bad_nodes):
            times = [t for t, _, accused in honest_acc if accused == rid + 1]
            if not times:
                return Verdict("ca_bad_shares", False, f"bad-share validator {rid} was never named by an honest "
                               f"service; {stats}")
            accusers = {who for _, who, accused in honest_acc if accused == rid + 1}
            details.append(f"validator {rid} (FROST id {rid + 1}) named by {len(accusers)} honest services, first "
                           f"at {min(times) / 1e6:.3f} s")
        if not details:
            return Verdict("ca_bad_shares", True, f"no validator accused; {stats}")
        return Verdict("ca_bad_shares", True, "; ".join(details) + f"; no honest validator accused; {stats}",
                       checked=len(honest_acc), extra={"named": sorted(self.bad_nodes)})

    def _check_liveness(self) -> Verdict:
        from sim.checkers import Verdict

        gst = self.world.network.gst_us
        now = self.world.now
        late: list[tuple[int, _Creation, int | None]] = []
        waiting, lat = 0, []
        for _, cr in sorted(self.creations.items(), key=lambda kv: kv[1].time_us):
            deadline = max(cr.time_us, gst) + self.bound_us
            done = self.issued_us.get(cr.serial) if cr.serial else None
            if done is None:
                if now > deadline:
                    late.append((deadline, cr, None))
                else:
                    waiting += 1
            elif done > deadline:
                late.append((deadline, cr, done))
            else:
                lat.append(done - cr.time_us)
        bound = self.bound_us / 1e6
        if late:
            deadline, cr, done = late[0]
            state = "never finalized" if done is None else f"finalized at {done / 1e6:.3f} s"
            return Verdict("ca_liveness", False, f"{len(late)} of {len(self.creations)} approved issuances missed "
                           f"the bound of {bound} s after GST; first: pending {cr.pending_id} approved at "
                           f"{cr.time_us / 1e6:.3f} s, {state}", {"time_us": deadline})
        if not lat:
            return Verdict("ca_liveness", False, f"no issuance finalized ({len(self.creations)} approved)")
        lat.sort()
        return Verdict("ca_liveness", True, f"{len(lat)} of {len(self.creations)} approved issuances finalized "
                       f"within {bound} s of max(approval, GST) (p50 {lat[len(lat) // 2] / 1e3:.0f} ms, max "
                       f"{lat[-1] / 1e3:.0f} ms), {waiting} still within the bound at the end; "
                       f"{len(self.revoked_us)} revoked", checked=len(self.creations))


def _state_digest(app: issuance.CAApplication) -> bytes:
    h = hashlib.sha256()
    for serial, rec in sorted(app.issued.items()):
        h.update(serial + rec.certificate_der[-64:] + (rec.revoked_us or 0).to_bytes(8, "big")
                 + (rec.reason if rec.reason is not None else 255).to_bytes(1, "big"))
    return h.digest()
