"""Ground-truth checks of outside-name validation (sim/apps/outside.py).

Every expected value comes from what the workload knows to be true (who controls which outside name,
who published which TXT record, what each validator's observer ordered) and from the cluster size:
f = floor((n-1)/3) and the quorum q = ceil((n+f+1)/2), computed here, not read from the production
code. The checks are strict whatever the number of faulty views: with at most f lying or poisoned
validators they must pass; with more, they are what reports the damage.

* ``outside_safety``: no name is validated for, and no outside zone owned by, an account other than
  the one that controls the name and published the validation's record.
* ``outside_liveness``: every honestly published name ends validated for its controller.
* ``outside_votes``: every replicated vote is what that validator's observer ordered, and every state
  agrees with its votes: validated with at least q yes, failed with more than n-q no or past its time
  to live, open with neither.
* ``outside_attacks``: every attack was refused and every honest step succeeded (the clients' results).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from sim.outside_dns import LYING, POISONED
from sim.verdict import Verdict
from trustchain.accounts import ACCOUNTS, AccountResult
from trustchain.app import kvstore, validation
from trustchain.app import trustchain as tcapp
from trustchain.app.gate import OBSERVE
from trustchain.app.validation import VALIDATE
from trustchain.authorization.observations import FAILED, OPEN, VALIDATED
from trustchain.dns import app as dnsapp
from trustchain.encoding import decode

if TYPE_CHECKING:
    from sim.apps.outside import OutsideDNSSimApp

__all__ = ["outside_checks", "step_ok", "thresholds"]

OUTSIDE_SUFFIX = ".test."


def thresholds(n: int) -> tuple[int, int]:
    """(f, q): the faults n validators tolerate and the smallest q with 2q - n >= f + 1."""
    f = (n - 1) // 3
    return f, (n + f + 2) // 2


def outside_checks(app: OutsideDNSSimApp) -> list[Verdict]:
    return [_safety(app), _liveness(app), _votes(app), _attacks(app)]


def _faulty(app: OutsideDNSSimApp) -> str:
    """The validators whose view is not the truth, against f: the condition of the guarantees."""
    n = app.world.config.n
    f, q = thresholds(n)
    views = {v: app.dns.perspective(v) for v in range(n)}
    lying = sorted(v for v, p in views.items() if p == LYING)
    poisoned = sorted(v for v, p in views.items() if p == POISONED)
    down = {node.replica_id for node in app.world.nodes.values() if not node.up}
    others = sorted((app.world.byzantine_ids | down) - set(lying) - set(poisoned))
    total = len(set(lying) | set(poisoned) | set(others))
    return (f"n={n} f={f} q={q}; lying {lying or '-'}, poisoned {poisoned or '-'}, other faulty {others or '-'}: "
            f"{total} faulty ({'within' if total <= f else 'BEYOND'} f)")


def _apps(app: OutsideDNSSimApp) -> dict[str, tcapp.TrustChainApplication]:
    return app.honest_replica_apps(tcapp.TrustChainApplication)


def _safety(app: OutsideDNSSimApp) -> Verdict:
    validated = zones = 0
    for node, tapp in _apps(app).items():
        for r in tapp.validation.validations.snapshot().items:
            if r.state != VALIDATED:
                continue
            validated += 1
            controller = app.dns.controllers.get(r.name)
            publisher = app.dns.publisher(r.record_name, r.expected)
            if controller != r.account or publisher != r.account:
                return Verdict("outside_safety", False, (
                    f"replica {node}: {r.name} validated (validation {r.validation_id}) for account "
                    f"{r.account.hex()[:16]}, which {'controls' if controller == r.account else 'does not control'} "
                    f"it and {'published' if publisher == r.account else 'never published'} the record; "
                    f"{_faulty(app)}"), checked=validated)
        for origin, owner in tapp.dns.owners.items():
            text = origin.to_text()
            if not text.endswith(OUTSIDE_SUFFIX):
                continue
            zones += 1
            if app.dns.controllers.get(text[:-1]) != owner:
                return Verdict("outside_safety", False, f"replica {node}: outside zone {text} owned by "
                               f"{owner.hex()[:16]}, which does not control it; {_faulty(app)}", checked=zones)
    return Verdict("outside_safety", True, f"{validated} validated names and {zones} outside zones on "
                   f"{len(_apps(app))} honest replicas, each its controller's; {_faulty(app)}",
                   checked=validated + zones)


def _liveness(app: OutsideDNSSimApp) -> Verdict:
    done: set[tuple[bytes, str]] = set()
    for tapp in _apps(app).values():
        done |= {(r.account, r.name) for r in tapp.validation.validations.snapshot().items if r.state == VALIDATED}
    attempts: Counter[int] = Counter()
    missing: list[str] = []
    pending: list[str] = []
    owned = sorted(app.dns.controllers.items())
    for name, account in owned:
        plan = next(p for p in app.plans.values() if p.account == account)
        tries = plan.attempts.get(name, 0)
        if (account, name) in done:
            attempts[tries] += 1
        elif tries >= app.max_attempts and (plan.current is None or plan.current.name != name):
            missing.append(f"{name} ({tries} attempts)")
        else:
            pending.append(f"{name} ({tries} attempts, run ended first)")
    spread = ", ".join(f"{k} attempt{'s' if k > 1 else ''}: {v}" for k, v in sorted(attempts.items()))
    detail = f"{sum(attempts.values())}/{len(owned)} honestly published names validated ({spread or 'none'})"
    if missing or pending:
        return Verdict("outside_liveness", False, f"{detail}; not validated: {', '.join(missing + pending)}; "
                       f"{_faulty(app)}", checked=len(owned), inconclusive=not missing)
    return Verdict("outside_liveness", len(owned) > 0, f"{detail}; {_faulty(app)}", checked=len(owned))


def _votes(app: OutsideDNSSimApp) -> Verdict:
    n = app.world.config.n
    f, q = thresholds(n)
    ttl = app.limits.open_ttl_us
    votes = expired = decided = 0
    for node, tapp in _apps(app).items():
        for r in tapp.validation.validations.snapshot().items:
            for v in r.votes:
                votes += 1
                ordered = app.submitted.get((v.validator, r.validation_id))
                if ordered is None or ordered != v.seen:
                    return Verdict("outside_votes", False, (
                        f"replica {node}: validation {r.validation_id} holds validator {v.validator}'s vote "
                        f"{v.seen}, but it ordered {'nothing' if ordered is None else ordered}"), checked=votes)
            yes = sum(1 for v in r.votes if v.seen)
            no = len(r.votes) - yes
            if r.state == FAILED and no <= n - q:
                expired += 1
            problem = (
                "validated with fewer than q yes votes" if r.state == VALIDATED and yes < q else
                "failed with neither n-q+1 no votes nor its time to live over" if (
                    r.state == FAILED and no <= n - q and r.decided_us - r.opened_us <= ttl) else
                "still open with a deciding set of votes" if r.state == OPEN and (yes >= q or no > n - q) else
                "decided before its account said ready" if r.state != OPEN and r.votes and not r.ready else None)
            decided += r.state != OPEN
            if problem is not None:
                return Verdict("outside_votes", False, f"replica {node}: validation {r.validation_id} {problem} "
                               f"({yes} yes, {no} no; n={n} f={f} q={q})", checked=votes)
    if not app.expiry_counted:  # the explorer's coverage of the expiry path (once, however often checked)
        app.expiry_counted = True
        app.world.coverage["validation_expire"] += expired
    withheld = len(app.withheld)
    return Verdict("outside_votes", True, (
        f"{votes} replicated votes each as its validator ordered it ({len(app.submitted)} observations "
        f"ordered, {withheld} withheld, {app.retransmits} retransmitted); {decided} decided states agree "
        f"with q={q} of n={n} ({expired} expired)"), checked=votes)


def step_ok(result: bytes, target: str) -> bool:
    """Whether an accepted result is a success of the sub-application addressed (a write-gate refusal,
    `RouteError`, is not)."""
    decoders: dict[str, Any] = {VALIDATE: validation.decode_result, OBSERVE: validation.decode_result,
                                tcapp.DNS: dnsapp.decode_result, tcapp.KV: kvstore.decode_result,
                                ACCOUNTS: lambda data: decode(AccountResult, data)}
    try:
        res = tcapp.decode_routed(result, decoders[target])
    except tcapp.MalformedResult:
        return False
    return not isinstance(res, tcapp.RouteError) and bool(res.ok)


def _attacks(app: OutsideDNSSimApp) -> Verdict:
    by_client: dict[str, list[bytes | None]] = {}
    for rec in sorted(app.world.requests.values(), key=lambda r: (r.client, r.timestamp)):
        by_client.setdefault(rec.client, []).append(rec.result)
    kinds: Counter[str] = Counter()
    attacks: Counter[str] = Counter()
    for c, steps in sorted(app.steps_of.items()):
        for step, result in zip(steps, by_client.get(f"c{c}", []), strict=False):
            if result is None or step.expect_ok is None:
                continue
            ok = step_ok(result, step.target)
            if ok != step.expect_ok:
                outcome = "succeeded" if ok else "was refused"
                return Verdict("outside_attacks", False, f"client {c}: {step.kind} {outcome}; {_faulty(app)}",
                               checked=sum(kinds.values()))
            side, what = step.kind.split(":")
            kinds[side] += 1
            if side == "attack":
                attacks[what] += 1
    spread = ", ".join(f"{k} {v}" for k, v in sorted(attacks.items()))
    return Verdict("outside_attacks", kinds["attack"] > 0 or app.attackers == 0,
                   f"{kinds['attack']} attacks refused ({spread or 'none'}), {kinds['honest']} honest and "
                   f"{kinds['setup']} setup steps succeeded", checked=sum(kinds.values()))
