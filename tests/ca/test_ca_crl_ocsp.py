"""Threshold-signed CRLs and OCSP responses, checked by openssl and pkilint."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from ca_chain import ISSUING_CERT, ISSUING_PROFILE, ISSUING_SIGN, OPERATOR, ROOT_CERT, issued_app, pem
from ca_testutil import T0_US, run
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as xocsp

from trustchain.app.interface import Operation
from trustchain.ca import commands as cacommands
from trustchain.ca import consensus_time as catime
from trustchain.ca import crl, ocsp

APP, CERTS = issued_app([["good.example.org"], ["revoked.example.org"], ["hold.example.org"]])
assert run(
    APP, Operation(OPERATOR, 90, cacommands.revoke_command(CERTS[1].serial_number, 1)), 50, T0_US + 10_000_000
).status == cacommands.STATUS_OK
assert run(
    APP, Operation(OPERATOR, 91, cacommands.revoke_command(CERTS[2].serial_number, 0)), 51, T0_US + 11_000_000
).status == cacommands.STATUS_OK
NOW = catime.consensus_datetime(T0_US + 20_000_000)
CRL = crl.build_crl(ISSUING_PROFILE, crl.revocations_from(APP.revoked()), NOW, 7, ISSUING_SIGN)
OPENSSL = shutil.which("openssl")


def test_crl_contents_and_determinism() -> None:
    assert CRL.is_signature_valid(ISSUING_CERT.public_key())  # type: ignore[arg-type]
    assert CRL.issuer == ISSUING_CERT.subject
    assert CRL.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    revoked = {r.serial_number: r for r in CRL}
    assert set(revoked) == {CERTS[1].serial_number, CERTS[2].serial_number}
    entry = revoked[CERTS[1].serial_number]
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert entry.revocation_date_utc == catime.consensus_datetime(T0_US + 10_000_000)
    with pytest.raises(x509.ExtensionNotFound):  # unspecified: extension omitted
        revoked[CERTS[2].serial_number].extensions.get_extension_for_class(x509.CRLReason)
    # same state -> same TBS on every replica, whatever quorum signs
    again = crl.crl_tbs(ISSUING_PROFILE, list(reversed(crl.revocations_from(APP.revoked()))), NOW, 7)
    assert again == CRL.tbs_certlist_bytes
    with pytest.raises(crl.CRLError):
        crl.finalize_crl(CRL.tbs_certlist_bytes, bytes(64), ISSUING_PROFILE.public_key)


@pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")
def test_openssl_verifies_crl_and_checks_revocation(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(pem(ROOT_CERT) + pem(ISSUING_CERT))
    (tmp_path / "crl.pem").write_bytes(CRL.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(
        ["openssl", "crl", "-in", str(tmp_path / "crl.pem"), "-noout", "-verify", "-CAfile", str(tmp_path / "ca.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and "verify OK" in out.stdout + out.stderr, out.stdout + out.stderr
    # chain verification with CRL checking: revoked leaf is refused, good leaf accepted
    (tmp_path / "root.pem").write_bytes(pem(ROOT_CERT))
    (tmp_path / "inter.pem").write_bytes(pem(ISSUING_CERT))
    at = str(int(NOW.timestamp()) + 60)
    for cert, ok in ((CERTS[0], True), (CERTS[1], False)):
        (tmp_path / "leaf.pem").write_bytes(pem(cert))
        v = subprocess.run(
            [
                "openssl",
                "verify",
                "-attime",
                at,
                "-crl_check",
                "-CRLfile",
                str(tmp_path / "crl.pem"),
                "-CAfile",
                str(tmp_path / "root.pem"),
                "-untrusted",
                str(tmp_path / "inter.pem"),
                str(tmp_path / "leaf.pem"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (v.returncode == 0) == ok, v.stdout + v.stderr
        if not ok:
            assert "revoked" in v.stdout + v.stderr


@pytest.mark.skipif(shutil.which("lint_crl") is None, reason="pkilint not installed (pip install pkilint)")
def test_pkilint_crl(tmp_path: Path) -> None:
    path = tmp_path / "crl.pem"
    path.write_bytes(CRL.public_bytes(serialization.Encoding.PEM))
    for profile in ("PKIX", "BR"):
        out = subprocess.run(
            ["lint_crl", "lint", "-t", "CRL", "-p", profile, "-f", "JSON", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.stdout, out.stderr
        findings = {
            (f["severity"], f["code"])
            for r in json.loads(out.stdout)["results"]
            for f in r["finding_descriptions"]
            if f["severity"] in ("WARNING", "ERROR", "FATAL")
        }
        # Ed25519 is not (yet) a BR-permitted CRL signature algorithm; TrustChain's FROST key is Ed25519.
        assert {c for _, c in findings} <= {
            "cabf.crl.prohibited_signature_algorithm_encoding",
            "cabf.serverauth.prohibited_signature_algorithm_encoding",
        }, (profile, findings)


def ocsp_request(cert: x509.Certificate, *, nonce: bytes | None = None) -> bytes:
    b = xocsp.OCSPRequestBuilder().add_certificate(cert, ISSUING_CERT, hashes.SHA1())
    if nonce:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    return b.build().public_bytes(serialization.Encoding.DER)


def answer(cert: x509.Certificate, nonce: bytes | None = None) -> xocsp.OCSPResponse:
    der = ocsp.respond(ISSUING_PROFILE, ocsp_request(cert, nonce=nonce), ocsp.status_from_app(APP), NOW, ISSUING_SIGN)
    return xocsp.load_der_ocsp_response(der)


def test_ocsp_good_revoked_unknown() -> None:
    good, revoked = answer(CERTS[0], nonce=b"n" * 16), answer(CERTS[1])
    assert good.response_status == xocsp.OCSPResponseStatus.SUCCESSFUL
    assert good.certificate_status == xocsp.OCSPCertStatus.GOOD
    assert good.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 16
    assert good.responder_name == ISSUING_CERT.subject
    assert revoked.certificate_status == xocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_reason == x509.ReasonFlags.key_compromise
    assert revoked.revocation_time_utc == catime.consensus_datetime(T0_US + 10_000_000)
    foreign = x509.load_der_x509_certificate(CERTS[0].public_bytes(serialization.Encoding.DER))
    from ca_chain import ROOT_CERT as other_issuer

    req = (
        xocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(b"\x00" * 20, b"\x00" * 20, foreign.serial_number, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    unknown = xocsp.load_der_ocsp_response(
        ocsp.respond(ISSUING_PROFILE, req, ocsp.status_from_app(APP), NOW, ISSUING_SIGN)
    )
    assert unknown.certificate_status == xocsp.OCSPCertStatus.UNKNOWN
    assert other_issuer is not None
    bad = xocsp.load_der_ocsp_response(
        ocsp.respond(ISSUING_PROFILE, b"junk", ocsp.status_from_app(APP), NOW, ISSUING_SIGN)
    )
    assert bad.response_status == xocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")
def test_openssl_ocsp_accepts_responses(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(pem(ROOT_CERT))
    (tmp_path / "inter.pem").write_bytes(pem(ISSUING_CERT))
    at = str(int(NOW.timestamp()) + 60)
    for cert, word in ((CERTS[0], "good"), (CERTS[1], "revoked")):
        (tmp_path / "leaf.pem").write_bytes(pem(cert))
        (tmp_path / "req.der").write_bytes(ocsp_request(cert, nonce=b"x" * 16))
        # openssl checks thisUpdate/nextUpdate against its own clock (-attime covers only the chain),
        # so this response is produced "now"; the chain is verified at issuance time.
        wall = dt.datetime.now(dt.UTC)
        resp = ocsp.respond(
            ISSUING_PROFILE, (tmp_path / "req.der").read_bytes(), ocsp.status_from_app(APP), wall, ISSUING_SIGN
        )
        (tmp_path / "resp.der").write_bytes(resp)
        out = subprocess.run(
            # -cert makes openssl build its own request (with its own nonce), so nonce matching is
            # checked above with cryptography and skipped here.
            [
                "openssl",
                "ocsp",
                "-respin",
                str(tmp_path / "resp.der"),
                "-no_nonce",
                "-CAfile",
                str(tmp_path / "root.pem"),
                "-issuer",
                str(tmp_path / "inter.pem"),
                "-cert",
                str(tmp_path / "leaf.pem"),
                "-attime",
                at,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        text = out.stdout + out.stderr
        assert out.returncode == 0 and "Response verify OK" in text, text
        assert "WARNING" not in text and f"leaf.pem: {word}" in text, text
