"""CRL and OCSP signing state of the replicated CA: pending signatures, the stored CRL and responses.

Why two ordered steps, as for certificates: a FROST signature is randomised and made by only a quorum,
so it cannot be produced inside ``execute``. ``sign_crl`` builds the TBSCertList from the replicated
revocations, the consensus time and the next CRL number; ``sign_ocsp_batch`` builds one
request-independent response TBS (RFC 5019) for each of up to ``limit`` serials that need one (new,
status changed, or older than ``ocsp_refresh_us``). Both record *pending signatures* in the same id
space as pending issuances (``Host.allocate_pending_id``), so the signing service signs them without
knowing what they are, and the same ``finalize`` command stores the signed CRL or response in
replicated state: every node serves identical bytes.

Why a ``Host`` protocol: the certificates, the issuing key and the id counter belong to the CA
application; this state reads them through the protocol instead of importing the application.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Protocol

from trustchain.ca import crl as cacrl
from trustchain.ca import ocsp as caocsp
from trustchain.ca import x509 as cax509
from trustchain.ca.commands import (
    KIND_CRL,
    KIND_OCSP,
    STATUS_OK,
    STATUS_SIGNING,
    STATUS_STALE,
    STATUS_UNCHANGED,
    CAResult,
)
from trustchain.ca.consensus_time import consensus_datetime, datetime_us
from trustchain.ca.events import Event, PendingExpired, SignatureRecorded, SignatureStored
from trustchain.ca.policy import CAPolicy
from trustchain.ca.records import CRL, OCSP, STALE_COUNT, IssuedCertificate, PendingSignature, SignedCRL, SignedOCSP


class Host(Protocol):
    """What the revocation state reads from (and reports to) the CA application that owns it."""

    policy: CAPolicy
    issued: dict[bytes, IssuedCertificate]

    @property
    def current_issuer(self) -> cax509.IssuerProfile: ...

    def revoked(self) -> list[IssuedCertificate]: ...

    def allocate_pending_id(self) -> int: ...

    def emit(self, event: Event) -> None: ...


class RevocationState:
    """Replicated: ``signatures``, ``crl``, ``next_crl_number``, ``ocsp`` (in refresh order: re-signed
    entries move to the end) and ``ocsp_dirty`` (serials needing a new response, in the order they
    became dirty); both orders are replicated state, since batches follow them. The rest is derived."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.signatures: dict[int, PendingSignature] = {}
        self.crl: SignedCRL | None = None
        self.next_crl_number = 1
        self.ocsp: dict[bytes, SignedOCSP] = {}
        self.ocsp_dirty: dict[bytes, None] = {}
        self.reindex()

    @property
    def policy(self) -> CAPolicy:
        return self.host.policy

    def reindex(self) -> None:
        """Derived from replicated state (never snapshotted): what is pending per serial, revocation count."""
        self._ocsp_pending = {p.serial: p.pending_id for p in self.signatures.values() if p.kind == OCSP}
        self._crl_pending = next((p.pending_id for p in self.signatures.values() if p.kind == CRL), None)
        self._revoked_count = sum(1 for c in self.host.issued.values() if c.revoked_us is not None)

    # -- notifications from the CA ------------------------------------------------------------------

    def on_issued(self, serial: bytes) -> None:
        self.ocsp_dirty[serial] = None  # its first OCSP response goes into the next batch

    def on_revoked(self, serial: bytes) -> None:
        """The stored "good" response is withdrawn now (the responder says tryLater, never good) and a
        revoked one goes to the front of the next batch."""
        self._revoked_count += 1
        self.ocsp.pop(serial, None)
        self.ocsp_dirty.pop(serial, None)
        self.ocsp_dirty = {serial: None, **self.ocsp_dirty}

    def on_reason_changed(self, serial: bytes) -> None:
        """A revoked certificate's reason changed (to keyCompromise): a response saying the new reason goes
        to the front of the next batch (the stored one still says revoked meanwhile), and the current CRL,
        and any CRL being signed, no longer lists it right: their ``count`` becomes ``STALE_COUNT``, so a
        new CRL is due."""
        self.ocsp_dirty.pop(serial, None)
        self.ocsp_dirty = {serial: None, **self.ocsp_dirty}
        if self.crl is not None:
            self.crl = replace(self.crl, count=STALE_COUNT)
        if self._crl_pending is not None:
            self.signatures[self._crl_pending] = replace(self.signatures[self._crl_pending],
                                                               count=STALE_COUNT)

    def expire(self, now_us: int) -> None:
        """Pending signatures older than ``pending_ttl_us`` are dropped (an OCSP serial is retried later)."""
        ttl = self.policy.pending_ttl_us
        expired = [p for p, v in sorted(self.signatures.items()) if now_us - v.created_us > ttl]
        for pid in expired:
            sig = self.signatures.pop(pid)
            if sig.kind == OCSP:
                self.ocsp_dirty[sig.serial] = None  # try again in a later batch
            self.host.emit(PendingExpired(pid))
        if expired:
            self.reindex()

    # -- queries ------------------------------------------------------------------------------------

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

    def ocsp_known(self, serial: bytes) -> bool:
        """A response is (or will be) made for ``serial``."""
        return serial in self.ocsp_dirty or serial in self._ocsp_pending or serial in self.ocsp

    # -- commands -----------------------------------------------------------------------------------

    def _record(self, kind: str, tbs: bytes, serial: bytes, number: int, count: int, now_us: int,
                next_update_us: int) -> PendingSignature:
        sig = PendingSignature(self.host.allocate_pending_id(), kind, tbs, self.host.current_issuer.public_key,
                               serial, number, count, now_us, next_update_us)
        self.signatures[sig.pending_id] = sig
        if kind == OCSP:
            self._ocsp_pending[serial] = sig.pending_id
        else:
            self._crl_pending = sig.pending_id
        self.host.emit(SignatureRecorded(sig))
        return sig

    def sign_crl(self, force: bool, operator: bool, now_us: int) -> CAResult:
        if force and not operator:
            return CAResult.error("authorization: only a CA operator may force a CRL")
        if self._crl_pending is not None:
            pending = self.signatures[self._crl_pending]
            return CAResult(STATUS_UNCHANGED, f"CRL {pending.number} is being signed", KIND_CRL,
                            (pending.pending_id,), number=pending.number)
        if not force and not self.crl_due(now_us):
            number = self.crl.number if self.crl else 0
            return CAResult(STATUS_UNCHANGED, f"CRL {number} is current", KIND_CRL, number=number)
        this_update = consensus_datetime(now_us)
        lifetime = dt.timedelta(microseconds=self.policy.crl_lifetime_us)
        revocations = cacrl.revocations_from(self.host.revoked())
        tbs = cacrl.crl_tbs(self.host.current_issuer, revocations, this_update, self.next_crl_number, lifetime)
        number = self.next_crl_number
        self.next_crl_number += 1
        start_us = datetime_us(this_update.replace(microsecond=0))
        sig = self._record(CRL, tbs, b"", number, len(revocations), start_us, start_us + self.policy.crl_lifetime_us)
        return CAResult(STATUS_SIGNING, "", KIND_CRL, (sig.pending_id,), number=number)

    def _ocsp_work(self, now_us: int, limit: int, *, prune: bool) -> list[bytes]:
        """Serials that need a response, most urgent first: dirty ones (new, revoked), then stored
        responses older than ``ocsp_refresh_us``. Expired certificates get none (and are forgotten when
        ``prune``). Stops after ``limit``; the refresh scan stops at the first fresh response, since
        ``self.ocsp`` is in signing order, so one batch costs O(limit), not O(issued)."""
        issued = self.host.issued
        out: list[bytes] = []
        expired_dirty: list[bytes] = []
        expired_stored: list[bytes] = []
        for serial in self.ocsp_dirty:  # iterated in place (no copy of the whole dict): deletions come after
            if len(out) >= limit:
                break
            rec = issued.get(serial)
            if rec is None or rec.not_after_us <= now_us:
                expired_dirty.append(serial)
            elif serial not in self._ocsp_pending:
                out.append(serial)
        stale_before = now_us - self.policy.ocsp_refresh_us
        for serial, resp in self.ocsp.items():
            if len(out) >= limit or resp.produced_us > stale_before:
                break
            if issued[serial].not_after_us <= now_us:
                expired_stored.append(serial)
            elif serial not in self._ocsp_pending and serial not in self.ocsp_dirty:
                out.append(serial)
        if prune:
            for serial in expired_dirty:
                del self.ocsp_dirty[serial]
            for serial in expired_stored:
                del self.ocsp[serial]
        return out

    def sign_ocsp_batch(self, limit: int, now_us: int) -> CAResult:
        if self._ocsp_pending:
            return CAResult(STATUS_UNCHANGED, f"{len(self._ocsp_pending)} OCSP responses are being signed", KIND_OCSP,
                            tuple(sorted(self._ocsp_pending.values())))
        limit = min(limit or self.policy.ocsp_batch_max, self.policy.ocsp_batch_max)
        serials = self._ocsp_work(now_us, limit, prune=True)
        if not serials:
            return CAResult(STATUS_UNCHANGED, "every OCSP response is current", KIND_OCSP)
        issuer = self.host.current_issuer
        produced = consensus_datetime(now_us).replace(microsecond=0)
        produced_us = datetime_us(produced)
        validity = dt.timedelta(microseconds=self.policy.ocsp_validity_us)
        ids = []
        for serial in serials:
            rec = self.host.issued[serial]
            status = caocsp.cert_status(rec)
            tbs = caocsp.presigned_tbs(issuer, int.from_bytes(serial, "big"), status, produced, validity)
            self.ocsp_dirty.pop(serial, None)
            sig = self._record(OCSP, tbs, serial, 0, int(rec.revoked_us is not None), produced_us,
                               produced_us + self.policy.ocsp_validity_us)
            ids.append(sig.pending_id)
        return CAResult(STATUS_SIGNING, "", KIND_OCSP, tuple(ids))

    def finalize(self, pending_id: int, signature: bytes) -> CAResult:
        """Store the signed CRL or OCSP response. Raises ``CRLError``/``OCSPError`` (state unchanged) if
        ``signature`` does not verify; the caller attributes that to the submitter."""
        sig = self.signatures[pending_id]
        if sig.kind == CRL:
            der_bytes = cacrl.assemble_crl(sig.tbs, signature)
            cacrl.finalize_crl(sig.tbs, signature, sig.issuer_key)
        else:
            der_bytes = caocsp.finalize_response(sig.tbs, signature, sig.issuer_key)
        del self.signatures[pending_id]
        if sig.kind == CRL:
            self._crl_pending = None
            self.crl = SignedCRL(sig.number, der_bytes, sig.created_us, sig.next_update_us, sig.count)
            self.host.emit(SignatureStored(pending_id, CRL, b""))
            return CAResult(STATUS_OK, "", KIND_CRL, (pending_id,), number=sig.number)
        self._ocsp_pending.pop(sig.serial, None)
        rec = self.host.issued.get(sig.serial)
        if rec is None or (rec.revoked_us is not None) != bool(sig.count):
            # Revoked while this response was being signed: it is stale, the revoked one is queued.
            return CAResult(STATUS_STALE, "revoked while this response was being signed", KIND_OCSP, (pending_id,),
                            sig.serial)
        self.ocsp.pop(sig.serial, None)
        self.ocsp[sig.serial] = SignedOCSP(sig.serial, der_bytes, sig.created_us, sig.next_update_us,
                                           rec.revoked_us is not None)
        self.host.emit(SignatureStored(pending_id, OCSP, sig.serial))
        return CAResult(STATUS_OK, "", KIND_OCSP, (pending_id,), sig.serial)
