"""The CT log on every replica, with auditors and checkpoint gossip running in virtual time.

Workload: fresh, real X.509 certificates (Ed25519, deterministic from the application RNG) for random
names under a few domains, from one of two issuers. Auditors (`auditors`, default 4) sit next to
replicas; every `audit_interval_ms` each fetches a signed checkpoint from a random validator over the
simulated network, feeds it to its `GossipPeer` and forwards what is new to `gossip_fanout` others.
Proofs come from an up-to-date mirror of the honest log (untrusted by the auditor code all the same).

Byzantine behaviour `ct_split_view` (params `split_start_s`, `victims`: auditor indices): from then on
the replica shows victims checkpoints of a forked tree (a bogus entry inserted at the size it had when
the split began) signed with its own key, and everyone else the real one.

Checks: honest logs are prefixes of the longest honest log; every SCT handed to a client verifies from
f+1 validators and is in a signed tree within `mmd_s`; every split-viewing key is convicted by verified
evidence within `detect_within_s` of its first forked checkpoint, and no other key ever is.

The MMD clock. An SCT's timestamp is the batch's consensus time, i.e. when the primary proposed it. A
validator signs an SCT only for an entry its tree already holds, so no SCT exists before the batch
commits, and after GST consensus promises commitment only within the liveness bound, which may exceed
the MMD: a batch a faulty primary proposed just after GST and a later view re-proposed (the timestamp is
part of the batch digest, so it is kept) commits with a timestamp many seconds old. That delay is
consensus latency, checked by the liveness check; the MMD check measures what the log adds on top, so an
SCT's clock starts at the latest of its timestamp, GST and the moment its request completed (the earliest
a client holds it). SCTs issued after max(timestamp, GST) + MMD are counted in the verdict. The run goes on
after the last request until every expected SCT is handed out and decided (`settled`), so no SCT is
left unchecked at the end.
"""

from __future__ import annotations

import datetime
import functools
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from sim.apps.base import SimApp
from sim.params import DURATION, ParamRule, count
from trustchain.app.interface import Application
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import checkpoint as cpmod
from trustchain.ct import merkle
from trustchain.ct.app import CTApplication, add_chain, decode_result
from trustchain.ct.auditor import MMD_VIOLATION, SCT_INCLUDED, AuditEvent, Auditor
from trustchain.ct.entry import X509Entry, parse_merkle_tree_leaf
from trustchain.ct.gossip import Alert, Cosigned, EvidenceFound, Forward, GossipEffect, GossipPeer, evidence_message
from trustchain.ct.log import CTLog
from trustchain.ct.validators import QuorumError, Validator, ValidatorSet
from trustchain.encoding import DecodeError

if TYPE_CHECKING:
    from sim.checkers import Verdict
    from sim.world import World

SPLIT_VIEW = "ct_split_view"
_NOT_BEFORE = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(2026, 4, 1, tzinfo=datetime.UTC)


def _key(rng: random.Random) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))


class _MirrorView:
    """The log view auditors query: the most advanced honest replica's log, read at call time."""

    def __init__(self, app: CTSimApp) -> None:
        self.app = app

    def _log(self) -> CTLog:
        return self.app.longest_honest_log()

    @property
    def size(self) -> int:
        return self._log().size

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self._log().consistency_proof(first, second)

    def inclusion_proof_by_leaf_hash(self, leaf_hash_: bytes, tree_size: int) -> tuple[int, list[bytes]]:
        return self._log().inclusion_proof_by_leaf_hash(leaf_hash_, tree_size)

    def root_at(self, size: int) -> bytes:
        return self._log().root_at(size)


@dataclass
class _Split:
    node: int
    key_name: str
    victims: frozenset[int]
    start_us: int
    fork_at: int | None = None
    first_served_us: int | None = None
    served: int = 0


@dataclass
class _AuditorNode:
    index: int
    name: str
    peer: GossipPeer
    convicted: dict[str, int] = field(default_factory=dict)  # key -> virtual time (µs) it learned


