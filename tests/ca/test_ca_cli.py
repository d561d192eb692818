"""trustchain-cli ca/cert end to end through reference_node.cli.main, checked with openssl."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as xocsp

from reference_node.cli import main

OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ca")
    assert main(["ca", "init", "--validators", "5", "--threshold", "3", "--dir", str(d)]) == 0
    return d


def test_init_layout_and_share_encryption(ca_dir: Path) -> None:
    for f in ("root.pem", "intermediate.pem", "ca.json"):
        assert (ca_dir / f).is_file(), f
    assert not (ca_dir / "operator.key").exists()  # the key is kept apart from the shares it encrypts
    shares = sorted(p.name for p in (ca_dir / "shares").iterdir())
    assert len(shares) == 10 and shares[0] == "validator-1.issuing.share"
    import json

    key_path = Path(json.loads((ca_dir / "ca.json").read_text())["operator_key_path"])
    assert not key_path.is_relative_to(ca_dir)
    assert key_path.stat().st_mode & 0o077 == 0
    blob = (ca_dir / "shares" / "validator-1.root.share").read_bytes()
    from trustchain.ca import sharebox

    key = bytes.fromhex(key_path.read_text())
    kp = sharebox.load_key_package(key, "validator-1", "root", blob)
    with pytest.raises(sharebox.ShareboxError):  # bound to the validator id
        sharebox.load_key_package(key, "validator-2", "root", blob)
    root = x509.load_pem_x509_certificate((ca_dir / "root.pem").read_bytes())
    inter = x509.load_pem_x509_certificate((ca_dir / "intermediate.pem").read_bytes())
    assert root.public_key().public_bytes_raw() == kp.group_public_key  # type: ignore[union-attr]
    inter.verify_directly_issued_by(root)


def test_usage_errors(ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "init", "--validators", "3", "--threshold", "2", "--dir", str(tmp_path / "x")]) == 2
    assert main(["ca", "init", "--validators", "5", "--threshold", "3", "--dir", str(ca_dir)]) == 2
    assert main(["ca", "issue", "--dir", str(tmp_path), "--name", "a.example.org", "--out", "x"]) == 2
    assert "not a CA directory" in capsys.readouterr().err
    assert main(["ca", "issue", "--dir", str(ca_dir), "--name", "*.example.org", "--out", str(tmp_path / "c")]) == 2
    assert "wildcard" in capsys.readouterr().err
    assert (
        main(
            [
                "ca",
                "issue",
                "--dir",
                str(ca_dir),
                "--name",
                "a.example.org",
                "--lifetime",
                "soon",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )
    assert main(["ca", "revoke", "zz", "--dir", str(ca_dir)]) == 2
    assert main(["ca", "revoke", "abcdef", "--reason", "bogus", "--dir", str(ca_dir)]) == 2
    assert main(["ca", "revoke", "abcdef", "--dir", str(ca_dir)]) == 1
    assert "not issued" in capsys.readouterr().err
    for argv in (["ca", "--help"], ["ca", "issue", "--help"], ["cert", "verify", "--help"], ["ca", "ocsp", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0


def test_issue_verify_revoke_crl_ocsp(ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert_path = tmp_path / "leaf.pem"
    assert (
        main(
            [
                "ca",
                "issue",
                "--dir",
                str(ca_dir),
                "--name",
                "www.example.org",
                "--name",
                "example.org",
                "--lifetime",
                "24h",
                "--out",
                str(cert_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "leaf.pem.key").is_file() and (tmp_path / "leaf.pem.proof").is_file()
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(hours=24, seconds=-1)
    base = [
        "cert",
        "verify",
        str(cert_path),
        "--chain",
        str(ca_dir / "intermediate.pem"),
        "--root",
        str(ca_dir / "root.pem"),
    ]
    capsys.readouterr()
    assert main([*base, "--name", "www.example.org", "--cluster", str(ca_dir / "ca.json")]) == 0
    assert "committed at seq" in capsys.readouterr().out

    def fails(argv: list[str], reason: str) -> None:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert f"error: {reason}" in err, err

    fails([*base, "--name", "other.example.org"], "name mismatch")
    later = (leaf.not_valid_after_utc + dt.timedelta(seconds=10)).isoformat()
    fails([*base, "--at", later], "expired")
    earlier = (leaf.not_valid_before_utc - dt.timedelta(seconds=10)).isoformat()
    fails([*base, "--at", earlier], "not yet valid")
    fails(["cert", "verify", str(cert_path), "--root", str(ca_dir / "root.pem")], "wrong issuer")
    # a certificate re-signed by a key that is not the issuing group key
    forged_path = tmp_path / "forged.pem"
    forged_der = leaf.tbs_certificate_bytes
    from trustchain.ca import x509 as cax509

    forged = x509.load_der_x509_certificate(cax509.assemble_certificate(forged_der, bytes(64)))
    forged_path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    fails(
        [
            "cert",
            "verify",
            str(forged_path),
            "--chain",
            str(ca_dir / "intermediate.pem"),
            "--root",
            str(ca_dir / "root.pem"),
        ],
        "bad signature",
    )
    # consensus proof required with --cluster
    (tmp_path / "copy.pem").write_bytes(cert_path.read_bytes())
    fails(
        [
            "cert",
            "verify",
            str(tmp_path / "copy.pem"),
            "--chain",
            str(ca_dir / "intermediate.pem"),
            "--root",
            str(ca_dir / "root.pem"),
            "--cluster",
            str(ca_dir / "ca.json"),
        ],
        "missing consensus proof",
    )
    second = tmp_path / "second.pem"
    assert main(["ca", "issue", "--dir", str(ca_dir), "--name", "api.example.org", "--out", str(second)]) == 0
    fails([*base, "--cluster", str(ca_dir / "ca.json"), "--proof", str(second) + ".proof"], "missing consensus proof")

    # revoke, CRL, OCSP
    serial = f"{leaf.serial_number:x}"
    assert main(["ca", "revoke", serial, "--reason", "keyCompromise", "--dir", str(ca_dir)]) == 0
    crl_path = tmp_path / "crl.pem"
    assert main(["ca", "crl", "--dir", str(ca_dir), "--out", str(crl_path)]) == 0
    fails([*base, "--crl", str(crl_path)], "revoked")
    assert (
        main(
            [
                "cert",
                "verify",
                str(second),
                "--chain",
                str(ca_dir / "intermediate.pem"),
                "--root",
                str(ca_dir / "root.pem"),
                "--crl",
                str(crl_path),
            ]
        )
        == 0
    )
    inter = x509.load_pem_x509_certificate((ca_dir / "intermediate.pem").read_bytes())
    for path, expected in ((cert_path, "revoked"), (second, "good")):
        req = (
            xocsp.OCSPRequestBuilder()
            .add_certificate(x509.load_pem_x509_certificate(path.read_bytes()), inter, hashes.SHA1())
            .build()
        )
        (tmp_path / "req.der").write_bytes(req.public_bytes(serialization.Encoding.DER))
        assert (
            main(
                [
                    "ca",
                    "ocsp",
                    "--dir",
                    str(ca_dir),
                    "--request",
                    str(tmp_path / "req.der"),
                    "--out",
                    str(tmp_path / "resp.der"),
                ]
            )
            == 0
        )
        assert expected in capsys.readouterr().out
        if OPENSSL:
            out = subprocess.run(
                [
                    OPENSSL,
                    "ocsp",
                    "-respin",
                    str(tmp_path / "resp.der"),
                    "-no_nonce",
                    "-CAfile",
                    str(ca_dir / "root.pem"),
                    "-issuer",
                    str(ca_dir / "intermediate.pem"),
                    "-cert",
                    str(path),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            assert out.returncode == 0 and "Response verify OK" in out.stdout + out.stderr, out.stderr
            assert f"{path}: {expected}" in out.stdout, out.stdout
    if OPENSSL:
        out = subprocess.run(
            [OPENSSL, "crl", "-in", str(crl_path), "-noout", "-verify", "-CAfile", str(ca_dir / "intermediate.pem")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert "verify OK" in out.stdout + out.stderr, out.stderr
        both = tmp_path / "cas.pem"
        both.write_bytes((ca_dir / "root.pem").read_bytes())
        v = subprocess.run(
            [
                OPENSSL,
                "verify",
                "-x509_strict",
                "-crl_check",
                "-CRLfile",
                str(crl_path),
                "-CAfile",
                str(both),
                "-untrusted",
                str(ca_dir / "intermediate.pem"),
                str(second),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert v.returncode == 0, v.stdout + v.stderr


def test_issue_from_csr_file(ca_dir: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("csr.example.org")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "req.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    out = tmp_path / "c.pem"
    assert (
        main(
            [
                "ca",
                "issue",
                "--dir",
                str(ca_dir),
                "--csr",
                str(tmp_path / "req.csr"),
                "--name",
                "csr.example.org",
                "--lifetime",
                "1h",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert cert.public_key() == key.public_key()
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=1, seconds=-1)
    (tmp_path / "bad.csr").write_bytes(b"nonsense")
    assert (
        main(
            [
                "ca",
                "issue",
                "--dir",
                str(ca_dir),
                "--csr",
                str(tmp_path / "bad.csr"),
                "--name",
                "x.example.org",
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_ocsp_serve(ca_dir: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cert_path = tmp_path / "s.pem"
    assert main(["ca", "issue", "--dir", str(ca_dir), "--name", "served.example.org", "--out", str(cert_path)]) == 0
    t = threading.Thread(target=main, args=(["ca", "ocsp", "--dir", str(ca_dir), "--serve", str(port)],), daemon=True)
    t.start()
    inter = x509.load_pem_x509_certificate((ca_dir / "intermediate.pem").read_bytes())
    req = (
        xocsp.OCSPRequestBuilder()
        .add_certificate(x509.load_pem_x509_certificate(cert_path.read_bytes()), inter, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    for _ in range(50):
        try:
            with urllib.request.urlopen(
                urllib.request.Request(
                    f"http://127.0.0.1:{port}/", data=req, headers={"Content-Type": "application/ocsp-request"}
                ),
                timeout=5,
            ) as r:
                resp = xocsp.load_der_ocsp_response(r.read())
            break
        except OSError:
            time.sleep(0.1)
    else:
        pytest.fail("OCSP server did not answer")
    assert resp.certificate_status == xocsp.OCSPCertStatus.GOOD
