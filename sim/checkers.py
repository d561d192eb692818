"""Checkers run after every simulation: safety (agreement, validity, certified commits, replicated
state, client history, durable votes) and liveness (every request completes within the scenario's bound
after GST).

The checkers depend on the wire format (`trustchain.consensus.messages`, `trustchain.encoding`) and on
what the world recorded, never on the replica's own quorum or validation code. `EffectRecorder` is fed
every honest replica's effect list by `World.apply`: constant work per effect, 16 bytes kept per vote,
and only the protocol votes a replica sends are decoded (no signature is verified again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.conflicts import check_equivocation, check_persisted_before_sent
from sim.verdict import Verdict as Verdict  # re-exported: checkers and plug-ins import it from here
from trustchain.consensus.effects import Broadcast, Effect, Persist, PersistStable, PersistVote, SendToReplica
from trustchain.consensus.messages import (
    Checkpoint,
    Commit,
    CommittedEntry,
    Envelope,
    Kind,
    PrePrepare,
    digest,
    peek_kind,
    unpack,
)
from trustchain.encoding import DecodeError, decode

if TYPE_CHECKING:
    from sim.world import ExecutionRecord, ReplicaNode, RequestRecord, World


def honest_nodes(world: World) -> set[str]:
    return {name for name, node in world.nodes.items() if not node.byzantine}


def _names(nodes: Iterable[str]) -> str:
    ordered = sorted(nodes, key=lambda n: (len(n), n))
    return ("replica " if len(ordered) == 1 else "replicas ") + ", ".join(ordered)


def _show(result: bytes) -> str:
    return repr(result[:32]) + ("..." if len(result) > 32 else "")


# ---------------------------------------------------------------------------- recorded from effect lists

#: What a replica signs as its own protocol votes: each must be durable before it leaves the replica.
VOTE_KINDS = frozenset({"pre_prepare", "prepare", "commit", "checkpoint", "view_change", "new_view"})


def _vote_key(env: Envelope) -> bytes:
    """One envelope exactly (header, body and signature), in 16 bytes."""
    h = hashlib.blake2b(len(env.body).to_bytes(8, "big"), digest_size=16)
    h.update(env.signing_bytes())
    h.update(env.signature)
    return h.digest()


@dataclass(frozen=True)
class Location:
    """Where something was observed: the replica, the simulated time, and the trace event of the step
    (delivery, timer firing or restart) whose effects showed it."""

    node: str
    time_us: int
    trace_index: int

    def where(self, **more: object) -> dict[str, object]:
        return {"time_us": self.time_us, "trace_index": self.trace_index, "node": self.node, **more}


@dataclass(frozen=True)
class UnpersistedVote:
    at: Location
    kind: str
    envelope: Envelope


class EffectRecorder:
    """What the state-agreement and votes-persisted checkers need from honest replicas' effect lists,
    taken as the world carries them out (`World.apply` hands each list over before performing it).

    - State digests: per checkpoint sequence number, which honest replica holds which state digest:
      the one it announces in the CHECKPOINT message it signs, and the hash, computed here, of the
      snapshot of every stable checkpoint it persists. That a checkpoint's state digest is
      `messages.digest` of the snapshot bytes is a wire-format fact: a STATE-REPLY carries a snapshot
      with its checkpoint proof and the receiver checks one against the other.
    - Votes: the exact envelopes each replica persisted (`PersistVote`; kept across its restarts, as
      its storage is), and every protocol vote it sent that was not among them at that moment.
    """

    def __init__(self) -> None:
        self.state_at: dict[int, dict[bytes, set[str]]] = {}  # seq -> state digest -> replicas holding it
        self.state_conflicts: dict[int, Location] = {}  # seq -> where a second digest first appeared
        self.announced = 0
        self.stable = 0
        self.persisted: dict[str, set[bytes]] = {}
        self.votes_sent = 0
        self.unpersisted: list[UnpersistedVote] = []  # the first per replica, in trace order
        self.unpersisted_count = 0
        self._unpersisted_nodes: set[str] = set()

    def observe(self, node: ReplicaNode, effects: Iterable[Effect], now: int, trace_index: int) -> None:
        persisted = self.persisted.setdefault(node.name, set())
        for e in effects:
            if isinstance(e, Persist):
                record = e.record
                if isinstance(record, PersistVote):
                    persisted.add(_vote_key(record.envelope))
                elif isinstance(record, PersistStable):
                    self.stable += 1
                    self._state(record.seq, digest(record.snapshot), Location(node.name, now, trace_index))
            elif isinstance(e, Broadcast | SendToReplica):
                kind = peek_kind(e.data)
                if kind not in VOTE_KINDS:
                    continue
                try:
                    env = unpack(e.data)
                    if not isinstance(env, Envelope) or env.sender != node.replica_id:
                        continue  # not signed as this replica: nothing it voted
                    cp = decode(Checkpoint, env.body) if kind == "checkpoint" else None
                except DecodeError:
                    continue
                self.votes_sent += 1
                at = Location(node.name, now, trace_index)
                if _vote_key(env) not in persisted:
                    self.unpersisted_count += 1
                    if node.name not in self._unpersisted_nodes:
                        self._unpersisted_nodes.add(node.name)
                        self.unpersisted.append(UnpersistedVote(at, kind, env))
                if cp is not None:
                    self.announced += 1
                    self._state(cp.seq, cp.state_digest, at)

    def _state(self, seq: int, state_digest: bytes, at: Location) -> None:
        held = self.state_at.setdefault(seq, {})
        held.setdefault(state_digest, set()).add(at.node)
        if len(held) > 1 and seq not in self.state_conflicts:
            self.state_conflicts[seq] = at


def check_agreement(world: World) -> Verdict:
    """No two honest replicas execute different batches at the same sequence number, and none
    executes a request twice."""
    honest = honest_nodes(world)
    first_at: dict[int, tuple[tuple[bytes, tuple[bytes, ...]], str]] = {}
    seen_requests: dict[str, set[bytes]] = {}
    checked = 0
    for rec in world.executions:  # in trace order, so the first violation is the earliest
        if rec.node not in honest:
            continue
        checked += 1
        held = first_at.get(rec.seq)
        executed = (rec.batch_digest, rec.request_digests)
        if held is None:
            first_at[rec.seq] = (executed, rec.node)
        elif held[0] != executed:
            what = "batch" if held[0][0] != rec.batch_digest else "requests under the same batch digest"
            return Verdict("agreement", False,
                           f"seq {rec.seq}: replica {rec.node} executed {what} {rec.batch_digest.hex()[:16]} but "
                           f"replica {held[1]} executed {held[0][0].hex()[:16]}",
                           {"time_us": rec.time_us, "trace_index": rec.trace_index, "node": rec.node,
                            "seq": rec.seq}, checked)
        mine = seen_requests.setdefault(rec.node, set())
        for d in rec.request_digests:
            if d in mine:
                return Verdict("agreement", False, f"replica {rec.node} executed request {d.hex()[:16]} twice",
                               {"time_us": rec.time_us, "trace_index": rec.trace_index, "node": rec.node,
                                "seq": rec.seq}, checked)
            mine.add(d)
    return Verdict("agreement", True, f"{len(first_at)} sequence numbers agree across {len(honest)} honest "
                   "replicas", checked=checked)


def check_validity(world: World) -> Verdict:
    """Every request an honest replica executed was sent by a client of the simulation (or by a
    replica's own component through `World.submit_as`, e.g. a threshold signer's finalize)."""
    honest = honest_nodes(world)
    checked = 0
    for rec in world.executions:
        if rec.node not in honest:
            continue
        for d in rec.request_digests:
            checked += 1
            if d not in world.requests and d not in world.side_requests:
                return Verdict("validity", False, f"replica {rec.node} executed request {d.hex()[:16]} that no "
                               "client sent", {"time_us": rec.time_us, "trace_index": rec.trace_index,
                                               "node": rec.node, "seq": rec.seq}, checked)
    return Verdict("validity", True, f"{checked} executed requests were all sent by clients", checked=checked)


def safe_quorum(n: int) -> int:
    """What safety needs, derived here from first principles rather than imported from the replica:
    the fewest votes q such that any two sets of q replicas out of n share at least f+1 replicas
    (so at least one honest one), with f the largest number such that n >= 3f+1."""
    f = max(k for k in range(n) if n >= 3 * k + 1)
    return next(q for q in range(1, n + 1) if 2 * q - n >= f + 1)


def _commit_signers(world: World, cert: CommittedEntry) -> tuple[PrePrepare, set[int]] | str:
    """The pre-prepare of a commit certificate and the distinct replicas whose commit for exactly its
    (view, seq, digest) verifies under their public key; or why the certificate is void."""
    keys = world.config.replicas
    pp_env = cert.pre_prepare
    if pp_env.kind != Kind.PRE_PREPARE or not 0 <= pp_env.sender < len(keys):
        return "the certificate's pre-prepare is not a pre-prepare from a replica"
    if not world.verifier.verify(keys[pp_env.sender], pp_env.signing_bytes(), pp_env.signature):
        return "the pre-prepare's signature does not verify"
    pp = decode(PrePrepare, pp_env.body)
    if pp_env.sender != pp.view % len(keys):
        return f"the pre-prepare for view {pp.view} is signed by replica {pp_env.sender}, not its primary"
    signers: set[int] = set()
    for env in cert.commits:
        if env.kind != Kind.COMMIT or not 0 <= env.sender < len(keys):
            continue
        if not world.verifier.verify(keys[env.sender], env.signing_bytes(), env.signature):
            continue
        vote = decode(Commit, env.body)
        if (vote.view, vote.seq, vote.batch_digest) == (pp.view, pp.seq, pp.batch_digest):
            signers.add(env.sender)
    return pp, signers


def check_certificates(world: World) -> Verdict:
    """Every honest execution is backed by its primary's pre-prepare and by valid commit signatures of
    at least `safe_quorum(n)` distinct replicas, counted here without the production quorum code."""
    honest = honest_nodes(world)
    need = safe_quorum(world.config.n)
    verified: set[tuple[int, bytes]] = set()
    for rec in world.executions:
        if rec.node not in honest:
            continue
        key = (rec.seq, rec.batch_digest)
        if key in verified:
            continue
        where = {"time_us": rec.time_us, "trace_index": rec.trace_index, "node": rec.node, "seq": rec.seq}
        found = _commit_signers(world, rec.event.certificate)
        if isinstance(found, str):
            return Verdict("certificates", False, f"seq {rec.seq} on replica {rec.node}: {found}", where)
        pp, signers = found
        if pp.seq != rec.seq or pp.batch_digest != rec.batch_digest:
            return Verdict("certificates", False, f"seq {rec.seq}: certificate is for another batch", where)
        if len(signers) < need:
            return Verdict("certificates", False, f"seq {rec.seq} on replica {rec.node}: {len(signers)} valid "
                           f"distinct commits, safety needs {need} for n = {world.config.n}", where)
        verified.add(key)
    return Verdict("certificates", True, f"{len(verified)} commit certificates verified, each with at least {need} "
                   f"distinct valid commits (n = {world.config.n})", checked=len(verified))


def check_liveness(world: World) -> Verdict:
    """After GST, with at most f faulty replicas, every request completes within the bound."""
    sc = world.scenario
    bound = round(sc.expect.liveness_bound_s * 1e6)
    gst = world.network.gst_us
    late = []
    undecided = 0
    for rec in world.requests.values():
        deadline = max(rec.submitted_us, gst) + bound
        if rec.completed_us is None and deadline > world.now:
            undecided += 1
        elif rec.completed_us is None or rec.completed_us > deadline:
            late.append((deadline, rec))
    if late:
        late.sort(key=lambda x: x[0])
        deadline, rec = late[0]
        state = "never completed" if rec.completed_us is None else f"completed at {rec.completed_us / 1e6:.3f} s"
        return Verdict("liveness", False, f"{len(late)} of {len(world.requests)} requests missed the bound of "
                       f"{sc.expect.liveness_bound_s} s after GST; first: {rec.client} #{rec.timestamp} "
                       f"submitted at {rec.submitted_us / 1e6:.3f} s {state}",
                       {"time_us": deadline, "client": rec.client, "timestamp": rec.timestamp})
    expected = sc.workload.requests
    if undecided:
        return Verdict("liveness", False, f"the run ended at {world.now / 1e6:.1f} s with {undecided} requests "
                       "still inside their bound: too short to judge (raise duration_s)", inconclusive=True)
    if len(world.requests) < expected:
        return Verdict("liveness", False, f"only {len(world.requests)} of {expected} requests were submitted "
                       f"before the run ended at {world.now / 1e6:.1f} s", inconclusive=True)
    return Verdict("liveness", True, f"all {len(world.requests)} requests completed within "
                   f"{sc.expect.liveness_bound_s} s of max(submission, GST)", checked=len(world.requests))



def _violations(world: World, kind: str, name: str, ok_detail: str) -> Verdict:
    found = [v for v in world.violations if v.kind == kind]
    if not found:
        return Verdict(name, True, ok_detail)
    v = found[0]
    return Verdict(name, False, f"replica {v.node}: {v.detail}" + (f" (and {len(found) - 1} more replicas)"
                                                                     if len(found) > 1 else ""),
                   {"time_us": v.time_us, "trace_index": v.trace_index, "node": v.node})


def check_invariants(world: World) -> Verdict:
    """Every honest replica's state invariants held after every step it took."""
    return _violations(world, "invariants", "invariants", "replica state invariants held after every step")


