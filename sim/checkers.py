"""Checkers run after every simulation: safety (agreement, validity, certified commits) and liveness
(every request completes within the scenario's bound after GST)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.world import World
from trustchain.consensus.messages import Commit, CommittedEntry, Kind, PrePrepare
from trustchain.encoding import decode


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str = ""
    first_violation: dict[str, object] | None = None
    checked: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def honest_nodes(world: World) -> set[str]:
    return {name for name, node in world.nodes.items() if not node.byzantine}


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
    expected = sc.workload.requests
    if undecided and not late:
        return Verdict("liveness", False, f"the run ended at {world.now / 1e6:.1f} s with {undecided} requests "
                       "still inside their bound: too short to judge (raise duration_s)")
    if len(world.requests) < expected:
        return Verdict("liveness", False, f"only {len(world.requests)} of {expected} requests were submitted "
                       f"before the run ended at {world.now / 1e6:.1f} s")
    if late:
        late.sort(key=lambda x: x[0])
        deadline, rec = late[0]
        state = "never completed" if rec.completed_us is None else f"completed at {rec.completed_us / 1e6:.3f} s"
        return Verdict("liveness", False, f"{len(late)} of {len(world.requests)} requests missed the bound of "
                       f"{sc.expect.liveness_bound_s} s after GST; first: {rec.client} #{rec.timestamp} "
                       f"submitted at {rec.submitted_us / 1e6:.3f} s {state}",
                       {"time_us": deadline, "client": rec.client, "timestamp": rec.timestamp})
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


SAFETY_CHECKS = (check_agreement, check_validity, check_certificates, check_invariants, check_ordering,
                 check_durability)
