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

from trustchain.accounts import (
    ACCOUNTS,
    ED25519,
    AccountCommand,
    AccountKey,
    AccountLimits,
    AccountRegistry,
    AccountResult,
    AccountSigner,
    Register,
    SignedWrite,
    account_id,
    sign_registration,
    sign_write,
)
from trustchain.app.gate import OBSERVE, SIGNED, Admitted, WriteGate
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.app.kvstore import KVStore
from trustchain.app.validation import VALIDATE, ValidationApp
from trustchain.authorization.observations import ExternalValidations, ValidationLimits, ValidationsSnapshot
from trustchain.authorization.zones import ZonePolicy, default_public_suffixes
from trustchain.ca import caa
from trustchain.ca.events import Event, Finalized
from trustchain.ca.issuance import CAApplication
from trustchain.ca.policy import CAPolicy
from trustchain.crypto.signing import Signer
from trustchain.ct import app as ctapp
from trustchain.dns.app import DNSApplication
from trustchain.encoding import DecodeError, decode, encode
from trustchain.errors import TrustChainError
from trustchain.quorum import quorum_size

CA, CT, DNS, KV = "ca", "ct", "dns", "kv"
TARGETS = (CA, CT, DNS, KV)
WRITE_TARGETS = (*TARGETS, ACCOUNTS, VALIDATE, OBSERVE)  # what a signed write may address
SNAPSHOT_VERSION = 2  # 2: accounts
KV_QUOTA_BYTES = 4 << 20  # key-value data per account
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
                 dns_clock_offset_s: int = 0, account_limits: AccountLimits | None = None,
                 ct_accepted_roots: tuple[bytes, ...] | None = None,
                 registry_suffixes: tuple[str, ...] = (),
                 validation_limits: ValidationLimits | None = None) -> None:
        """`cluster` names this cluster in every signed write (no replay across clusters);
        `validator_keys` are the validators' Ed25519 consensus keys in replica order, their accounts;
        `validation_limits` bound outside-name validations (genesis policy, the same on every replica)."""
        self.accounts = AccountRegistry(cluster, account_limits,
                                        validators=tuple(AccountKey(ED25519, k) for k in validator_keys))
        self.gate = WriteGate(self.accounts)
        ids = self.accounts.validator_ids
        operators = tuple(account_id(AccountKey(ED25519, k)) for k in ca_policy.operators)
        ca_policy = dataclasses.replace(ca_policy, validator_keys=ids if ca_policy.validator_keys else (),
                                        operators=operators)
        n = len(validator_keys)
        self.validation = ValidationApp(ExternalValidations(n, quorum_size(n), validation_limits) if n >= 4 else
                                        ExternalValidations(4, 3, validation_limits))
        self.dns = DNSApplication(dns_master_seed, clock_offset_s=dns_clock_offset_s,
                                  zone_policy=ZonePolicy(default_public_suffixes(), registry_suffixes),
                                  validated=self.validation.validated, validator_accounts=frozenset(ids),
                                  validator_domain=ca_policy.node_domain + ".")
        self.ca = CAApplication(ca_policy, ZoneLookup(self.dns))
        self.ct = ctapp.CTApplication(ct_signer, ct_key_name, ct_origin, accepted_roots=ct_accepted_roots)
        self.kv = KVStore(quota_bytes=KV_QUOTA_BYTES)
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
        for op in operations:
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
            elif admitted.target == CT:
                results.append(self.ct.execute([inner], context)[0])
            elif admitted.target == KV:
                results.append(self.kv.execute([inner], context)[0])
            elif admitted.target == VALIDATE:
                seed = context.seq.to_bytes(8, "big") + op.timestamp.to_bytes(8, "big")
                results.append(encode(self.validation.open(admitted.account, admitted.payload, seed, context.time_us)))
            elif admitted.target == OBSERVE:
                assert admitted.validator is not None  # the gate lets only validators observe
                results.append(encode(self.validation.observe(admitted.validator, admitted.payload,
                                                              context.time_us)))
            else:
                results.append(encode(RouteError(f"target: unknown sub-application {admitted.target[:32]!r}")))
        flush_dns()
        return results

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
            if isinstance(event, Finalized):
                self.ct.append(ctapp.CTCommand(ctapp.OP_ADD_CHAIN, event.certificate_der), context.time_us // 1000)
                self.certificates_logged += 1
        self._events.extend(events)

    def take_events(self) -> list[Event]:
        """CA events since the last call, in execution order (the node feeds its signing service)."""
        events, self._events = self._events, []
        return events

    def snapshot(self) -> bytes:
        return encode(_Snapshot(SNAPSHOT_VERSION, self.accounts.snapshot(), self.validation.validations.snapshot(),
                                self.ca.snapshot(), self.ct.snapshot(), self.dns.snapshot(), self.kv.snapshot(),
                                self.certificates_logged))

    def restore(self, snapshot: bytes) -> None:
        snap = decode(_Snapshot, snapshot)
        if snap.version != SNAPSHOT_VERSION:
            raise DecodeError(f"_Snapshot.version: {snap.version} is not {SNAPSHOT_VERSION}")
        try:
            self.dns.restore(snap.dns)
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"_Snapshot.dns: {exc}") from None
        self.accounts.restore(snap.accounts)
        self.validation.validations.restore(snap.validations)
        self.ca.restore(snap.ca)
        self.ct.restore(snap.ct)
        self.kv.restore(snap.kv)
        self.certificates_logged = snap.certificates_logged
        self._events = []
