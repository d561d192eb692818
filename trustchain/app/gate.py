"""The write gate: every ordered operation names who is making it, and only that party's rights apply.

An operation is either an account's `SignedWrite` (routing target `SIGNED`) or is refused. The gate
checks the signature, deadline and nonce against the replicated `AccountRegistry` and hands the
sub-application the *account id* as the operation's client, so the CA's per-account state (challenges,
rate limits, revocation rights) and the DNS's zone owners are real accounts, never "whichever node
forwarded it". The validators sign their own writes with their consensus keys, which are accounts from
genesis; the operations only they may make are listed in `VALIDATOR_ONLY`.

Each operation in `VALIDATOR_ONLY` is one a single validator may order on its own, because it decides
nothing a Byzantine validator could abuse:

* `ca finalize` (and `ca finalize_batch`, many of them) carries a FROST signature that every replica
  verifies under the group key: the signature itself is the threshold's agreement, and a bad one is
  refused and counted against its submitter;
* `ca sign_ocsp_batch` and `ct checkpoint` only derive pending OCSP TBS / the current tree head from
  replicated state (at most one batch is pending, so repeats are no-ops);
* `dns tick` only lets the batch re-sign zones whose signing epoch passed, which any batch does;
* `observe` and `validators` (a vote) are one validator's *input* to a quorum rule
  (`trustchain.authorization.observations`, `trustchain.authorization.validator_votes`): nothing
  happens until a quorum of distinct validators agrees.

What acts for the validator set as a whole (the nodes' own zones, revocation without the subscriber,
installing an issuer) is never ordered by one validator: it runs only when a vote passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.accounts import ACCOUNTS, AccountRegistry, AccountResult, Authenticated, SignedWrite
from trustchain.authorization.validator_votes import VOTES
from trustchain.encoding import DecodeError, decode, decode_prefix

__all__ = ["OBSERVE", "SIGNED", "VALIDATOR_ONLY", "Admitted", "WriteGate", "command_op"]

SIGNED = "signed"  # routing target of an account-signed write (payload: encoded SignedWrite)
OBSERVE = "observe"  # routing target of a validator's outside-DNS observation

#: (target, op) pairs only a validator account may order: the signing pipeline and housekeeping.
VALIDATOR_ONLY: frozenset[tuple[str, str]] = frozenset({
    ("ca", "finalize"),
    ("ca", "finalize_batch"),  # many finalize items, each checked like its own finalize
    ("ca", "sign_ocsp_batch"),
    ("ca", "serial_commit"),  # a validator's commitments to serial randomness (`trustchain.ca.serials`)
    ("ca", "serial_reveal"),  # its values for them, checked against the commitments
    ("ct", "checkpoint"),
    ("ct", "sct"),  # a validator's own log's SCT for a logged precertificate (`embedded_scts`)
    ("dns", "tick"),
    (OBSERVE, "*"),
    (VOTES, "*"),
})


@dataclass(frozen=True)
class _OpOnly:
    """The first field of every sub-application's command envelope: its operation name."""

    op: str


def command_op(payload: bytes) -> str | None:
    """The `op` of a sub-application command (all of them begin with it), or None if unreadable."""
    try:
        return decode_prefix(_OpOnly, payload).op
    except DecodeError:
        return None


@dataclass(frozen=True)
class Admitted:
    """An authenticated write to deliver: `account` becomes the operation's client."""

    account: bytes
    target: str
    payload: bytes
    validator: int | None  # the replica index when a validator made it


class WriteGate:
    def __init__(self, registry: AccountRegistry) -> None:
        self.registry = registry

    def admit(self, write_bytes: bytes, now_us: int) -> Admitted | AccountResult:
        """Authenticate one signed write; an `AccountResult` error names the field that failed.
        Account commands (target `ACCOUNTS`) are executed here."""
        try:
            write = decode(SignedWrite, write_bytes)
        except DecodeError as exc:
            return AccountResult("error", f"write: malformed signed write ({exc})")
        auth = self.registry.authenticate(write, now_us)
        if isinstance(auth, AccountResult):
            return auth
        if auth.target == ACCOUNTS:
            return self.registry.execute(write, auth, now_us)
        return self._authorize(auth)

    def _authorize(self, auth: Authenticated) -> Admitted | AccountResult:
        validator = self.registry.validator_index(auth.account)
        op = "*" if auth.target in (OBSERVE, VOTES) else command_op(auth.payload)
        if op is None:
            return AccountResult("error", "command: no operation name")
        if (auth.target, op) in VALIDATOR_ONLY and validator is None:
            return AccountResult("error", f"authorization: only a validator may order {auth.target} {op}")
        return Admitted(auth.account, auth.target, auth.payload, validator)
