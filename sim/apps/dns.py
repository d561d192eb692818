"""The replicated DNS zones in the simulator: every replica runs `DNSApplication`; the workload sends
random valid updates to a few zones plus a fraction of invalid ones, which every honest replica must
reject identically. Behaviour `dns_forge`: that replica executes honestly (consensus cannot tell) but
serves a forged A record; the checks show validation against the zone's DS catches it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from sim.apps.base import SimApp
from sim.params import PROBABILITY, count
from trustchain.app.interface import Application, ExecutionContext, Operation
from trustchain.dns.app import DNSApplication, create_command, decode_result, update_command
from trustchain.dns.dnssec import SigningPolicy
from trustchain.dns.records import MAX_TTL
from trustchain.dns.validator import Validator, ZoneKeys
from trustchain.dns.zone import AddRecords, DeleteRRset, ReplaceRRset, ZoneUpdate
from trustchain.encoding import DecodeError

if TYPE_CHECKING:
    from sim.checkers import Verdict
    from sim.world import World

FORGED_A = "203.0.113.66"
GENESIS_US = 0


class _RecordingDNSApplication(DNSApplication):
    """Remembers the state digest after every executed sequence number, so checks can compare
    replicas at the same point of the history even if they end at different points."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.digests: dict[int, bytes] = {}

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        results = super().execute(operations, context)
        self.digests[context.seq] = self.digest()
        return results


class ForgingDNSApplication(_RecordingDNSApplication):
    """A Byzantine replica's application: correct state, forged answers (every A record it serves
    points at the attacker, with the genuine RRSIG left in place)."""

    forged_answers = 0

    def answer(self, query_wire: bytes, now: int, *, max_udp: int | None, client: str = "") -> bytes:
        wire = super().answer(query_wire, now, max_udp=max_udp, client=client)
        try:
            msg = dns.message.from_wire(wire)
        except Exception:
            return wire
        forged = False
        for rrset in msg.answer:
            if rrset.rdtype == dns.rdatatype.A:
                ttl = rrset.ttl
                rrset.clear()  # type: ignore[no-untyped-call]  # dnspython leaves Set.clear unannotated
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, FORGED_A), ttl)
                forged = True
        if not forged:
            return wire
        self.forged_answers += 1
        return msg.to_wire(want_shuffle=False)


