"""Calibrates the CPU model's costs (sim/cpu.py) by timing the real library calls in this process.

    python -m sim calibrate [--rounds N] [--json]

Each entry of `CostTable` is the median process CPU time (`time.process_time`, so other jobs on a
shared machine do not inflate it) of the call the software makes for that operation: PyNaCl Ed25519 via
`trustchain.crypto.signing`, FROST 3-of-5 from `trustchain.ca.frost` split into its three roles as the
validators' signing service runs them (see `benchmarks/micro.py`, `frost_sign_distributed`), X.509 from
`trustchain.ca.x509` and `cryptography`, the packet digest (BLAKE3, `trustchain.consensus.messages.digest`),
`trustchain.encoding` and SQLite (a file database in
a temporary directory, `synchronous=OFF`: the CPU of a commit, not the disk's latency).

Calibration is not deterministic, so runs never calibrate implicitly: a scenario asks for it with
`cpu.costs: calibrated` (once per process), and the report calibrates once and passes the figures on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.cpu import FIXED_COSTS, CostTable, CpuSpec

__all__ = ["calibrate", "calibrated", "register", "resolve_costs"]

_CACHED: CostTable | None = None


def _median_us(fn: Callable[[], object], rounds: int, per: int = 1) -> float:
    """Median CPU time of `fn` in µs over `rounds` calls (each call does `per` operations)."""
    fn()  # warm up
    samples = []
    clock = time.process_time
    for _ in range(rounds):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return statistics.median(samples) * 1e6 / per


@dataclass(frozen=True)
class _Payload:
    """A message body of a given size, to time `trustchain.encoding`."""

    kind: int
    data: bytes


def _frost_roles(rounds: int) -> tuple[float, float, float]:
    """(commit, share, aggregate) per role, FROST 3-of-5 on a 32-byte message."""
    from trustchain.ca import frost

    rb = random.Random(1).randbytes
    group = frost.trusted_dealer_keygen(5, 3, rb)
    keys, public = group.key_packages, group.public
    quorum = (1, 3, 5)
    msg = hashlib.sha256(b"calibrate").digest()
    commit = _median_us(lambda: frost.commit(1, keys[1].signing_share, rb), rounds)

    def session() -> tuple[dict[int, Any], list[Any]]:
        nonces, commitments = {}, []
        for i in quorum:
            nonces[i], com = frost.commit(i, keys[i].signing_share, rb)
            commitments.append(com)
        return nonces, commitments

    nonces, commitments = session()

    def share() -> object:  # a signer's own context (it must compute it) and its share
        ctx = frost.signing_context(public.group_public_key, commitments, msg, checked=(1,))
        return frost.sign_with_context(keys[1], nonces[1], ctx)

    share_us = _median_us(share, rounds)
    contexts = {i: frost.signing_context(public.group_public_key, commitments, msg, checked=(i,)) for i in quorum}
    shares = [frost.sign_with_context(keys[i], nonces[i], contexts[i]) for i in quorum]
    aggregate = _median_us(lambda: frost.aggregate_with_context(contexts[1], public, shares), rounds)
    return commit, share_us, aggregate


def _x509_costs(rounds: int) -> tuple[float, float, float]:
    """(CSR verification, leaf TBS, finalize) with an Ed25519 issuing key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    from trustchain.ca import x509 as cax509

    now = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
    issuer_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"issuer").digest())
    issuer_pub = issuer_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Calibration Issuing CA")])
    profile = cax509.IssuerProfile(name, issuer_pub, "http://crl.example/x.crl", "http://ocsp.example/",
                                   "http://certs.example/x.der")
    subject_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"subject").digest())
    csr_der = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "host1.example.org")]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("host1.example.org")]), critical=False)
               .sign(subject_key, None).public_bytes(serialization.Encoding.DER))

    def csr_check() -> bool:
        return x509.load_der_x509_csr(csr_der).is_signature_valid

    csr_us = _median_us(csr_check, rounds)
    tbs_us = _median_us(lambda: cax509.leaf_tbs(subject_key.public_key(), ["host1.example.org"], profile, now, 1,
                                                b"calibrate"), rounds)
    tbs = cax509.leaf_tbs(subject_key.public_key(), ["host1.example.org"], profile, now, 1, b"calibrate")
    signature = issuer_key.sign(tbs)
    finalize_us = _median_us(lambda: cax509.finalize(tbs, signature, issuer_pub), rounds)
    return csr_us, tbs_us, finalize_us


