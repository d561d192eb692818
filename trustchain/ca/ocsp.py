"""OCSP responder (RFC 6960) whose responses are signed by the threshold issuing key.

Why reassemble DER: cryptography's OCSP builder insists the signing key match the responder
certificate, and the CA key exists only as FROST shares. The responder ID is by name (the issuing
CA's subject), so the TBSResponseData that cryptography builds with a placeholder certificate of the
same subject is byte-identical to the real one; the signature comes from ``sign`` and the response is
checked under the issuer key before it is returned. The CA signs its own responses (no delegated
responder certificate), so clients need nothing beyond the issuer certificate.

Status comes from the replicated ``CAApplication``, so every replica answers the same once a
revocation commits: good (issued, not revoked), revoked (with time and reason) or unknown (not
issued by this CA, or a different issuer).

Two ways to use it. ``respond`` signs one response per request (a nonce can be echoed); it needs a
signer at request time, which a threshold CA does not have. The node therefore uses pre-signed
responses (RFC 5019 profile, as large public CAs do): ``presigned_tbs`` builds one request-independent
TBSResponseData per serial (SHA-1 CertID, responder by name, no nonce) inside an ordered command,
FROST signs it beside consensus, and ``serve`` answers any request for that serial with the stored,
replicated bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp

from trustchain.ca import crl, der
from trustchain.ca import x509 as cax509
from trustchain.ca.consensus_time import consensus_datetime
from trustchain.ca.records import IssuedCertificate
from trustchain.errors import TrustChainError

# Baseline Requirements 4.9.10: an OCSP response is valid for at least eight hours and at most ten days.
MIN_VALIDITY = dt.timedelta(hours=8)
MAX_VALIDITY = dt.timedelta(days=10)
DEFAULT_VALIDITY = dt.timedelta(days=1)
_OID_BASIC = bytes.fromhex("06092b0601050507300101")  # id-pkix-ocsp-basic


@dataclass(frozen=True)
class CertStatus:
    """``revoked_at``/``reason`` set for revoked; ``known`` False means this CA never issued it."""

    known: bool
    revoked_at: dt.datetime | None = None
    reason: int = 0


StatusLookup = Callable[[int], CertStatus]


class OCSPError(TrustChainError, ValueError):
    pass


def _placeholder_responder(issuer: cax509.IssuerProfile) -> x509.Certificate:
    key = cax509._PLACEHOLDER_KEY
    t = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(issuer.name)
        .issuer_name(issuer.name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(t)
        .not_valid_after(t)
        .sign(key, None)
    )


def check_validity(validity: dt.timedelta) -> None:
    """Refuse a response validity outside the Baseline Requirements' bounds."""
    if not MIN_VALIDITY <= validity <= MAX_VALIDITY:
        raise OCSPError(f"validity: an OCSP response is valid between {MIN_VALIDITY} and {MAX_VALIDITY}, "
                        f"not {validity}")


def load_request(request_der: bytes) -> ocsp.OCSPRequest | None:
    """The request, or None if it is malformed. cryptography raises NotImplementedError for a request
    with several CertIDs; RFC 5019 2.1.1 allows only one, so that is a malformed request too."""
    try:
        return ocsp.load_der_ocsp_request(request_der)
    except (ValueError, NotImplementedError):
        return None


def issued_by(issuer: cax509.IssuerProfile, request: ocsp.OCSPRequest) -> bool:
    """The request's CertID names ``issuer`` (issuer name and key hashes, in the request's hash)."""
    return (request.issuer_name_hash, request.issuer_key_hash) == _issuer_hashes(issuer, request.hash_algorithm)


