"""The replicated certificate authority: an ``Application`` that every replica executes identically.

Why two ordered steps: a FROST signature is randomised and made by only a quorum, so it cannot be
produced inside ``execute``. An ordered *request* is checked deterministically (CSR signature, names,
CAA, dns-01 ownership proof, payment, rate limits in consensus time) and, if approved, becomes a
*pending issuance* holding the exact TBS bytes. The signers then run FROST outside consensus
(``signing_service``) and submit a *finalize* command; every replica checks the aggregated signature
under the issuing group key before recording the certificate, and attributes a bad one to its
submitter. Revocation is ordered state too, so every replica's CRL and OCSP answers agree.

CRLs and OCSP responses follow the same two steps. ``sign_crl`` builds the TBSCertList from the
replicated revocations, the consensus time and the next CRL number; ``sign_ocsp_batch`` builds one
request-independent response TBS (RFC 5019) for each of up to ``limit`` serials that need one (new,
status changed, or older than ``ocsp_refresh_us``). Both record *pending signatures* in the same id
space as pending issuances, so the signing service signs them without knowing what they are, and the
same ``finalize`` command stores the signed CRL or response in replicated state: every node serves
identical bytes. ``pending_items()`` is the whole set the signing service must follow.

Results are ``b"OK ..."``, ``b"PENDING <id> <serial hex>"`` or ``b"ERR <field>: <reason>"``; ``execute``
never raises on bad input.
"""

from __future__ import annotations

import datetime as dt
import re
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
from trustchain.ca import crl as cacrl
from trustchain.ca import ocsp as caocsp
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

    op: str  # "challenge" | "request" | "finalize" | "revoke" | "install_issuer" | "sign_crl" | "sign_ocsp_batch"
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


@dataclass(frozen=True)
class SignCRLCommand:
    """Record a pending CRL if one is due (none yet, revocations changed, or ``crl_refresh_us`` passed)."""

    force: bool = False  # sign a new CRL even if the current one is fresh (operators only)


@dataclass(frozen=True)
class SignOCSPBatchCommand:
    """Record pending OCSP responses for up to ``limit`` serials (0: the policy's ``ocsp_batch_max``)."""

    limit: int = 0


def parse_pending(result: bytes) -> tuple[int, bytes] | None:
    """(pending id, serial) of a ``PENDING <id> <serial hex>`` result; None for any other result."""
    if not result.startswith(b"PENDING "):
        return None
    _, pending_id, serial_hex = result.decode().split()
    return int(pending_id), bytes.fromhex(serial_hex)


def parse_challenge(result: bytes) -> dict[str, str] | None:
    """{base name: key authorization} of a ``CHALLENGE`` result; None for any other result."""
    if not result.startswith(b"CHALLENGE\n"):
        return None
    return dict(line.split(" ", 1) for line in result.decode().splitlines()[1:])


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


def sign_crl_command(force: bool = False) -> bytes:
    return encode(CACommand("sign_crl", encode(SignCRLCommand(force))))


def sign_ocsp_batch_command(limit: int = 0) -> bytes:
    return encode(CACommand("sign_ocsp_batch", encode(SignOCSPBatchCommand(limit))))


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


CRL, OCSP = "crl", "ocsp"


@dataclass(frozen=True)
class PendingSignature:
    """A CRL (``kind`` "crl", ``number`` its CRL number, ``count`` the revocations it lists) or an OCSP
    response (``kind`` "ocsp" for ``serial``, ``count`` 1 if it says revoked) waiting for FROST."""

    pending_id: int
    kind: str
    tbs: bytes
    issuer_key: bytes
    serial: bytes
    number: int
    count: int
    created_us: int
    next_update_us: int


@dataclass(frozen=True)
class SignedCRL:
    number: int
    der: bytes
    this_update_us: int
    next_update_us: int
    count: int  # revocations it lists


@dataclass(frozen=True)
class SignedOCSP:
    serial: bytes
    der: bytes
    produced_us: int
    next_update_us: int
    revoked: bool


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
class _SnapshotV1:
    version: int
    next_pending_id: int
    issuer_certificates: tuple[bytes, ...]
    challenges: tuple[_Challenge, ...]
    pending: tuple[PendingIssuance, ...]
    issued: tuple[IssuedCertificate, ...]
    spent_payments: tuple[str, ...]
    windows: tuple[_Window, ...]
    bad_finalizers: tuple[_Count, ...]


