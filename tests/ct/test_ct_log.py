"""RFC 6962 entries, SCTs and the CTLog API, end to end with checkpoints and tiles."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import merkle, tiles
from trustchain.ct import sct as sctmod
from trustchain.ct.checkpoint import SignedCheckpoint
from trustchain.ct.entry import (
    EntryError,
    PrecertEntry,
    TimestampedEntry,
    X509Entry,
    merkle_tree_leaf,
    parse_merkle_tree_leaf,
)
from trustchain.ct.log import CTLog, LogError

LOG_KEY = Ed25519Signer(b"\x42" * 32)
T0 = 1_767_225_600_000  # consensus time in ms, fixed


def _cert(n: int) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(n.to_bytes(32, "big"))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"host{n}.example")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(n + 1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=90))
    )
    return builder.sign(key, None).public_bytes(Encoding.DER)


def test_merkle_tree_leaf_encoding() -> None:
    leaf = merkle_tree_leaf(TimestampedEntry(0x0102030405060708, X509Entry(b"\xaa\xbb")))
    assert leaf == bytes.fromhex("0000" + "0102030405060708" + "0000" + "000002aabb" + "0000")
    ikh = b"\x11" * 32
    pre = merkle_tree_leaf(TimestampedEntry(1, PrecertEntry(ikh, b"\xcc"), b"\x01\x02"))
    assert pre == bytes.fromhex("0000" + "0000000000000001" + "0001") + ikh + bytes.fromhex(
        "000001cc" + "00020102"
    )
    assert parse_merkle_tree_leaf(pre) == TimestampedEntry(1, PrecertEntry(ikh, b"\xcc"), b"\x01\x02")
    with pytest.raises(EntryError, match="trailing"):
        parse_merkle_tree_leaf(leaf + b"\0")
    with pytest.raises(EntryError, match="inside"):
        parse_merkle_tree_leaf(leaf[:-3])
    with pytest.raises(EntryError, match="entry type 2"):
        parse_merkle_tree_leaf(leaf[:10] + b"\x00\x02" + leaf[12:])
    with pytest.raises(EntryError, match="certificate is 0 bytes"):
        X509Entry(b"")
    with pytest.raises(EntryError, match="issuer_key_hash"):
        PrecertEntry(b"\x11" * 31, b"\xcc")


def test_sct_structure_and_verification() -> None:
    cert = _cert(1)
    sct = sctmod.issue(LOG_KEY, X509Entry(cert), T0)
    spki = (
        Ed25519PrivateKey.from_private_bytes(b"\x42" * 32)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    assert sct.log_id == hashlib.sha256(spki).digest()
    encoded = sct.encode()
    assert encoded[0] == 0 and encoded[1:33] == sct.log_id
    assert encoded[33:41] == T0.to_bytes(8, "big") and encoded[41:43] == b"\0\0"
    assert encoded[43:47] == b"\x08\x07\x00\x40" and len(encoded) == 47 + 64
    assert sctmod.SignedCertificateTimestamp.decode(encoded) == sct
    sctmod.verify(sct, LOG_KEY.public_key, X509Entry(cert))
    with pytest.raises(sctmod.SCTError, match="does not verify"):
        sctmod.verify(sct, LOG_KEY.public_key, X509Entry(_cert(2)))
    with pytest.raises(sctmod.SCTError, match="does not verify"):
        later = sctmod.SignedCertificateTimestamp(sct.log_id, T0 + 1, sct.signature)
        sctmod.verify(later, LOG_KEY.public_key, X509Entry(cert))
    with pytest.raises(sctmod.SCTError, match="not the log"):
        sctmod.verify(sct, Ed25519Signer(b"\x43" * 32).public_key, X509Entry(cert))
    with pytest.raises(sctmod.SCTError, match="says 64 bytes"):
        sctmod.SignedCertificateTimestamp.decode(encoded[:-1])
    with pytest.raises(sctmod.SCTError, match="neither ECDSA-SHA256"):
        sctmod.SignedCertificateTimestamp.decode(encoded[:43] + b"\x05\x03" + encoded[45:])


def test_precert_sct_signs_over_tbs_and_issuer() -> None:
    ikh = hashlib.sha256(b"issuer spki").digest()
    sct = sctmod.issue(LOG_KEY, PrecertEntry(ikh, b"tbs"), T0)
    sctmod.verify(sct, LOG_KEY.public_key, PrecertEntry(ikh, b"tbs"))
    with pytest.raises(sctmod.SCTError):
        sctmod.verify(sct, LOG_KEY.public_key, PrecertEntry(hashlib.sha256(b"other").digest(), b"tbs"))
    with pytest.raises(sctmod.SCTError):  # an X.509 entry with the same bytes is a different statement
        sctmod.verify(sct, LOG_KEY.public_key, X509Entry(b"tbs"))


def test_ctlog_end_to_end() -> None:
    log = CTLog(LOG_KEY)
    certs = [_cert(i) for i in range(20)]
    scts = [log.submit(c, T0 + i) for i, c in enumerate(certs)]
    pre = log.submit_precert(b"tbs-bytes", b"\x07" * 32, T0 + 100)
    assert log.size == 21
    for i, (c, s) in enumerate(zip(certs, scts, strict=True)):
        assert s.timestamp == T0 + i
        sctmod.verify(s, LOG_KEY.public_key, X509Entry(c))
    sctmod.verify(pre, LOG_KEY.public_key, PrecertEntry(b"\x07" * 32, b"tbs-bytes"))

    # A resubmission returns the original SCT byte for byte and adds nothing.
    assert log.submit(certs[3], T0 + 999).encode() == scts[3].encode()
    assert log.size == 21

    entries = log.get_entries(2, 4)
    assert [parse_merkle_tree_leaf(e).entry for e in entries] == [X509Entry(c) for c in certs[2:5]]
    assert len(log.get_entries(19, 1000)) == 2
    with pytest.raises(LogError):
        log.get_entries(21, 30)

    cp = SignedCheckpoint.parse(log.checkpoint(LOG_KEY, "ct.trustchain.example/log").encode())
    cp.verify("ct.trustchain.example/log", LOG_KEY.public_key)
    assert cp.checkpoint.size == 21

    leaf = merkle_tree_leaf(TimestampedEntry(T0 + 7, X509Entry(certs[7])))
    index, proof = log.inclusion_proof_by_leaf_hash(merkle.leaf_hash(leaf), 21)
    assert index == 7
    merkle.verify_inclusion(index, 21, merkle.leaf_hash(leaf), proof, cp.checkpoint.root_hash)
    index, proof = log.inclusion_proof_by_leaf_hash(merkle.leaf_hash(leaf), 8)
    merkle.verify_inclusion(index, 8, merkle.leaf_hash(leaf), proof, log.tree.root(8))
    with pytest.raises(LogError, match="not in the first 7"):
        log.inclusion_proof_by_leaf_hash(merkle.leaf_hash(leaf), 7)
    with pytest.raises(LogError, match="not in the first"):
        log.inclusion_proof_by_leaf_hash(merkle.leaf_hash(b"unknown"), 21)

    merkle.verify_consistency(5, 21, log.tree.root(5), cp.checkpoint.root_hash, log.consistency_proof(5, 21))
    with pytest.raises(LogError):
        log.consistency_proof(5, 22)

    # A tiles client with only the signed checkpoint recovers and proves entry 13.
    def read(path: str) -> bytes:
        return tiles.serve(path, log.tree, log.entries)

    got = tiles.fetch_verified_entry(read, 21, cp.checkpoint.root_hash, 13)
    assert parse_merkle_tree_leaf(got).entry == X509Entry(certs[13])


def test_replicas_executing_the_same_submissions_agree() -> None:
    a, b = CTLog(LOG_KEY), CTLog(LOG_KEY)
    for log in (a, b):
        for i in range(10):
            log.submit(_cert(i), T0 + i)
    assert a.checkpoint(LOG_KEY, "o").encode() == b.checkpoint(LOG_KEY, "o").encode()


def test_oversized_leaf_is_refused() -> None:
    log = CTLog(LOG_KEY)
    with pytest.raises(LogError, match="data tile"):
        log.submit(b"\x30" * 70_000, T0)
    assert log.size == 0