def _issuer_hashes(issuer: cax509.IssuerProfile, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    name_hash = hashes.Hash(algorithm)
    name_hash.update(issuer.name.public_bytes())
    spki = issuer.ed25519_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    # issuerKeyHash covers the BIT STRING contents of subjectPublicKey (the raw 32-byte key).
    key_hash = hashes.Hash(algorithm)
    key_hash.update(spki[-32:])
    return name_hash.finalize(), key_hash.finalize()


def response_tbs(
    issuer: cax509.IssuerProfile,
    request: ocsp.OCSPRequest,
    status: StatusLookup,
    now: dt.datetime,
    validity: dt.timedelta = DEFAULT_VALIDITY,
) -> bytes:
    """TBSResponseData for ``request`` (one certificate, as cryptography parses requests)."""
    check_validity(validity)
    produced = now.astimezone(dt.UTC).replace(microsecond=0)
    name_hash, key_hash = _issuer_hashes(issuer, request.hash_algorithm)
    st = CertStatus(known=False)
    if request.issuer_name_hash == name_hash and request.issuer_key_hash == key_hash:
        st = status(request.serial_number)
    if not st.known:
        cert_status, rev_time, rev_reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
    elif st.revoked_at is not None:
        cert_status = ocsp.OCSPCertStatus.REVOKED
        rev_time = st.revoked_at.astimezone(dt.UTC).replace(microsecond=0)
        rev_reason = crl.reason_flag(st.reason)
    else:
        cert_status, rev_time, rev_reason = ocsp.OCSPCertStatus.GOOD, None, None
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        request.issuer_name_hash,
        request.issuer_key_hash,
        request.serial_number,
        request.hash_algorithm,
        cert_status,
        produced,
        produced + validity,
        rev_time,
        rev_reason,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, _placeholder_responder(issuer))
    for ext in request.extensions:
        if isinstance(ext.value, x509.OCSPNonce):
            builder = builder.add_extension(ext.value, critical=False)
    resp = builder.sign(cax509._PLACEHOLDER_KEY, None)
    return _with_produced_at(resp.tbs_response_bytes, produced)


def _with_produced_at(tbs: bytes, produced: dt.datetime) -> bytes:
    """cryptography stamps producedAt with the wall clock when it builds a response; replicas must sign
    identical bytes, so the field is rewritten to the (consensus) time the caller passed in."""
    tag, body, end = der.read_tlv(tbs)
    assert tag == 0x30 and end == len(tbs), "ResponseData is one SEQUENCE"
    items: list[bytes] = []
    pos = 0
    while pos < len(body):
        item_tag, _, nxt = der.read_tlv(body, pos)
        if item_tag == 0x18 and not any(i[0] == 0x18 for i in items):  # the first GeneralizedTime: producedAt
            items.append(der.tlv(0x18, produced.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ").encode()))
        else:
            items.append(body[pos:nxt])
        pos = nxt
    assert any(i[0] == 0x18 for i in items), "ResponseData has a producedAt"
    return der.sequence(*items)


def presigned_tbs(
    issuer: cax509.IssuerProfile,
    serial: int,
    status: CertStatus,
    produced: dt.datetime,
    validity: dt.timedelta = DEFAULT_VALIDITY,
) -> bytes:
    """Request-independent TBSResponseData for ``serial`` (RFC 5019: SHA-1 CertID, no nonce), so that one
    signature serves every client until nextUpdate. Deterministic in its arguments."""
    if not status.known:
        raise OCSPError("pre-signed responses are only made for certificates this CA issued")
    check_validity(validity)
    produced = produced.astimezone(dt.UTC).replace(microsecond=0)
    name_hash, key_hash = _issuer_hashes(issuer, hashes.SHA1())
    if status.revoked_at is not None:
        cert_status = ocsp.OCSPCertStatus.REVOKED
        rev_time: dt.datetime | None = status.revoked_at.astimezone(dt.UTC).replace(microsecond=0)
        rev_reason = crl.reason_flag(status.reason)
    else:
        cert_status, rev_time, rev_reason = ocsp.OCSPCertStatus.GOOD, None, None
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        name_hash, key_hash, serial, hashes.SHA1(), cert_status, produced, produced + validity, rev_time, rev_reason
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.NAME, _placeholder_responder(issuer))
    return _with_produced_at(builder.sign(cax509._PLACEHOLDER_KEY, None).tbs_response_bytes, produced)


def finalize_response(tbs_der: bytes, signature: bytes, issuer_public_key: bytes) -> bytes:
    """The DER OCSPResponse for ``tbs_der``, refused unless ``signature`` verifies under the issuer key."""
    try:
        Ed25519PublicKey.from_public_bytes(issuer_public_key).verify(signature, tbs_der)
    except InvalidSignature:
        raise OCSPError("OCSP response signature does not verify under the issuer key") from None
    return assemble_response(tbs_der, signature)


def serve(
    issuer: cax509.IssuerProfile,
    request_der: bytes,
    stored: Callable[[int], bytes | None],
    known: Callable[[int], bool],
) -> bytes:
    """Answer a DER OCSPRequest from pre-signed responses: the stored response for its serial, or an
    unsigned error (RFC 5019 2.2.3): ``malformedRequest`` for bytes that do not parse (or several
    CertIDs), ``unauthorized`` for a CertID this CA cannot answer (other issuer, other hash than SHA-1,
    serial never issued or expired), ``tryLater`` while the response for a known serial is being
    (re)signed, e.g. between a revocation and its FROST-signed revoked response."""
    request = load_request(request_der)
    if request is None:
        return error_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if not isinstance(request.hash_algorithm, hashes.SHA1):
        return error_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    name_hash, key_hash = _issuer_hashes(issuer, hashes.SHA1())
    if (request.issuer_name_hash, request.issuer_key_hash) != (name_hash, key_hash):
        return error_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    serial = request.serial_number
    response = stored(serial) if serial > 0 else None
    if response is not None:
        return response
    if serial > 0 and known(serial):
        return error_response(ocsp.OCSPResponseStatus.TRY_LATER)
    return error_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)