def check_ordering(world: World) -> Verdict:
    """Every honest replica executed sequence numbers in strictly increasing order."""
    return _violations(world, "ordering", "ordering", "every replica executed in sequence order")


def check_durability(world: World) -> Verdict:
    """No honest replica replied before the execution it reported was persisted."""
    return _violations(world, "durability", "durability", "every reply followed its persisted execution")


def check_state_agreement(world: World) -> Verdict:
    """Replicated state agrees. At every checkpoint sequence number, the honest replicas that announced
    a state digest there or made a checkpoint stable there all hold one digest (stable snapshots are
    hashed here, not taken on the replica's word). At the end of the run, honest replicas that are up
    and executed the same highest sequence number hold byte-identical application snapshots."""
    rec = world.effect_recorder
    checked = rec.announced + rec.stable
    if rec.state_conflicts:
        seq, at = min(rec.state_conflicts.items(), key=lambda item: item[1].trace_index)
        groups = sorted(rec.state_at[seq].items(), key=lambda item: (-len(item[1]), _names(item[1])))
        held = "; ".join(f"{_names(nodes)}: {d.hex()[:16]}" for d, nodes in groups)
        return Verdict("state_agreement", False, f"seq {seq}: honest replicas hold different state digests "
                       f"({held}); the second digest appeared at replica {at.node}", at.where(seq=seq), checked)
    by_seq: dict[int, dict[bytes, list[str]]] = {}
    for name in sorted(honest_nodes(world), key=lambda n: (len(n), n)):
        node = world.nodes[name]
        if not node.up:
            continue  # a crashed process's memory is gone; it recovers from what it persisted
        app_digest = hashlib.sha256(node.replica.app.snapshot()).digest()
        by_seq.setdefault(node.replica.status.last_executed, {}).setdefault(app_digest, []).append(name)
        checked += 1
    for seq, apps in sorted(by_seq.items()):
        if len(apps) > 1:
            ordered = sorted(apps.values(), key=lambda nodes: (-len(nodes), nodes))
            held = "; ".join(_names(nodes) for nodes in ordered)
            return Verdict("state_agreement", False, f"end of run: honest replicas that executed up to seq {seq} "
                           f"hold {len(apps)} different application snapshots ({held})",
                           {"time_us": world.now, "trace_index": world.trace.events - 1, "node": ordered[1][0],
                            "seq": seq}, checked)
    replicas = sum(len(nodes) for apps in by_seq.values() for nodes in apps.values())
    at_end = (f"the {replicas} honest replicas up, all at seq {next(iter(by_seq))}, hold identical application "
              "snapshots" if len(by_seq) == 1 else f"honest replicas up at the same sequence number hold identical "
              f"application snapshots ({replicas} replicas at {len(by_seq)} sequence numbers)")
    return Verdict("state_agreement", True, f"state digests agree at {len(rec.state_at)} checkpoint sequence "
                   f"numbers ({rec.announced} announced, {rec.stable} stable snapshots hashed); at the end, {at_end}",
                   checked=checked)