@dataclass(frozen=True)
class _Snapshot:
    """Version 2 adds CRL/OCSP state. ``ocsp`` is in refresh order (oldest first) and ``ocsp_dirty`` in
    the order serials became dirty: both orders are replicated state, since batches follow them."""

    version: int
    next_pending_id: int
    issuer_certificates: tuple[bytes, ...]
    challenges: tuple[_Challenge, ...]
    pending: tuple[PendingIssuance, ...]
    issued: tuple[IssuedCertificate, ...]
    spent_payments: tuple[str, ...]
    windows: tuple[_Window, ...]
    bad_finalizers: tuple[_Count, ...]
    signatures: tuple[PendingSignature, ...]
    crl: SignedCRL | None
    next_crl_number: int
    ocsp: tuple[SignedOCSP, ...]
    ocsp_dirty: tuple[bytes, ...]


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


@dataclass(frozen=True)
class SignatureRecorded:
    """A CRL or OCSP TBS is pending (the signing service follows ``pending_items()``)."""

    pending: PendingSignature


@dataclass(frozen=True)
class SignatureStored:
    """A FROST-signed CRL (``serial`` empty) or OCSP response is now in replicated state."""

    pending_id: int
    kind: str
    serial: bytes


Event = (PendingRecorded | Finalized | FinalizeRejected | Revoked | PendingExpired | SignatureRecorded
         | SignatureStored)

PaymentCheck = Callable[[str, bytes], bool]
"""Deterministic payment verification ``(reference, account) -> paid``; backed by replicated state."""


def _any_payment(reference: str, account: bytes) -> bool:
    return bool(reference)


NODE_DOMAIN = "nodes.trustchain.internal"
NODE_MIN_LIFETIME = dt.timedelta(seconds=10)
_NODE_LABEL = re.compile(r"validator-(0|[1-9][0-9]{0,5})")


def node_name(index: int, node_domain: str = NODE_DOMAIN) -> str:
    """The DNS name in validator ``index``'s (0-based replica id) TLS node certificate."""
    return f"validator-{index}.{node_domain}"


