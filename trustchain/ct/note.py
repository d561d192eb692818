"""C2SP signed-note: a UTF-8 text, a blank line, then `— <name> <base64(key ID || signature)>` lines.

Verifiers pick out the lines for keys they know by (name, 4-byte key ID) and ignore the rest, which is
what lets witnesses add cosignatures to a log's checkpoint without breaking the log's own signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from trustchain.crypto.signing import ED25519, Signer
from trustchain.errors import TrustChainError

__all__ = [
    "KEY_ID_SIZE", "MAX_SIGNATURES", "SIG_TYPE_COSIGNATURE_V1", "SIG_TYPE_ED25519", "SIG_TYPE_OTHER", "Note",
    "NoteError", "NoteSignature", "check_key_name", "key_id", "parse_verifier_key", "sign_ed25519", "sign_note",
    "verifier_key", "verify_ed25519", "verify_note",
]

SIG_TYPE_ED25519 = 0x01
SIG_TYPE_COSIGNATURE_V1 = 0x04
KEY_ID_SIZE = 4
MAX_SIGNATURES = 100  # as the reference implementation: bounds the work a hostile note can cause
_DASH = "\u2014"


class NoteError(TrustChainError, ValueError):
    """A note, signature line or verifier key is malformed or does not verify; the message says which."""


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """First 4 bytes of SHA-256(name || 0x0A || type || key): binds the key name to the key and type."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:KEY_ID_SIZE]


def check_key_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise NoteError(f"{what} is not valid standard base64: {text!r}") from e