def _sqlite_commit(rounds: int) -> float:
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        db = sqlite3.connect(Path(tmp) / "c.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, body BLOB)")
        body = bytes(512)
        counter = iter(range(1 << 40))

        def commit() -> None:
            db.execute("BEGIN")
            db.execute("INSERT INTO log VALUES (?, ?)", (next(counter), body))
            db.execute("COMMIT")

        try:
            return _median_us(commit, rounds)
        finally:
            db.close()


def calibrate(rounds: int = 200) -> CostTable:
    """Times every operation of the cost table now (a few seconds of CPU at the default rounds)."""
    from trustchain.consensus.messages import Prepare, digest, pack, seal, unpack
    from trustchain.crypto.signing import ED25519, Ed25519Signer
    from trustchain.encoding import decode, encode

    signer = Ed25519Signer(hashlib.sha256(b"calibrate").digest())
    vote = b"v" * 120  # a typical vote's signed bytes
    signature = signer.sign(vote)
    sign_us = _median_us(lambda: signer.sign(vote), rounds * 5)
    verify_us = _median_us(lambda: ED25519.verify(signer.public_key, vote, signature), rounds * 5)
    kib = 64
    big = _Payload(1, bytes(kib * 1024))
    blob = encode(big)
    codec_us = (_median_us(lambda: encode(big), rounds) + _median_us(lambda: decode(_Payload, blob), rounds)) / 2 / kib
    hash_us = _median_us(lambda: digest(blob), rounds) / kib
    packet = pack(seal(signer, 0, Prepare(0, 1, digest(b"batch"))))
    message_us = _median_us(lambda: unpack(packet), rounds * 5)
    commit, share, aggregate = _frost_roles(rounds)
    csr_us, tbs_us, finalize_us = _x509_costs(rounds)
    return CostTable(
        message=round(message_us, 2), codec_per_kb=round(codec_us, 2), hash_per_kb=round(hash_us, 2),
        ed25519_sign=round(sign_us, 2), ed25519_verify=round(verify_us, 2), frost_commit=round(commit, 2),
        frost_share=round(share, 2), frost_aggregate=round(aggregate, 2), csr_verify=round(csr_us, 2),
        x509_tbs=round(tbs_us, 2), x509_finalize=round(finalize_us, 2), sqlite_commit=round(_sqlite_commit(rounds), 2),
    )


def calibrated() -> CostTable:
    """The table calibrated once in this process (the first call measures)."""
    global _CACHED
    if _CACHED is None:
        _CACHED = calibrate()
    return _CACHED


def cmd_calibrate(args: argparse.Namespace) -> int:

    table = calibrate(args.rounds)
    if args.json:
        print(json.dumps(table.as_dict(), indent=2))
        return 0
    fixed = FIXED_COSTS.as_dict()
    print(f"{'operation':<18} {'measured µs':>12} {'fixed µs':>10}")
    for name, value in table.as_dict().items():
        print(f"{name:<18} {value:>12.2f} {fixed[name]:>10.2f}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="time the CPU model's operations on this machine (sim/cpu.py)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=200, help="timed calls per operation (default 200)")
    p.add_argument("--json", action="store_true", help="print the table as JSON (usable as cpu.costs_us)")
    p.set_defaults(func=cmd_calibrate)


def resolve_costs(spec: CpuSpec) -> CostTable:
    """The cost table a run uses: fixed or calibrated (once per process), with the overrides applied."""
    base = calibrated() if spec.costs == "calibrated" else FIXED_COSTS
    return CostTable(**{**base.as_dict(), **spec.costs_us})
