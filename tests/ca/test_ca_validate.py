"""Chain building and validation: each failure is reported with its reason and culprit."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from trustchain.ca import validate
from trustchain.ca import x509 as cax509
from trustchain.ca.validate import Reason
from trustchain.crypto.signing import Ed25519Signer

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2025, 3, 1, 8, 0, 0, tzinfo=dt.UTC)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def profile(n: x509.Name, key: bytes) -> cax509.IssuerProfile:
    return cax509.IssuerProfile(
        n, key, "http://crl.example.net/x.crl", "http://ocsp.example.net/", "http://c.example.net/x"
    )


ROOT_KEY, INTER_KEY, SUB_KEY, LEAF_KEY = (Ed25519Signer(bytes([i]) * 32) for i in range(1, 5))
ROOT_P = profile(name("Root"), ROOT_KEY.public_key)
INTER_P = profile(name("Inter"), INTER_KEY.public_key)
ROOT = cax509.issue(cax509.root_tbs(ROOT_P.name, ROOT_KEY.public_key, T0), ROOT_KEY.sign, ROOT_KEY.public_key)
INTER = cax509.issue(
    cax509.intermediate_tbs(INTER_P.name, INTER_KEY.public_key, ROOT_P, T0, 1),
    ROOT_KEY.sign,
    ROOT_KEY.public_key,
)
LEAF_PUB = Ed25519PublicKey.from_public_bytes(LEAF_KEY.public_key)
LEAF = cax509.issue(
    cax509.leaf_tbs(LEAF_PUB, ["www.example.com", "*.api.example.com"], INTER_P, NOW, 1, b"req"),
    INTER_KEY.sign,
    INTER_KEY.public_key,
)


def expect(reason: Reason, culprit: x509.Certificate, *args: object, **kw: object) -> None:
    with pytest.raises(validate.ChainError) as err:
        validate.verify_chain(*args, **kw)  # type: ignore[arg-type]
    assert err.value.reason is reason, str(err.value)
    assert err.value.certificate == culprit
    assert reason.value in str(err.value)


def test_valid_chain() -> None:
    at = NOW + dt.timedelta(hours=1)
    assert validate.verify_chain(LEAF, [INTER], [ROOT], at, "www.example.com") == [LEAF, INTER, ROOT]
    assert validate.verify_chain(LEAF, [INTER], [ROOT], at, "v1.api.example.com")[-1] == ROOT
    assert validate.verify_chain(INTER, [], [ROOT], at) == [INTER, ROOT]
    assert validate.verify_chain(ROOT, [], [ROOT], at) == [ROOT]


def test_time_checks() -> None:
    expect(Reason.EXPIRED, LEAF, LEAF, [INTER], [ROOT], NOW + dt.timedelta(hours=24))
    expect(Reason.NOT_YET_VALID, LEAF, LEAF, [INTER], [ROOT], NOW - dt.timedelta(seconds=1))
    expect(Reason.NOT_YET_VALID, INTER, INTER, [], [ROOT], T0 - dt.timedelta(days=1))
    with pytest.raises(ValueError):
        validate.verify_chain(LEAF, [INTER], [ROOT], NOW.replace(tzinfo=None))


def test_wrong_issuer() -> None:
    expect(Reason.WRONG_ISSUER, LEAF, LEAF, [], [ROOT], NOW)
    other_root = cax509.issue(
        cax509.root_tbs(name("Other"), LEAF_KEY.public_key, T0), LEAF_KEY.sign, LEAF_KEY.public_key
    )
    expect(Reason.WRONG_ISSUER, INTER, LEAF, [INTER], [other_root], NOW)
    # Same name, different key: AKI does not match, so it is not the issuer either.
    impostor_root = cax509.issue(
        cax509.root_tbs(ROOT_P.name, SUB_KEY.public_key, T0), SUB_KEY.sign, SUB_KEY.public_key
    )
    expect(Reason.WRONG_ISSUER, INTER, LEAF, [INTER], [impostor_root], NOW)


def test_bad_signature() -> None:
    sig = bytearray(LEAF.signature)
    sig[10] ^= 1
    forged = x509.load_der_x509_certificate(
        cax509.assemble_certificate(LEAF.tbs_certificate_bytes, bytes(sig))
    )
    expect(Reason.BAD_SIGNATURE, forged, forged, [INTER], [ROOT], NOW)


def test_name_mismatch() -> None:
    expect(Reason.NAME_MISMATCH, LEAF, LEAF, [INTER], [ROOT], NOW, "evil.example.com")
    expect(Reason.NAME_MISMATCH, LEAF, LEAF, [INTER], [ROOT], NOW, "a.b.api.example.com")
    expect(Reason.NAME_MISMATCH, LEAF, LEAF, [INTER], [ROOT], NOW, "api.example.com")


def test_leaf_cannot_act_as_ca() -> None:
    leaf_as_ca = cax509.issue(
        cax509.leaf_tbs(LEAF_PUB, ["ca.example.com"], INTER_P, NOW, 2, b"r", common_name=True),
        INTER_KEY.sign,
        INTER_KEY.public_key,
    )
    child = cax509.issue(
        cax509.leaf_tbs(
            LEAF_PUB, ["x.example.com"], profile(leaf_as_ca.subject, LEAF_KEY.public_key), NOW, 1, b"c"
        ),
        LEAF_KEY.sign,
        LEAF_KEY.public_key,
    )
    expect(Reason.NOT_A_CA, leaf_as_ca, child, [leaf_as_ca, INTER], [ROOT], NOW)


def test_path_length_zero_forbids_sub_ca() -> None:
    sub_p = profile(name("Sub"), SUB_KEY.public_key)
    sub = cax509.issue(
        cax509.intermediate_tbs(sub_p.name, SUB_KEY.public_key, INTER_P, T0, 2),
        INTER_KEY.sign,
        INTER_KEY.public_key,
    )
    leaf = cax509.issue(
        cax509.leaf_tbs(LEAF_PUB, ["deep.example.com"], sub_p, NOW, 1, b"d"), SUB_KEY.sign, SUB_KEY.public_key
    )
    path = validate.build_path(leaf, [INTER, sub], [ROOT])
    assert path == [leaf, sub, INTER, ROOT]
    expect(Reason.PATH_LENGTH, INTER, leaf, [sub, INTER], [ROOT], NOW)


def test_dns_name_matching_rules() -> None:
    m = validate.dns_name_matches
    assert m("Example.COM", "example.com.")
    assert m("*.example.com", "a.example.com")
    assert not m("*.example.com", "example.com")
    assert not m("*.example.com", "a.b.example.com")
    assert not m("*.example.com", ".example.com")