@dataclass(frozen=True)
class NoteSignature:
    """One signature line; `payload` is whatever follows the key ID (type-specific)."""

    name: str
    key_id: bytes
    payload: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.payload).decode()
        return f"{_DASH} {self.name} {blob}\n"


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        _check_text(self.text)

    def encode(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode()

    @classmethod
    def parse(cls, data: bytes) -> Note:
        try:
            msg = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NoteError("note is not valid UTF-8") from e
        split = msg.rfind("\n\n")
        if split < 0:
            raise NoteError("note has no blank line separating text from signatures")
        text, sigs = msg[: split + 1], msg[split + 2 :]
        if not sigs:
            raise NoteError("note has no signature lines")
        if not sigs.endswith("\n"):
            raise NoteError("signature block does not end with a newline")
        lines = sigs[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
        return cls(text, tuple(_parse_signature_line(i, line) for i, line in enumerate(lines)))

    def signatures_by(self, name: str, kid: bytes) -> list[NoteSignature]:
        return [s for s in self.signatures if s.name == name and s.key_id == kid]

    def with_signature(self, sig: NoteSignature) -> Note:
        return Note(self.text, (*self.signatures, sig))


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if "\n\n" in text:
        raise NoteError("note text must not contain a blank line")
    for c in text:
        if c != "\n" and (ord(c) < 0x20 or ord(c) == 0x7F):
            raise NoteError(f"note text contains control character {ord(c):#04x}")


def _parse_signature_line(i: int, line: str) -> NoteSignature:
    prefix = _DASH + " "
    if not line.startswith(prefix):
        raise NoteError(f"signature line {i} does not start with an em dash and a space: {line[:20]!r}")
    name, sep, blob = line[len(prefix) :].partition(" ")
    if not sep or " " in blob:
        raise NoteError(f"signature line {i} is not '{_DASH} <name> <base64>'")
    check_key_name(name)
    raw = _b64decode(blob, f"signature line {i}")
    if len(raw) <= KEY_ID_SIZE:
        raise NoteError(f"signature line {i} has {len(raw)} bytes, too few for a key ID and a signature")
    return NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


def sign_ed25519(text: str, name: str, signer: Signer) -> NoteSignature:
    check_key_name(name)
    _check_text(text)
    assert signer.algorithm == "ed25519", signer.algorithm
    kid = key_id(name, SIG_TYPE_ED25519, signer.public_key)
    return NoteSignature(name, kid, signer.sign(text.encode()))


def verify_ed25519(note: Note, name: str, public_key: bytes) -> NoteSignature:
    """The one signature by this key; raises if it is missing, duplicated or invalid."""
    kid = key_id(name, SIG_TYPE_ED25519, public_key)
    found = note.signatures_by(name, kid)
    if not found:
        raise NoteError(f"no signature by key {name} (key ID {kid.hex()})")
    if len(found) > 1:
        raise NoteError(f"{len(found)} signatures by key {name} (key ID {kid.hex()}); expected one")
    if not ED25519.verify(public_key, note.text.encode(), found[0].payload):
        raise NoteError(f"signature by key {name} (key ID {kid.hex()}) does not verify")
    return found[0]


SIG_TYPE_OTHER = 0xFF  # signed-note's type for algorithms without a registered type byte


def _other_key_material(public_key: bytes) -> bytes:
    """For type 0xFF the key ID also binds the algorithm: `scheme-name || 0x00 || public key`."""
    from trustchain.crypto.schemes import scheme_of

    scheme = scheme_of(public_key)
    if scheme is None or scheme == "ed25519":
        raise NoteError(f"no post-quantum signature scheme has {len(public_key)}-byte public keys")
    return scheme.encode() + b"\x00" + public_key


def sign_note(text: str, name: str, signer: Signer) -> NoteSignature:
    """Ed25519 signers produce the standard type-0x01 line; post-quantum ones (the quantum-resistant
    mode: FN-DSA-1024, ML-DSA) a type-0xFF line whose key ID binds the algorithm name."""
    if signer.algorithm == "ed25519":
        return sign_ed25519(text, name, signer)
    check_key_name(name)
    _check_text(text)
    kid = key_id(name, SIG_TYPE_OTHER, _other_key_material(signer.public_key))
    return NoteSignature(name, kid, signer.sign(text.encode()))


def verify_note(note: Note, name: str, public_key: bytes) -> NoteSignature:
    """Verifies the one signature by this key, Ed25519 or post-quantum (chosen by the key's size)."""
    if len(public_key) == 32:
        return verify_ed25519(note, name, public_key)
    from trustchain.crypto.schemes import ANY_SCHEME

    kid = key_id(name, SIG_TYPE_OTHER, _other_key_material(public_key))
    found = note.signatures_by(name, kid)
    if len(found) != 1:
        raise NoteError(f"{len(found)} signatures by key {name} (key ID {kid.hex()}); expected one")
    if not ANY_SCHEME.verify(public_key, note.text.encode(), found[0].payload):
        raise NoteError(f"signature by key {name} (key ID {kid.hex()}) does not verify")
    return found[0]


def verifier_key(name: str, public_key: bytes) -> str:
    """`<name>+<hex key ID>+<base64(0x01 || key)>`, the format signed-note verifiers are configured with."""
    check_key_name(name)
    kid = key_id(name, SIG_TYPE_ED25519, public_key).hex()
    return f"{name}+{kid}+{base64.b64encode(bytes([SIG_TYPE_ED25519]) + public_key).decode()}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes]:
    """Returns (name, Ed25519 public key), checking the embedded key ID."""
    parts = vkey.split("+", 2)  # the base64 key may itself contain "+"
    if len(parts) != 3:
        raise NoteError("verifier key is not '<name>+<hex key ID>+<base64 key>'")
    name, kid_hex, blob = parts
    check_key_name(name)
    raw = _b64decode(blob, "verifier key")
    if len(raw) != 33 or raw[0] != SIG_TYPE_ED25519:
        raise NoteError("verifier key is not a type-0x01 Ed25519 key of 32 bytes")
    if kid_hex != key_id(name, SIG_TYPE_ED25519, raw[1:]).hex():
        raise NoteError(f"verifier key ID {kid_hex} does not match name {name} and key")
    return name, raw[1:]