class DNSSimApp(SimApp):
    """Params: zones (3), names per zone (10), invalid_fraction (0.08), signing refresh_s (20) and
    validity_s (300) so a run crosses several signing epochs, clock_offset_s (consensus time base)."""

    name = "dns"
    behaviours = ("dns_forge",)
    param_types = {"zones": count(1), "names": count(1), "invalid_fraction": PROBABILITY, "validity_s": count(1),
                   "refresh_s": count(1), "clock_offset_s": count()}

    @classmethod
    def check_params(cls, params: dict[str, Any], n: int) -> tuple[str, str] | None:
        validity, refresh = params.get("validity_s", 300), params.get("refresh_s", 20)
        if validity <= 2 * refresh:
            return "validity_s", f"must be more than twice refresh_s ({refresh}), got {validity}"
        return None

    def __init__(self, params: dict[str, Any], world: World, rng: random.Random) -> None:
        super().__init__(params, world, rng)
        self.master_seed = hashlib.sha256(b"sim/dns/" + str(world.seed).encode()).digest()
        self.origins = [f"z{i}.sim.example." for i in range(int(params.get("zones", 3)))]
        self.names = [f"h{i}" for i in range(int(params.get("names", 10)))]
        self.invalid_fraction = float(params.get("invalid_fraction", 0.08))
        self.policy = SigningPolicy(validity=int(params.get("validity_s", 300)),
                                    refresh=int(params.get("refresh_s", 20)), skew=5)
        self.clock_offset_s = int(params.get("clock_offset_s", 1_700_000_000))
        self.forgers = {b.node for b in world.scenario.byzantine if "dns_forge" in b.behaviours}
        self.invalid: set[bytes] = set()
        self.sent = 0

    def create_application(self, replica_id: int) -> Application:
        cls = ForgingDNSApplication if replica_id in self.forgers else _RecordingDNSApplication
        app = cls(self.master_seed, self.policy, self.clock_offset_s)
        app.execute([Operation(b"genesis", i, p) for i, p in enumerate(self._genesis())],
                    ExecutionContext(0, GENESIS_US))
        return app

    def _genesis(self) -> list[bytes]:
        out = []
        for origin in self.origins:
            out.append(create_command(origin, primary_ns="ns1", admin="hostmaster", nameservers=["ns1"]))
            out.append(update_command(ZoneUpdate(origin, (AddRecords("ns1", "A", 300, ("192.0.2.53",)),
                                                         AddRecords("www", "A", 300, ("192.0.2.80",))))))
        return out

    # --- workload -----------------------------------------------------------------------------------

    def next_operation(self, client: int) -> bytes:
        self.sent += 1
        rng = self.rng
        origin = rng.choice(self.origins)
        if rng.random() < self.invalid_fraction:
            payload = self._invalid(origin)
            self.invalid.add(payload)
            return payload
        name = rng.choice(self.names)
        kind = rng.random()
        if kind < 0.4:
            op: Any = AddRecords(name, "A", 300, (f"198.51.100.{rng.randrange(1, 255)}",))
        elif kind < 0.65:
            op = ReplaceRRset(name, "AAAA", 120, (f"2001:db8::{rng.randrange(1, 0xffff):x}",))
        elif kind < 0.9:
            op = ReplaceRRset(name, "TXT", 60, (f'"v={rng.randrange(10**6)}"',))
        else:
            op = DeleteRRset(name, rng.choice(("A", "AAAA", "TXT")))
        return update_command(ZoneUpdate(origin, (op,)))

    def _invalid(self, origin: str) -> bytes:
        n = self.rng.randrange(1_000_000)
        bad: list[Any] = [
            AddRecords(f"h{n}", "A", 300, (f"300.0.0.{n % 200}",)),  # bad IPv4 address
            AddRecords("@", "CNAME", 300, ("www",)),  # CNAME beside the apex SOA/NS
            ReplaceRRset(f"h{n}", "A", MAX_TTL + 1 + n, ("192.0.2.1",)),  # TTL beyond 31 bits
            AddRecords(f"h{n}", "SOA", 300, ("x",)),  # SOA is not updatable
        ]
        choice = self.rng.randrange(len(bad) + 1)
        if choice == len(bad):
            return update_command(ZoneUpdate(f"unknown{n}.example.", (AddRecords("a", "A", 1, ("192.0.2.1",)),)))
        return update_command(ZoneUpdate(origin, (AddRecords(f"ok{n}", "A", 300, ("192.0.2.2",)), bad[choice])))

    # --- checks -------------------------------------------------------------------------------------

    def _honest_apps(self) -> dict[str, _RecordingDNSApplication]:
        out = {}
        for name, node in self.world.nodes.items():
            app = node.replica.app
            if not node.byzantine and isinstance(app, _RecordingDNSApplication):
                out[name] = app
        return out

    def checks(self) -> list[Verdict]:
        return [self._check_results(), self._check_state(), self._check_answers(), self._check_forgery()]

    def _check_results(self) -> Verdict:
        """Every honest execution: invalid updates rejected (error), valid ones applied (ok), and the
        results for one sequence number identical on every honest replica."""
        from sim.checkers import Verdict, honest_nodes

        honest = honest_nodes(self.world)
        by_seq: dict[int, tuple[str, bytes]] = {}
        rejected = accepted = 0
        for rec in self.world.executions:
            if rec.node not in honest:
                continue
            ev = rec.event
            digest = hashlib.sha256(b"\0".join(ev.results)).digest()
            held = by_seq.setdefault(rec.seq, (rec.node, digest))
            if held[1] != digest:
                return Verdict("dns_results", False, f"seq {rec.seq}: results on {rec.node} differ from {held[0]}")
            for req, raw in zip(ev.requests, ev.results, strict=True):
                invalid = req.operation in self.invalid
                try:
                    result = decode_result(raw)
                except DecodeError as exc:
                    return Verdict("dns_results", False, f"replica {rec.node} at seq {rec.seq}: {exc}")
                if invalid == result.ok:
                    what = "accepted an invalid" if invalid else "rejected a valid"
                    return Verdict("dns_results", False, f"replica {rec.node} {what} update at seq {rec.seq}: "
                                   f"{result.status} {result.detail[:120]!r}")
                rejected += invalid
                accepted += not invalid
        return Verdict("dns_results", True, f"{accepted} valid updates applied and {rejected} invalid ones rejected "
                       f"identically over {len(by_seq)} sequence numbers", checked=accepted + rejected,
                       extra={"rejected": rejected, "accepted": accepted})

    def _check_state(self) -> Verdict:
        from sim.checkers import Verdict

        apps = self._honest_apps()
        seen: dict[int, tuple[str, bytes]] = {}
        checked = 0
        for name, app in sorted(apps.items()):
            for seq, digest in app.digests.items():
                held = seen.setdefault(seq, (name, digest))
                checked += 1
                if held[1] != digest:
                    return Verdict("dns_zone_digests", False,
                                   f"seq {seq}: zone digest on {name} differs from {held[0]}")
        resigns = max((a.resigns for a in apps.values()), default=0)
        return Verdict("dns_zone_digests", True, f"zone digests agree at {len(seen)} sequence numbers across "
                       f"{len(apps)} honest replicas; {resigns} epoch re-signs", checked=checked,
                       extra={"resigns": resigns})

    def _queries(self) -> list[bytes]:
        out = []
        for i, origin in enumerate(self.origins):
            for qname, qtype in ((origin, "SOA"), (origin, "DNSKEY"), (f"www.{origin}", "A"),
                                 (f"nope.{origin}", "A"), *((f"{n}.{origin}", t) for n in self.names[:4]
                                                             for t in ("A", "AAAA", "TXT"))):
                q = dns.message.make_query(qname, qtype, want_dnssec=True)
                q.id = i + 1
                out.append(q.to_wire())
        return out

    def _now_s(self) -> int:
        return self.world.now // 1_000_000 + self.clock_offset_s

    def _check_answers(self) -> Verdict:
        """Honest replicas at the same point of the log serve byte-identical signed answers."""
        from sim.checkers import Verdict

        apps = self._honest_apps()
        if not apps:
            return Verdict("dns_answers", False, "no honest replica")
        latest = max(self.world.nodes[n].replica.status.last_executed for n in apps)
        group = sorted(n for n in apps if self.world.nodes[n].replica.status.last_executed == latest)
        queries, now = self._queries(), self._now_s()
        reference = [apps[group[0]].answer(q, now, max_udp=None) for q in queries]
        for name in group[1:]:
            for q, ref in zip(queries, reference, strict=True):
                if apps[name].answer(q, now, max_udp=None) != ref:
                    qmsg = dns.message.from_wire(q)
                    return Verdict("dns_answers", False, f"replica {name} answers {qmsg.question[0]} differently "
                                   f"from replica {group[0]} at seq {latest}")
        ok = len(group) >= 2
        return Verdict("dns_answers", ok, f"{len(group)} honest replicas at seq {latest} serve identical answers "
                       f"to {len(queries)} queries", checked=len(group) * len(queries))

    def _validate_at(self, app: DNSApplication, origin: str, now: int) -> tuple[bool, str]:
        name = dns.name.from_text(origin)
        q = dns.message.make_query(name, "DNSKEY", want_dnssec=True)
        keys = dns.message.from_wire(app.answer(q.to_wire(), now, max_udp=None))
        dnskey = keys.get_rrset(keys.answer, name, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        sigs = keys.get_rrset(keys.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
        if dnskey is None:
            return False, "no DNSKEY"
        q = dns.message.make_query(f"www.{origin}", "A", want_dnssec=True)
        response = dns.message.from_wire(app.answer(q.to_wire(), now, max_udp=None))
        result = Validator(app.ds(origin)).validate(response, [ZoneKeys(dnskey, sigs)], now)
        return result.secure, result.detail

    def _check_forgery(self) -> Verdict:
        """Answers of honest replicas validate against each zone's DS; the forger's do not."""
        from sim.checkers import Verdict

        now = self._now_s()
        checked = 0
        for name, app in sorted(self._honest_apps().items()):
            for origin in self.origins:
                ok, detail = self._validate_at(app, origin, now)
                checked += 1
                if not ok:
                    return Verdict("dns_forgery", False, f"honest replica {name}: www.{origin} fails: {detail}")
        caught = []
        for rid in sorted(self.forgers):
            forger_app = self.world.nodes[str(rid)].replica.app
            assert isinstance(forger_app, DNSApplication)
            for origin in self.origins:
                ok, detail = self._validate_at(forger_app, origin, now)
                checked += 1
                if ok:
                    return Verdict("dns_forgery", False, f"forged answer of replica {rid} for www.{origin} validated")
                caught.append(detail)
        return Verdict("dns_forgery", True, f"honest answers validate; {len(caught)} forged answers rejected"
                       + (f" ({caught[0]})" if caught else ""), checked=checked, extra={"forged_rejected": len(caught)})


__all__ = ["DNSSimApp", "ForgingDNSApplication"]