def check_client_history(world: World) -> Verdict:
    """What clients accepted is what honest replicas executed, exactly once. Every result a client
    accepted (on f+1 matching replies) is the result of the request's one execution on every honest
    replica that executed it, and every honest replica that executed the sequence number where the
    request ran executed it there (one that skipped that number through state transfer is excused).
    No honest replica executes a request, identified by (client, timestamp), twice."""
    honest = honest_nodes(world)
    by_node: dict[str, list[ExecutionRecord]] = {}
    ran_at: dict[tuple[bytes, int], int] = {}  # request -> where an honest replica first executed it
    for rec in world.executions:
        if rec.node in honest:
            by_node.setdefault(rec.node, []).append(rec)
            for req in rec.event.requests:
                ran_at.setdefault((req.client, req.timestamp), rec.seq)
    names = {key: cnode.name for key, cnode in world.clients.items()}
    accepted = {(world.client_names[r.client].client.id, r.timestamp): r
                for r in world.requests.values() if r.result is not None}

    def label(key: tuple[bytes, int]) -> str:
        return f"request {names.get(key[0], 'client ' + key[0].hex()[:8])} #{key[1]}"

    found: list[tuple[int, str, dict[str, object]]] = []  # the earliest problem: (trace index, detail, location)
    count = 0

    def problem(index: int, detail: str, where: dict[str, object]) -> None:
        nonlocal count
        count += 1
        if not found or index < found[0][0]:
            found[:] = [(index, detail, where)]

    def accepted_at(r: RequestRecord, **more: object) -> dict[str, object]:
        return {"time_us": r.completed_us, "trace_index": r.completed_trace_index, "client": r.client,
                "timestamp": r.timestamp, **more}

    for key, r in accepted.items():
        if key not in ran_at:
            problem(r.completed_trace_index, f"{r.client} accepted {_show(r.result or b'')} for {label(key)}, "
                    "which no honest replica executed", accepted_at(r))
    executions = 0
    for name, records in by_node.items():
        seqs: set[int] = set()
        mine: dict[tuple[bytes, int], tuple[bytes, ExecutionRecord]] = {}
        for rec in records:
            seqs.add(rec.seq)
            ev = rec.event
            where = {"time_us": rec.time_us, "trace_index": rec.trace_index, "node": name, "seq": rec.seq}
            if len(ev.results) != len(ev.requests):
                problem(rec.trace_index, f"replica {name} executed {len(ev.requests)} requests at seq {rec.seq} "
                        f"with {len(ev.results)} results", where)
            for req, result in zip(ev.requests, ev.results, strict=False):
                executions += 1
                key = (req.client, req.timestamp)
                held = mine.get(key)
                if held is None:
                    mine[key] = (result, rec)
                else:
                    problem(rec.trace_index, f"replica {name} executed {label(key)} twice: at seq {held[1].seq} "
                            f"and at seq {rec.seq}", where)
        for key, r in accepted.items():
            got = mine.get(key)
            if got is None:
                seq = ran_at.get(key)
                if seq is not None and seq in seqs:
                    problem(r.completed_trace_index, f"{r.client} accepted a result for {label(key)}, executed "
                            f"at seq {seq}, but replica {name} executed seq {seq} without it",
                            accepted_at(r, node=name, seq=seq))
            elif got[0] != r.result:
                ex = got[1]
                detail = (f"{r.client} accepted {_show(r.result or b'')} for {label(key)} but replica {name} "
                          f"executed it at seq {ex.seq} with result {_show(got[0])}")
                if ex.trace_index > r.completed_trace_index:  # the mismatch shows once both have happened
                    problem(ex.trace_index, detail, {"time_us": ex.time_us, "trace_index": ex.trace_index,
                                                     "node": name, "seq": ex.seq})
                else:
                    problem(r.completed_trace_index, detail, accepted_at(r, node=name, seq=ex.seq))
    if found:
        _, detail, where = found[0]
        more = f" (and {count - 1} more)" if count > 1 else ""
        return Verdict("client_history", False, detail + more, where, len(accepted))
    return Verdict("client_history", True, f"{len(accepted)} accepted results each match the one execution of "
                   f"their request on every honest replica; {executions} request executions, none repeated",
                   checked=len(accepted))


