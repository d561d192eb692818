"""Certificate issuance and validation throughput (a script, not a test).

Measures, in the same run and on the same TBS inputs:
- certificates/s signed by FROST 3-of-5 (both rounds for one quorum, aggregate with verification,
  then ``x509.finalize``: the full cost the validators pay, minus network latency), vs
- certificates/s signed by cryptography's single-key Ed25519 ``CertificateBuilder.sign``;
and validation time per certificate (``validate.verify_chain``, leaf -> intermediate -> root).

Run: python benchmarks/ca_bench.py [--count N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import time

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from trustchain.ca import frost, validate
from trustchain.ca import x509 as cax509

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)


def name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TrustChain"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def profile(n: x509.Name, key: bytes) -> cax509.IssuerProfile:
    return cax509.IssuerProfile(
        n, key, "http://crl.example/x.crl", "http://ocsp.example/", "http://certs.example/x.der"
    )


def frost_sign(keys: dict[int, frost.KeyPackage], public: frost.PublicKeyPackage, quorum: list[int], rb: random.Random):
    chosen = {i: keys[i] for i in quorum}
    return lambda msg: frost.sign_with_quorum(chosen, public, msg, rb.randbytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=300)
    args = ap.parse_args()
    rb = random.Random(1)
    root_g = frost.trusted_dealer_keygen(5, 3, rb.randbytes)
    iss_g = frost.trusted_dealer_keygen(5, 3, rb.randbytes)
    root_p, iss_p = (
        profile(name("Bench Root"), root_g.public.group_public_key),
        profile(name("Bench Issuing"), iss_g.public.group_public_key),
    )
    root_sign = frost_sign(root_g.key_packages, root_g.public, [1, 2, 3], rb)
    root = cax509.issue(cax509.root_tbs(root_p.name, root_p.public_key, NOW), root_sign, root_p.public_key)
    inter = cax509.issue(
        cax509.intermediate_tbs(iss_p.name, iss_p.public_key, root_p, NOW, 1), root_sign, root_p.public_key
    )
    subject_keys = [ec.derive_private_key(10_000 + i, ec.SECP256R1()).public_key() for i in range(args.count)]
    tbs = [
        cax509.leaf_tbs(k, [f"host{i}.example.org"], iss_p, NOW, i, b"bench%d" % i) for i, k in enumerate(subject_keys)
    ]

    sign = frost_sign(iss_g.key_packages, iss_g.public, [1, 3, 5], rb)
    t0 = time.perf_counter()
    certs = [cax509.finalize(t, sign(t), iss_p.public_key) for t in tbs]
    frost_s = time.perf_counter() - t0

    plain_key = Ed25519PrivateKey.from_private_bytes(os.urandom(32))
    t0 = time.perf_counter()
    for i, k in enumerate(subject_keys):
        (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(iss_p.name)
            .public_key(k)
            .serial_number(i + 1)
            .not_valid_before(NOW)
            .not_valid_after(NOW + dt.timedelta(hours=24))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"host{i}.example.org")]), critical=True)
            .sign(plain_key, None)
        )
    plain_s = time.perf_counter() - t0

    at = NOW + dt.timedelta(hours=1)
    t0 = time.perf_counter()
    for i, c in enumerate(certs):
        validate.verify_chain(c, [inter], [root], at, f"host{i}.example.org")
    validate_s = time.perf_counter() - t0

    n = args.count
    print(f"certificates: {n}")
    print(f"FROST 3-of-5 issuance:         {n / frost_s:9.1f} cert/s  ({frost_s / n * 1e3:.2f} ms each)")
    print(f"plain Ed25519 (cryptography):  {n / plain_s:9.1f} cert/s  ({plain_s / n * 1e3:.3f} ms each)")
    print(f"ratio plain/FROST:             {frost_s / plain_s:9.1f}x")
    print(f"chain validation:              {validate_s / n * 1e3:9.3f} ms per certificate (goal < 1 ms)")


if __name__ == "__main__":
    main()
