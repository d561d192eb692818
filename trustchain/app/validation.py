"""Outside-name validation as a replicated sub-application.

An account asks (`OpenValidation(name)`): every replica derives the same challenge from the ordered
request and answers with the TXT record to publish at `_acme-challenge.<name>` in the public DNS. Once
it is published the account says `ready`; each validator's node then looks it up on its own and orders
an `Observation`; the decision is
`ExternalValidations`' quorum rule. A validated name lets that account create the zone for it
(`trustchain.dns.app`) for the validity period.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import dns.name

from trustchain.app.gate import command_op
from trustchain.authorization.observations import Decided, ExternalValidations, ValidationOpened
from trustchain.ca import ownership
from trustchain.encoding import DecodeError, decode, encode

__all__ = ["VALIDATE", "Observation", "OpenValidation", "ReadyValidation", "ValidationApp", "ValidationResult"]

VALIDATE = "validate"  # routing target of an account's request to validate a name
STATUS_OPEN, STATUS_READY, STATUS_DECIDED, STATUS_RECORDED, STATUS_ERROR = (
    "open", "ready", "decided", "recorded", "error")


@dataclass(frozen=True)
class OpenValidation:
    op: str  # "open" (every command envelope starts with its op)
    name: str


@dataclass(frozen=True)
class ReadyValidation:
    op: str  # "ready": the record is published, the validators may look
    validation_id: int


@dataclass(frozen=True)
class Observation:
    op: str  # "observe"
    validation_id: int
    seen: bool


@dataclass(frozen=True)
class ValidationResult:
    status: str
    detail: str = ""
    validation_id: int = 0
    record_name: str = ""
    expected: str = ""
    outcome: str = ""

    @property
    def ok(self) -> bool:
        return self.status != STATUS_ERROR


def open_command(name: str) -> bytes:
    return encode(OpenValidation("open", name))


def ready_command(validation_id: int) -> bytes:
    return encode(ReadyValidation("ready", validation_id))


def observe_command(validation_id: int, seen: bool) -> bytes:
    return encode(Observation("observe", validation_id, seen))


def decode_result(data: bytes) -> ValidationResult:
    return decode(ValidationResult, data)


def _registrable(name: str) -> str | None:
    try:
        parsed = dns.name.from_text(name.rstrip(".") + ".")
    except Exception:  # dnspython raises several types for malformed names
        return None
    if len(parsed) < 3 or any(label.startswith(b"*") for label in parsed.labels):
        return None
    return parsed.to_text(omit_final_dot=True).lower()


class ValidationApp:
    def __init__(self, validations: ExternalValidations) -> None:
        self.validations = validations
        self._events: list[ValidationOpened | Decided] = []

    def open(self, account: bytes, payload: bytes, seed: bytes, now_us: int) -> ValidationResult:
        if command_op(payload) == "ready":
            return self._ready(account, payload, now_us)
        try:
            cmd = decode(OpenValidation, payload)
        except DecodeError as exc:
            return ValidationResult(STATUS_ERROR, f"command: malformed ({exc})")
        name = _registrable(cmd.name)
        if name is None:
            return ValidationResult(STATUS_ERROR, "name: not a domain name of at least two labels, no wildcard")
        token = hashlib.sha256(b"trustchain/validate/v1\0" + seed + account + name.encode()).digest()[:16]
        expected = ownership.dns01_txt(ownership.key_authorization(token, account))
        opened = self.validations.open(account, name, f"{ownership.CHALLENGE_LABEL}.{name}", expected, now_us)
        if isinstance(opened, str):
            return ValidationResult(STATUS_ERROR, opened)
        return ValidationResult(STATUS_OPEN, "", opened.validation_id, opened.record_name, expected)

    def _ready(self, account: bytes, payload: bytes, now_us: int) -> ValidationResult:
        try:
            cmd = decode(ReadyValidation, payload)
        except DecodeError as exc:
            return ValidationResult(STATUS_ERROR, f"command: malformed ({exc})")
        opened = self.validations.ready(account, cmd.validation_id, now_us)
        if isinstance(opened, str):
            return ValidationResult(STATUS_ERROR, opened, cmd.validation_id)
        self._events.append(opened)
        return ValidationResult(STATUS_READY, "", opened.validation_id, opened.record_name, opened.expected)

    def open_ready(self, account: bytes, name: str, method: str, record_name: str, expected: str,
                   now_us: int) -> ValidationOpened | str:
        """A validation whose record is already published (an ACME challenge the client responded to):
        the validators are asked to look at once. The reason ("<field>: ...") if it cannot be opened."""
        opened = self.validations.open(account, name, record_name, expected, now_us, method)
        if isinstance(opened, str):
            return opened
        ready = self.validations.ready(account, opened.validation_id, now_us)
        assert not isinstance(ready, str)
        self._events.append(ready)
        return ready

    def observe(self, validator: int, payload: bytes, now_us: int) -> ValidationResult:
        try:
            cmd = decode(Observation, payload)
        except DecodeError as exc:
            return ValidationResult(STATUS_ERROR, f"command: malformed ({exc})")
        decided = self.validations.observe(validator, cmd.validation_id, cmd.seen, now_us)
        if isinstance(decided, str):
            return ValidationResult(STATUS_ERROR, decided, cmd.validation_id)
        if decided is None:
            return ValidationResult(STATUS_RECORDED, "", cmd.validation_id)
        self._events.append(decided)
        return ValidationResult(STATUS_DECIDED, "", cmd.validation_id, outcome=decided.outcome)

    def validated(self, account: bytes, name: str) -> bool:
        return self.validations.validated(account, name.rstrip(".").lower(), self._now_us)

    _now_us = 0

    def tick(self, now_us: int) -> None:
        """Consensus time of the batch being executed (for `validated` queries during it)."""
        self._now_us = now_us

    def take_events(self) -> list[ValidationOpened | Decided]:
        events, self._events = self._events, []
        return events
