"""Judging a run of a changing validator set, without the production quorum or FROST code.

The fault bound and quorum are recomputed here by brute force from their definitions (the largest f
with 3f < n; the smallest q such that any two q-subsets of n share more than f members), and
signatures are verified with `cryptography`'s Ed25519, not with `trustchain.ca.frost`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sim.reconfig.world import ReconfigWorld
from trustchain.authorization.validator_votes import STATUS_EXECUTED, STATUS_RECORDED
from trustchain.ca import frost
from trustchain.errors import TrustChainError

__all__ = ["Check", "check_all", "independent_fault_bound", "independent_quorum"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def independent_fault_bound(n: int) -> int:
    return max(f for f in range(n + 1) if 3 * f < n)


def independent_quorum(n: int) -> int:
    """Smallest q with every two q-subsets of n sharing at least f+1 members (pigeonhole: 2q - n)."""
    f = independent_fault_bound(n)
    return next(q for q in range(1, n + 1) if 2 * q - n >= f + 1)


def _safety(w: ReconfigWorld) -> Check:
    at: dict[int, set[bytes]] = defaultdict(set)
    for _, seq, d in w.executed:
        at[seq].add(d)
    split = sorted(s for s, ds in at.items() if len(ds) > 1)
    first = f" (first {split[0]})" if split else ""
    return Check("safety", not split, f"{len(at)} sequence numbers executed by honest validators, "
                                      f"{len(split)} with two different batches{first}")


def _boundaries(w: ReconfigWorld) -> Check:
    seen: dict[int, set[tuple[int, tuple[bytes, ...]]]] = defaultdict(set)
    for _, epoch, base, keys, _ in w.switches:
        seen[epoch].add((base, keys))
    bad = [e for e, v in seen.items() if len(v) > 1]
    bases = {e: next(iter(v))[0] for e, v in sorted(seen.items())}
    return Check("boundary", not bad and len(bases) == len(w.sc.changes) + 1,
                 f"epochs and the sequence each starts after: {bases}; every honest validator agrees" if not bad
                 else f"epochs {bad} started at different sequence numbers or sets")


def _authorization(w: ReconfigWorld) -> Check:
    """Each change ran only after votes from a quorum of the set it changed."""
    sizes = {epoch: len(keys) for _, epoch, _, keys, _ in w.switches}
    voters: dict[bytes, set[bytes]] = defaultdict(set)
    passed = []
    for _, voter, result in w.vote_log:
        if result.status in (STATUS_RECORDED, STATUS_EXECUTED):
            voters[result.digest].add(voter)
        if result.status == STATUS_EXECUTED:
            passed.append(result.digest)
    problems = []
    for epoch, d in enumerate(passed):
        n = sizes.get(epoch)
        if n is None or len(voters[d]) < independent_quorum(n):
            problems.append(f"change {epoch + 1}: {len(voters[d])} voters at n = {n}")
    ok = not problems and len(passed) == len(w.sc.changes)
    return Check("authorization", ok, "; ".join(problems) or
                 f"{len(passed)} changes, each after votes from a quorum of the set it changed "
                 f"({', '.join(str(len(voters[d])) for d in passed)} voters)")


def _liveness(w: ReconfigWorld) -> Check:
    done = len(w.latencies)
    last_switch = max(w.switch_at, default=0)
    slow = [c - s for s, c in w.latencies if s >= last_switch and (c - s) > w.sc.liveness_bound_s * 1e6]
    after = sum(1 for s, _ in w.latencies if s >= last_switch)
    final = max(e for _, e, *_ in w.switches)
    members = {sid for sid, e, _, _, m in w.switches if e == final and m}
    honest_final = [n for n in w.nodes if not n.byzantine and n.sid in members]
    progress = [n.er.replica.status.last_executed if n.er and n.er.replica else -1 for n in honest_final]
    converged = bool(progress) and max(progress) - min(progress) <= w.sc.checkpoint_interval
    ok = done == w.submitted and not slow and converged
    return Check("liveness", ok, f"{done}/{w.submitted} requests completed, {after} submitted after the last "
                                 f"switch, {len(slow)} over {w.sc.liveness_bound_s:g} s; final set's honest "
                                 f"validators executed up to {progress}")


def _certificates(w: ReconfigWorld) -> Check:
    key = Ed25519PublicKey.from_public_bytes(w.group_key)
    bad = 0
    for cert in w.certificates:
        try:
            key.verify(cert.signature, cert.message)
        except InvalidSignature:
            bad += 1
    epochs = sorted({c.epoch for c in w.certificates})
    final = max(e for _, e, *_ in w.switches)
    ok = bad == 0 and final in epochs
    return Check("certificates", ok, f"{len(w.certificates)} certificates signed by the groups of epochs {epochs}, "
                                     f"{bad} not verifying under the genesis group key")


def _retired_shares(w: ReconfigWorld) -> Check:
    """A validator's share from before a re-sharing, with enough current shares to make up the
    threshold, yields no signature that verifies under the group key."""
    key = Ed25519PublicKey.from_public_bytes(w.group_key)
    ref = w.nodes[w.reference()]
    group = ref.app.group
    current = {n.key_package.identifier: n.key_package for n in w.nodes
               if not n.byzantine and n.key_package is not None and n.key_epoch == group.epoch}
    tried = 0
    forged = 0
    # Shares erased at a re-sharing (as the simulator keeps them to try), and shares a removed validator
    # never replaced because it left before the re-sharing completed.
    kept = [(n.key_epoch, n.key_package) for n in w.nodes if n.key_package is not None and n.key_epoch < group.epoch]
    for epoch, old in [*w.retired_packages.values(), *kept]:
        if epoch == group.epoch:
            continue
        others = {i: k for i, k in current.items() if i != old.identifier}
        if len(others) < group.threshold - 1:
            continue
        chosen = dict(sorted(others.items())[:group.threshold - 1])
        chosen[old.identifier] = old
        tried += 1
        msg = b"signed with a retired share"
        try:
            sig = frost.sign_with_quorum(chosen, group.public(), msg, w.rng.randbytes)
            key.verify(sig, msg)
            forged += 1
        except (TrustChainError, InvalidSignature):
            pass
    return Check("retired shares", tried > 0 and forged == 0,
                 f"{tried} retired shares combined with current ones, {forged} signatures verified")


def check_all(w: ReconfigWorld) -> list[Check]:
    return [_safety(w), _boundaries(w), _authorization(w), _liveness(w), _certificates(w), _retired_shares(w)]
