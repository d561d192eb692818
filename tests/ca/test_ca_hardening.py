"""`trustchain-cli ca` and `cert verify` fail closed: each case an outside review reproduced."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509 import ocsp as xocsp

from reference_node.cli import main

OPENSSL = shutil.which("openssl")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout, stderr of one command; an exception (a traceback) fails the test."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hard") / "ca"
    assert main(["ca", "init", "--dir", str(d)]) == 0
    return d


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    d = tmp_path / "ca"
    assert main(["ca", "init", "--dir", str(d)]) == 0
    return d


def issue(d: Path, out: Path, *extra: str, name: str = "www.example.org") -> x509.Certificate:
    assert main(["ca", "issue", "--dir", str(d), "--name", name, "--out", str(out), *extra]) == 0
    return x509.load_pem_x509_certificate(out.read_bytes())


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    return xocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)


# --- concurrent commands -------------------------------------------------------------------------


def test_concurrent_issues_lose_no_record(fresh: Path, tmp_path: Path) -> None:
    """Four issues at once, as threads started together (each opens the lock file itself, as a process
    would), then one more as a separate process: every record survives."""
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def one(i: int) -> None:
        barrier.wait()
        codes.append(main(["ca", "issue", "--dir", str(fresh), "--name", f"c{i}.example.org", "--out",
                           str(tmp_path / f"c{i}.pem")]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    proc = subprocess.run([sys.executable, "-m", "reference_node.cli", "ca", "issue", "--dir", str(fresh), "--name",
                           "c4.example.org", "--out", str(tmp_path / "c4.pem")], env=os.environ.copy(),
                          capture_output=True, text=True, timeout=300, check=False)
    for t in threads:
        t.join()
    assert codes == [0, 0, 0, 0] and proc.returncode == 0, proc.stderr
    assert json.loads((fresh / "ca.json").read_text())["seq"] == 15  # challenge, request, finalize each
    for i in range(5):
        cert = x509.load_pem_x509_certificate((tmp_path / f"c{i}.pem").read_bytes())
        assert main(["ca", "revoke", f"{cert.serial_number:x}", "--dir", str(fresh)]) == 0


# --- init validates first and replaces atomically -----------------------------------------------


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--root-name", "", "--root-name: must not be empty"),
    ("--root-name", "R" * 65, "at most 64"),
    ("--issuing-name", "I" * 65, "at most 64"),
    ("--base-url", "not a url", "--base-url"),
    ("--base-url", "ftp://pki.example.org", "--base-url"),
    ("--ca-domain", "xn--a.example.org", "--ca-domain"),
])
def test_init_force_with_bad_input_changes_nothing(ca_dir: Path, capsys: pytest.CaptureFixture[str], flag: str,
                                                   value: str, message: str) -> None:
    before = snapshot(ca_dir)
    code, _, err = cli(capsys, "ca", "init", "--dir", str(ca_dir), "--force", flag, value)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert snapshot(ca_dir) == before


def test_init_force_replaces_the_whole_ca(fresh: Path, tmp_path: Path) -> None:
    old_root = (fresh / "root.pem").read_bytes()
    old_share = (fresh / "shares" / "validator-1.issuing.share").read_bytes()
    assert main(["ca", "init", "--dir", str(fresh), "--force", "--root-name", "Replaced Root"]) == 0
    assert (fresh / "root.pem").read_bytes() != old_root
    assert (fresh / "shares" / "validator-1.issuing.share").read_bytes() != old_share
    root = x509.load_pem_x509_certificate((fresh / "root.pem").read_bytes())
    assert root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "Replaced Root"
    config = json.loads((fresh / "ca.json").read_text())
    assert root.public_key().public_bytes_raw() == bytes.fromhex(config["root"]["group_key"])  # type: ignore[union-attr]
    leftovers = [p.name for p in fresh.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    leaf = issue(fresh, tmp_path / "after.pem")
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate((fresh / "intermediate.pem").read_bytes()))


# --- shares ----------------------------------------------------------------------------------------


def test_any_t_shares_sign_and_a_wrong_share_is_named(fresh: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (fresh / "shares" / "validator-1.issuing.share").unlink()
    issue(fresh, tmp_path / "a.pem")  # 4 of 5 remain
    # validator 2's share replaced by another CA's share for the same validator, under the same operator key
    other = tmp_path / "other"
    key = json.loads((fresh / "ca.json").read_text())["operator_key_path"]
    assert main(["ca", "init", "--dir", str(other), "--operator-key", key]) == 0
    shutil.copy(other / "shares" / "validator-2.issuing.share", fresh / "shares" / "validator-2.issuing.share")
    code, _, err = cli(capsys, "ca", "issue", "--dir", str(fresh), "--name", "b.example.org", "--out",
                       str(tmp_path / "b.pem"))
    assert code == 0 and "validator-2.issuing.share: not validator 2's share" in err, err
    (fresh / "shares" / "validator-3.issuing.share").write_bytes(b"garbage")
    code, _, err = cli(capsys, "ca", "issue", "--dir", str(fresh), "--name", "c.example.org", "--out",
                       str(tmp_path / "c.pem"))
    assert code == 3 and "2 usable issuing shares, 3 needed" in err and "validator-3.issuing.share" in err, err


# --- validity -------------------------------------------------------------------------------------


def test_leaf_is_clamped_to_the_intermediate(ca_dir: Path, tmp_path: Path) -> None:
    inter = x509.load_pem_x509_certificate((ca_dir / "intermediate.pem").read_bytes())
    leaf = issue(ca_dir, tmp_path / "long.pem", "--lifetime", "398d", name="long.example.org")
    assert leaf.not_valid_after_utc == inter.not_valid_after_utc


@pytest.mark.parametrize(("argv", "message"), [
    (["--lifetime", "0"], "--lifetime: must be positive"),
    (["--lifetime", "99999999999d"], "--lifetime"),
    (["--lifetime", "9" * 40], "--lifetime"),
    (["--lifetime", "399d"], "longer than the maximum"),
    (["--name", "bücher.example.org"], "xn--bcher-kva.example.org"),
    (["--name", "xn--a.example.org"], "not a valid IDNA A-label"),
])
def test_issue_refuses_bad_input(ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 argv: list[str], message: str) -> None:
    base = ["ca", "issue", "--dir", str(ca_dir), "--out", str(tmp_path / "x.pem")]
    if "--name" not in argv:
        base += ["--name", "ok.example.org"]
    code, _, err = cli(capsys, *base, *argv)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.pem").exists() and not (tmp_path / "x.pem.key").exists()


def test_csr_with_ip_and_email_sans_is_refused(ca_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName("ip.example.org"),
                                       x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
                                       x509.RFC822Name("me@example.org")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(san, False).sign(
        key, hashes.SHA256())
    (tmp_path / "ip.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    code, _, err = cli(capsys, "ca", "issue", "--dir", str(ca_dir), "--csr", str(tmp_path / "ip.csr"), "--name",
                       "ip.example.org", "--out", str(tmp_path / "ip.pem"))
    assert code == 2 and "IPAddress" in err and "RFC822Name" in err, err


# --- broken directories ---------------------------------------------------------------------------


def test_broken_directory_is_a_one_line_error(fresh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    issue(fresh, tmp_path / "a.pem")
    config = json.loads((fresh / "ca.json").read_text())
    argv = ("ca", "issue", "--dir", str(fresh), "--name", "b.example.org", "--out", str(tmp_path / "b.pem"))
    for key in ("threshold", "urls", "cluster"):
        broken = {k: v for k, v in config.items() if k != key}
        (fresh / "ca.json").write_text(json.dumps(broken))
        code, _, err = cli(capsys, *argv)
        assert code == 2 and f"'{key}'" in err and "ca.json" in err and err.count("\n") == 1, err
    (fresh / "ca.json").write_text(json.dumps(config))
    (fresh / "state.bin").write_bytes(b"\x00\x00\x00\x00\x00\x00\x00\x02garbage")
    code, _, err = cli(capsys, *argv)
    assert code == 2 and "state.bin" in err and err.count("\n") == 1, err


# --- revocation ------------------------------------------------------------------------------------


def test_certificate_hold_is_refused_and_key_compromise_replaces_superseded(
        ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leaf = issue(ca_dir, tmp_path / "r.pem", name="reason.example.org")
    serial = f"{leaf.serial_number:x}"
    for reason in ("certificateHold", "6"):
        code, _, err = cli(capsys, "ca", "revoke", serial, "--reason", reason, "--dir", str(ca_dir))
        assert code == 2 and "certificateHold is not allowed" in err, err
    assert main(["ca", "revoke", serial, "--reason", "superseded", "--dir", str(ca_dir)]) == 0
    assert main(["ca", "crl", "--dir", str(ca_dir), "--out", str(tmp_path / "1.crl")]) == 0
    first = x509.load_pem_x509_crl((tmp_path / "1.crl").read_bytes()).get_revoked_certificate_by_serial_number(
        leaf.serial_number)
    assert first is not None
    code, out, _ = cli(capsys, "ca", "revoke", serial, "--reason", "keyCompromise", "--dir", str(ca_dir))
    assert code == 0 and "keyCompromise" in out
    assert main(["ca", "crl", "--dir", str(ca_dir), "--out", str(tmp_path / "2.crl")]) == 0
    entry = x509.load_pem_x509_crl((tmp_path / "2.crl").read_bytes()).get_revoked_certificate_by_serial_number(
        leaf.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert entry.revocation_date_utc == first.revocation_date_utc


def test_ocsp_validity_is_at_least_eight_hours(ca_dir: Path, tmp_path: Path) -> None:
    leaf = issue(ca_dir, tmp_path / "o.pem", name="validity.example.org")
    inter = x509.load_pem_x509_certificate((ca_dir / "intermediate.pem").read_bytes())
    (tmp_path / "req").write_bytes(ocsp_request(leaf, inter))
    assert main(["ca", "ocsp", "--dir", str(ca_dir), "--request", str(tmp_path / "req"), "--out",
                 str(tmp_path / "resp")]) == 0
    resp = xocsp.load_der_ocsp_response((tmp_path / "resp").read_bytes())
    assert resp.next_update_utc is not None
    assert resp.next_update_utc - resp.this_update_utc >= dt.timedelta(hours=8)


def test_root_crl_and_root_signed_ocsp_for_the_intermediate(fresh: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = x509.load_pem_x509_certificate((fresh / "root.pem").read_bytes())
    inter = x509.load_pem_x509_certificate((fresh / "intermediate.pem").read_bytes())
    root_key = root.public_key()
    assert isinstance(root_key, Ed25519PublicKey)
    # the intermediate's CRL distribution point is the root CRL
    dp = inter.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name
    assert dp is not None and str(dp[0].value).endswith("/crl/root.crl")
    assert main(["ca", "crl", "--issuer", "root", "--dir", str(fresh), "--out", str(tmp_path / "root.crl")]) == 0
    root_crl = x509.load_pem_x509_crl((tmp_path / "root.crl").read_bytes())
    assert root_crl.issuer == root.subject
    root_key.verify(root_crl.signature, root_crl.tbs_certlist_bytes)
    (tmp_path / "req").write_bytes(ocsp_request(inter, root))

    def ask() -> xocsp.OCSPResponse:
        assert main(["ca", "ocsp", "--dir", str(fresh), "--request", str(tmp_path / "req"), "--out",
                     str(tmp_path / "resp")]) == 0
        resp = xocsp.load_der_ocsp_response((tmp_path / "resp").read_bytes())
        assert resp.response_status == xocsp.OCSPResponseStatus.SUCCESSFUL
        root_key.verify(resp.signature, resp.tbs_response_bytes)  # signed by the root, not the intermediate
        assert resp.responder_name == root.subject
        return resp

    assert ask().certificate_status == xocsp.OCSPCertStatus.GOOD
    leaf = issue(fresh, tmp_path / "leaf.pem", name="chain.example.org")
    assert main(["ca", "crl", "--dir", str(fresh), "--out", str(tmp_path / "issuing.crl")]) == 0
    if OPENSSL:  # a full-chain CRL check needs the root CRL too
        both = tmp_path / "crls.pem"
        both.write_bytes((tmp_path / "root.crl").read_bytes() + (tmp_path / "issuing.crl").read_bytes())
        v = subprocess.run([OPENSSL, "verify", "-crl_check_all", "-CRLfile", str(both), "-CAfile",
                            str(fresh / "root.pem"), "-untrusted", str(fresh / "intermediate.pem"),
                            str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
        assert v.returncode == 0, v.stdout + v.stderr
    code, out, _ = cli(capsys, "ca", "revoke", f"{inter.serial_number:x}", "--reason", "cACompromise", "--dir",
                       str(fresh))
    assert code == 0 and "intermediate" in out
    assert ask().certificate_status == xocsp.OCSPCertStatus.REVOKED
    assert main(["ca", "crl", "--issuer", "root", "--dir", str(fresh), "--out", str(tmp_path / "root2.crl")]) == 0
    listed = x509.load_pem_x509_crl((tmp_path / "root2.crl").read_bytes())
    assert listed.get_revoked_certificate_by_serial_number(inter.serial_number) is not None
    assert leaf.serial_number != inter.serial_number


# --- cert verify ------------------------------------------------------------------------------------


def test_verify_refuses_an_expired_crl_and_checks_names_on_a_single_certificate(
        ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leaf = issue(ca_dir, tmp_path / "v.pem", name="verify.example.org")
    assert main(["ca", "crl", "--dir", str(ca_dir), "--lifetime", "1h", "--out", str(tmp_path / "short.crl")]) == 0
    base = ["cert", "verify", str(tmp_path / "v.pem"), "--chain", str(ca_dir / "intermediate.pem"), "--root",
            str(ca_dir / "root.pem"), "--crl", str(tmp_path / "short.crl")]
    assert cli(capsys, *base)[0] == 0
    later = (leaf.not_valid_before_utc + dt.timedelta(hours=2)).isoformat()
    code, _, err = cli(capsys, *base, "--at", later)
    assert code == 1 and "CRL expired" in err, err
    root = str(ca_dir / "root.pem")
    code, _, err = cli(capsys, "cert", "verify", root, "--root", root, "--name", "verify.example.org")
    assert code == 1 and "name mismatch" in err, err


# --- the operator key -------------------------------------------------------------------------------


def test_old_layout_gets_a_migration_message(fresh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = json.loads((fresh / "ca.json").read_text())
    key_path = Path(config.pop("operator_key_path"))
    del config["operator_key_id"]
    (fresh / "ca.json").write_text(json.dumps(config))
    shutil.move(key_path, fresh / "operator.key")  # the layout before the key was kept apart
    argv = ("ca", "issue", "--dir", str(fresh), "--name", "m.example.org", "--out", str(tmp_path / "m.pem"))
    code, _, err = cli(capsys, *argv)
    assert code == 2 and "migrate-key" in err and "operator.key" in err, err
    target = tmp_path / "keys" / "op.key"
    assert cli(capsys, "ca", "migrate-key", "--dir", str(fresh), "--operator-key", str(target))[0] == 0
    assert not (fresh / "operator.key").exists() and target.stat().st_mode & 0o077 == 0
    assert cli(capsys, *argv)[0] == 0
    code, _, err = cli(capsys, "ca", "init", "--dir", str(tmp_path / "n"), "--operator-key", str(tmp_path / "n" / "k"))
    assert code == 2 and "inside the CA directory" in err


# --- serials ----------------------------------------------------------------------------------------


def test_copies_of_a_directory_never_share_a_serial(fresh: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName("same.example.org")]), False).sign(key, hashes.SHA256())
    (tmp_path / "same.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    copy = tmp_path / "copy"
    shutil.copytree(fresh, copy)
    serials = set()
    for d, out in ((fresh, "a.pem"), (copy, "b.pem")):
        cert = issue(d, tmp_path / out, "--csr", str(tmp_path / "same.csr"), name="same.example.org")
        assert cert.serial_number.bit_length() >= 64
        serials.add(cert.serial_number)
    assert len(serials) == 2
