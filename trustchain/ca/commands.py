"""The wire format of the replicated CA: ordered commands in, typed results out.

Why a module of its own: clients (the node's HTTP API and certificate renewer, the CLI, the simulator,
the signing service) build commands and read results without the CA state machine. A command is a
``CACommand`` envelope whose ``op`` selects the body type (each body class names its op in ``OP``); a
result is a ``CAResult``, encoded canonically like the CT log's ``CTResult`` and read back with
``decode_result``, so no client parses text. Errors carry ``detail`` "<field>: <reason>".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from trustchain.ca.records import CRL, OCSP, serial_bytes
from trustchain.encoding import decode, encode

# --- commands --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CACommand:
    """Outer envelope: ``op`` selects the body type, so unknown ops and wrong bodies fail cleanly."""

    op: str
    body: bytes


@dataclass(frozen=True)
class ChallengeCommand:
    """Ask for dns-01 challenges for ``names`` (a wildcard is proven by its base name)."""

    OP: ClassVar[str] = "challenge"
    names: tuple[str, ...]


@dataclass(frozen=True)
class IssueRequest:
    """``identity`` is a label for audit (the authenticated account is the request's client key);
    ``proofs[i]`` is the dns-01 key authorization for ``names[i]``; ``lifetime_s`` 0 means default."""

    OP: ClassVar[str] = "request"
    csr_der: bytes
    names: tuple[str, ...]
    proofs: tuple[str, ...]
    identity: str
    payment_ref: str
    lifetime_s: int = 0


@dataclass(frozen=True)
class FinalizeCommand:
    """The FROST signature over pending item ``pending_id`` (a certificate, CRL or OCSP response)."""

    OP: ClassVar[str] = "finalize"
    pending_id: int
    signature: bytes


MAX_FINALIZE_BATCH = 256  # signatures in one FinalizeBatchCommand; a longer one is refused whole


@dataclass(frozen=True)
class FinalizeBatchCommand:
    """Many ``FinalizeCommand`` in one ordered request: the request's own costs (client signatures, one
    slot in a consensus batch) are paid once for every signature an aggregator completed together.
    Each item is checked and recorded exactly as a ``finalize`` of its own; one bad item rejects
    only itself."""

    OP: ClassVar[str] = "finalize_batch"
    items: tuple[FinalizeCommand, ...]


@dataclass(frozen=True)
class RevokeCommand:
    OP: ClassVar[str] = "revoke"
    serial: bytes  # big-endian, as in the certificate
    reason: int
    #: proof of the certificate's private key (RFC 8555 section 7.6): its signature over
    #: `ownership.revocation_proof_input`, so the key holder may revoke without being the subscriber
    key_proof: bytes = b""


@dataclass(frozen=True)
class InstallIssuerCommand:
    """Intermediate rollover: an operator installs a new issuing CA certificate (already signed by a
    trusted root key); later requests are issued under it, pending ones keep their own issuer key."""

    OP: ClassVar[str] = "install_issuer"
    certificate_der: bytes


@dataclass(frozen=True)
class SignCRLCommand:
    """Record a pending CRL if one is due (none yet, revocations changed, or ``crl_refresh_us`` passed)."""

    OP: ClassVar[str] = "sign_crl"
    force: bool = False  # sign a new CRL even if the current one is fresh (operators only)


@dataclass(frozen=True)
class SignOCSPBatchCommand:
    """Record pending OCSP responses for up to ``limit`` serials (0: the policy's ``ocsp_batch_max``)."""

    OP: ClassVar[str] = "sign_ocsp_batch"
    limit: int = 0


@dataclass(frozen=True)
class RevokeIssuerCommand:
    """Revoke an issuing CA certificate (by its serial) in the root's CRL and OCSP: only a validator quorum."""

    OP: ClassVar[str] = "revoke_issuer"
    serial: bytes
    reason: int


@dataclass(frozen=True)
class SignRootCommand:
    """Record the root CRL and root OCSP responses for issuing certificates that are due."""

    OP: ClassVar[str] = "sign_root"
    force: bool = False  # a new root CRL even if the current one is fresh (operators only)


@dataclass(frozen=True)
class SerialCommitCommand:
    """A validator's commitments to serial randomness (``serials.commitment``), ordered ahead of use."""

    OP: ClassVar[str] = "serial_commit"
    commitments: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class SerialReveal:
    commitment: bytes
    value: bytes


@dataclass(frozen=True)
class SerialRevealCommand:
    """A validator's values for its commitments assigned to requests (their draws are complete)."""

    OP: ClassVar[str] = "serial_reveal"
    reveals: tuple[SerialReveal, ...]


Command = (ChallengeCommand | IssueRequest | FinalizeCommand | FinalizeBatchCommand | RevokeCommand
           | InstallIssuerCommand | SignCRLCommand | SignOCSPBatchCommand | RevokeIssuerCommand | SignRootCommand
           | SerialCommitCommand | SerialRevealCommand)


def encode_command(command: Command) -> bytes:
    """The operation payload for ``command``: its body wrapped in a ``CACommand`` envelope."""
    return encode(CACommand(command.OP, encode(command)))


def challenge_command(names: Sequence[str]) -> bytes:
    return encode_command(ChallengeCommand(tuple(names)))


def request_command(req: IssueRequest) -> bytes:
    return encode_command(req)


def finalize_command(pending_id: int, signature: bytes) -> bytes:
    return encode_command(FinalizeCommand(pending_id, signature))


def finalize_batch_commands(items: Sequence[tuple[int, bytes]]) -> list[bytes]:
    """``(pending_id, signature)`` pairs as few commands as possible: a lone one as ``finalize``, more as
    ``finalize_batch`` commands of at most ``MAX_FINALIZE_BATCH``."""
    if len(items) == 1:
        return [finalize_command(*items[0])]
    chunks = [items[k:k + MAX_FINALIZE_BATCH] for k in range(0, len(items), MAX_FINALIZE_BATCH)]
    return [encode_command(FinalizeBatchCommand(tuple(FinalizeCommand(p, s) for p, s in chunk))) for chunk in chunks]


def revoke_command(serial: int, reason: int, key_proof: bytes = b"") -> bytes:
    return encode_command(RevokeCommand(serial_bytes(serial), reason, key_proof))


def install_issuer_command(certificate_der: bytes) -> bytes:
    return encode_command(InstallIssuerCommand(certificate_der))


def sign_crl_command(force: bool = False) -> bytes:
    return encode_command(SignCRLCommand(force))


def sign_ocsp_batch_command(limit: int = 0) -> bytes:
    return encode_command(SignOCSPBatchCommand(limit))


def revoke_issuer_command(serial: int, reason: int) -> bytes:
    return encode_command(RevokeIssuerCommand(serial_bytes(serial), reason))


def sign_root_command(force: bool = False) -> bytes:
    return encode_command(SignRootCommand(force))


def serial_commit_command(commitments: Sequence[bytes]) -> bytes:
    return encode_command(SerialCommitCommand(tuple(commitments)))


def serial_reveal_command(reveals: Sequence[tuple[bytes, bytes]]) -> bytes:
    return encode_command(SerialRevealCommand(tuple(SerialReveal(c, v) for c, v in reveals)))


# --- results ---------------------------------------------------------------------------------------

STATUS_OK = "ok"  # done: a certificate issued or revoked, an issuer installed, a CRL or OCSP response stored
STATUS_CHALLENGE = "challenge"  # challenges recorded (``challenges``)
STATUS_PENDING = "pending"  # request approved: the certificate waits for its serial's randomness and FROST
# (``pending_id``; ``serial`` is empty until the validators' reveals fixed it, see ``serials``)
STATUS_SIGNING = "signing"  # CRL or OCSP TBS recorded: they wait for FROST (``pending_ids``)
STATUS_UNCHANGED = "unchanged"  # nothing to do: already revoked, CRL/OCSP current or already being signed
STATUS_STALE = "stale"  # an OCSP signature verified, but the certificate was revoked meanwhile: not stored
STATUS_ERROR = "error"  # rejected, state unchanged (but a bad signature is attributed): ``detail``
STATUSES = (STATUS_OK, STATUS_CHALLENGE, STATUS_PENDING, STATUS_SIGNING, STATUS_UNCHANGED, STATUS_STALE,
            STATUS_ERROR)

KIND_CERTIFICATE, KIND_CRL, KIND_OCSP, KIND_ISSUER = "certificate", CRL, OCSP, "issuer"
KINDS = ("", KIND_CERTIFICATE, KIND_CRL, KIND_OCSP, KIND_ISSUER)


@dataclass(frozen=True)
class ChallengeToken:
    """The dns-01 challenge for base name ``name``: publish ``ownership.dns01_txt(key_authorization)``
    at ``_acme-challenge.<name>``, then send ``key_authorization`` as the request's proof."""

    name: str
    key_authorization: str


@dataclass(frozen=True)
class CAResult:
    """The deterministic answer every honest replica returns to one CA command.

    ``status`` is one of ``STATUSES``; ``kind`` says what the result is about (certificate, crl, ocsp
    or issuer; empty for challenges and errors). ``detail`` is "<field>: <reason>" for errors and a
    note for people otherwise. ``pending_ids`` are the signing-service ids involved (the approved
    request's, those just recorded or already being signed, the finalized one); ``serial`` the
    certificate's; ``number`` a CRL number; ``certificate_der`` the issued certificate; ``issuer_key``
    the installed issuer's Ed25519 key."""

    status: str
    detail: str = ""
    kind: str = ""
    pending_ids: tuple[int, ...] = ()
    serial: bytes = b""
    number: int = 0
    certificate_der: bytes = b""
    issuer_key: bytes = b""
    challenges: tuple[ChallengeToken, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status: {self.status[:32]!r} is not one of {', '.join(STATUSES)}")
        if self.kind not in KINDS:
            raise ValueError(f"kind: {self.kind[:32]!r} is not one of {', '.join(KINDS[1:])}")

    @classmethod
    def error(cls, detail: str) -> CAResult:
        """A rejection; ``detail`` is "<field>: <reason>"."""
        return cls(STATUS_ERROR, detail)

    @property
    def ok(self) -> bool:
        return self.status != STATUS_ERROR

    @property
    def field(self) -> str:
        """The field an error names ("" unless an error)."""
        return self.detail.partition(": ")[0] if self.status == STATUS_ERROR else ""

    @property
    def reason(self) -> str:
        """Why an error was returned ("" unless an error)."""
        return self.detail.partition(": ")[2] if self.status == STATUS_ERROR else ""

    @property
    def pending_id(self) -> int:
        """The one pending id of a pending, CRL or finalize result (0 if there is none)."""
        return self.pending_ids[0] if self.pending_ids else 0

    def proofs(self) -> dict[str, str]:
        """``{base name: key authorization}`` of a challenge result."""
        return {c.name: c.key_authorization for c in self.challenges}


def decode_result(data: bytes) -> CAResult:
    """The ``CAResult`` in ``data``; raises ``DecodeError`` (naming the field) for anything else."""
    return decode(CAResult, data)