def check_votes_persisted(world: World) -> Verdict:
    """Every protocol vote an honest replica signed and sent (pre-prepare, prepare, commit, checkpoint,
    view-change, new-view; broadcast or to one replica) was persisted as that exact envelope earlier in
    the same effect list or in an earlier one, so a restarted replica never contradicts what it sent.
    This judges the order of the replica's own effects, whatever the simulated storage then did with
    the writes (`sim.conflicts.check_persisted_before_sent` judges the synced log at each send)."""
    rec = world.effect_recorder
    if rec.unpersisted:
        first = rec.unpersisted[0]
        msg = first.envelope.open()
        view = getattr(msg, "view", getattr(msg, "new_view", None))
        seq = getattr(msg, "seq", None)
        what = ", ".join(f"{k} {v}" for k, v in (("view", view), ("seq", seq)) if v is not None)
        others = rec.unpersisted_count - 1
        senders = _names(u.at.node for u in rec.unpersisted)
        more = f" ({others} more unpersisted votes, from {senders})" if others else ""
        return Verdict("votes_persisted", False, f"replica {first.at.node} sent its {first.kind.replace('_', '-')} "
                       f"({what}) before persisting it{more}", first.at.where(kind=first.kind), rec.votes_sent)
    return Verdict("votes_persisted", True, f"{rec.votes_sent} protocol votes sent by honest replicas, each "
                   "persisted before it left", checked=rec.votes_sent)


SAFETY_CHECKS = (check_agreement, check_validity, check_certificates, check_invariants, check_ordering,
                 check_durability, check_state_agreement, check_client_history, check_votes_persisted,
                 check_equivocation, check_persisted_before_sent)
