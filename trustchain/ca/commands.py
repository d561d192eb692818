"""The ordered commands of the replicated CA and the helpers that build them.

Why a module of its own: clients (the node's HTTP API, the CLI, the simulator, the signing service)
build and read these without needing the CA state machine. ``CACommand.op`` selects the body type, so
an unknown op or a body of the wrong shape fails cleanly with a result, never an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trustchain.ca.records import serial_bytes
from trustchain.encoding import encode


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
