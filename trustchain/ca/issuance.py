"""The replicated certificate authority: an ``Application`` that every replica executes identically.

Why two ordered steps: a FROST signature is randomised and made by only a quorum, so it cannot be
produced inside ``execute``. An ordered *request* is checked deterministically (CSR signature, names,
CAA, dns-01 ownership proof, payment, rate limits in consensus time) and, if approved, becomes a
*pending issuance* holding the exact TBS bytes. The signers then run FROST outside consensus
(``signing_service``) and submit a *finalize* command; every replica checks the aggregated signature
under the issuing group key before recording the certificate, and attributes a bad one to its
submitter. Revocation is ordered state too, so every replica's CRL and OCSP answers agree; CRLs and
OCSP responses are signed the same way (``revocation``). ``pending_items()`` is the whole set the
signing service must follow.

Every command is decoded by the op's entry in ``HANDLERS`` (the one dispatch table) and answered with an
encoded ``commands.CAResult``; ``execute`` never raises on bad input.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import approval, ca_snapshot, caa, names, ownership
from trustchain.ca import x509 as cax509
from trustchain.ca.commands import (
    KIND_CERTIFICATE,
    KIND_ISSUER,
    MAX_FINALIZE_BATCH,
    STATUS_CHALLENGE,
    STATUS_OK,
    STATUS_PENDING,
    STATUS_UNCHANGED,
    CACommand,
    CAResult,
    ChallengeCommand,
    ChallengeToken,
    FinalizeBatchCommand,
    FinalizeCommand,
    InstallIssuerCommand,
    IssueRequest,
    RevokeCommand,
    RevokeIssuerCommand,
    SerialCommitCommand,
    SerialRevealCommand,
    SignCRLCommand,
    SignOCSPBatchCommand,
    SignRootCommand,
)
from trustchain.ca.consensus_time import consensus_datetime, datetime_us
from trustchain.ca.crl import CRLError
from trustchain.ca.events import (
    Event,
    Finalized,
    FinalizeRejected,
    PendingExpired,
    PendingRecorded,
    PrecertSigned,
    Revoked,
)
from trustchain.ca.ocsp import OCSPError
from trustchain.ca.policy import CAPolicy
from trustchain.ca.ratelimit import SlidingWindow
from trustchain.ca.records import (
    KEY_COMPROMISE,
    OPERATOR_REASONS,
    AwaitingSerial,
    IssuedCertificate,
    PendingIssuance,
    PendingSignature,
    SignedCRL,
    SignedOCSP,
    StoredChallenge,
    reason_problem,
    serial_bytes,
)
from trustchain.ca.revocation import RevocationState
from trustchain.ca.root import RootState
from trustchain.ca.serials import Draw, SerialRandomness, serial_from_output
from trustchain.encoding import DecodeError, decode, encode


class CAApplication:
    """The replicated CA state machine (see module docstring). ``lookup`` is the replicated DNS view."""

    def __init__(self, policy: CAPolicy, lookup: caa.DNSLookup) -> None:
        self.policy = policy
        self.lookup = lookup
        self.next_pending_id = 1
        self.issuer_certificates: list[bytes] = []
        self.challenges: dict[tuple[bytes, str], StoredChallenge] = {}
        self.pending: dict[int, PendingIssuance] = {}
        self.issued: dict[bytes, IssuedCertificate] = {}
        self.spent_payments: set[str] = set()
        self.rate = SlidingWindow()
        self.bad_finalizers: dict[bytes, int] = {}
        self._events: list[Event] = []
        self.revocation = RevocationState(self)
        self.root = RootState(self)
        assert not policy.serial_contributors or len(policy.validator_keys) >= policy.serial_contributors
        self.serials = SerialRandomness(len(policy.validator_keys), policy.serial_contributors)

    # -- Application interface ---------------------------------------------------------------------

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        self._expire(context.time_us)
        results = []
        for index, op in enumerate(operations):
            try:
                result = self._apply(op, context, index)
            except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # defence in depth: never raise
                result = CAResult.error(f"command: {str(exc)[:200]}")
            results.append(encode(result))
        return results

    def snapshot(self) -> bytes:
        return ca_snapshot.capture(self)

    def restore(self, snapshot: bytes) -> None:
        ca_snapshot.load(self, snapshot)

    # -- what the revocation state reads (``revocation.Host``) ---------------------------------------

    def allocate_pending_id(self) -> int:
        """Pending issuances, CRLs and OCSP responses share one id space (the signing service's)."""
        pending_id = self.next_pending_id
        self.next_pending_id += 1
        return pending_id

    def emit(self, event: Event) -> None:
        self._events.append(event)

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
        return dataclasses.replace(self.policy.issuer, name=cert.subject, public_key=key.public_bytes_raw(),
                                   not_after=cert.not_valid_after_utc)

    def status(self, serial: int) -> IssuedCertificate | None:
        return self.issued.get(serial_bytes(serial)) if serial > 0 else None

    def revoked(self) -> list[IssuedCertificate]:
        return [c for _, c in sorted(self.issued.items()) if c.revoked_us is not None]

    def pending_items(self) -> dict[int, bytes]:
        """Everything the signing service must sign, ``{pending_id: tbs}`` in id order: pending
        issuances, CRLs and OCSP responses. ``SigningService.reconcile`` follows it."""
        items = {p: v.tbs for p, v in self.pending.items()}
        items.update((p, v.tbs) for p, v in self.revocation.signatures.items())
        return dict(sorted(items.items()))

    @property
    def signatures(self) -> dict[int, PendingSignature]:
        """Pending CRL and OCSP signatures (read-only view of ``revocation``)."""
        return self.revocation.signatures

    @property
    def crl(self) -> SignedCRL | None:
        """The current FROST-signed CRL, if one was signed yet."""
        return self.revocation.crl

    @property
    def ocsp(self) -> dict[bytes, SignedOCSP]:
        """The stored FROST-signed OCSP responses by serial."""
        return self.revocation.ocsp

    def crl_due(self, now_us: int) -> bool:
        """Would ``sign_crl`` record a new CRL now? (The node asks before submitting one.)"""
        return self.revocation.crl_due(now_us)

    def ocsp_due(self, now_us: int) -> bool:
        """Would ``sign_ocsp_batch`` record any response now? (One batch is pending at a time.)"""
        return self.revocation.ocsp_due(now_us)

    def ocsp_response(self, serial: int) -> bytes | None:
        """The stored FROST-signed OCSP response for ``serial`` if it states the current status (a
        revocation drops the good one until the revoked one is signed)."""
        if serial <= 0:
            return None
        rec = self.revocation.ocsp.get(serial_bytes(serial))
        return rec.der if rec is not None else None

    def ocsp_known(self, serial: int) -> bool:
        """Issued by this CA and a response is (or will be) made for it."""
        return self.status(serial) is not None and self.revocation.ocsp_known(serial_bytes(serial))

    # -- commands ----------------------------------------------------------------------------------

    def _apply(self, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        try:
            envelope = decode(CACommand, op.payload)
        except DecodeError as exc:
            return CAResult.error(str(exc)[:200])  # "CACommand.<field>: <reason>"
        entry = HANDLERS.get(envelope.op)
        if entry is None:
            return CAResult.error(f"op: unknown operation {envelope.op[:32]!r}")
        command_type, handler = entry
        try:
            command = decode(command_type, envelope.body)
        except DecodeError as exc:
            return CAResult.error(str(exc)[:200])  # "<command type>.<field>: <reason>"
        return handler(self, command, op, ctx, index)

    def _expire(self, now_us: int) -> None:
        for key in [k for k, c in self.challenges.items() if now_us - c.created_us > self.policy.challenge_ttl_us]:
            del self.challenges[key]
        for pid in [p for p, v in sorted(self.pending.items()) if now_us - v.created_us > self.policy.pending_ttl_us]:
            gone = self.pending.pop(pid)
            self.emit(PendingExpired(pid, gone.request_id))
        self.revocation.expire(now_us)
        self.root.expire(now_us)
        for pid in self.serials.expire(now_us, self.policy.pending_ttl_us):
            self.emit(PendingExpired(pid))

    def _challenge(self, cmd: ChallengeCommand, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        if not cmd.names or len(cmd.names) > self.policy.max_names:
            return CAResult.error(f"names: need 1..{self.policy.max_names} names")
        tokens = []
        nonce = struct.pack(">QQQ", ctx.seq, index, op.timestamp)
        for raw in cmd.names:
            name = names.normalize(raw)
            reason = names.check_dns_name(name, allow_wildcard=self.policy.allow_wildcards)
            if reason:
                return CAResult.error(f"names: {name!r}: {reason}")
            base = name.removeprefix("*.")  # a wildcard is proven by controlling its base domain
            value = ownership.challenge_value(nonce, op.client, base)
            self.challenges[(op.client, base)] = StoredChallenge(op.client, base, value, ctx.time_us)
            tokens.append(ChallengeToken(base, ownership.key_authorization(value, op.client)))
        return CAResult(STATUS_CHALLENGE, challenges=tuple(tokens))

    # -- issuance requests: the ``approval`` checks, in this order, then the approved request's state ----

    def _request(self, req: IssueRequest, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        try:
            csr = x509.load_der_x509_csr(req.csr_der)
        except ValueError as exc:
            return CAResult.error(f"csr: does not parse ({str(exc)[:100]})")
        requested = tuple(names.normalize(n) for n in req.names)
        node = any(names.under(n, self.policy.node_domain) for n in requested)
        lifetime = dt.timedelta(seconds=req.lifetime_s) if req.lifetime_s else self.policy.default_lifetime
        # Node names are limited per validator (its account), not per shared registered domain.
        domains = [] if node else sorted({"dom:" + names.registered_domain(n) for n in requested})
        policy, client = self.policy, op.client
        problem = (approval.check_csr(csr)
                   or approval.check_names(req, requested, csr, client, policy)
                   or (None if node else approval.check_proofs(requested, req.proofs, client, policy, self.lookup,
                                                               self.challenges))
                   or (None if node else approval.check_payment(req.payment_ref, client, policy, self.spent_payments))
                   or approval.check_lifetime(lifetime, node, policy)
                   or approval.check_rate(self.rate, approval.account_key(client), domains, ctx.time_us, policy))
        if problem:
            return CAResult.error(problem)
        return self._approve(req, op, ctx, index, csr, requested, node, lifetime, domains)

    def request_validated(self, csr_der: bytes, requested_names: Sequence[str], op: Operation, ctx: ExecutionContext,
                          index: int) -> CAResult:
        """An issuance whose names the caller saw validated for `op.client` in this ordered execution (an ACME
        order whose authorizations are valid, `trustchain.acme`): every check of a request but the dns-01
        proof, CAA included, at the default lifetime."""
        self._expire(ctx.time_us)
        try:
            csr = x509.load_der_x509_csr(csr_der)
        except ValueError as exc:
            return CAResult.error(f"csr: does not parse ({str(exc)[:100]})")
        requested = tuple(names.normalize(n) for n in requested_names)
        lifetime = self.policy.default_lifetime
        domains = sorted({"dom:" + names.registered_domain(n) for n in requested})
        policy, client = self.policy, op.client
        problem = (approval.check_csr(csr)
                   or approval.check_validated_names(requested, client, policy, self.lookup)
                   or approval.check_payment("", client, policy, self.spent_payments)
                   or approval.check_lifetime(lifetime, False, policy)
                   or approval.check_rate(self.rate, approval.account_key(client), domains, ctx.time_us, policy))
        if problem:
            return CAResult.error(problem)
        req = IssueRequest(csr_der, requested, (), "acme", "")
        return self._approve(req, op, ctx, index, csr, requested, False, lifetime, domains)

    def _approve(self, req: IssueRequest, op: Operation, ctx: ExecutionContext, index: int,
                 csr: x509.CertificateSigningRequest, requested: tuple[str, ...], node: bool, lifetime: dt.timedelta,
                 domains: Sequence[str]) -> CAResult:
        """Derive serial and validity from the ordered request and consensus time only. Not from
        ctx.view: a batch committed at one seq can carry different views on different replicas (those
        that committed before a view change and those that committed its re-proposal after it)."""
        issuer = self.current_issuer
        if self.root.revoked_key(issuer.public_key):
            return CAResult.error("issuer: the issuing CA certificate is revoked; a new issuer must be installed")
        request_bytes = cax509.request_digest(op.client, struct.pack(">QQ", op.timestamp, index), op.payload)
        if self.serials.enabled:  # the serial (and so the TBS) waits for the validators' reveals
            # The answer's id names the request; the pending issuance gets a fresh id once its serial is fixed
            # (``request_id`` links them), so the signing service sees ids in the order it must sign them.
            pending_id = self.next_pending_id
            awaiting = AwaitingSerial(req.csr_der, requested, op.client, node, int(lifetime / dt.timedelta(
                microseconds=1)), ctx.time_us)
            problem = self.serials.start(pending_id, request_bytes, encode(awaiting), ctx.time_us)
            if problem:
                return CAResult.error(problem)
            self.allocate_pending_id()
            self._approved(req, op, ctx, requested, node, domains)
            return CAResult(STATUS_PENDING, "awaiting serial randomness", KIND_CERTIFICATE, (pending_id,))
        try:
            # Node certificates carry their name in CN too (non-critical SAN): GnuTLS-based DoQ clients
            # (kdig) refuse the empty-subject profile.
            tbs = cax509.leaf_tbs(
                csr.public_key(), requested, issuer, consensus_datetime(ctx.time_us), ctx.seq, request_bytes,
                lifetime, common_name=node, precertificate=self.policy.embed_scts,
            )
        except cax509.CertificateError as exc:
            return CAResult.error(f"names: {exc}")
        serial = serial_bytes(cax509.serial_number(cax509.request_digest(b"leaf", request_bytes), ctx.seq))
        if self._serial_taken(serial):
            return CAResult.error("serial: collision, resubmit")
        self._approved(req, op, ctx, requested, node, domains)
        pending = PendingIssuance(
            self.allocate_pending_id(), tbs, issuer.public_key, serial, op.client, requested, ctx.time_us
        )
        self.pending[pending.pending_id] = pending
        self.emit(PendingRecorded(pending))
        return CAResult(STATUS_PENDING, "", KIND_CERTIFICATE, (pending.pending_id,), serial)

    def _approved(self, req: IssueRequest, op: Operation, ctx: ExecutionContext, requested: tuple[str, ...],
                  node: bool, domains: Sequence[str]) -> None:
        """An approved request counts against the rate limits and uses up its payment and challenges."""
        self.rate.record(approval.account_key(op.client), ctx.time_us)
        for d in domains:
            self.rate.record(d, ctx.time_us)
        if self.policy.require_payment and not node:
            self.spent_payments.add(req.payment_ref)
        for name in requested:
            self.challenges.pop((op.client, name.removeprefix("*.")), None)

    def _serial_taken(self, serial: bytes) -> bool:
        return serial in self.issued or serial in self.root.issuers or any(
            p.serial == serial for p in self.pending.values())

    # -- serial randomness (``serials``): validators' commitments and reveals -------------------------

    def _validator_index(self, client: bytes) -> int | None:
        keys = self.policy.validator_keys
        return keys.index(client) if client in keys else None

    def _serial_commit(self, cmd: SerialCommitCommand, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        if not self.serials.enabled:
            return CAResult.error("op: this CA draws no serial randomness")
        validator = self._validator_index(op.client)
        out = self.serials.commit(-1 if validator is None else validator, cmd.commitments, ctx.time_us)
        return CAResult.error(out.problem) if out.problem else CAResult(STATUS_OK, f"{len(cmd.commitments)} committed")

    def _serial_reveal(self, cmd: SerialRevealCommand, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        validator = self._validator_index(op.client)
        out = self.serials.reveal(-1 if validator is None else validator,
                                  tuple((r.commitment, r.value) for r in cmd.reveals), ctx.time_us)
        if out.problem:
            return CAResult.error(out.problem)
        ids = tuple(self._record_draw(draw, output, ctx.time_us) for draw, output in out.completed)
        return CAResult(STATUS_OK, f"{len(ids)} serials fixed", KIND_CERTIFICATE, tuple(p for p in ids if p))

    def _record_draw(self, draw: Draw, output: bytes, now_us: int) -> int:
        """A draw's randomness is complete: fix the serial and the TBS, as a pending issuance under the
        issuer current now, answering the request ``draw.pending_id`` (0 if that issuer was revoked
        meanwhile: the request is dropped)."""
        awaiting = decode(AwaitingSerial, draw.payload)
        issuer = self.current_issuer
        attempt = 0
        serial = serial_bytes(serial_from_output(output))
        while self._serial_taken(serial):  # never seen at 127 bits; derived again, chosen by nobody
            attempt += 1
            serial = serial_bytes(serial_from_output(output, attempt))
        try:
            if self.root.revoked_key(issuer.public_key):
                raise cax509.CertificateError("the issuing CA certificate is revoked")
            csr = x509.load_der_x509_csr(awaiting.csr_der)
            tbs = cax509.leaf_tbs(csr.public_key(), awaiting.names, issuer, consensus_datetime(awaiting.requested_us),
                                  0, b"", dt.timedelta(microseconds=awaiting.lifetime_us), common_name=awaiting.node,
                                  precertificate=self.policy.embed_scts, serial=int.from_bytes(serial, "big"))
        except (cax509.CertificateError, ValueError):
            self.emit(PendingExpired(draw.pending_id))
            return 0
        self.serials.resolve(draw, serial, attempt, now_us)
        pending = PendingIssuance(self.allocate_pending_id(), tbs, issuer.public_key, serial, awaiting.account,
                                  awaiting.names, now_us, draw.pending_id)
        self.pending[pending.pending_id] = pending
        self.emit(PendingRecorded(pending))
        return pending.pending_id

    def pending_of(self, pending_id: int) -> PendingIssuance | None:
        """The pending issuance answering the request ``pending_id`` (that of its current stage)."""
        return next((p for p in self.pending.values() if pending_id in (p.pending_id, p.request_id)), None)

    def request_serial(self, pending_id: int) -> bytes | None:
        """The serial of the request answered with ``pending_id``, once its draw fixed it (None before)."""
        found = self.pending_of(pending_id)
        if found is not None:
            return found.serial
        resolved = self.serials.resolved.get(pending_id)
        return resolved.serial if resolved is not None else None

    # -- finalize, revoke, install issuer ----------------------------------------------------------

    def _finalize(self, cmd: FinalizeCommand, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        if cmd.pending_id in self.revocation.signatures or cmd.pending_id in self.root.signatures:
            state = self.revocation if cmd.pending_id in self.revocation.signatures else self.root
            try:
                return state.finalize(cmd.pending_id, cmd.signature)
            except (CRLError, OCSPError) as exc:  # attributed like a bad certificate signature
                return self._reject_finalize(cmd.pending_id, op.client, exc)
        pending = self.pending.get(cmd.pending_id)
        if pending is None:
            return CAResult.error("pending: unknown or already finalized")
        try:
            cert = cax509.finalize(pending.tbs, cmd.signature, pending.issuer_key)
        except cax509.CertificateError as exc:
            return self._reject_finalize(cmd.pending_id, op.client, exc)
        del self.pending[cmd.pending_id]
        der_bytes = cert.public_bytes(Encoding.DER)
        if _is_precertificate(cert):  # logged next; the certificate follows once its SCTs are in
            self.emit(PrecertSigned(pending, der_bytes))
            return CAResult(STATUS_OK, "precertificate", KIND_CERTIFICATE, (cmd.pending_id,), pending.serial,
                            certificate_der=der_bytes)
        record = IssuedCertificate(
            pending.serial, der_bytes, pending.account, pending.names, datetime_us(cert.not_valid_after_utc)
        )
        self.issued[pending.serial] = record
        self.revocation.on_issued(pending.serial)
        self.emit(Finalized(cmd.pending_id, pending.serial, der_bytes, pending.request_id))
        return CAResult(STATUS_OK, "", KIND_CERTIFICATE, (cmd.pending_id,), pending.serial, certificate_der=der_bytes)

    def _finalize_batch(self, cmd: FinalizeBatchCommand, op: Operation, ctx: ExecutionContext,
                        index: int) -> CAResult:
        """Each item as its own ``finalize`` (a bad signature is attributed and rejects only its item);
        ``pending_ids`` are the items recorded."""
        if not 1 <= len(cmd.items) <= MAX_FINALIZE_BATCH:
            return CAResult.error(f"items: need 1..{MAX_FINALIZE_BATCH} signatures")
        done = [item.pending_id for item in cmd.items
                if self._finalize(item, op, ctx, index).status == STATUS_OK]
        return CAResult(STATUS_OK, f"{len(done)} of {len(cmd.items)} finalized", pending_ids=tuple(done))

    def record_final(self, precert: PendingIssuance, tbs: bytes, now_us: int) -> PendingIssuance:
        """The certificate a signed precertificate stands for, with its SCTs in `tbs`: to be signed like
        any pending issuance, answering the request `precert` was recorded for."""
        pending = PendingIssuance(self.allocate_pending_id(), tbs, precert.issuer_key, precert.serial,
                                  precert.account, precert.names, now_us, precert.request_id or precert.pending_id)
        self.pending[pending.pending_id] = pending
        self.emit(PendingRecorded(pending))
        return pending

    def _reject_finalize(self, pending_id: int, submitter: bytes, exc: Exception) -> CAResult:
        """Attributed: the submitter's key is on the ordered request, so every replica counts it."""
        self.bad_finalizers[submitter] = self.bad_finalizers.get(submitter, 0) + 1
        self.emit(FinalizeRejected(pending_id, submitter, str(exc)))
        return CAResult.error(f"signature: {exc} (submitted by {submitter.hex()[:16]})")

    def _revoke(self, cmd: RevokeCommand, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        record = self.issued.get(cmd.serial)
        key_holder = record is not None and bool(cmd.key_proof) and ownership.verify_key_proof(
            record.certificate_der, ownership.revocation_proof_input(cmd.serial, cmd.reason, op.client), cmd.key_proof)
        return self.revoke(cmd.serial, cmd.reason, op.client, key_holder=key_holder, now_us=ctx.time_us)

    def revoke(self, serial: bytes, reason: int, client: bytes, *, key_holder: bool, now_us: int) -> CAResult:
        """Revoke `serial` for `client`; `key_holder` says the caller verified the certificate key's own
        signature over this revocation (a proof here, or an ACME JWS signed with that key)."""
        record = self.issued.get(serial)
        if record is None:
            return CAResult.error("serial: not issued by this CA")
        problem = reason_problem(reason)
        if problem:
            return CAResult.error(problem)
        operator = client in self.policy.operators
        allowed = operator or ((client == record.account or key_holder) and reason not in OPERATOR_REASONS)
        if not allowed:
            return CAResult.error("authorization: only the subscriber, the certificate's key holder, a CA "
                                  "operator or a quorum of validators may revoke")
        if record.revoked_us is not None:
            if reason != KEY_COMPROMISE or record.reason == KEY_COMPROMISE:
                return CAResult(STATUS_UNCHANGED, "already revoked", KIND_CERTIFICATE, serial=serial)
            # RFC 5280 5.3.1: keyCompromise may replace an earlier reason; the revocation date stays.
            self.issued[serial] = replace(record, reason=reason)
            self.revocation.on_reason_changed(serial)
            self.emit(Revoked(serial, reason))
            return CAResult(STATUS_OK, "reason: now keyCompromise", KIND_CERTIFICATE, serial=serial)
        self.issued[serial] = IssuedCertificate(
            record.serial, record.certificate_der, record.account, record.names, record.not_after_us, now_us, reason)
        self.revocation.on_revoked(serial)
        self.emit(Revoked(serial, reason))
        return CAResult(STATUS_OK, "", KIND_CERTIFICATE, serial=serial)

    def _install_issuer(self, cmd: InstallIssuerCommand, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        if op.client not in self.policy.operators:
            return CAResult.error("authorization: only a CA operator may install an issuer")
        try:
            cert = x509.load_der_x509_certificate(cmd.certificate_der)
        except ValueError:
            return CAResult.error("certificate: does not parse")
        key = cert.public_key()
        if not isinstance(key, ed25519.Ed25519PublicKey):
            return CAResult.error("certificate: issuing key must be an Ed25519 (FROST) group key")
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            return CAResult.error("certificate: not a CA")
        if not bc.ca:
            return CAResult.error("certificate: not a CA")
        if not any(cax509.verify_signature(cert, root) for root in self.policy.root_keys):
            return CAResult.error("certificate: not signed by a trusted root key")
        problem = self.root.add(cmd.certificate_der)
        if problem:
            return CAResult.error(problem)
        self.issuer_certificates.append(cmd.certificate_der)
        return CAResult(STATUS_OK, "", KIND_ISSUER, issuer_key=key.public_bytes_raw())

    # -- CRL and OCSP signing (``revocation``) -------------------------------------------------------

    def _sign_crl(self, cmd: SignCRLCommand, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        return self.revocation.sign_crl(cmd.force, op.client in self.policy.operators, ctx.time_us)

    def _sign_ocsp_batch(self, cmd: SignOCSPBatchCommand, op: Operation, ctx: ExecutionContext,
                         index: int) -> CAResult:
        return self.revocation.sign_ocsp_batch(cmd.limit, ctx.time_us)

    # -- the root's side (``root``): issuing CA revocation, root CRL and OCSP -------------------------

    def _revoke_issuer(self, cmd: RevokeIssuerCommand, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        quorum = bool(self.policy.quorum_account) and op.client == self.policy.quorum_account
        result = self.root.revoke(cmd.serial, cmd.reason, quorum, ctx.time_us)
        if result.status == STATUS_OK:  # nothing more is signed under a revoked issuing key
            for pid in [p for p, v in sorted(self.pending.items()) if self.root.revoked_key(v.issuer_key)]:
                del self.pending[pid]
                self.emit(PendingExpired(pid))
        return result

    def _sign_root(self, cmd: SignRootCommand, op: Operation, ctx: ExecutionContext, index: int) -> CAResult:
        return self.root.sign(cmd.force, op.client in self.policy.operators, ctx.time_us)

    def root_pending_items(self) -> dict[int, bytes]:
        """What the root-key signing service must sign: root CRLs and OCSP responses for issuers."""
        return self.root.items()


def _is_precertificate(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_class(x509.PrecertPoison)
    except x509.ExtensionNotFound:
        return False
    return True


_Handler = Callable[[CAApplication, Any, Operation, ExecutionContext, int], CAResult]

HANDLERS: dict[str, tuple[type[Any], _Handler]] = {
    ChallengeCommand.OP: (ChallengeCommand, CAApplication._challenge),
    IssueRequest.OP: (IssueRequest, CAApplication._request),
    FinalizeCommand.OP: (FinalizeCommand, CAApplication._finalize),
    FinalizeBatchCommand.OP: (FinalizeBatchCommand, CAApplication._finalize_batch),
    RevokeCommand.OP: (RevokeCommand, CAApplication._revoke),
    InstallIssuerCommand.OP: (InstallIssuerCommand, CAApplication._install_issuer),
    SignCRLCommand.OP: (SignCRLCommand, CAApplication._sign_crl),
    SignOCSPBatchCommand.OP: (SignOCSPBatchCommand, CAApplication._sign_ocsp_batch),
    RevokeIssuerCommand.OP: (RevokeIssuerCommand, CAApplication._revoke_issuer),
    SignRootCommand.OP: (SignRootCommand, CAApplication._sign_root),
    SerialCommitCommand.OP: (SerialCommitCommand, CAApplication._serial_commit),
    SerialRevealCommand.OP: (SerialRevealCommand, CAApplication._serial_reveal),
}
"""The one dispatch table: op -> (command body type, handler). Every handler takes the decoded body, the
ordered operation, the execution context and the operation's index in the batch."""


