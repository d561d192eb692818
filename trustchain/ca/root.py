"""The root's view of the replicated CA: the issuing CA certificates it signed, their revocation, and the
root CRL and root-signed OCSP responses that say so.

Why: every issuing certificate points its CRL distribution point at the root's CRL and its OCSP
pointer at the responder, so a relying party that checks the whole chain (``openssl verify
-crl_check_all``, browsers' OCSP for intermediates) needs a CRL and responses signed by the *root* key.
That key, like the issuing key, exists only as FROST shares, so the same two steps apply: ``sign``
records the TBS of a root CRL and of one OCSP response per issuing certificate that needs one (new,
status changed, or past half its validity), a second signing service holding the root shares signs
them beside consensus, and ``finalize`` stores them after checking the signature under the root key.

Revoking an issuing CA is the validator set's decision alone (``revoke`` accepts only the account the
router runs quorum operations as, never an operator or a single validator): once it is revoked, the CA
issues nothing more under it (``revoked_key``) until a new issuer is installed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.ca import crl as cacrl
from trustchain.ca import ocsp as caocsp
from trustchain.ca.commands import (
    KIND_CRL,
    KIND_ISSUER,
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
from trustchain.ca.records import CRL, OCSP, PendingSignature, SignedCRL, SignedOCSP, reason_problem, serial_bytes
from trustchain.encoding import DecodeError

__all__ = ["MAX_ISSUERS", "IssuerRecord", "RootSnapshot", "RootState"]

MAX_ISSUERS = 64
SNAPSHOT_VERSION = 1


class Host(Protocol):
    policy: CAPolicy

    def allocate_pending_id(self) -> int: ...

    def emit(self, event: Event) -> None: ...


@dataclass(frozen=True)
class IssuerRecord:
    """An issuing CA certificate signed by the root, as the replicated state holds it."""

    serial: bytes
    certificate_der: bytes
    public_key: bytes
    not_after_us: int
    revoked_us: int | None = None
    reason: int | None = None


@dataclass(frozen=True)
class RootSnapshot:
    version: int
    issuers: tuple[IssuerRecord, ...]
    signatures: tuple[PendingSignature, ...]
    crl: SignedCRL | None
    next_crl_number: int
    ocsp: tuple[SignedOCSP, ...]


def issuer_record(certificate_der: bytes) -> IssuerRecord:
    cert = x509.load_der_x509_certificate(certificate_der)
    key = cert.public_key()
    assert isinstance(key, ed25519.Ed25519PublicKey)
    return IssuerRecord(serial_bytes(cert.serial_number), certificate_der, key.public_bytes_raw(),
                        datetime_us(cert.not_valid_after_utc))


class RootState:
    """Replicated: ``issuers`` (in installation order), root ``signatures`` pending, ``crl``,
    ``next_crl_number`` and ``ocsp`` (by issuer serial). Inert without ``policy.root``."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.issuers: dict[bytes, IssuerRecord] = {}
        self.signatures: dict[int, PendingSignature] = {}
        self.crl: SignedCRL | None = None
        self.next_crl_number = 1
        self.ocsp: dict[bytes, SignedOCSP] = {}
        if host.policy.issuer_certificate:
            self.add(host.policy.issuer_certificate)

    # -- issuers -------------------------------------------------------------------------------------

    def add(self, certificate_der: bytes) -> str | None:
        """Record an issuing certificate the root signed (the genesis one, or an installed one)."""
        rec = issuer_record(certificate_der)
        if rec.serial in self.issuers:
            return None if self.issuers[rec.serial].certificate_der == certificate_der else \
                "certificate: another issuer certificate has this serial"
        if len(self.issuers) >= MAX_ISSUERS:
            return f"certificate: at most {MAX_ISSUERS} issuer certificates"
        self.issuers[rec.serial] = rec
        return None

    def revoked_key(self, public_key: bytes) -> bool:
        """Is every issuing certificate of ``public_key`` revoked? (Then nothing is issued under it.)"""
        recs = [r for r in self.issuers.values() if r.public_key == public_key]
        return bool(recs) and all(r.revoked_us is not None for r in recs)

    def revoke(self, serial: bytes, reason: int, quorum: bool, now_us: int) -> CAResult:
        if not quorum:
            return CAResult.error("authorization: only a quorum of validators may revoke an issuing CA")
        rec = self.issuers.get(serial)
        if rec is None:
            return CAResult.error("serial: not an issuing CA certificate of this root")
        problem = reason_problem(reason)
        if problem:
            return CAResult.error(problem)
        if rec.revoked_us is not None:
            return CAResult(STATUS_UNCHANGED, "already revoked", KIND_ISSUER, serial=serial,
                            issuer_key=rec.public_key)
        self.issuers[serial] = replace(rec, revoked_us=now_us, reason=reason)
        self.ocsp.pop(serial, None)  # never "good" again: tryLater until the revoked response is signed
        return CAResult(STATUS_OK, "", KIND_ISSUER, serial=serial, issuer_key=rec.public_key)

    # -- signing -------------------------------------------------------------------------------------

    def _revoked_count(self) -> int:
        return sum(1 for r in self.issuers.values() if r.revoked_us is not None)

    def _crl_due(self, now_us: int) -> bool:
        if any(s.kind == CRL for s in self.signatures.values()):
            return False
        c = self.crl
        return c is None or c.count != self._revoked_count() or \
            now_us - c.this_update_us >= self.host.policy.crl_refresh_us

    def _ocsp_due(self, now_us: int) -> list[bytes]:
        pending = {s.serial for s in self.signatures.values() if s.kind == OCSP}
        out = []
        for serial, rec in self.issuers.items():
            if serial in pending or rec.not_after_us <= now_us:
                continue
            stored = self.ocsp.get(serial)
            if stored is None or stored.revoked != (rec.revoked_us is not None) or \
                    now_us - stored.produced_us >= self.host.policy.ocsp_refresh_us:
                out.append(serial)
        return out

    def due(self, now_us: int) -> bool:
        """Would ``sign`` record anything now? (The nodes ask before ordering it.)"""
        return self.host.policy.root is not None and (self._crl_due(now_us) or bool(self._ocsp_due(now_us)))

    def sign(self, force: bool, operator: bool, now_us: int) -> CAResult:
        root = self.host.policy.root
        if root is None:
            return CAResult.error("root: this CA has no root key configured")
        if force and not operator:
            return CAResult.error("authorization: only a CA operator may force a root CRL")
        policy = self.host.policy
        when = consensus_datetime(now_us).replace(microsecond=0)
        start_us = datetime_us(when)
        ids = []
        if self._crl_due(now_us) or (force and not any(s.kind == CRL for s in self.signatures.values())):
            revoked = [r for _, r in sorted(self.issuers.items()) if r.revoked_us is not None]
            revocations = [cacrl.Revocation(int.from_bytes(r.serial, "big"), consensus_datetime(r.revoked_us or 0),
                                            r.reason or 0) for r in revoked]
            tbs = cacrl.crl_tbs(root, revocations, when, self.next_crl_number,
                                dt.timedelta(microseconds=policy.crl_lifetime_us))
            ids.append(self._record(CRL, tbs, b"", self.next_crl_number, len(revocations), start_us,
                                    start_us + policy.crl_lifetime_us))
            self.next_crl_number += 1
        validity = dt.timedelta(microseconds=policy.ocsp_validity_us)
        for serial in self._ocsp_due(now_us):
            rec = self.issuers[serial]
            status = caocsp.CertStatus(True, consensus_datetime(rec.revoked_us), rec.reason or 0) \
                if rec.revoked_us is not None else caocsp.CertStatus(True)
            tbs = caocsp.presigned_tbs(root, int.from_bytes(serial, "big"), status, when, validity)
            ids.append(self._record(OCSP, tbs, serial, 0, int(rec.revoked_us is not None), start_us,
                                    start_us + policy.ocsp_validity_us))
        if not ids:
            return CAResult(STATUS_UNCHANGED, "the root CRL and OCSP responses are current", KIND_CRL,
                            tuple(sorted(self.signatures)))
        return CAResult(STATUS_SIGNING, "", KIND_CRL, tuple(ids))

    def _record(self, kind: str, tbs: bytes, serial: bytes, number: int, count: int, created_us: int,
                next_update_us: int) -> int:
        root = self.host.policy.root
        assert root is not None
        sig = PendingSignature(self.host.allocate_pending_id(), kind, tbs, root.public_key, serial, number, count,
                               created_us, next_update_us)
        self.signatures[sig.pending_id] = sig
        self.host.emit(SignatureRecorded(sig))
        return sig.pending_id

    def finalize(self, pending_id: int, signature: bytes) -> CAResult:
        """Store a root-signed CRL or OCSP response; raises ``CRLError``/``OCSPError`` (state unchanged)
        if the signature does not verify under the root key."""
        sig = self.signatures[pending_id]
        if sig.kind == CRL:
            cacrl.finalize_crl(sig.tbs, signature, sig.issuer_key)
            der = cacrl.assemble_crl(sig.tbs, signature)
        else:
            der = caocsp.finalize_response(sig.tbs, signature, sig.issuer_key)
        del self.signatures[pending_id]
        if sig.kind == CRL:
            self.crl = SignedCRL(sig.number, der, sig.created_us, sig.next_update_us, sig.count)
            self.host.emit(SignatureStored(pending_id, CRL, b""))
            return CAResult(STATUS_OK, "root", KIND_CRL, (pending_id,), number=sig.number)
        rec = self.issuers.get(sig.serial)
        if rec is None or (rec.revoked_us is not None) != bool(sig.count):
            return CAResult(STATUS_STALE, "revoked while this response was being signed", KIND_OCSP, (pending_id,),
                            sig.serial)
        self.ocsp[sig.serial] = SignedOCSP(sig.serial, der, sig.created_us, sig.next_update_us, bool(sig.count))
        self.host.emit(SignatureStored(pending_id, OCSP, sig.serial))
        return CAResult(STATUS_OK, "root", KIND_OCSP, (pending_id,), sig.serial)

    def expire(self, now_us: int) -> None:
        ttl = self.host.policy.pending_ttl_us
        for pid in [p for p, s in sorted(self.signatures.items()) if now_us - s.created_us > ttl]:
            del self.signatures[pid]
            self.host.emit(PendingExpired(pid))

    # -- queries -------------------------------------------------------------------------------------

    def items(self) -> dict[int, bytes]:
        """What the root signing service must sign, ``{pending_id: tbs}`` in id order."""
        return {p: s.tbs for p, s in sorted(self.signatures.items())}

    def ocsp_response(self, serial: int) -> bytes | None:
        rec = self.ocsp.get(serial_bytes(serial)) if serial > 0 else None
        return rec.der if rec is not None else None

    def ocsp_known(self, serial: int) -> bool:
        return serial > 0 and serial_bytes(serial) in self.issuers

    # -- snapshot ------------------------------------------------------------------------------------

    def snapshot(self) -> RootSnapshot:
        return RootSnapshot(SNAPSHOT_VERSION, tuple(self.issuers.values()),
                            tuple(self.signatures[p] for p in sorted(self.signatures)), self.crl,
                            self.next_crl_number, tuple(self.ocsp[s] for s in sorted(self.ocsp)))

    def restore(self, snap: RootSnapshot) -> None:
        if snap.version != SNAPSHOT_VERSION:
            raise DecodeError(f"RootSnapshot.version: {snap.version} is not {SNAPSHOT_VERSION}")
        self.issuers = {r.serial: r for r in snap.issuers}
        self.signatures = {s.pending_id: s for s in snap.signatures}
        self.crl = snap.crl
        self.next_crl_number = snap.next_crl_number
        self.ocsp = {r.serial: r for r in snap.ocsp}
