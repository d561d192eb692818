"""The records the replicated CA keeps in its state (and in its snapshot).

Why a module of its own: the CA application, its CRL/OCSP signing state, the CRL and OCSP encoders and
the node all read these records, and none of them should need the others to do so.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 5280 CRLReason values a requester may use; 7 is unassigned and 8 (removeFromCRL) is delta-CRL only.
# 6 (certificateHold) is refused: the Baseline Requirements (4.9.13) forbid suspending a certificate.
REVOCATION_REASONS = {
    0: "unspecified",
    1: "keyCompromise",
    2: "cACompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    9: "privilegeWithdrawn",
    10: "aACompromise",
}
CERTIFICATE_HOLD = 6
KEY_COMPROMISE = 1
# Reasons only the CA operators may assert.
OPERATOR_REASONS = {2, 10}


def reason_problem(code: int) -> str | None:
    """None if ``code`` may be used to revoke, else the error detail."""
    if code == CERTIFICATE_HOLD:
        return ("reason: certificateHold is not allowed (the Baseline Requirements forbid suspension); "
                "revoke for good with another reason")
    if code not in REVOCATION_REASONS:
        return "reason: not a permitted CRLReason code"
    return None

# A CRL's ``count`` once an entry it lists changed reason: equals no revocation count, so a new CRL is due.
STALE_COUNT = (1 << 64) - 1

# ``PendingSignature.kind``
CRL, OCSP = "crl", "ocsp"


def serial_bytes(serial: int) -> bytes:
    """A positive serial number as the big-endian bytes the state is keyed by (as in the certificate)."""
    assert serial > 0
    return serial.to_bytes((serial.bit_length() + 7) // 8, "big")


@dataclass(frozen=True)
class StoredChallenge:
    """A dns-01 challenge issued to ``account`` for base name ``name``, valid for ``challenge_ttl_us``."""

    account: bytes
    name: str
    value: bytes
    created_us: int


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
    request_id: int = 0  # the request's pending id when this is a later stage of it (the final certificate)


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
    count: int  # revocations it lists; STALE_COUNT once a listed entry's reason changed (a new CRL is due)


@dataclass(frozen=True)
class SignedOCSP:
    serial: bytes
    der: bytes
    produced_us: int
    next_update_us: int
    revoked: bool


@dataclass(frozen=True)
class AwaitingSerial:
    """An approved request whose serial waits for the validators' reveals (``serials``): what its TBS is
    built from once the serial is known (the issuer then current, the consensus time of the request)."""

    csr_der: bytes
    names: tuple[str, ...]
    account: bytes
    node: bool
    lifetime_us: int
    requested_us: int