def assemble_response(tbs_der: bytes, signature: bytes) -> bytes:
    """OCSPResponse { successful(0), responseBytes [0] { id-pkix-ocsp-basic, BasicOCSPResponse } }."""
    if len(signature) != 64:
        raise OCSPError("Ed25519 signature must be 64 bytes")
    basic = der.sequence(tbs_der, der.ED25519_ALGORITHM_IDENTIFIER, der.bit_string(signature))
    response_bytes = der.sequence(_OID_BASIC, der.tlv(0x04, basic))
    return der.sequence(der.tlv(0x0A, b"\x00"), der.tlv(0xA0, response_bytes))


def error_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """Unsigned error (malformedRequest, unauthorized, ...) as RFC 6960 4.2.1 allows."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)


def respond(
    issuer: cax509.IssuerProfile,
    request_der: bytes,
    status: StatusLookup,
    now: dt.datetime,
    sign: cax509.SignFunction,
    validity: dt.timedelta = DEFAULT_VALIDITY,
) -> bytes:
    """DER OCSPResponse for a DER OCSPRequest; malformed requests (several CertIDs included) get
    ``malformedRequest``."""
    request = load_request(request_der)
    if request is None:
        return error_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    tbs = response_tbs(issuer, request, status, now, validity)
    signature = sign(tbs)
    out = assemble_response(tbs, signature)
    parsed = ocsp.load_der_ocsp_response(out)
    assert parsed.tbs_response_bytes == tbs
    try:
        Ed25519PublicKey.from_public_bytes(issuer.public_key).verify(parsed.signature, tbs)
    except InvalidSignature:
        raise OCSPError("OCSP response signature does not verify under the issuer key") from None
    return out


def cert_status(record: IssuedCertificate | None) -> CertStatus:
    """The OCSP status a replicated certificate record states (None: not issued by this CA)."""
    if record is None:
        return CertStatus(known=False)
    if record.revoked_us is None:
        return CertStatus(known=True)
    return CertStatus(True, consensus_datetime(record.revoked_us), record.reason or 0)


class IssuedLookup(Protocol):
    """What ``status_from_app`` needs of a ``CAApplication``: its certificate record by serial."""

    def status(self, serial: int) -> IssuedCertificate | None: ...


def status_from_app(app: IssuedLookup) -> StatusLookup:
    """A ``StatusLookup`` over a ``CAApplication``'s replicated state."""
    return lambda serial: cert_status(app.status(serial))
