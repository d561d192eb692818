"""Signed notes against the Go reference (byte for byte), checkpoints, and witness cosignatures."""

from __future__ import annotations

import base64

import pytest

from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import checkpoint as cpmod
from trustchain.ct import note
from trustchain.ct.checkpoint import Checkpoint, CheckpointError, SignedCheckpoint
from trustchain.ct.merkle import leaf_hash

# golang.org/x/mod/sumdb/note reference example (Ed25519 is deterministic, so signing must reproduce it).
GO_SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + "\n\u2014 PeterNeumann "
    + "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

LOG = Ed25519Signer(bytes(range(32)))
WITNESS = Ed25519Signer(bytes(range(1, 33)))
ORIGIN = "trustchain.example/ct/log1"


def test_go_reference_note_signs_and_verifies_byte_for_byte() -> None:
    signer = Ed25519Signer(GO_SKEY_SEED)
    name, pub = note.parse_verifier_key(GO_VKEY)
    assert (name, pub) == ("PeterNeumann", signer.public_key)
    assert note.verifier_key(name, pub) == GO_VKEY
    signed = note.Note(GO_TEXT, (note.sign_ed25519(GO_TEXT, name, signer),))
    assert signed.encode() == GO_NOTE.encode()
    parsed = note.Note.parse(GO_NOTE.encode())
    assert parsed == signed
    note.verify_ed25519(parsed, name, pub)
    tampered = note.Note.parse(GO_NOTE.replace("cryptography", "cryptographY").encode())
    with pytest.raises(note.NoteError, match="does not verify"):
        note.verify_ed25519(tampered, name, pub)


def test_cosignature_key_id_matches_transparency_dev_key() -> None:
    # remora.n621.de+da77ade7+<base64(0x04 || key)> from transparency-dev/formats' cosignature tests.
    raw = base64.b64decode("BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
    assert note.key_id("remora.n621.de", note.SIG_TYPE_COSIGNATURE_V1, raw[1:]).hex() == "da77ade7"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (GO_TEXT.encode(), "no blank line"),
        (GO_TEXT.encode() + b"\n", "no signature lines"),
        (GO_NOTE.encode()[:-1], "does not end with a newline"),
        (GO_NOTE.replace("\u2014", "-").encode(), "em dash"),
        (GO_NOTE.replace("PeterNeumann x08", "PeterNeumann  x08").encode(), "is not"),
        (GO_NOTE.replace("x08go/", "x08go?").encode(), "base64"),
        (GO_TEXT.encode() + "\n\u2014 A AAAA\n".encode(), "too few"),
        (b"\xff\n\n", "UTF-8"),
        (b"a\x01b\n\n\xe2\x80\x94 A AAAAAAA=\n", "control character"),
        ((GO_TEXT + "\n" + "\u2014 A AAAAAAA=\n" * 101).encode(), "more than 100"),
    ],
)
def test_malformed_notes_are_rejected(data: bytes, problem: str) -> None:
    with pytest.raises(note.NoteError, match=problem):
        note.Note.parse(data)


def test_verifier_key_errors() -> None:
    with pytest.raises(note.NoteError, match="does not match"):
        note.parse_verifier_key(GO_VKEY.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(note.NoteError, match="not"):
        note.parse_verifier_key("PeterNeumann+c74f20a3")
    with pytest.raises(note.NoteError, match="key name"):
        note.verifier_key("bad name", LOG.public_key)


def _checkpoint(size: int = 5, ext: tuple[str, ...] = ()) -> Checkpoint:
    return Checkpoint(ORIGIN, size, leaf_hash(size.to_bytes(8, "big")), ext)


def test_checkpoint_round_trip_and_format() -> None:
    cp = _checkpoint(123, ("extension line",))
    signed = cpmod.sign(cp, "log1", LOG)
    data = signed.encode()
    root = base64.b64encode(cp.root_hash).decode()
    assert data.decode().startswith(f"{ORIGIN}\n123\n{root}\nextension line\n\n\u2014 log1 ")
    parsed = SignedCheckpoint.parse(data)
    assert parsed.checkpoint == cp
    parsed.verify("log1", LOG.public_key)
    with pytest.raises(CheckpointError, match="no signature by key log2"):
        parsed.verify("log2", LOG.public_key)
    with pytest.raises(CheckpointError, match="no signature by key log1"):
        parsed.verify("log1", WITNESS.public_key)
    forged = SignedCheckpoint.parse(data.replace(b"\n123\n", b"\n124\n"))
    with pytest.raises(CheckpointError, match="does not verify"):
        forged.verify("log1", LOG.public_key)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("origin\n5\n", "needs origin, size and root"),
        ("origin\n05\nAAAA\n", "canonical decimal"),
        ("origin\n-5\nAAAA\n", "canonical decimal"),
        ("origin\n\u0665\nAAAA\n", "canonical decimal"),
        ("origin\n5\n!!!!\n", "base64"),
        ("origin\n5\nAAAA\n", "root hash is 3 bytes"),
        ("origin\n5\n" + base64.b64encode(bytes(32)).decode(), "newline"),
        ("origin\n18446744073709551616\n" + base64.b64encode(bytes(32)).decode() + "\n", "uint64"),
        ("\n5\n" + base64.b64encode(bytes(32)).decode() + "\n", "origin"),
    ],
)
def test_malformed_checkpoint_bodies(body: str, problem: str) -> None:
    with pytest.raises(CheckpointError, match=problem):
        Checkpoint.parse_body(body)