def _under(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


def node_index(name: str, node_domain: str = NODE_DOMAIN) -> int | None:
    """The validator index a (normalized) node name designates, or None if it is not one."""
    label, dot, rest = name.partition(".")
    if not dot or rest != node_domain:
        return None
    m = _NODE_LABEL.fullmatch(label)
    return int(m.group(1)) if m else None


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
    crl_lifetime_us: int = 86_400_000_000  # nextUpdate - thisUpdate
    crl_refresh_us: int = 12 * 3_600_000_000  # an unchanged CRL is re-signed after this
    ocsp_validity_us: int = 3 * 86_400_000_000  # nextUpdate - thisUpdate of a pre-signed response
    ocsp_refresh_us: int = 86_400_000_000  # a response is re-signed after this (2 days of slack)
    ocsp_batch_max: int = 256
    # Validator node certificates: names under ``node_domain`` are issued only by the node-name rule
    # (``_check_node_names``), which checks the request's client key against these consensus keys.
    node_domain: str = NODE_DOMAIN
    validator_keys: tuple[bytes, ...] = ()


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
        self.signatures: dict[int, PendingSignature] = {}
        self.crl: SignedCRL | None = None
        self.next_crl_number = 1
        self.ocsp: dict[bytes, SignedOCSP] = {}  # refresh order: re-signed entries move to the end
        self.ocsp_dirty: dict[bytes, None] = {}  # serials needing a (new) response, in order
        self._index_signatures()
        self._events: list[Event] = []

    def _index_signatures(self) -> None:
        """Derived from replicated state (never snapshotted): what is pending per serial, revocation count."""
        self._ocsp_pending = {p.serial: p.pending_id for p in self.signatures.values() if p.kind == OCSP}
        self._crl_pending = next((p.pending_id for p in self.signatures.values() if p.kind == CRL), None)
        self._revoked_count = sum(1 for c in self.issued.values() if c.revoked_us is not None)

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
            version=2,
            next_pending_id=self.next_pending_id,
            issuer_certificates=tuple(self.issuer_certificates),
            challenges=tuple(self.challenges[k] for k in sorted(self.challenges)),
            pending=tuple(self.pending[k] for k in sorted(self.pending)),
            issued=tuple(self.issued[k] for k in sorted(self.issued)),
            spent_payments=tuple(sorted(self.spent_payments)),
            windows=tuple(_Window(k, v) for k, v in self.rate.items()),
            bad_finalizers=tuple(_Count(k, self.bad_finalizers[k]) for k in sorted(self.bad_finalizers)),
            signatures=tuple(self.signatures[k] for k in sorted(self.signatures)),
            crl=self.crl,
            next_crl_number=self.next_crl_number,
            ocsp=tuple(self.ocsp.values()),
            ocsp_dirty=tuple(self.ocsp_dirty),
        )
        return encode(snap)

    def restore(self, snapshot: bytes) -> None:
        version = int.from_bytes(snapshot[:8], "big") if len(snapshot) >= 8 else -1
        if version == 1:  # before CRL/OCSP state: restore it empty
            old = decode(_SnapshotV1, snapshot)
            snap = _Snapshot(2, old.next_pending_id, old.issuer_certificates, old.challenges, old.pending,
                             old.issued, old.spent_payments, old.windows, old.bad_finalizers, (), None, 1, (), ())
        elif version == 2:
            snap = decode(_Snapshot, snapshot)
        else:
            raise DecodeError(f"CA snapshot version {version} unsupported")
        self.next_pending_id = snap.next_pending_id
        self.issuer_certificates = list(snap.issuer_certificates)
        self.challenges = {(c.account, c.name): c for c in snap.challenges}
        self.pending = {p.pending_id: p for p in snap.pending}
        self.issued = {c.serial: c for c in snap.issued}
        self.spent_payments = set(snap.spent_payments)
        self.rate = SlidingWindow()
        self.rate.events = {w.key: list(w.times) for w in snap.windows}
        self.bad_finalizers = {c.key: c.value for c in snap.bad_finalizers}
        self.signatures = {p.pending_id: p for p in snap.signatures}
        self.crl = snap.crl
        self.next_crl_number = snap.next_crl_number
        self.ocsp = {r.serial: r for r in snap.ocsp}
        self.ocsp_dirty = dict.fromkeys(snap.ocsp_dirty)
        self._index_signatures()
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

    def pending_items(self) -> dict[int, bytes]:
        """Everything the signing service must sign, ``{pending_id: tbs}`` in id order: pending
        issuances, CRLs and OCSP responses. ``SigningService.reconcile`` follows it."""
        items = {p: v.tbs for p, v in self.pending.items()}
        items.update((p, v.tbs) for p, v in self.signatures.items())
        return dict(sorted(items.items()))

    def crl_due(self, now_us: int) -> bool:
        """Would ``sign_crl`` record a new CRL now? (The node asks before submitting one.)"""
        if self._crl_pending is not None:
            return False
        crl_ = self.crl
        return crl_ is None or crl_.count != self._revoked_count or now_us - crl_.this_update_us >= \
            self.policy.crl_refresh_us

    def ocsp_due(self, now_us: int) -> bool:
        """Would ``sign_ocsp_batch`` record any response now? (One batch is pending at a time.)"""
        return not self._ocsp_pending and bool(self._ocsp_work(now_us, 1, prune=False))

    def ocsp_response(self, serial: int) -> bytes | None:
        """The stored FROST-signed OCSP response for ``serial`` if it states the current status (a
        revocation drops the good one until the revoked one is signed)."""
        if serial <= 0:
            return None
        rec = self.ocsp.get(serial_bytes(serial))
        return rec.der if rec is not None else None

    def ocsp_known(self, serial: int) -> bool:
        """Issued by this CA and a response is (or will be) made for it."""
        rec = self.status(serial)
        return rec is not None and (serial_bytes(serial) in self.ocsp_dirty or serial_bytes(serial) in
                                    self._ocsp_pending or serial_bytes(serial) in self.ocsp)

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
            if cmd.op == "sign_crl":
                return self._sign_crl(decode(SignCRLCommand, cmd.body), op, ctx)
            if cmd.op == "sign_ocsp_batch":
                return self._sign_ocsp_batch(decode(SignOCSPBatchCommand, cmd.body), ctx)
        except DecodeError as exc:
            return b"ERR malformed command: " + str(exc).encode()[:200]
        return b"ERR op: unknown operation " + cmd.op.encode()[:32]

    def _expire(self, now_us: int) -> None:
        for key in [k for k, c in self.challenges.items() if now_us - c.created_us > self.policy.challenge_ttl_us]:
            del self.challenges[key]
        for pid in [p for p, v in sorted(self.pending.items()) if now_us - v.created_us > self.policy.pending_ttl_us]:
            del self.pending[pid]
            self._events.append(PendingExpired(pid))
        ttl = self.policy.pending_ttl_us
        expired = [p for p, v in sorted(self.signatures.items()) if now_us - v.created_us > ttl]
        for pid in expired:
            sig = self.signatures.pop(pid)
            if sig.kind == OCSP:
                self.ocsp_dirty[sig.serial] = None  # try again in a later batch
            self._events.append(PendingExpired(pid))
        if expired:
            self._index_signatures()

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
        return ("CHALLENGE\n" + "\n".join(lines)).encode()  # parse_challenge reads it

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
        node_rule = self._check_node_names(requested, op.client)
        if node_rule is not None:
            return node_rule
        node_request = any(_under(n, policy.node_domain) for n in requested)
        # A node name is proven by the validator key (_check_node_names): no CAA, no dns-01.
        for name, proof in ([] if node_request else zip(requested, req.proofs, strict=True)):
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
        if policy.require_payment and not node_request:
            if req.payment_ref in self.spent_payments:
                return b"ERR payment: reference already used"
            if not policy.payment_check(req.payment_ref, op.client):
                return b"ERR payment: not verified"
        lifetime = dt.timedelta(seconds=req.lifetime_s) if req.lifetime_s else policy.default_lifetime
        min_lifetime = NODE_MIN_LIFETIME if node_request else dt.timedelta(minutes=1)
        if lifetime > policy.max_lifetime or lifetime < min_lifetime:
            return (f"ERR lifetime: must be between {int(min_lifetime.total_seconds())} s and "
                    f"{int(policy.max_lifetime.total_seconds())} s").encode()
        account_key = "acct:" + op.client.hex()
        if not self.rate.allows(account_key, ctx.time_us, policy.account_limit):
            return b"ERR rate: too many requests for this account"
        # Node names are limited per validator (its account), not per shared registered domain.
        domains = [] if node_request else sorted({"dom:" + names.registered_domain(n) for n in requested})
        for d in domains:
            if not self.rate.allows(d, ctx.time_us, policy.domain_limit):
                return f"ERR rate: too many certificates for {d[4:]}".encode()
        # Approved: derive serial and validity from the ordered request and consensus time only. Not from
        # ctx.view: a batch committed at one seq can carry different views on different replicas (those
        # that committed before a view change and those that committed its re-proposal after it).
        issuer = self.current_issuer
        request_bytes = cax509.request_digest(op.client, struct.pack(">QQ", op.timestamp, index), op.payload)
        try:
            # Node certificates carry their name in CN too (non-critical SAN): GnuTLS-based DoQ clients
            # (kdig) refuse the empty-subject profile.
            tbs = cax509.leaf_tbs(
                key, requested, issuer, consensus_datetime(ctx.time_us), ctx.seq, request_bytes, lifetime,
                common_name=node_request,
            )
        except cax509.CertificateError as exc:
            return f"ERR names: {exc}".encode()
        serial = serial_bytes(cax509.serial_number(cax509.request_digest(b"leaf", request_bytes), ctx.seq))
        if serial in self.issued or any(p.serial == serial for p in self.pending.values()):
            return b"ERR serial: collision, resubmit"
        self.rate.record(account_key, ctx.time_us)
        for d in domains:
            self.rate.record(d, ctx.time_us)
        if policy.require_payment and not node_request:
            self.spent_payments.add(req.payment_ref)
        for name in requested:
            self.challenges.pop((op.client, name.removeprefix("*.")), None)
        pending = PendingIssuance(
            self.next_pending_id, tbs, issuer.public_key, serial, op.client, tuple(requested), ctx.time_us
        )
        self.pending[pending.pending_id] = pending
        self.next_pending_id += 1
        self._events.append(PendingRecorded(pending))
        return f"PENDING {pending.pending_id} {serial.hex()}".encode()  # parse_pending reads it

    def _check_node_names(self, requested: Sequence[str], client: bytes) -> bytes | None:
        """The node-name rule. A name under ``policy.node_domain`` is a validator's identity on the peer
        links, so DNS cannot prove control of it (the zone is not public, and a DNS update is itself an
        ordered command anyone may submit). Instead: ``validator-<i>.<node_domain>`` may be requested
        only alone and only by a request whose client key *is* validator i's consensus key (the request
        signature, checked by consensus, proves possession). Every other name under the node domain is
        refused. Returns None if no requested name is a node name, or if the rule holds; otherwise the
        error result. Deterministic: it reads only the request and the genesis policy."""
        domain = self.policy.node_domain
        node = [n for n in requested if _under(n, domain)]
        if not node:
            return None
        if len(requested) != 1:
            return b"ERR names: a node name must be requested alone"
        index = node_index(node[0], domain)
        keys = self.policy.validator_keys
        if index is None or index >= len(keys):
            return f"ERR names: {node[0]!r}: not a validator node name under {domain}".encode()
        if client != keys[index]:
            return f"ERR ownership: {node[0]!r}: only validator {index}'s consensus key may request it".encode()
        return None

    def _finalize(self, cmd: FinalizeCommand, op: Operation) -> bytes:
        if cmd.pending_id in self.signatures:
            return self._finalize_signature(self.signatures[cmd.pending_id], cmd.signature, op)
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
        self.ocsp_dirty[pending.serial] = None  # its first OCSP response goes into the next batch
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
        self._revoked_count += 1
        # The stored "good" response is withdrawn now (the responder says tryLater, never good) and a
        # revoked one goes to the front of the next batch.
        self.ocsp.pop(cmd.serial, None)
        self.ocsp_dirty.pop(cmd.serial, None)
        self.ocsp_dirty = {cmd.serial: None, **self.ocsp_dirty}
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


    # -- CRL and OCSP signing (pending signatures) ---------------------------------------------------

    def _record_signature(self, kind: str, tbs: bytes, serial: bytes, number: int, count: int, now_us: int,
                          next_update_us: int) -> PendingSignature:
        sig = PendingSignature(self.next_pending_id, kind, tbs, self.current_issuer.public_key, serial, number,
                               count, now_us, next_update_us)
        self.signatures[sig.pending_id] = sig
        self.next_pending_id += 1
        if kind == OCSP:
            self._ocsp_pending[serial] = sig.pending_id
        else:
            self._crl_pending = sig.pending_id
        self._events.append(SignatureRecorded(sig))
        return sig

    def _sign_crl(self, cmd: SignCRLCommand, op: Operation, ctx: ExecutionContext) -> bytes:
        if cmd.force and op.client not in self.policy.operators:
            return b"ERR authorization: only a CA operator may force a CRL"
        if self._crl_pending is not None:
            return f"OK crl pending {self._crl_pending}".encode()
        if not cmd.force and not self.crl_due(ctx.time_us):
            return f"OK crl current {self.crl.number if self.crl else 0}".encode()
        issuer = self.current_issuer
        this_update = consensus_datetime(ctx.time_us)
        lifetime = dt.timedelta(microseconds=self.policy.crl_lifetime_us)
        revocations = cacrl.revocations_from(self.revoked())
        tbs = cacrl.crl_tbs(issuer, revocations, this_update, self.next_crl_number, lifetime)
        number = self.next_crl_number
        self.next_crl_number += 1
        start_us = datetime_us(this_update.replace(microsecond=0))
        sig = self._record_signature(CRL, tbs, b"", number, len(revocations), start_us,
                                     start_us + self.policy.crl_lifetime_us)
        return f"SIGNING crl {number} {sig.pending_id}".encode()

    def _ocsp_work(self, now_us: int, limit: int, *, prune: bool) -> list[bytes]:
        """Serials that need a response, most urgent first: dirty ones (new, revoked), then stored
        responses older than ``ocsp_refresh_us``. Expired certificates get none (and are forgotten when
        ``prune``). Stops after ``limit``; the refresh scan stops at the first fresh response, since
        ``self.ocsp`` is in signing order, so one batch costs O(limit), not O(issued)."""
        out: list[bytes] = []
        expired_dirty: list[bytes] = []
        expired_stored: list[bytes] = []
        for serial in self.ocsp_dirty:  # iterated in place (no copy of the whole dict): deletions come after
            if len(out) >= limit:
                break
            rec = self.issued.get(serial)
            if rec is None or rec.not_after_us <= now_us:
                expired_dirty.append(serial)
            elif serial not in self._ocsp_pending:
                out.append(serial)
        stale_before = now_us - self.policy.ocsp_refresh_us
        for serial, resp in self.ocsp.items():
            if len(out) >= limit or resp.produced_us > stale_before:
                break
            if self.issued[serial].not_after_us <= now_us:
                expired_stored.append(serial)
            elif serial not in self._ocsp_pending and serial not in self.ocsp_dirty:
                out.append(serial)
        if prune:
            for serial in expired_dirty:
                del self.ocsp_dirty[serial]
            for serial in expired_stored:
                del self.ocsp[serial]
        return out

    def _sign_ocsp_batch(self, cmd: SignOCSPBatchCommand, ctx: ExecutionContext) -> bytes:
        if self._ocsp_pending:
            return f"OK ocsp pending {len(self._ocsp_pending)}".encode()
        limit = min(cmd.limit or self.policy.ocsp_batch_max, self.policy.ocsp_batch_max)
        serials = self._ocsp_work(ctx.time_us, limit, prune=True)
        if not serials:
            return b"OK ocsp current"
        issuer = self.current_issuer
        produced = consensus_datetime(ctx.time_us).replace(microsecond=0)
        produced_us = datetime_us(produced)
        validity = dt.timedelta(microseconds=self.policy.ocsp_validity_us)
        first = self.next_pending_id
        for serial in serials:
            rec = self.issued[serial]
            if rec.revoked_us is None:
                status = caocsp.CertStatus(known=True)
            else:
                status = caocsp.CertStatus(True, consensus_datetime(rec.revoked_us), rec.reason or 0)
            tbs = caocsp.presigned_tbs(issuer, int.from_bytes(serial, "big"), status, produced, validity)
            self.ocsp_dirty.pop(serial, None)
            self._record_signature(OCSP, tbs, serial, 0, int(rec.revoked_us is not None), produced_us,
                                   produced_us + self.policy.ocsp_validity_us)
        return f"SIGNING ocsp {len(serials)} {first}-{self.next_pending_id - 1}".encode()

    def _finalize_signature(self, sig: PendingSignature, signature: bytes, op: Operation) -> bytes:
        try:
            if sig.kind == CRL:
                der_bytes = cacrl.assemble_crl(sig.tbs, signature)
                cacrl.finalize_crl(sig.tbs, signature, sig.issuer_key)
            else:
                der_bytes = caocsp.finalize_response(sig.tbs, signature, sig.issuer_key)
        except ValueError as exc:  # CRLError, OCSPError: attributed like a bad certificate signature
            self.bad_finalizers[op.client] = self.bad_finalizers.get(op.client, 0) + 1
            self._events.append(FinalizeRejected(sig.pending_id, op.client, str(exc)))
            return f"ERR signature: {exc} (submitted by {op.client.hex()[:16]})".encode()
        del self.signatures[sig.pending_id]
        if sig.kind == CRL:
            self._crl_pending = None
            self.crl = SignedCRL(sig.number, der_bytes, sig.created_us, sig.next_update_us, sig.count)
            self._events.append(SignatureStored(sig.pending_id, CRL, b""))
            return f"OK crl {sig.number}".encode()
        self._ocsp_pending.pop(sig.serial, None)
        rec = self.issued.get(sig.serial)
        if rec is None or (rec.revoked_us is not None) != bool(sig.count):
            # Revoked while this response was being signed: it is stale, the revoked one is queued.
            return f"OK ocsp {sig.serial.hex()} stale".encode()
        self.ocsp.pop(sig.serial, None)
        self.ocsp[sig.serial] = SignedOCSP(sig.serial, der_bytes, sig.created_us, sig.next_update_us,
                                           rec.revoked_us is not None)
        self._events.append(SignatureStored(sig.pending_id, OCSP, sig.serial))
        return f"OK ocsp {sig.serial.hex()}".encode()


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