class CTSimApp(SimApp):
    name = "ct"
    behaviours = (SPLIT_VIEW,)
    param_types = {"origin": str, "mmd_s": DURATION, "audit_interval_ms": ParamRule(float, minimum=0.001),
                   "gossip_fanout": count(), "detect_within_s": DURATION, "domains": count(1), "auditors": count(1)}
    behaviour_params = {SPLIT_VIEW: {"split_start_s": DURATION, "victims": ParamRule(list, items=int, minimum=0)}}

    def __init__(self, params: dict[str, Any], world: World, rng: random.Random) -> None:
        super().__init__(params, world, rng)
        self.origin = str(params.get("origin", "sim.trustchain.example/ct"))
        self.mmd_us = round(float(params.get("mmd_s", 10.0)) * 1e6)
        self.interval_us = round(float(params.get("audit_interval_ms", 500.0)) * 1000)
        self.fanout = int(params.get("gossip_fanout", 2))
        self.detect_within_us = round(float(params.get("detect_within_s", 10.0)) * 1e6)
        self.domains = [f"d{i}.example" for i in range(int(params.get("domains", 8)))]
        n = world.scenario.cluster.n
        self.n = n
        self.validators = ValidatorSet([Validator(self.key_name(i), world.signers[i].public_key) for i in range(n)])
        self.sct_quorum = ValidatorSet(self.validators.validators, threshold=self.validators.f + 1)
        issuer_rng = random.Random(f"{world.seed}/ct/issuers")
        self.issuers = [(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Sim Issuing CA {i}")]), _key(issuer_rng))
                        for i in range(2)]
        self.splits: dict[int, _Split] = {}
        n_auditors = int(params.get("auditors", 4))
        for b in world.scenario.byzantine:
            if SPLIT_VIEW in b.behaviours:
                victims = b.params.get("victims", list(range(n_auditors // 2)))
                self.splits[b.node] = _Split(b.node, self.key_name(b.node), frozenset(int(v) for v in victims),
                                             round(float(b.params.get("split_start_s", 2.0)) * 1e6))
        self.view = _MirrorView(self)
        self.auditors: list[_AuditorNode] = []
        for i in range(n_auditors):
            auditor = Auditor(self.origin, self.validators, self.view, self.mmd_us // 1000, max_per_key=16)
            signer = Ed25519Signer(random.Random(f"{world.seed}/ct/witness/{i}").randbytes(32))
            self.auditors.append(_AuditorNode(i, f"auditor{i}", GossipPeer(f"witness-{i}", signer, auditor)))
        self.events: list[tuple[int, str, AuditEvent]] = []
        self.cosignatures = 0
        self.fetches = 0
        self.gossip_messages = 0
        self.scts_handed = 0
        self.sct_failures: list[str] = []
        self._results: dict[bytes, bytes] = {}
        self._exec_pos = 0
        self._handed: set[bytes] = set()
        self._expected: set[bytes] = set()
        self.issued_late = 0  # SCTs that came into existence after max(timestamp, GST) + MMD (consensus latency)
        # After the last request: time for the last SCTs to be handed out (up to one MMD after completing)
        # and decided (one MMD after max(GST, completion), plus an audit round); `settled` usually ends it early.
        self.settle_bound_us = world.network.gst_us + 2 * self.mmd_us + 4 * self.interval_us

    @staticmethod
    def key_name(replica_id: int) -> str:
        return f"validator-{replica_id}"

    # ------------------------------------------------------------------ SimApp interface

    def create_application(self, replica_id: int) -> Application:
        return CTApplication(self.world.signers[replica_id], self.key_name(replica_id), self.origin)

    def next_operation(self, client: int) -> bytes:
        rng = self.rng
        issuer_name, issuer_key = self.issuers[rng.randrange(len(self.issuers))]
        host = f"h{rng.randrange(1000)}.{self.domains[rng.randrange(len(self.domains))]}"
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(issuer_name)
            .public_key(_key(rng).public_key())
            .serial_number(rng.getrandbits(63) + 1)
            .not_valid_before(_NOT_BEFORE)
            .not_valid_after(_NOT_AFTER)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(issuer_key, None)
        )
        return add_chain(cert.public_bytes(Encoding.DER))

    def start(self) -> None:
        for a in self.auditors:
            site = a.index % self.n
            self.world.network.place(a.name, site)
            self.world.after(self.interval_us + self.rng.randrange(self.interval_us), functools.partial(self._audit, a))

    # ------------------------------------------------------------------ replicas' logs

    def replica_app(self, name: str) -> CTApplication:
        app = self.world.nodes[name].replica.app
        assert isinstance(app, CTApplication)
        return app

    def honest_apps(self) -> dict[str, CTApplication]:
        return {name: self.replica_app(name) for name, node in self.world.nodes.items() if not node.byzantine}

    def longest_honest_log(self) -> CTLog:
        return max(self.honest_apps().values(), key=lambda a: a.size).log

    # ------------------------------------------------------------------ auditors in virtual time

    def _audit(self, a: _AuditorNode) -> None:
        w = self.world
        self._hand_out_scts()
        for e in a.peer.auditor.tick(w.now // 1000):
            self.events.append((w.now, a.name, e))
        for ev in a.peer.auditor.evidence.values():  # anti-entropy: lost gossip must not hide a conviction
            self._apply(a, [Forward(evidence_message(ev))], fanout=1)
        target = self.rng.randrange(self.n)
        self.fetches += 1
        for delay in w.network.route(a.name, target, w.now)[:1]:
            w.after(delay, functools.partial(self._serve, a, target))
        w.after(self.interval_us, lambda: self._audit(a))

    def _serve(self, a: _AuditorNode, target: int) -> None:
        w = self.world
        node = w.nodes[str(target)]
        if not node.up or node.paused:
            return
        note = self._checkpoint_for(target, a.index)
        for delay in w.network.route(target, a.name, w.now)[:1]:
            w.after(delay, lambda: self._apply(a, a.peer.publish(note, w.now // 1000)))

    def _checkpoint_for(self, rid: int, auditor: int) -> bytes:
        app = self.replica_app(str(rid))
        split = self.splits.get(rid)
        if split is None or auditor not in split.victims or self.world.now < split.start_us or app.size == 0:
            return app.signed_checkpoint().encode()
        if split.fork_at is None:
            split.fork_at = app.size
        hashes = [app.log.leaf_hash(i) for i in range(app.size)]
        bogus = merkle.leaf_hash(b"forked entry hidden from other auditors" + split.fork_at.to_bytes(8, "big"))
        hashes.insert(split.fork_at, bogus)
        split.served += 1
        if split.first_served_us is None:
            split.first_served_us = self.world.now
        forked = cpmod.Checkpoint(self.origin, len(hashes), merkle.root_of(hashes))
        return cpmod.sign(forked, split.key_name, self.world.signers[rid]).encode()

    def _apply(self, a: _AuditorNode, effects: list[GossipEffect], fanout: int | None = None) -> None:
        w = self.world
        for eff in effects:
            if isinstance(eff, Forward):
                others = [b for b in self.auditors if b is not a]
                for b in self.rng.sample(others, min(fanout or self.fanout, len(others))):
                    self.gossip_messages += 1
                    for delay in w.network.route(a.name, b.name, w.now)[:1]:
                        w.after(delay, functools.partial(self._gossip_arrival, b, eff.data))
            elif isinstance(eff, EvidenceFound):
                a.convicted.setdefault(eff.evidence.key_name, w.now)
            elif isinstance(eff, Cosigned):
                self.cosignatures += 1
            elif isinstance(eff, Alert):
                self.events.append((w.now, a.name, eff.event))

    def _gossip_arrival(self, a: _AuditorNode, data: bytes) -> None:
        self._apply(a, a.peer.receive(data, self.world.now // 1000))

    def _hand_out_scts(self) -> None:
        """Completed requests' results become SCTs: signed by f+1 validators, audited for the MMD."""
        w = self.world
        honest = {name for name, node in w.nodes.items() if not node.byzantine}
        for rec in w.executions[self._exec_pos:]:
            if rec.node in honest:
                for request, result in zip(rec.event.requests, rec.event.results, strict=True):
                    self._results.setdefault(request.digest, result)
        self._exec_pos = len(w.executions)
        apps = self.honest_apps()
        for digest, req in w.requests.items():
            if req.completed_us is None or digest in self._handed or digest not in self._results:
                continue
            try:
                res = decode_result(self._results[digest])
            except DecodeError:
                res = None
            if res is None or not res.ok:
                self._handed.add(digest)
                self.sct_failures.append(f"{req.client} #{req.timestamp}: rejected: "
                                         f"{res.detail if res else 'undecodable result'}")
                continue
            if digest not in self._expected:
                self._expected.add(digest)
                auditor = self.auditors[int.from_bytes(digest[:4], "big") % len(self.auditors)]
                # The MMD clock starts when the SCT can first exist (see the module docstring): not before
                # GST (no timing promise holds earlier) nor before its request completed (commit latency
                # is consensus liveness, bounded by the liveness check, not by the MMD).
                issued_ms = req.completed_us // 1000
                base = max(res.timestamp_ms, w.network.gst_us // 1000)
                if issued_ms > base + self.mmd_us // 1000:
                    self.issued_late += 1
                deadline_base = max(base, issued_ms)
                auditor.peer.auditor.expect_inclusion(res.leaf_hash, deadline_base, req.client)
            holders = [app for name, app in sorted(apps.items()) if app.size > res.index
                       and w.nodes[name].up][: self.sct_quorum.threshold]
            if len(holders) < self.sct_quorum.threshold and w.now - req.completed_us <= self.mmd_us:
                continue  # the client keeps asking validators that have caught up
            self._handed.add(digest)
            self.scts_handed += 1
            try:
                entry = parse_merkle_tree_leaf(holders[0].log.entries[res.index]).entry if holders else None
                if entry is None or not isinstance(entry, X509Entry):
                    raise QuorumError("no honest validator holds the entry")
                self.sct_quorum.verify_scts(entry, [app.sct(res.index) for app in holders])
            except QuorumError as exc:
                self.sct_failures.append(f"{req.client} #{req.timestamp}: SCTs within the MMD: {exc}")

    def settled(self) -> bool:
        """Every completed request's SCT is handed out and every auditor has decided every SCT it expects
        (included, or its MMD over), so the MMD check leaves nothing unverified."""
        done = sum(1 for r in self.world.requests.values() if r.completed_us is not None)
        return len(self._handed) >= done and all(a.peer.auditor.pending_scts == 0 for a in self.auditors)

    # ------------------------------------------------------------------ checks

    def checks(self) -> list[Verdict]:
        return [self._check_prefix(), self._check_mmd(), self._check_split_view()]

    def _check_prefix(self) -> Verdict:
        from sim.checkers import Verdict

        apps = self.honest_apps()
        longest_name, longest = max(apps.items(), key=lambda kv: (kv[1].size, kv[0]))
        ref = [longest.log.leaf_hash(i) for i in range(longest.size)]
        for name, app in sorted(apps.items()):
            for i in range(app.size):
                if app.log.leaf_hash(i) != ref[i]:
                    return Verdict("ct_prefix", False, f"replica {name}'s entry {i} differs from replica "
                                   f"{longest_name}'s", {"node": name, "index": i}, len(apps))
        sizes = sorted(app.size for app in apps.values())
        return Verdict("ct_prefix", True, f"{len(apps)} honest logs are prefixes of the longest ({longest.size} "
                       f"entries; sizes {sizes[0]}..{sizes[-1]})", checked=len(apps))

    def _check_mmd(self) -> Verdict:
        from sim.checkers import Verdict

        self._hand_out_scts()
        now_ms = self.world.now // 1000
        for a in self.auditors:
            for e in a.peer.auditor.tick(now_ms):
                self.events.append((self.world.now, a.name, e))
        included = [e for _, _, e in self.events if e.kind == SCT_INCLUDED]
        late = [(t, e) for t, _, e in self.events if e.kind == MMD_VIOLATION]
        pending = sum(a.peer.auditor.pending_scts for a in self.auditors)
        mmd_s = self.mmd_us / 1e6
        if self.sct_failures:
            return Verdict("ct_mmd", False, f"{len(self.sct_failures)} SCT problems; first: {self.sct_failures[0]}",
                           checked=self.scts_handed)
        if late:
            t, e = late[0]
            return Verdict("ct_mmd", False, f"{len(late)} SCTs not in a signed tree within the MMD of {mmd_s} s; "
                           f"first: client {e.key_name}: {e.detail}", {"time_us": t}, self.scts_handed)
        if self.scts_handed < len(self.world.requests) // 2:
            return Verdict("ct_mmd", False, f"only {self.scts_handed} SCTs handed out for "
                           f"{len(self.world.requests)} requests", checked=self.scts_handed)
        if pending:
            return Verdict("ct_mmd", False, f"{pending} SCTs still undecided when the run ended (neither in a "
                           f"signed tree nor past the MMD of {mmd_s} s): the run ended too early to check them",
                           checked=self.scts_handed)
        note = (f"; {self.issued_late} issued after max(timestamp, GST) + MMD (consensus latency), timed from "
                "issuance" if self.issued_late else "")
        return Verdict("ct_mmd", True, f"{self.scts_handed} SCTs verified from f+1 validators; {len(included)} "
                       f"included in a signed tree within the MMD of {mmd_s} s{note}", checked=self.scts_handed)

    def _check_split_view(self) -> Verdict:
        from sim.checkers import Verdict

        convicted: dict[str, list[int]] = {}
        for a in self.auditors:
            for key, t in a.convicted.items():
                convicted.setdefault(key, []).append(t)
        for a in self.auditors:
            for key, ev in a.peer.auditor.evidence.items():
                ev.verify()  # raises if an auditor ever accepted bogus evidence
                assert ev.key_name == key
        split_keys = {s.key_name: s for s in self.splits.values()}
        wrongly = sorted(set(convicted) - set(split_keys))
        stats = (f"{self.fetches} checkpoint fetches, {self.gossip_messages} gossip messages, "
                 f"{self.cosignatures} cosignatures")
        if wrongly:
            return Verdict("ct_split_view", False, f"honest key {wrongly[0]} was convicted of a split view; {stats}",
                           {"time_us": min(convicted[wrongly[0]])})
        details = []
        for key, s in sorted(split_keys.items()):
            if s.first_served_us is None:
                return Verdict("ct_split_view", False, f"{key} never served a forked checkpoint (no victim "
                               f"fetched from it); {stats}")
            times = convicted.get(key)
            if not times:
                return Verdict("ct_split_view", False, f"{key}'s split view (first forked checkpoint at "
                               f"{s.first_served_us / 1e6:.3f} s, {s.served} served) was never detected; {stats}",
                               {"time_us": s.first_served_us})
            took = min(times) - s.first_served_us
            if took > self.detect_within_us:
                return Verdict("ct_split_view", False, f"{key}'s split view detected after {took / 1e6:.3f} s, "
                               f"bound {self.detect_within_us / 1e6} s", {"time_us": min(times)})
            details.append(f"{key} convicted {took / 1e6:.3f} s after its first forked checkpoint, by "
                           f"{len(times)}/{len(self.auditors)} auditors")
        if not split_keys:
            return Verdict("ct_split_view", True, f"no validator key convicted; {stats}", checked=self.fetches)
        return Verdict("ct_split_view", True, "; ".join(details) + f"; {stats}", checked=len(split_keys),
                       extra={"convicted": sorted(convicted)})