def test_duplicate_log_signatures_are_ambiguous() -> None:
    signed = cpmod.sign(_checkpoint(), "log1", LOG)
    doubled = SignedCheckpoint(signed.checkpoint, signed.note.with_signature(signed.note.signatures[0]))
    with pytest.raises(CheckpointError, match="2 signatures"):
        doubled.verify("log1", LOG.public_key)


def test_cosignature_round_trip() -> None:
    signed = cpmod.sign(_checkpoint(), "log1", LOG).cosign("witness.example", WITNESS, 1_700_000_000)
    parsed = SignedCheckpoint.parse(signed.encode())
    parsed.verify("log1", LOG.public_key)  # the log's signature is unaffected by the extra line
    assert parsed.verify_cosignature("witness.example", WITNESS.public_key) == 1_700_000_000
    line = parsed.note.signatures[1]
    assert line.key_id == note.key_id("witness.example", note.SIG_TYPE_COSIGNATURE_V1, WITNESS.public_key)
    assert line.payload[:8] == (1_700_000_000).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1700000000\n" + signed.checkpoint.body().encode()
    assert cpmod.cosigned_message(signed.checkpoint, 1_700_000_000) == message
    with pytest.raises(CheckpointError, match="0 cosignatures"):
        parsed.verify_cosignature("witness.example", LOG.public_key)
    # A cosignature is not a log signature (different key ID type), even from the same key.
    with pytest.raises(CheckpointError, match=r"no signature by key witness\.example"):
        parsed.verify("witness.example", WITNESS.public_key)


def test_cosignature_with_altered_time_fails() -> None:
    signed = cpmod.sign(_checkpoint(), "log1", LOG).cosign("w", WITNESS, 1000)
    sig = signed.note.signatures[1]
    moved = note.NoteSignature(sig.name, sig.key_id, (1001).to_bytes(8, "big") + sig.payload[8:])
    tampered = SignedCheckpoint(
        signed.checkpoint, note.Note(signed.note.text, (signed.note.signatures[0], moved))
    )
    with pytest.raises(CheckpointError, match="does not verify"):
        tampered.verify_cosignature("w", WITNESS.public_key)
    short = note.NoteSignature(sig.name, sig.key_id, sig.payload[:-1])
    truncated = SignedCheckpoint(signed.checkpoint, note.Note(signed.note.text, (short,)))
    with pytest.raises(CheckpointError, match="71 bytes"):
        truncated.verify_cosignature("w", WITNESS.public_key)


def test_unknown_signatures_are_ignored_and_mismatched_notes_refused() -> None:
    cp = _checkpoint()
    stranger = note.sign_ed25519(cp.body(), "stranger", WITNESS)
    signed = cpmod.sign(cp, "log1", LOG)
    both = SignedCheckpoint.parse(
        SignedCheckpoint(cp, note.Note(cp.body(), (stranger, *signed.note.signatures))).encode()
    )
    both.verify("log1", LOG.public_key)
    both.verify("stranger", WITNESS.public_key)
    with pytest.raises(CheckpointError, match="not this checkpoint's body"):
        SignedCheckpoint(_checkpoint(6), signed.note)
