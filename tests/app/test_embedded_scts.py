"""Gathering SCTs for a logged precertificate: each validator's own log's SCT, checked against its genesis
key and the logged entry; the f+1-th completes it, and the certificate's TBSCertificate then carries the
SCT list where the precertificate had its poison."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from trustchain.app.embedded_scts import SCTCollector, sct_command
from trustchain.ca import x509 as cax509
from trustchain.ca.records import PendingIssuance
from trustchain.ct import precert
from trustchain.ct import sct as sctmod
from trustchain.ct.entry import PrecertEntry
from trustchain.ct.logkey import P256LogSigner

ISSUER_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
ISSUER = cax509.IssuerProfile(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Issuing")]),
                              ISSUER_KEY.public_key().public_bytes_raw(), "http://c/i", "http://o/", "http://i/i")
SUBJECT = ec.derive_private_key(5, ec.SECP256R1()).public_key()
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
LOGS = [P256LogSigner.from_secret(bytes([i]) * 32) for i in range(4)]
KEYS = tuple(s.public_key for s in LOGS)
IKH = hashlib.sha256(b"issuer spki").digest()
INDEX, TIMESTAMP = 7, 1_772_000_000_123
EXTENSIONS = sctmod.leaf_index_extension(INDEX)


def _tbs(precertificate: bool) -> bytes:
    return cax509.leaf_tbs(SUBJECT, ["www.example.org"], ISSUER, NOW, 3, b"request", precertificate=precertificate)


PRECERT_TBS, PLAIN_TBS = _tbs(True), _tbs(False)  # the same certificate with and without the poison
PENDING = PendingIssuance(4, PRECERT_TBS, ISSUER.public_key, b"\x01" * 16, b"acct", ("www.example.org",), 0)
ENTRY = PrecertEntry(IKH, PLAIN_TBS)


def collector() -> SCTCollector:
    c = SCTCollector(KEYS, 2)
    c.start(PENDING, b"precert-der", IKH, INDEX, TIMESTAMP, EXTENSIONS)
    return c


def sct(signer: P256LogSigner, entry: PrecertEntry = ENTRY, timestamp: int = TIMESTAMP) -> bytes:
    return sctmod.issue(signer, entry, timestamp, EXTENSIONS).encode()


def test_f_plus_1_distinct_logs_complete_the_certificate() -> None:
    c = collector()
    assert c.waiting_for(4)
    assert c.submit(2, sct_command(sct(LOGS[2]))) == ("", None)
    assert c.submit(2, sct_command(sct(LOGS[2]))) == ("", None)  # counted once
    problem, done = c.submit(0, sct_command(sct(LOGS[0])))
    assert problem == "" and done is not None and not c.waiting_for(4)
    assert [c.validator for c in done.scts] == [0, 2]  # ordered by validator, whatever order they arrived in

    final_tbs = precert.with_scts(done.pending.tbs, [c.sct for c in done.scts])
    cert = x509.load_der_x509_certificate(cax509.assemble_certificate(final_tbs, ISSUER_KEY.sign(final_tbs)))
    assert cert.tbs_precertificate_bytes == PLAIN_TBS  # what the logs signed, by cryptography's own reckoning
    embedded = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    assert [s.log_id for s in embedded] == [hashlib.sha256(KEYS[v]).digest() for v in (0, 2)]
    for s, v in zip(embedded, (0, 2), strict=True):
        signed = (b"\x00\x00" + TIMESTAMP.to_bytes(8, "big") + b"\x00\x01" + IKH + len(PLAIN_TBS).to_bytes(3, "big")
                  + PLAIN_TBS + len(EXTENSIONS).to_bytes(2, "big") + EXTENSIONS)
        key = serialization.load_der_public_key(KEYS[v])
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(s.signature, signed, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(("validator", "payload", "reason"), [
    (0, sct_command(sct(LOGS[1])), "not the log with this key"),  # validator 1's SCT ordered by validator 0
    (1, sct_command(sct(LOGS[1], timestamp=TIMESTAMP + 1)), "timestamp or extensions differ"),
    (1, sct_command(sct(LOGS[1], PrecertEntry(IKH, PRECERT_TBS))), "does not verify"),  # signed the poisoned TBS
    (1, sct_command(b"\x00" * 10), "malformed"),
    (1, b"junk", "malformed"),
    (9, sct_command(sct(LOGS[1])), "no CT log key"),
])
def test_bad_scts_are_refused_naming_the_sct(validator: int, payload: bytes, reason: str) -> None:
    c = collector()
    problem, done = c.submit(validator, payload)
    assert problem.startswith("sct:") and reason in problem and done is None
    assert c.awaiting[INDEX].scts == ()


def test_an_sct_for_an_entry_nobody_waits_for_is_refused_and_waits_expire() -> None:
    c = collector()
    other = sctmod.issue(LOGS[0], ENTRY, TIMESTAMP, sctmod.leaf_index_extension(8)).encode()
    assert "no precertificate awaits" in c.submit(0, sct_command(other))[0]
    snap = c.snapshot()
    restored = SCTCollector(KEYS, 2)
    restored.restore(snap)
    assert restored.awaiting == c.awaiting
    assert c.expire(PENDING.created_us + 10, 100) == []
    assert [a.index for a in c.expire(PENDING.created_us + 101, 100)] == [INDEX] and not c.awaiting
