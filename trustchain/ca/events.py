"""What the replicated CA tells its node after an execution (not replicated state).

Why events and not results: a result goes to the one client that submitted the command, while the
node's signing service, metrics and certificate waiters must learn about every pending issuance,
finalization, expiry and revocation, whoever caused it.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.ca.records import PendingIssuance, PendingSignature


@dataclass(frozen=True)
class PendingRecorded:
    pending: PendingIssuance


@dataclass(frozen=True)
class Finalized:
    pending_id: int
    serial: bytes
    certificate_der: bytes
    request_id: int = 0  # the pending id the request was answered with, if not `pending_id`


@dataclass(frozen=True)
class PrecertSigned:
    """A precertificate was signed: it is logged, and the certificate waits for its SCTs."""

    pending: PendingIssuance
    precertificate_der: bytes


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
    request_id: int = 0  # the pending id the request was answered with, if not `pending_id`


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
         | SignatureStored | PrecertSigned)
