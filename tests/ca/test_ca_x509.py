"""Threshold-signed X.509 chain: parses, verifies, is deterministic, and passes openssl -x509_strict."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from ca_testutil import frost_signer, seeded
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trustchain.ca import frost
from trustchain.ca import x509 as cax509
from trustchain.crypto.signing import Ed25519Signer

GENESIS = dt.datetime(2025, 1, 1, 0, 0, 0, tzinfo=dt.UTC)
NOW = dt.datetime(2025, 6, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)

ROOT_GROUP = frost.trusted_dealer_keygen(5, 3, seeded(41))
ISSUING_GROUP = frost.trusted_dealer_keygen(5, 3, seeded(42))
ROOT_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TrustChain"),
        x509.NameAttribute(NameOID.COMMON_NAME, "TrustChain Root R1"),
    ]
)
ISSUING_NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TrustChain"),
        x509.NameAttribute(NameOID.COMMON_NAME, "TrustChain Issuing E1"),
    ]
)


def profile(name: x509.Name, key: bytes, tag: str) -> cax509.IssuerProfile:
    return cax509.IssuerProfile(
        name=name,
        public_key=key,
        crl_url=f"http://crl.trustchain.example/{tag}.crl",
        ocsp_url="http://ocsp.trustchain.example/",
        ca_issuers_url=f"http://certs.trustchain.example/{tag}.der",
    )


ROOT_PROFILE = profile(ROOT_NAME, ROOT_GROUP.public.group_public_key, "root")
ISSUING_PROFILE = profile(ISSUING_NAME, ISSUING_GROUP.public.group_public_key, "issuing-e1")
LEAF_KEY = ec.derive_private_key(123456789, ec.SECP256R1())


def build_chain(quorum_root: list[int], quorum_issuing: list[int]) -> tuple[x509.Certificate, ...]:
    root_sign = frost_signer(ROOT_GROUP.key_packages, ROOT_GROUP.public, quorum_root, seeded(43))
    issuing_sign = frost_signer(ISSUING_GROUP.key_packages, ISSUING_GROUP.public, quorum_issuing, seeded(44))
    root = cax509.issue(
        cax509.root_tbs(ROOT_NAME, ROOT_GROUP.public.group_public_key, GENESIS),
        root_sign,
        ROOT_PROFILE.public_key,
    )
    inter = cax509.issue(
        cax509.intermediate_tbs(
            ISSUING_NAME, ISSUING_GROUP.public.group_public_key, ROOT_PROFILE, GENESIS, 1
        ),
        root_sign,
        ROOT_PROFILE.public_key,
    )
    leaf_tbs = cax509.leaf_tbs(
        LEAF_KEY.public_key(),
        ["www.example.org", "Example.org."],
        ISSUING_PROFILE,
        NOW,
        7,
        b"csr-and-batch-hash",
    )
    leaf = cax509.issue(leaf_tbs, issuing_sign, ISSUING_PROFILE.public_key)
    return root, inter, leaf


CHAIN = build_chain([1, 2, 3], [2, 4, 5])


def test_chain_parses_and_verifies_with_cryptography() -> None:
    root, inter, leaf = CHAIN
    root.verify_directly_issued_by(root)
    inter.verify_directly_issued_by(root)
    leaf.verify_directly_issued_by(inter)
    for c in CHAIN:
        assert c.version == x509.Version.v3
        assert c.signature_algorithm_oid.dotted_string == "1.3.101.112"
        assert x509.load_der_x509_certificate(c.public_bytes(Encoding.DER)) == c


def test_leaf_fields_are_derived_from_inputs() -> None:
    leaf = CHAIN[2]
    ext = leaf.extensions
    assert leaf.not_valid_before_utc == NOW.replace(microsecond=0)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(hours=24) - dt.timedelta(
        seconds=1
    )
    assert leaf.serial_number == cax509.serial_number(
        cax509.request_digest(b"leaf", b"csr-and-batch-hash"), 7
    )
    assert 0 < leaf.serial_number < 2**127
    assert leaf.issuer == ISSUING_NAME
    assert leaf.subject == x509.Name([])
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).critical
    with pytest.raises(x509.ExtensionNotFound):
        ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ext.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == [
        "www.example.org",
        "example.org",
    ]
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = CHAIN[1].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    aia = ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [a.access_location.value for a in aia] == [
        "http://ocsp.trustchain.example/",
        "http://certs.trustchain.example/issuing-e1.der",
    ]
    crl = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert crl[0].full_name == [
        x509.UniformResourceIdentifier("http://crl.trustchain.example/issuing-e1.crl")
    ]
    policies = ext.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier for p in policies] == [cax509.DOMAIN_VALIDATED]


def test_ca_constraints() -> None:
    root, inter, _ = CHAIN
    assert root.issuer == root.subject == ROOT_NAME
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length is None
    bc = inter.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert inter.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_tbs_is_identical_on_every_replica_and_quorum() -> None:
    # Different quorums, different nonces: identical TBS; signatures differ but all verify.
    other = build_chain([3, 4, 5], [1, 2, 3])
    for a, b in zip(CHAIN, other, strict=True):
        assert a.tbs_certificate_bytes == b.tbs_certificate_bytes
        assert a.signature != b.signature


def test_microseconds_and_timezones_do_not_change_bytes() -> None:
    key = LEAF_KEY.public_key()
    a = cax509.leaf_tbs(key, ["a.example"], ISSUING_PROFILE, NOW, 1, b"r")
    b = cax509.leaf_tbs(
        key,
        ["a.example"],
        ISSUING_PROFILE,
        NOW.astimezone(dt.timezone(dt.timedelta(hours=5))).replace(microsecond=0),
        1,
        b"r",
    )
    assert a == b
    assert a != cax509.leaf_tbs(key, ["a.example"], ISSUING_PROFILE, NOW, 2, b"r")
    with pytest.raises(cax509.CertificateError):
        cax509.leaf_tbs(key, ["a.example"], ISSUING_PROFILE, NOW.replace(tzinfo=None), 1, b"r")
    with pytest.raises(cax509.CertificateError):
        cax509.leaf_tbs(key, [], ISSUING_PROFILE, NOW, 1, b"r")
    with pytest.raises(cax509.CertificateError):
        cax509.leaf_tbs(key, ["a.example", "A.example"], ISSUING_PROFILE, NOW, 1, b"r")


def test_finalize_rejects_bad_or_foreign_signatures() -> None:
    tbs = CHAIN[2].tbs_certificate_bytes
    sig = CHAIN[2].signature
    assert cax509.finalize(tbs, sig, ISSUING_PROFILE.public_key) == CHAIN[2]
    with pytest.raises(cax509.CertificateError, match="does not verify"):
        cax509.finalize(tbs, sig, ROOT_PROFILE.public_key)
    with pytest.raises(cax509.CertificateError, match="does not verify"):
        cax509.finalize(tbs, bytes([sig[0] ^ 1]) + sig[1:], ISSUING_PROFILE.public_key)
    with pytest.raises(cax509.CertificateError):
        cax509.finalize(tbs, sig[:63], ISSUING_PROFILE.public_key)
    with pytest.raises(cax509.CertificateError):
        cax509.assemble_certificate(tbs + b"\x00", sig)


def test_single_key_signer_interface_works_too() -> None:
    signer = Ed25519Signer(bytes(range(32)))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dev Root")])
    root = cax509.issue(cax509.root_tbs(name, signer.public_key, GENESIS), signer.sign, signer.public_key)
    root.verify_directly_issued_by(root)
    leaf_key = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    dev = cax509.IssuerProfile(name, signer.public_key, "http://c/x.crl", "http://o/", "http://c/x.der")
    leaf = cax509.issue(
        cax509.leaf_tbs(leaf_key, ["dev.example"], dev, NOW, 0, b"r"), signer.sign, signer.public_key
    )
    leaf.verify_directly_issued_by(root)


def _pem(path: Path, cert: x509.Certificate) -> str:
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return str(path)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed")
def test_openssl_strict_chain_verification(tmp_path: Path) -> None:
    root, inter, leaf = CHAIN
    r, i, le = (
        _pem(tmp_path / "root.pem", root),
        _pem(tmp_path / "inter.pem", inter),
        _pem(tmp_path / "leaf.pem", leaf),
    )
    at = str(int((NOW + dt.timedelta(hours=1)).timestamp()))

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "verify", "-x509_strict", "-attime", at, *args],
            capture_output=True,
            text=True,
            check=False,
        )

    ok = verify("-purpose", "sslserver", "-CAfile", r, "-untrusted", i, le)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{le}: OK" in ok.stdout
    # Wrong trust anchor: the intermediate's signature does not chain to this root.
    other_root = build_other_root(tmp_path)
    bad = verify("-CAfile", other_root, "-untrusted", i, le)
    assert bad.returncode != 0
    # Expired: 25 h after issuance.
    late = str(int((NOW + dt.timedelta(hours=25)).timestamp()))
    expired = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-attime", late, "-CAfile", r, "-untrusted", i, le],
        capture_output=True,
        text=True,
        check=False,
    )
    assert expired.returncode != 0 and "expired" in (expired.stdout + expired.stderr)


def build_other_root(tmp_path: Path) -> str:
    group = frost.trusted_dealer_keygen(5, 3, seeded(99))
    sign = frost_signer(group.key_packages, group.public, [1, 2, 3], seeded(100))
    root = cax509.issue(
        cax509.root_tbs(ROOT_NAME, group.public.group_public_key, GENESIS),
        sign,
        group.public.group_public_key,
    )
    return _pem(tmp_path / "other-root.pem", root)


# Findings pkilint reports that are inherent or test artefacts, not defects of the builder:
# - Ed25519 is not (yet) an algorithm the CA/B Forum TLS BRs allow; TrustChain's FROST key is Ed25519.
# - the test URLs use the reserved ".example" TLD, which the BRs call an internal name.
ACCEPTED_CABF = {
    "cabf.serverauth.prohibited_signature_algorithm_encoding",
    "cabf.serverauth.prohibited_subject_public_key_algorithm_encoding",
    "cabf.internal_domain_name",
}
# RFC 5280 says SHOULD include a leaf SKI; the BRs say NOT RECOMMENDED. We follow the BRs.
ACCEPTED_PKIX = {"pkix.certificate_skid_end_entity_missing"}


def _lint(tool: str, args: list[str], pem: str) -> set[tuple[str, str]]:
    out = subprocess.run(
        [tool, "lint", *args, "-f", "JSON", pem], capture_output=True, text=True, check=False
    )
    assert out.stdout, out.stderr
    return {
        (f["severity"], f["code"])
        for r in json.loads(out.stdout)["results"]
        for f in r["finding_descriptions"]
        if f["severity"] in ("WARNING", "ERROR", "FATAL")
    }


@pytest.mark.skipif(
    shutil.which("lint_cabf_serverauth_cert") is None, reason="pkilint not installed (pip install pkilint)"
)
def test_pkilint_reports_only_accepted_findings(tmp_path: Path) -> None:
    for name, cert in zip(["root", "inter", "leaf"], CHAIN, strict=True):
        pem = _pem(tmp_path / f"{name}.pem", cert)
        cabf = _lint("lint_cabf_serverauth_cert", ["-d"], pem)
        assert {code for _, code in cabf} <= ACCEPTED_CABF, (name, cabf)
        pkix = _lint("lint_pkix_cert", [], pem)
        assert {code for _, code in pkix} <= ACCEPTED_PKIX, (name, pkix)
