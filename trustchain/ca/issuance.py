"""The replicated certificate authority: an ``Application`` that every replica executes identically.

Why two ordered steps: a FROST signature is randomised and made by only a quorum, so it cannot be
produced inside ``execute``. An ordered *request* is checked deterministically (CSR signature, names,
CAA, dns-01 ownership proof, payment, rate limits in consensus time) and, if approved, becomes a
*pending issuance* holding the exact TBS bytes. The signers then run FROST outside consensus
(``signing_service``) and submit a *finalize* command; every replica checks the aggregated signature
under the issuing group key before recording the certificate, and attributes a bad one to its
submitter. Revocation is ordered state too, so every replica's CRL and OCSP answers agree.

Results are ``b"OK ..."``, ``b"PENDING <id> <serial hex>"`` or ``b"ERR <field>: <reason>"``; ``execute``
never raises on bad input.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PublicKey, MLDSA87PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import caa, names, ownership
from trustchain.ca import x509 as cax509
from trustchain.ca.ratelimit import Limit, SlidingWindow
from trustchain.encoding import DecodeError, decode, encode

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# RFC 5280 CRLReason values a requester may use; 7 is unassigned and 8 (removeFromCRL) is delta-CRL only.
REVOCATION_REASONS = {
    0: "unspecified",
    1: "keyCompromise",
    2: "cACompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    6: "certificateHold",
    9: "privilegeWithdrawn",
    10: "aACompromise",
}
# Reasons only the CA operators may assert.
OPERATOR_REASONS = {2, 6, 10}


def consensus_datetime(time_us: int) -> dt.datetime:
    """Consensus time as an aware datetime (never the local clock)."""
    return EPOCH + dt.timedelta(microseconds=time_us)


def datetime_us(when: dt.datetime) -> int:
    delta = when.astimezone(dt.UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# --- commands ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CACommand:
    """Outer envelope: ``op`` selects the body type, so unknown ops fail cleanly."""

    op: str  # "challenge" | "request" | "finalize" | "revoke" | "install_issuer"
    body: bytes


@dataclass(frozen=True)
class ChallengeCommand:
    names: tuple[str, ...]


@dataclass(frozen=True)
class IssueRequest:
    """``identity`` is a label for audit (the authenticated account is the request's client key);
    ``proofs[i]`` is the dns-01 key authorization for ``names[i]``; ``lifetime_s`` 0 means default."""

    csr_der: bytes
    names: tuple[str, ...]
    proofs: tuple[str, ...]
    identity: str
    payment_ref: str
    lifetime_s: int = 0


@dataclass(frozen=True)
class FinalizeCommand:
    pending_id: int
    signature: bytes


@dataclass(frozen=True)
class RevokeCommand:
    serial: bytes  # big-endian, as in the certificate
    reason: int


@dataclass(frozen=True)
class InstallIssuerCommand:
    """Intermediate rollover: an operator installs a new issuing CA certificate (already signed by a
    trusted root key); later requests are issued under it, pending ones keep their own issuer key."""

    certificate_der: bytes


def challenge_command(names_: Sequence[str]) -> bytes:
    return encode(CACommand("challenge", encode(ChallengeCommand(tuple(names_)))))


def request_command(req: IssueRequest) -> bytes:
    return encode(CACommand("request", encode(req)))


def finalize_command(pending_id: int, signature: bytes) -> bytes:
    return encode(CACommand("finalize", encode(FinalizeCommand(pending_id, signature))))


def revoke_command(serial: int, reason: int) -> bytes:
    return encode(CACommand("revoke", encode(RevokeCommand(serial_bytes(serial), reason))))


def install_issuer_command(certificate_der: bytes) -> bytes:
    return encode(CACommand("install_issuer", encode(InstallIssuerCommand(certificate_der))))


def serial_bytes(serial: int) -> bytes:
    assert serial > 0
    return serial.to_bytes((serial.bit_length() + 7) // 8, "big")


# --- state records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingIssuance:
    """What the signers must sign: ``tbs`` exactly, under ``issuer_key``."""

    pending_id: int
    tbs: bytes
    issuer_key: bytes
    serial: bytes
    account: bytes
    names: tuple[str, ...]
    created_us: int


@dataclass(frozen=True)
class IssuedCertificate:
    serial: bytes
    certificate_der: bytes
    account: bytes
    names: tuple[str, ...]
    not_after_us: int
    revoked_us: int | None = None
    reason: int | None = None


@dataclass(frozen=True)
class _Challenge:
    account: bytes
    name: str
    value: bytes
    created_us: int


@dataclass(frozen=True)
class _Count:
    key: bytes
    value: int


@dataclass(frozen=True)
class _Window:
    key: str
    times: tuple[int, ...]


@dataclass(frozen=True)
class _Snapshot:
    version: int
    next_pending_id: int
    issuer_certificates: tuple[bytes, ...]
    challenges: tuple[_Challenge, ...]
    pending: tuple[PendingIssuance, ...]
    issued: tuple[IssuedCertificate, ...]
    spent_payments: tuple[str, ...]
    windows: tuple[_Window, ...]
    bad_finalizers: tuple[_Count, ...]


# --- events for the node (not replicated state) --------------------------------------------------


@dataclass(frozen=True)
class PendingRecorded:
    pending: PendingIssuance


@dataclass(frozen=True)
class Finalized:
    pending_id: int
    serial: bytes
    certificate_der: bytes


@dataclass(frozen=True)
class FinalizeRejected:
    pending_id: int
    submitter: bytes
    reason: str


@dataclass(frozen=True)
class Revoked:
    serial: bytes
    reason: int


@dataclass(frozen=True)
class PendingExpired:
    pending_id: int


Event = PendingRecorded | Finalized | FinalizeRejected | Revoked | PendingExpired

PaymentCheck = Callable[[str, bytes], bool]
"""Deterministic payment verification ``(reference, account) -> paid``; backed by replicated state."""


def _any_payment(reference: str, account: bytes) -> bool:
    return bool(reference)


ACCOUNT_LIMIT = Limit(50, 3_600_000_000)  # 50 requests per account per hour
DOMAIN_LIMIT = Limit(50, 7 * 86_400_000_000)  # 50 certificates per registered domain per week


@dataclass(frozen=True)
class CAPolicy:
    """Genesis configuration every replica shares: who the CA is and what it will sign."""

    issuer: cax509.IssuerProfile
    ca_domain: str
    root_keys: tuple[bytes, ...] = ()
    operators: tuple[bytes, ...] = ()
    allow_wildcards: bool = False
    default_lifetime: dt.timedelta = cax509.DEFAULT_LEAF_LIFETIME
    max_lifetime: dt.timedelta = dt.timedelta(days=7)
    max_names: int = 100
    account_limit: Limit = ACCOUNT_LIMIT
    domain_limit: Limit = DOMAIN_LIMIT
    challenge_ttl_us: int = 3_600_000_000
    pending_ttl_us: int = 3_600_000_000
    require_payment: bool = True
    payment_check: PaymentCheck = field(default=_any_payment, compare=False)


class CAApplication:
    """The replicated CA state machine (see module docstring). ``lookup`` is the replicated DNS view."""

    def __init__(self, policy: CAPolicy, lookup: caa.DNSLookup) -> None:
        self.policy = policy
        self.lookup = lookup
        self.next_pending_id = 1
        self.issuer_certificates: list[bytes] = []
        self.challenges: dict[tuple[bytes, str], _Challenge] = {}
        self.pending: dict[int, PendingIssuance] = {}
        self.issued: dict[bytes, IssuedCertificate] = {}
        self.spent_payments: set[str] = set()
        self.rate = SlidingWindow()
        self.bad_finalizers: dict[bytes, int] = {}
        self._events: list[Event] = []

    # -- Application interface ---------------------------------------------------------------------

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        self._expire(context.time_us)
        results = []
        for index, op in enumerate(operations):
            try:
                results.append(self._apply(op, context, index))
            except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # defence in depth: never raise
                results.append(b"ERR command: " + str(exc).encode()[:200])
        return results

    def snapshot(self) -> bytes:
        snap = _Snapshot(
            version=1,
            next_pending_id=self.next_pending_id,
            issuer_certificates=tuple(self.issuer_certificates),
            challenges=tuple(self.challenges[k] for k in sorted(self.challenges)),
            pending=tuple(self.pending[k] for k in sorted(self.pending)),
            issued=tuple(self.issued[k] for k in sorted(self.issued)),
            spent_payments=tuple(sorted(self.spent_payments)),
            windows=tuple(_Window(k, v) for k, v in self.rate.items()),
            bad_finalizers=tuple(_Count(k, self.bad_finalizers[k]) for k in sorted(self.bad_finalizers)),
        )
        return encode(snap)

    def restore(self, snapshot: bytes) -> None:
        snap = decode(_Snapshot, snapshot)
        if snap.version != 1:
            raise DecodeError(f"CA snapshot version {snap.version} unsupported")
        self.next_pending_id = snap.next_pending_id
        self.issuer_certificates = list(snap.issuer_certificates)
        self.challenges = {(c.account, c.name): c for c in snap.challenges}
        self.pending = {p.pending_id: p for p in snap.pending}
        self.issued = {c.serial: c for c in snap.issued}
        self.spent_payments = set(snap.spent_payments)
        self.rate = SlidingWindow()
        self.rate.events = {w.key: list(w.times) for w in snap.windows}
        self.bad_finalizers = {c.key: c.value for c in snap.bad_finalizers}
        self._events = []

    # -- queries (read-only, for OCSP/CRL/CLI/node) -----------------------------------------------

    def take_events(self) -> list[Event]:
        """Events since the last call, in execution order: the node feeds ``PendingRecorded`` to its
        signing service and ``Finalized``/``PendingExpired`` to cancel signing sessions."""
        events, self._events = self._events, []
        return events

    @property
    def current_issuer(self) -> cax509.IssuerProfile:
        if not self.issuer_certificates:
            return self.policy.issuer
        cert = x509.load_der_x509_certificate(self.issuer_certificates[-1])
        key = cert.public_key()
        assert isinstance(key, ed25519.Ed25519PublicKey)
        base = self.policy.issuer
        return cax509.IssuerProfile(
            cert.subject, key.public_bytes_raw(), base.crl_url, base.ocsp_url, base.ca_issuers_url, base.policies
        )

    def status(self, serial: int) -> IssuedCertificate | None:
        return self.issued.get(serial_bytes(serial)) if serial > 0 else None

    def revoked(self) -> list[IssuedCertificate]:
        return [c for _, c in sorted(self.issued.items()) if c.revoked_us is not None]

    # -- commands ----------------------------------------------------------------------------------

    def _apply(self, op: Operation, ctx: ExecutionContext, index: int) -> bytes:
        try:
            cmd = decode(CACommand, op.payload)
            if cmd.op == "challenge":
                return self._challenge(decode(ChallengeCommand, cmd.body), op, ctx, index)
            if cmd.op == "request":
                return self._request(decode(IssueRequest, cmd.body), op, ctx, index)
            if cmd.op == "finalize":
                return self._finalize(decode(FinalizeCommand, cmd.body), op)
            if cmd.op == "revoke":
                return self._revoke(decode(RevokeCommand, cmd.body), op, ctx)
            if cmd.op == "install_issuer":
                return self._install_issuer(decode(InstallIssuerCommand, cmd.body), op)
        except DecodeError as exc:
            return b"ERR malformed command: " + str(exc).encode()[:200]
        return b"ERR op: unknown operation " + cmd.op.encode()[:32]

    def _expire(self, now_us: int) -> None:
        for key in [k for k, c in self.challenges.items() if now_us - c.created_us > self.policy.challenge_ttl_us]:
            del self.challenges[key]
        for pid in [p for p, v in sorted(self.pending.items()) if now_us - v.created_us > self.policy.pending_ttl_us]:
            del self.pending[pid]
            self._events.append(PendingExpired(pid))

    def _challenge(self, cmd: ChallengeCommand, op: Operation, ctx: ExecutionContext, index: int) -> bytes:
        if not cmd.names or len(cmd.names) > self.policy.max_names:
            return b"ERR names: need 1..%d names" % self.policy.max_names
        lines = []
        seed = struct.pack(">QQQ", ctx.seq, index, op.timestamp)
        for raw in cmd.names:
            name = names.normalize(raw)
            reason = names.check_dns_name(name, allow_wildcard=self.policy.allow_wildcards)
            if reason:
                return f"ERR names: {name!r}: {reason}".encode()
            base = name.removeprefix("*.")  # a wildcard is proven by controlling its base domain
            value = ownership.challenge_value(seed, op.client, base)
            self.challenges[(op.client, base)] = _Challenge(op.client, base, value, ctx.time_us)
            lines.append(f"{base} {ownership.key_authorization(value, op.client)}")
        return ("CHALLENGE\n" + "\n".join(lines)).encode()

    def _request(self, req: IssueRequest, op: Operation, ctx: ExecutionContext, index: int) -> bytes:
        policy = self.policy
        try:
            csr = x509.load_der_x509_csr(req.csr_der)
        except ValueError as exc:
            return f"ERR csr: does not parse ({str(exc)[:100]})".encode()
        if not csr.is_signature_valid:
            return b"ERR csr: signature does not verify (no proof of key possession)"
        key = csr.public_key()
        key_error = _check_key(key)
        if key_error:
            return f"ERR csr: {key_error}".encode()
        if not req.names or len(req.names) > policy.max_names:
            return b"ERR names: need 1..%d names" % policy.max_names
        if len(req.proofs) != len(req.names):
            return b"ERR proofs: one ownership proof per name is required"
        requested = [names.normalize(n) for n in req.names]
        if len(set(requested)) != len(requested):
            return b"ERR names: duplicate names"
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            csr_names = {names.normalize(n) for n in san.get_values_for_type(x509.DNSName)}
            if csr_names and csr_names != set(requested):
                return b"ERR names: differ from the CSR's subjectAltName"
        except x509.ExtensionNotFound:
            pass
        for name, proof in zip(requested, req.proofs, strict=True):
            reason = names.check_dns_name(name, allow_wildcard=policy.allow_wildcards)
            if reason:
                return f"ERR names: {name!r}: {reason}".encode()
            reason = caa.check_caa(self.lookup, name, policy.ca_domain, _account_uri(op.client))
            if reason:
                return f"ERR caa: {name!r}: {reason}".encode()
            chal = self.challenges.get((op.client, name.removeprefix("*.")))
            reason = ownership.check_ownership(self.lookup, name, chal.value if chal else None, op.client, proof)
            if reason:
                return f"ERR ownership: {name!r}: {reason}".encode()
        if policy.require_payment:
            if req.payment_ref in self.spent_payments:
                return b"ERR payment: reference already used"
            if not policy.payment_check(req.payment_ref, op.client):
                return b"ERR payment: not verified"
        lifetime = dt.timedelta(seconds=req.lifetime_s) if req.lifetime_s else policy.default_lifetime
        if lifetime > policy.max_lifetime or lifetime < dt.timedelta(minutes=1):
            return f"ERR lifetime: must be between 60 s and {int(policy.max_lifetime.total_seconds())} s".encode()
        account_key = "acct:" + op.client.hex()
        if not self.rate.allows(account_key, ctx.time_us, policy.account_limit):
            return b"ERR rate: too many requests for this account"
        domains = sorted({"dom:" + names.registered_domain(n) for n in requested})
        for d in domains:
            if not self.rate.allows(d, ctx.time_us, policy.domain_limit):
                return f"ERR rate: too many certificates for {d[4:]}".encode()
        # Approved: derive serial and validity from the ordered request and consensus time only. Not from
        # ctx.view: a batch committed at one seq can carry different views on different replicas (those
        # that committed before a view change and those that committed its re-proposal after it).
        issuer = self.current_issuer
        request_bytes = cax509.request_digest(op.client, struct.pack(">QQ", op.timestamp, index), op.payload)
        try:
            tbs = cax509.leaf_tbs(
                key, requested, issuer, consensus_datetime(ctx.time_us), ctx.seq, request_bytes, lifetime
            )
        except cax509.CertificateError as exc:
            return f"ERR names: {exc}".encode()
        serial = serial_bytes(cax509.serial_number(cax509.request_digest(b"leaf", request_bytes), ctx.seq))
        if serial in self.issued or any(p.serial == serial for p in self.pending.values()):
            return b"ERR serial: collision, resubmit"
        self.rate.record(account_key, ctx.time_us)
        for d in domains:
            self.rate.record(d, ctx.time_us)
        if policy.require_payment:
            self.spent_payments.add(req.payment_ref)
        for name in requested:
            self.challenges.pop((op.client, name.removeprefix("*.")), None)
        pending = PendingIssuance(
            self.next_pending_id, tbs, issuer.public_key, serial, op.client, tuple(requested), ctx.time_us
        )
        self.pending[pending.pending_id] = pending
        self.next_pending_id += 1
        self._events.append(PendingRecorded(pending))
        return f"PENDING {pending.pending_id} {serial.hex()}".encode()

    def _finalize(self, cmd: FinalizeCommand, op: Operation) -> bytes:
        pending = self.pending.get(cmd.pending_id)
        if pending is None:
            return b"ERR pending: unknown or already finalized"
        try:
            cert = cax509.finalize(pending.tbs, cmd.signature, pending.issuer_key)
        except cax509.CertificateError as exc:
            # Attributed: the submitter's key is on the ordered request, so every replica counts it.
            self.bad_finalizers[op.client] = self.bad_finalizers.get(op.client, 0) + 1
            self._events.append(FinalizeRejected(cmd.pending_id, op.client, str(exc)))
            return f"ERR signature: {exc} (submitted by {op.client.hex()[:16]})".encode()
        del self.pending[cmd.pending_id]
        der_bytes = cert.public_bytes(Encoding.DER)
        record = IssuedCertificate(
            pending.serial, der_bytes, pending.account, pending.names, datetime_us(cert.not_valid_after_utc)
        )
        self.issued[pending.serial] = record
        self._events.append(Finalized(cmd.pending_id, pending.serial, der_bytes))
        return f"OK issued {pending.serial.hex()}".encode()

    def _revoke(self, cmd: RevokeCommand, op: Operation, ctx: ExecutionContext) -> bytes:
        record = self.issued.get(cmd.serial)
        if record is None:
            return b"ERR serial: not issued by this CA"
        if cmd.reason not in REVOCATION_REASONS:
            return b"ERR reason: not a permitted CRLReason code"
        operator = op.client in self.policy.operators
        if not operator and (op.client != record.account or cmd.reason in OPERATOR_REASONS):
            return b"ERR authorization: only the subscriber or a CA operator may revoke"
        if record.revoked_us is not None:
            return b"OK already revoked"
        self.issued[cmd.serial] = IssuedCertificate(
            record.serial,
            record.certificate_der,
            record.account,
            record.names,
            record.not_after_us,
            ctx.time_us,
            cmd.reason,
        )
        self._events.append(Revoked(cmd.serial, cmd.reason))
        return f"OK revoked {cmd.serial.hex()}".encode()

    def _install_issuer(self, cmd: InstallIssuerCommand, op: Operation) -> bytes:
        if op.client not in self.policy.operators:
            return b"ERR authorization: only a CA operator may install an issuer"
        try:
            cert = x509.load_der_x509_certificate(cmd.certificate_der)
        except ValueError:
            return b"ERR certificate: does not parse"
        key = cert.public_key()
        if not isinstance(key, ed25519.Ed25519PublicKey):
            return b"ERR certificate: issuing key must be an Ed25519 (FROST) group key"
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return b"ERR certificate: not a CA"
        if not bc.ca:
            return b"ERR certificate: not a CA"
        if not any(cax509.verify_signature(cert, root) for root in self.policy.root_keys):
            return b"ERR certificate: not signed by a trusted root key"
        self.issuer_certificates.append(cmd.certificate_der)
        return f"OK issuer {key.public_bytes_raw().hex()[:16]}".encode()


def _account_uri(account: bytes) -> str:
    """The RFC 8657 ``accounturi`` a domain owner writes into CAA to pin one TrustChain account."""
    return "trustchain:account:" + account.hex()


def _check_key(key: object) -> str | None:
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | MLDSA65PublicKey | MLDSA87PublicKey):
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if key.curve.name in ("secp256r1", "secp384r1") else f"curve {key.curve.name} not allowed"
    if isinstance(key, rsa.RSAPublicKey):
        return None if 2048 <= key.key_size <= 8192 and key.key_size % 8 == 0 else "RSA key size not allowed"
    return "public key algorithm not allowed"


def public_key_bytes(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
