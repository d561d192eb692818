"""The whole TrustChain application under attack by its own clients: accounts, zones, certificates.

Every replica runs `TrustChainApplication`, so every operation passes the same write gate, account
registry, zone policy and CA checks as on a real node. Workload client c is the account of a key derived
from the world seed. An honest client registers, creates its zone ``acct<c>.example.`` (``example`` is a
namespace the cluster is the registry of), asks the CA for a dns-01 challenge for ``www.acct<c>.example``,
publishes the TXT record in its own zone and requests the certificate, then writes key-value data under
``k/<c>/``. The first ``attackers`` clients (default 1) are Mallory: after registering they try, in a
seeded random order, every way to take what is not theirs (rewrite another client's zone, create a zone
inside it, create the root, a TLD or a public suffix, request a certificate for another client's name,
overwrite its key-value data, replay one of its signed writes, sign in its name with their own key, order
a validator-only operation).

Checks (each computed from the workload's own ground truth, never from the production rules):
``authz_zones`` (every zone an honest replica holds is owned by the client that created it, and Mallory
owns nothing but her own), ``authz_certificates`` (every certificate request any honest replica approved
names only zones of the requesting account), ``authz_kv`` (every key belongs to its writer) and
``authz_attacks`` (every attack was refused, every honest step succeeded, on the clients' own results).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from sim.apps.base import SimApp
from sim.params import count
from sim.verdict import Verdict
from trustchain.accounts import ACCOUNTS, AccountResult, Ed25519AccountSigner, account_id, sign_write
from trustchain.app import kvstore
from trustchain.app import trustchain as tcapp
from trustchain.app.gate import SIGNED
from trustchain.app.interface import Application
from trustchain.ca import commands as cacommands
from trustchain.ca import ownership
from trustchain.ca import x509 as cax509
from trustchain.ca.policy import CAPolicy
from trustchain.ca.records import AwaitingSerial
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, ZoneUpdate
from trustchain.encoding import decode, encode

if TYPE_CHECKING:
    from sim.world import World

CLUSTER = b"trustchain-sim/authz"
SUFFIX = "example"
CLOCK_OFFSET_S = 1_700_000_000  # RRSIG times are seconds since the epoch; the simulator starts at 0
ATTACKS = ("rewrite_zone", "zone_inside", "root", "tld", "public_suffix", "certificate", "kv_overwrite",
           "replay", "forge", "validator_op")


@dataclass
class _Step:
    kind: str  # "honest:<what>" or "attack:<what>"
    expect_ok: bool


def _zone(c: int) -> str:
    return f"acct{c}.{SUFFIX}."


def _create(origin: str) -> bytes:
    ns = f"ns1.{SUFFIX}.net."
    return dnsapp.create_command(origin, primary_ns=ns, admin=f"hostmaster.{SUFFIX}.net.", nameservers=[ns])


class AuthzSimApp(SimApp):
    name = "authz"
    param_types = {"attackers": count(0)}

    def __init__(self, params: dict[str, Any], world: World, rng: random.Random) -> None:
        super().__init__(params, world, rng)
        self.attackers = int(params.get("attackers", 1))
        self.steps: dict[int, list[_Step]] = {}
        self.sent: dict[int, list[bytes]] = {}  # every operation each client sent, for replays
        self.signers: dict[int, Ed25519AccountSigner] = {}
        self.nonces: dict[int, int] = {}
        keys = tuple(s.public_key for s in world.signers)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sim Authz CA")])
        profile = cax509.IssuerProfile(name, b"\x01" * 32, "http://crl.sim/i.crl", "http://ocsp.sim/",
                                       "http://certs.sim/i.der")
        self.policy = CAPolicy(issuer=profile, ca_domain="ca.sim", require_payment=False, validator_keys=keys)
        self.validator_keys = keys

    # ------------------------------------------------------------------ application

    def create_application(self, replica_id: int) -> Application:
        return tcapp.TrustChainApplication(
            self.policy, hashlib.sha256(b"authz-dns").digest(), self.world.signers[replica_id], f"v{replica_id}",
            "sim.example/authz", cluster=CLUSTER, validator_keys=self.validator_keys,
            dns_clock_offset_s=CLOCK_OFFSET_S, registry_suffixes=(SUFFIX,))

    # ------------------------------------------------------------------ workload

    def _signer(self, c: int) -> Ed25519AccountSigner:
        if c not in self.signers:
            self.signers[c] = Ed25519AccountSigner(hashlib.sha256(f"authz/{self.world.seed}/{c}".encode()).digest())
        return self.signers[c]

    def _write(self, c: int, target: str, payload: bytes, *, as_account: bytes | None = None) -> bytes:
        self.nonces[c] = self.nonces.get(c, 0) + 1
        signer = self._signer(c)
        nonce = hashlib.sha256(b"%d/%d" % (c, self.nonces[c])).digest()[:16]
        deadline = self.world.now + 300_000_000
        account = as_account if as_account is not None else account_id(signer.key)
        write = sign_write(signer, account, CLUSTER, target, payload, nonce=nonce, deadline_us=deadline)
        return encode(tcapp.Routed(SIGNED, encode(write)))

    def _register(self, c: int) -> bytes:
        self.nonces[c] = self.nonces.get(c, 0) + 1
        nonce = hashlib.sha256(b"%d/%d" % (c, self.nonces[c])).digest()[:16]
        return tcapp.registration_operation(self._signer(c), CLUSTER, nonce=nonce,
                                            deadline_us=self.world.now + 300_000_000)

    def next_operation(self, client: int) -> bytes:
        steps = self.steps.setdefault(client, [])
        op, step = (self._attack(client, len(steps)) if client < self.attackers
                    else self._honest(client, len(steps)))
        steps.append(step)
        self.sent.setdefault(client, []).append(op)
        return op

    def _honest(self, c: int, i: int) -> tuple[bytes, _Step]:
        zone = _zone(c)
        if i == 0:
            return self._register(c), _Step("honest:register", True)
        if i == 1:
            return self._write(c, tcapp.DNS, _create(zone)), _Step("honest:create_zone", True)
        if i == 2:
            return self._write(c, tcapp.CA, cacommands.challenge_command([f"www.{zone[:-1]}"])), \
                _Step("honest:challenge", True)
        if i == 3:
            proof = self._proof(c)
            update = ZoneUpdate(zone, (AddRecords(f"_acme-challenge.www.{zone}", "TXT", 60,
                                                  (f'"{ownership.dns01_txt(proof)}"',)),))
            return self._write(c, tcapp.DNS, dnsapp.update_command(update)), _Step("honest:publish", True)
        if i == 4:
            proof = self._proof(c)
            request = cacommands.IssueRequest(self._csr(c, f"www.{zone[:-1]}"), (f"www.{zone[:-1]}",), (proof,),
                                              "sim", "", 0)
            return self._write(c, tcapp.CA, cacommands.request_command(request)), _Step("honest:request", True)
        key = b"k/%d/%d" % (c, self.rng.randrange(8))
        return self._write(c, tcapp.KV, kvstore.put(key, self.rng.randbytes(16))), _Step("honest:kv", True)

    def _proof(self, c: int) -> str:
        """The key authorization of client c's challenge, read back from an honest replica (its result)."""
        account = account_id(self._signer(c).key)
        name = f"www.{_zone(c)[:-1]}"
        for app in self._honest_apps().values():
            challenge = app.ca.challenges.get((account, name))
            if challenge is not None:
                return ownership.key_authorization(challenge.value, account)
        return "no-challenge"

    def _csr(self, c: int, name: str) -> bytes:
        key = ec.derive_private_key(10_000 + c, ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
               .sign(key, hashes.SHA256()))
        return csr.public_bytes(Encoding.DER)

    def _attack(self, c: int, i: int) -> tuple[bytes, _Step]:
        if i == 0:
            return self._register(c), _Step("attack-setup:register", True)
        victims = [v for v in range(self.attackers, max(self.attackers + 1, len(self.world.clients)))]
        victim = self.rng.choice(victims)
        vzone = _zone(victim)
        what = self.rng.choice(ATTACKS)
        step = _Step(f"attack:{what}", False)
        if what == "rewrite_zone":
            update = ZoneUpdate(vzone, (AddRecords(f"www.{vzone}", "A", 60, ("192.0.2.66",)),))
            return self._write(c, tcapp.DNS, dnsapp.update_command(update)), step
        if what == "zone_inside":
            return self._write(c, tcapp.DNS, _create(f"_acme-challenge.pay.{vzone}")), step
        if what == "root":
            return self._write(c, tcapp.DNS, _create(".")), step
        if what == "tld":
            return self._write(c, tcapp.DNS, _create("com.")), step
        if what == "public_suffix":
            return self._write(c, tcapp.DNS, _create("co.uk.")), step
        if what == "certificate":
            name = f"www.{vzone[:-1]}"
            request = cacommands.IssueRequest(self._csr(c, name), (name,), (self._proof(victim),), "m", "", 0)
            return self._write(c, tcapp.CA, cacommands.request_command(request)), step
        if what == "kv_overwrite":  # a key the victim already owns (an unwritten key is first come, first served)
            owned = sorted(k for app in self._honest_apps().values() for k, o in app.kv.owners.items()
                           if o == account_id(self._signer(victim).key))
            if owned:
                return self._write(c, tcapp.KV, kvstore.put(owned[0], b"mallory")), step
            what, step = "forge", _Step("attack:forge", False)
        if what == "replay" and self.sent.get(victim):
            return self.rng.choice(self.sent[victim]), step
        if what == "forge":
            return self._write(c, tcapp.KV, kvstore.put(b"k/%d/x" % victim, b"forged"),
                               as_account=account_id(self._signer(victim).key)), step
        return self._write(c, tcapp.DNS, dnsapp.tick_command()), _Step("attack:validator_op", False)

    # ------------------------------------------------------------------ checks

    def _honest_apps(self) -> dict[str, tcapp.TrustChainApplication]:
        return self.honest_replica_apps(tcapp.TrustChainApplication)

    def _owner_of_name(self) -> dict[str, bytes]:
        """Ground truth: the zone of each honest client and its account."""
        return {_zone(c)[:-1]: account_id(self._signer(c).key) for c in self.steps if c >= self.attackers}

    def checks(self) -> list[Verdict]:
        return [self._check_zones(), self._check_certificates(), self._check_kv(), self._check_attacks()]

    def _check_zones(self) -> Verdict:
        truth = {_zone(c): account_id(self._signer(c).key) for c in self.steps}
        checked = 0
        for name, app in self._honest_apps().items():
            for origin, owner in app.dns.owners.items():
                checked += 1
                expected = truth.get(origin.to_text())
                if expected is None or owner != expected:
                    return Verdict("authz_zones", False, f"{name}: zone {origin} owned by {owner.hex()[:16]}, "
                                   f"expected {expected.hex()[:16] if expected else 'no such zone'}")
        return Verdict("authz_zones", True, f"{checked} zone owners checked", checked=checked)

    def _check_certificates(self) -> Verdict:
        zones = self._owner_of_name()
        checked = 0
        for name, app in self._honest_apps().items():
            records = [(p.account, p.names) for p in app.ca.pending.values()]
            # approved requests whose serial waits for the validators' reveals (nobody reveals here)
            awaiting = [decode(AwaitingSerial, d.payload) for d in app.ca.serials.draws.values()]
            records += [(w.account, w.names) for w in awaiting]
            records += [(r.account, r.names) for r in app.ca.issued.values()]
            for account, names in records:
                checked += 1
                for n in names:
                    owner = next((a for z, a in zones.items() if n == z or n.endswith("." + z)), None)
                    if owner != account:
                        return Verdict("authz_certificates", False,
                                       f"{name}: approved {n} for {account.hex()[:16]}, which does not own it")
        return Verdict("authz_certificates", checked > 0, f"{checked} approved requests checked", checked=checked)

    def _check_kv(self) -> Verdict:
        checked = 0
        for name, app in self._honest_apps().items():
            for key, owner in app.kv.owners.items():
                checked += 1
                c = int(key.split(b"/")[1])
                if owner != account_id(self._signer(c).key):
                    return Verdict("authz_kv", False, f"{name}: key {key!r} owned by another account")
        return Verdict("authz_kv", True, f"{checked} keys checked", checked=checked)

    def _check_attacks(self) -> Verdict:
        by_client: dict[str, list[bytes | None]] = {}
        for rec in sorted(self.world.requests.values(), key=lambda r: (r.client, r.timestamp)):
            by_client.setdefault(rec.client, []).append(rec.result)
        attacks = honest = 0
        for c, steps in sorted(self.steps.items()):
            results = by_client.get(f"c{c}", [])
            for step, result in zip(steps, results, strict=False):
                if result is None:
                    continue
                ok = _result_ok(result, _TARGETS.get(step.kind.split(":")[1], ACCOUNTS))
                if ok != step.expect_ok:
                    return Verdict("authz_attacks", False, f"client {c}: {step.kind} "
                                   f"{'succeeded' if ok else 'was refused'}")
                attacks += step.kind.startswith("attack:")
                honest += step.kind.startswith("honest:")
        return Verdict("authz_attacks", attacks > 0 or self.attackers == 0,
                       f"{attacks} attacks refused, {honest} honest steps succeeded", checked=attacks + honest)


_TARGETS = {"create_zone": tcapp.DNS, "publish": tcapp.DNS, "challenge": tcapp.CA, "request": tcapp.CA,
            "kv": tcapp.KV, "rewrite_zone": tcapp.DNS, "zone_inside": tcapp.DNS, "root": tcapp.DNS,
            "tld": tcapp.DNS, "public_suffix": tcapp.DNS, "certificate": tcapp.CA, "kv_overwrite": tcapp.KV,
            "forge": tcapp.KV, "validator_op": tcapp.DNS}


def _result_ok(result: bytes, target: str) -> bool:
    """Whether a client's accepted result is a success: the typed result of the sub-application it
    addressed, or a refusal at the write gate (`RouteError`). A replayed write may answer as any target."""
    decoders: dict[str, Any] = {tcapp.CA: cacommands.decode_result, tcapp.DNS: dnsapp.decode_result,
                                tcapp.KV: kvstore.decode_result, ACCOUNTS: lambda data: decode(AccountResult, data)}
    for key in [target, *(k for k in decoders if k != target)]:
        try:
            res = tcapp.decode_routed(result, decoders[key])
        except tcapp.MalformedResult:
            continue
        return not isinstance(res, tcapp.RouteError) and bool(res.ok)
    return False
