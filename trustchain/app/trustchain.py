"""The TrustChain replicated application: one `Application` that routes each ordered operation to the
CA, CT, DNS (or key-value) sub-application by a tag, with one combined deterministic snapshot.

Why one application: consensus orders one log, and the sub-applications depend on each other
deterministically: the CA reads CAA and dns-01 TXT records from the replicated DNS zones *as of the
ordered request* (`ZoneLookup`), and a finalized certificate is appended to the replicated CT log in
the same execution step, so every replica's log holds exactly the certificates the CA issued.

Wire format of an operation: `encode(Routed(target, payload))` with target one of `TARGETS`; the
payload is the sub-application's own command. The result is the sub-application's result unchanged,
or an encoded `RouteError` for an unknown tag or an undecodable envelope (`decode_routed` reads both).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import dns.name
import dns.rdatatype
from cryptography import x509

from trustchain.accounts import (
    ACCOUNTS,
    ED25519,
    AccountCommand,
    AccountKey,
    AccountRegistry,
    AccountResult,
    AccountSigner,
    Register,
    SignedWrite,
    account_id,
    sign_registration,
    sign_write,
)
from trustchain.acme.app import ACME, AcmeApplication
from trustchain.app import validation
from trustchain.app.embedded_scts import OP_SCT, SCTCollector
from trustchain.app.gate import OBSERVE, SIGNED, Admitted, WriteGate, command_op
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.app.kvstore import KVStore
from trustchain.app.limits import ResourceLimits
from trustchain.app.validation import VALIDATE, ValidationApp
from trustchain.authorization.observations import (
    VALIDATED,
    ExternalValidations,
    ValidationLimits,
    ValidationsSnapshot,
)
from trustchain.authorization.validator_votes import VOTES, Passed, ValidatorVotes, VotesSnapshot
from trustchain.authorization.zones import VALIDATORS, ZonePolicy, default_public_suffixes
from trustchain.ca import caa
from trustchain.ca.events import Event, Finalized, PendingExpired, PrecertSigned
from trustchain.ca.issuance import CAApplication
from trustchain.ca.policy import CAPolicy
from trustchain.crypto.signing import Signer
from trustchain.ct import app as ctapp
from trustchain.ct.entry import PrecertEntry, X509Entry
from trustchain.ct.logkey import P256LogSigner
from trustchain.ct.precert import with_scts, without_poison
from trustchain.ct.submission import issuer_key_hash, issuing_certificate
from trustchain.dns.app import DNSApplication
from trustchain.encoding import DecodeError, decode, encode
from trustchain.errors import TrustChainError
from trustchain.quorum import quorum_size

CA, CT, DNS, KV = "ca", "ct", "dns", "kv"
TARGETS = (CA, CT, DNS, KV)
WRITE_TARGETS = (*TARGETS, ACCOUNTS, VALIDATE, OBSERVE, VOTES)  # what a signed write may address
SNAPSHOT_VERSION = 4  # 2: accounts; 3: validator votes; 4: ACME and SCTs awaited for precertificates
#: What the validator set may do as a whole, by a passed vote (`trustchain.authorization.validator_votes`),
#: for the pseudo-account `VALIDATORS`: revoke any certificate with any reason, install an issuer or force
#: a CRL (the CA counts the validator set as an operator), revoke an issuing CA (only it may), and create
#: or change zones (only it may, under the nodes' own domain).
QUORUM_OPERATIONS: frozenset[tuple[str, str]] = frozenset({
    (CA, "revoke"), (CA, "install_issuer"), (CA, "sign_crl"), (CA, "revoke_issuer"), (CA, "sign_root"),
    (DNS, "create"), (DNS, "update"),
})
R = TypeVar("R")


@dataclass(frozen=True)
class Routed:
    target: str
    payload: bytes


@dataclass(frozen=True)
class RouteError:
    """The router's own result when an operation reached no sub-application; ``detail`` is
    "<field>: <reason>" (e.g. "target: unknown sub-application 'x'")."""

    detail: str


class MalformedResult(TrustChainError, ValueError):
    """A routed operation's result is neither the sub-application's typed result nor a `RouteError`."""


@dataclass(frozen=True)
class _Snapshot:
    version: int
    accounts: bytes
    validations: ValidationsSnapshot
    votes: VotesSnapshot
    ca: bytes
    ct: bytes
    dns: bytes
    kv: bytes
    certificates_logged: int
    acme: bytes
    scts: bytes


@dataclass(frozen=True)
class _SnapshotV2:
    """Before validator votes and ACME: restored with no open votes and no orders."""

    version: int
    accounts: bytes
    validations: ValidationsSnapshot
    ca: bytes
    ct: bytes
    dns: bytes
    kv: bytes
    certificates_logged: int


def route(target: str, payload: bytes) -> bytes:
    """The consensus payload for `payload` addressed to sub-application `target`."""
    if target not in TARGETS:
        raise ValueError(f"target: must be one of {', '.join(TARGETS)}, got {target!r}")
    return encode(Routed(target, payload))


def acme_operation(request: bytes) -> bytes:
    """The consensus payload of an ACME request (`trustchain.acme.results.acme_request`): the client's own
    JWS, authenticated by every replica inside the ACME sub-application, not by the write gate."""
    return encode(Routed(ACME, request))


def signed_operation(signer: AccountSigner, account: bytes, cluster: bytes, target: str, payload: bytes, *,
                     nonce: bytes, deadline_us: int) -> bytes:
    """The consensus payload of `payload` for `target`, signed by `account` (whose key `signer` holds)."""
    if target not in WRITE_TARGETS:
        raise ValueError(f"target: must be one of {', '.join(WRITE_TARGETS)}, got {target!r}")
    write = sign_write(signer, account, cluster, target, payload, nonce=nonce, deadline_us=deadline_us)
    return encode(Routed(SIGNED, encode(write)))


def registration_operation(signer: AccountSigner, cluster: bytes, contact: str = "", *, nonce: bytes,
                           deadline_us: int) -> bytes:
    """The consensus payload that registers the account of `signer.key`."""
    payload = encode(AccountCommand.of(Register(contact)))
    write = sign_registration(signer, cluster, ACCOUNTS, payload, nonce=nonce, deadline_us=deadline_us)
    return encode(Routed(SIGNED, encode(write)))


def decode_routed(data: bytes, decode_result: Callable[[bytes], R]) -> R | RouteError:
    """The result of a routed operation: the sub-application's own (`decode_result`, e.g.
    `trustchain.ca.commands.decode_result`) or the router's `RouteError`. Raises `MalformedResult` for
    bytes that are neither, so callers never guess at text."""
    try:
        return decode_result(data)
    except DecodeError as exc:
        try:
            return decode(RouteError, data)
        except DecodeError:
            raise MalformedResult(f"result: not a result of this sub-application ({exc})") from None


def operation_target(operation: bytes) -> str | None:
    """The sub-application an operation addresses (inside its signed write), for metrics and event
    streams; None when the envelope does not decode. Says nothing about whether it is authorized."""
    routed = unroute(operation)
    if routed is None or routed.target != SIGNED:
        return None if routed is None else routed.target
    try:
        return decode(SignedWrite, routed.payload).target
    except DecodeError:
        return None


def unroute(operation: bytes) -> Routed | None:
    try:
        return decode(Routed, operation)
    except DecodeError:
        return None


def _quorum_operation_problem(target: str, payload: bytes) -> str | None:
    """Why a validator vote may not be for this operation ("<field>: <reason>"), or None."""
    if (target, command_op(payload) or "") not in QUORUM_OPERATIONS:
        allowed = ", ".join(f"{t} {o}" for t, o in sorted(QUORUM_OPERATIONS))
        return f"target: the validator set votes only on {allowed}"
    return None


class ZoneLookup:
    """`caa.DNSLookup` over the replicated zones: the CA sees exactly the records ordered before the
    request, identically on every replica (never a live resolver)."""

    def __init__(self, app: DNSApplication) -> None:
        self.app = app

    def _rrset_texts(self, name: str, rdtype: dns.rdatatype.RdataType) -> list[str]:
        try:
            qname = dns.name.from_text(name.rstrip(".") + ".").canonicalize()
        except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong, ValueError):
            return []
        best: dns.name.Name | None = None
        for origin in self.app.zones:
            if qname.is_subdomain(origin) and (best is None or len(origin) > len(best)):
                best = origin
        if best is None:
            return []
        rrset = self.app.zones[best].zone.get(qname, rdtype)
        if rrset is None:
            return []
        return sorted(rd.to_text() for rd in rrset)

    def serves(self, name: str) -> bool:
        """Is `name` inside a zone TrustChain serves? (Then its records here are the authoritative ones.)"""
        try:
            qname = dns.name.from_text(name.rstrip(".") + ".").canonicalize()
        except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong, ValueError):
            return False
        return any(qname.is_subdomain(origin) for origin in self.app.zones)

    def caa(self, name: str) -> Sequence[caa.CAARecord]:
        out = []
        for text in self._rrset_texts(name, dns.rdatatype.CAA):
            flags, tag, value = text.split(" ", 2)
            out.append(caa.CAARecord(int(flags), tag, value.strip('"')))
        return out

    def txt(self, name: str) -> Sequence[str]:
        out = []
        for text in self._rrset_texts(name, dns.rdatatype.TXT):
            # presentation format: one or more quoted character-strings, concatenated
            out.append("".join(part.strip('"') for part in text.split('" "')))
        return out


class TrustChainApplication:
    """CA + CT + DNS + KV behind one `Application`. `ct_signer`/`ct_key_name` are this validator's own
    key for SCTs and checkpoints (never used inside `execute`)."""

    def __init__(self, ca_policy: CAPolicy, dns_master_seed: bytes, ct_signer: Signer, ct_key_name: str,
                 ct_origin: str, *, cluster: bytes, validator_keys: tuple[bytes, ...],
                 dns_clock_offset_s: int = 0, limits: ResourceLimits | None = None,
                 ct_accepted_roots: tuple[bytes, ...] | None = None,
                 registry_suffixes: tuple[str, ...] = (), ct_log_signer: P256LogSigner | None = None,
                 ca_chain: tuple[bytes, ...] = (), ct_log_keys: tuple[bytes, ...] = (),
                 validation_limits: ValidationLimits | None = None) -> None:
        """`cluster` names this cluster in every signed write (no replay across clusters);
        `validator_keys` are the validators' Ed25519 consensus keys in replica order, their accounts;
        `limits` the replicated resource policy from genesis (`trustchain.app.limits`);
        `validation_limits` bound outside-name validations (genesis policy, the same on every replica).
        `ct_log_signer` is this validator's P-256 CT log key; `ca_chain` the genesis issuing certificate
        and the root (DER), logged as extra data with the CA's certificates; `ct_log_keys` every
        validator's P-256 log key (DER SPKI) in replica order, which the SCTs a certificate embeds are
        checked against."""
        self.limits = limits = limits or ResourceLimits()
        self.accounts = AccountRegistry(cluster, limits.accounts,
                                        validators=tuple(AccountKey(ED25519, k) for k in validator_keys))
        self.gate = WriteGate(self.accounts)
        ids = self.accounts.validator_ids
        operators = tuple(account_id(AccountKey(ED25519, k)) for k in ca_policy.operators)
        n = len(validator_keys)
        # every serial carries the randomness of f+1 validators (`trustchain.ca.serials`); only the validator
        # set as a whole may revoke an issuing CA
        ca_policy = dataclasses.replace(ca_policy, validator_keys=ids, operators=(*operators, VALIDATORS),
                                        serial_contributors=(n - 1) // 3 + 1 if n else 0, quorum_account=VALIDATORS,
                                        issuer_certificate=ca_chain[0] if ca_chain else ca_policy.issuer_certificate)
        self.votes = ValidatorVotes(max(n, 1), _quorum_operation_problem)
        self.validation = ValidationApp(ExternalValidations(n, quorum_size(n), validation_limits) if n >= 4 else
                                        ExternalValidations(4, 3, validation_limits))
        self.dns = DNSApplication(dns_master_seed, clock_offset_s=dns_clock_offset_s,
                                  zone_policy=ZonePolicy(default_public_suffixes(), registry_suffixes),
                                  validated=self.validation.validated,
                                  validator_domain=ca_policy.node_domain + ".", limits=limits.dns,
                                  validator_accounts=frozenset(ids))
        zones = ZoneLookup(self.dns)
        # precertificates and embedded SCTs (f+1 logs) whenever every validator's log key is in genesis
        self.scts = SCTCollector(ct_log_keys, (n - 1) // 3 + 1)
        embed = len(ct_log_keys) == n and all(ct_log_keys) and self.scts.enabled and len(ca_chain) == 2
        self.ca = CAApplication(dataclasses.replace(ca_policy, embed_scts=embed), zones)
        self.acme = AcmeApplication(self.accounts, self.ca, zones, self.validation)
        self.ct = ctapp.CTApplication(ct_signer, ct_key_name, ct_origin, accepted_roots=ct_accepted_roots,
                                      log_signer=ct_log_signer, quota=limits.ct)
        self.ca_chain = ca_chain
        self.kv = KVStore(quota_bytes=limits.kv.max_account_bytes, total_bytes=limits.kv.max_total_bytes)
        # what a snapshot from before ACME and embedded SCTs restores to
        self._empty_acme, self._empty_scts = self.acme.snapshot(), self.scts.snapshot()
        self.certificates_logged = 0
        self._events: list[Event] = []

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        results: list[bytes] = []
        dns_run: list[Operation] = []  # consecutive DNS operations, executed together: zones are signed once

        def flush_dns() -> None:
            if dns_run:
                results.extend(self.dns.execute(dns_run, context))
                dns_run.clear()

        self.validation.tick(context.time_us)
        for gone in self.scts.expire(context.time_us, self.ca.policy.pending_ttl_us):
            expired = PendingExpired(gone.pending.pending_id, gone.pending.request_id)
            self._events.append(expired)
            self.acme.on_pending_expired(expired.request_id or expired.pending_id)
        for index, op in enumerate(operations):
            routed = unroute(op.payload)
            if routed is not None and routed.target == ACME:
                flush_dns()  # ACME reads the zones (dns-01) and may issue (CAA)
                inner = Operation(op.client, op.timestamp, routed.payload)
                results.append(encode(self.acme.execute(inner, context, index)))
                self._after_ca(context)
                continue
            admitted = self._admit(op, context.time_us)
            if isinstance(admitted, bytes):
                flush_dns()
                results.append(admitted)
                continue
            inner = Operation(admitted.account, op.timestamp, admitted.payload)
            if admitted.target == DNS:
                dns_run.append(inner)
                continue
            flush_dns()  # before anything that may read the zones (the CA's CAA and dns-01 lookups)
            if admitted.target == CA:
                results.append(self.ca.execute([inner], context)[0])
                self._after_ca(context)
            elif admitted.target == CT and command_op(admitted.payload) == OP_SCT:
                results.append(encode(self._sct(admitted, context)))
            elif admitted.target == CT:
                results.append(self.ct.execute([inner], context)[0])
            elif admitted.target == KV:
                results.append(self.kv.execute([inner], context)[0])
            elif admitted.target == VALIDATE:
                seed = context.seq.to_bytes(8, "big") + op.timestamp.to_bytes(8, "big")
                results.append(encode(self.validation.open(admitted.account, admitted.payload, seed, context.time_us)))
            elif admitted.target == OBSERVE:
                assert admitted.validator is not None  # the gate lets only validators observe
                observed = self.validation.observe(admitted.validator, admitted.payload, context.time_us)
                if observed.status == validation.STATUS_DECIDED:
                    self.acme.on_decided(observed.validation_id, observed.outcome == VALIDATED, context.time_us)
                results.append(encode(observed))
            elif admitted.target == VOTES:
                results.append(self._vote(admitted, op.timestamp, context))
            else:
                results.append(encode(RouteError(f"target: unknown sub-application {admitted.target[:32]!r}")))
        flush_dns()
        return results

    def _vote(self, admitted: Admitted, timestamp: int, context: ExecutionContext) -> bytes:
        """Count a validator's vote; when it completes the quorum, execute the operation for the
        validator set in this same ordered step."""
        outcome = self.votes.handle(admitted.validator, admitted.payload, context.time_us)
        if not isinstance(outcome, Passed):
            return encode(outcome)
        inner = Operation(VALIDATORS, timestamp, outcome.payload)
        if outcome.target == DNS:
            result = self.dns.execute([inner], context)[0]
        else:
            assert outcome.target == CA, "only QUORUM_OPERATIONS pass a vote"
            result = self.ca.execute([inner], context)[0]
            self._after_ca(context)
        return encode(self.votes.executed(outcome, result))

    def _admit(self, op: Operation, now_us: int) -> Admitted | bytes:
        """The authenticated write inside `op`, or the encoded result refusing it."""
        routed = unroute(op.payload)
        if routed is None:
            return encode(RouteError("target: malformed routed operation"))
        if routed.target != SIGNED:
            return encode(RouteError(f"authorization: writes must be signed by an account (target {SIGNED!r})"))
        admitted = self.gate.admit(routed.payload, now_us)
        if isinstance(admitted, AccountResult):
            return encode(RouteError(admitted.detail) if not admitted.ok else admitted)
        return admitted

    def _after_ca(self, context: ExecutionContext) -> None:
        """Append every newly finalized certificate to the CT log, in the same ordered step."""
        events = self.ca.take_events()
        for event in events:
            if isinstance(event, PrecertSigned):
                self._log_precertificate(event, context)
            elif isinstance(event, Finalized):
                self.ct.append(X509Entry(event.certificate_der), context.time_us // 1000,
                               chain=self._issuer_chain(event.certificate_der))
                self.certificates_logged += 1
                # an ACME order waits on the pending id its request was answered with (a drawn serial's or a
                # precertificate's stage has its own): it learns the serial only now
                self.acme.on_issued(event.request_id or event.pending_id, event.serial)
            elif isinstance(event, PendingExpired):
                self.acme.on_pending_expired(event.request_id or event.pending_id)
        self._events.extend(events)

    def _log_precertificate(self, event: PrecertSigned, context: ExecutionContext) -> None:
        """Log a signed precertificate and await its SCTs (the validators each order theirs)."""
        chain = self._issuer_chain(event.precertificate_der)
        tbs = without_poison(x509.load_der_x509_certificate(event.precertificate_der).tbs_certificate_bytes)
        ikh = issuer_key_hash(chain[0]) if chain else b""
        if not ikh:
            return  # no issuer certificate to hash: cannot be logged as a precertificate entry
        res = self.ct.append(PrecertEntry(ikh, tbs), context.time_us // 1000,
                             precertificate=event.precertificate_der, chain=chain)
        if res.ok:
            self.scts.start(event.pending, event.precertificate_der, ikh, res.index, res.timestamp_ms,
                            res.extensions)

    def _sct(self, admitted: Admitted, context: ExecutionContext) -> ctapp.CTResult:
        """A validator's SCT for a logged precertificate; the f+1-th makes the final certificate pending."""
        if admitted.validator is None:
            return ctapp.CTResult(ctapp.STATUS_ERROR, "authorization: only a validator may order ct sct")
        problem, done = self.scts.submit(admitted.validator, admitted.payload)
        if problem:
            return ctapp.CTResult(ctapp.STATUS_ERROR, problem)
        if done is None:
            return ctapp.CTResult(ctapp.STATUS_OK, "sct recorded")
        final = with_scts(done.pending.tbs, [c.sct for c in done.scts])
        self.ca.record_final(done.pending, final, context.time_us)
        self._events.extend(self.ca.take_events())
        return ctapp.CTResult(ctapp.STATUS_OK, "certificate pending with its SCTs", index=done.index)

    def issuance_in_progress(self, pending_id: int) -> bool:
        """Is the request answered with `pending_id` still being signed, logged or awaiting SCTs?"""
        return (pending_id in self.ca.pending or pending_id in self.ca.serials.draws
                or self.scts.waiting_for(pending_id)
                or any(p.request_id == pending_id for p in self.ca.pending.values()))

    def _issuer_chain(self, certificate_der: bytes) -> tuple[bytes, ...]:
        """The issuer of a certificate the CA signed, among its installed issuers and the genesis one,
        followed by the root: the extra data a monitor reads beside the entry."""
        candidates = [*reversed(self.ca.issuer_certificates), *self.ca_chain[:1]]
        if not candidates:
            return ()
        found = issuing_certificate(certificate_der, candidates)
        return (found, *self.ca_chain[1:]) if found is not None else ()

    def take_events(self) -> list[Event]:
        """CA events since the last call, in execution order (the node feeds its signing service)."""
        events, self._events = self._events, []
        return events

    def snapshot(self) -> bytes:
        return encode(_Snapshot(SNAPSHOT_VERSION, self.accounts.snapshot(), self.validation.validations.snapshot(),
                                self.votes.snapshot(), self.ca.snapshot(), self.ct.snapshot(), self.dns.snapshot(),
                                self.kv.snapshot(), self.certificates_logged, self.acme.snapshot(),
                                self.scts.snapshot()))

    def restore(self, snapshot: bytes) -> None:
        version = int.from_bytes(snapshot[:8], "big") if len(snapshot) >= 8 else -1
        if version == 2:
            old = decode(_SnapshotV2, snapshot)
            snap = _Snapshot(SNAPSHOT_VERSION, old.accounts, old.validations, ValidatorVotes.empty_snapshot(),
                             old.ca, old.ct, old.dns, old.kv, old.certificates_logged, self._empty_acme,
                             self._empty_scts)
        else:
            snap = decode(_Snapshot, snapshot)
        if snap.version != SNAPSHOT_VERSION:
            raise DecodeError(f"_Snapshot.version: {snap.version} is not {SNAPSHOT_VERSION}")
        try:
            self.dns.restore(snap.dns)
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"_Snapshot.dns: {exc}") from None
        self.accounts.restore(snap.accounts)
        self.validation.validations.restore(snap.validations)
        self.votes.restore(snap.votes)
        self.ca.restore(snap.ca)
        self.ct.restore(snap.ct)
        self.kv.restore(snap.kv)
        self.certificates_logged = snap.certificates_logged
        self.acme.restore(snap.acme)
        self.scts.restore(snap.scts)
        self._events = []
