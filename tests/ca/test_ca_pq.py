"""Post-quantum adapters: ML-DSA-65/87 signers and certificates, FN-DSA-1024 behind Signer/Verifier."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from ca_chain import ISSUING_PROFILE, ISSUING_SIGN
from ca_testutil import seeded
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA87PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from trustchain.ca import x509 as cax509
from trustchain.crypto import pq
from trustchain.crypto.signing import Signer, Verifier

T = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("level", [65, 87])
def test_mldsa_signer_interface(level: int) -> None:
    signer: Signer = pq.MLDSASigner(bytes(range(32)), level)
    verifier: Verifier = pq.MLDSAVerifier(level)
    assert pq.MLDSASigner(bytes(range(32)), level).public_key == signer.public_key  # seeded keygen
    sig = signer.sign(b"msg")
    assert len(sig) == {65: 3309, 87: 4627}[level]
    assert verifier.verify(signer.public_key, b"msg", sig)
    assert not verifier.verify(signer.public_key, b"msh", sig)
    assert not verifier.verify(b"short", b"msg", sig)


@pytest.mark.parametrize("level", [65, 87])
def test_mldsa_certificate_chain(level: int, tmp_path: Path) -> None:
    cls = MLDSA65PrivateKey if level == 65 else MLDSA87PrivateKey
    root_key, leaf_key = cls.from_seed_bytes(b"r" * 32), cls.from_seed_bytes(b"l" * 32)
    root = pq.mldsa_certificate(
        pq.simple_name("PQ Root"),
        root_key.public_key(),
        pq.simple_name("PQ Root"),
        root_key,
        1,
        T,
        dt.timedelta(days=3650),
        ca=True,
    )
    leaf = pq.mldsa_certificate(
        pq.x509.Name([]),
        leaf_key.public_key(),
        root.subject,
        root_key,
        2,
        T,
        dt.timedelta(hours=24),
        ca=False,
        dns_names=["pq.example.org"],
    )
    root.verify_directly_issued_by(root)
    leaf.verify_directly_issued_by(root)
    assert leaf.signature_algorithm_oid.dotted_string == f"2.16.840.1.101.3.4.3.{ {65: 18, 87: 19}[level] }"
    # the threshold (Ed25519) CA can also certify ML-DSA subject keys
    hybrid = cax509.issue(
        cax509.leaf_tbs(leaf_key.public_key(), ["pq.example.org"], ISSUING_PROFILE, T, 1, b"pq"),
        ISSUING_SIGN,
        ISSUING_PROFILE.public_key,
    )
    assert hybrid.public_key() == leaf_key.public_key()
    openssl = shutil.which("openssl")
    if openssl:
        (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
        out = subprocess.run(
            [openssl, "x509", "-in", str(tmp_path / "leaf.pem"), "-noout", "-text"],
            capture_output=True,
            text=True,
            check=False,
        )
        # OpenSSL >= 3.5 knows ML-DSA; older versions still parse the certificate and print the OID.
        assert out.returncode == 0, out.stderr


@pytest.mark.skipif(pq.fndsa_backend() is None, reason="no FN-DSA backend (pip install py-fn-dsa or liboqs-python)")
def test_fndsa_1024_signer_interface() -> None:
    signer: Signer = pq.FNDSA1024Signer(seed=b"s" * 32)
    verifier: Verifier = pq.FNDSA1024Verifier()
    assert signer.algorithm == verifier.algorithm
    sig = signer.sign(b"hello")
    assert 600 < len(sig) <= 1462
    assert verifier.verify(signer.public_key, b"hello", sig)
    assert not verifier.verify(signer.public_key, b"hellp", sig)
    assert not verifier.verify(signer.public_key, b"hello", sig[:-1] + bytes([sig[-1] ^ 1]))
    if pq.fndsa_backend() == "c-fn-dsa":
        # seeded keygen and seeded signing replay byte for byte (simulator traces)
        a = pq.FNDSA1024Signer(seed=b"s" * 32, rand_bytes=seeded(1))
        b = pq.FNDSA1024Signer(seed=b"s" * 32, rand_bytes=seeded(1))
        assert a.public_key == signer.public_key
        assert a.sign(b"x") == b.sign(b"x")
        assert verifier.verify(a.public_key, b"x", b.sign(b"x"))
