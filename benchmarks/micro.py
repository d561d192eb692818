"""Microbenchmarks (pytest-benchmark), each beside its physical limit measured in the same run.

    python benchmarks/micro.py [--json OUT.json] [--max-time SECONDS] [-k EXPRESSION]

Not part of the test suite (the file is outside `tests/` and not named test_*.py); running the script
runs pytest-benchmark on this file and prints, for each operation, the median time beside the median
of the raw library call it is built on, and their ratio (how far we are from the hardware/library
limit on this machine, which travels better than absolute times). Times are CPU time of this process
(`time.process_time`), so other work on a shared machine does not inflate them:

- cert_generation: FROST 3-of-5 (round-1 commitments, 3 shares, verified aggregate) + `x509.finalize`;
  limit: one `cryptography` Ed25519 sign of the same TBS bytes.
- cert_validation: `validate.verify_chain` leaf -> intermediate -> root;
  limit: two `cryptography` Ed25519 verifications (the path's signatures).
- frost_sign: FROST 3-of-5 signature on a 32-byte message by a quorum in one process
  (`frost.sign_with_quorum`: genesis, operator tools); limit: `frost_floor`, the arithmetic any FROST
  signature needs, as raw libsodium calls: 2t base-point multiplications (the signers' nonce
  commitments), the group commitment (t variable-base multiplications and 2t-1 additions) and one
  Ed25519 verification of the result. `frost_floor` itself is shown beside one Ed25519 signature.
- frost_sign_distributed: the same signature as the validators' signing service computes it: each of
  the t signers derives the group commitment itself from the commitment list (it must: a signer that
  took the group commitment from the aggregator would let it choose the challenge, the opening of the
  ROS attack), checks the other signers' commitments, and computes its share; the aggregator (one of
  the signers) reuses its own context to aggregate and verify. Limit: `frost_floor_distributed`, the
  floor with the group commitment counted t times.
- ct_append: `LogTree.append` of a 40-byte entry (amortised over blocks of 1,000);
  limit: two SHA-256 (leaf hash + amortised node hash).
- ct_inclusion_proof: `LogTree.inclusion_proof` in a 65,536-leaf tree; limit: 16 SHA-256 (the audit path).
- dns_answer: `Authority.answer` for a signed A query with DO (wire in, wire out), answer cache off;
  limit: `dns.message.from_wire` of the same query. dns_answer_cached: the same with the answer cache on
  (every repetition after the first is a cache hit).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.message
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from trustchain.ca import frost, validate
from trustchain.ca import x509 as cax509
from trustchain.ct.tree import LogTree

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC)
PAIRS = {
    "cert_generation": "ed25519_sign_tbs",
    "cert_validation": "ed25519_verify_x2",
    "frost_sign": "frost_floor",
    "frost_sign_distributed": "frost_floor_distributed",
    "frost_floor": "ed25519_sign_32",
    "ct_append": "sha256_x2",
    "ct_inclusion_proof": "sha256_x16",
    "dns_answer": "dnspython_parse_query",
    "dns_answer_cached": "dnspython_parse_query",
}


# ---------------------------------------------------------------------------- fixtures (module-level, built once)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TrustChain"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class CA:
    def __init__(self) -> None:
        self.rb = random.Random(1)
        root_g = frost.trusted_dealer_keygen(5, 3, self.rb.randbytes)
        self.iss = frost.trusted_dealer_keygen(5, 3, self.rb.randbytes)
        root_p = cax509.IssuerProfile(_name("Micro Root"), root_g.public.group_public_key,
                                      "http://crl.example/x.crl", "http://ocsp.example/", "http://certs.example/x.der")
        self.iss_p = cax509.IssuerProfile(_name("Micro Issuing"), self.iss.public.group_public_key,
                                          "http://crl.example/x.crl", "http://ocsp.example/",
                                          "http://certs.example/x.der")
        root_sign = self.signer(root_g)
        self.root = cax509.issue(cax509.root_tbs(root_p.name, root_p.public_key, NOW), root_sign, root_p.public_key)
        self.inter = cax509.issue(cax509.intermediate_tbs(self.iss_p.name, self.iss_p.public_key, root_p, NOW, 1),
                                  root_sign, root_p.public_key)
        key = ec.derive_private_key(10_000, ec.SECP256R1()).public_key()
        self.tbs = cax509.leaf_tbs(key, ["host1.example.org"], self.iss_p, NOW, 1, b"micro1")
        self.sign = self.signer(self.iss)
        self.leaf = cax509.finalize(self.tbs, self.sign(self.tbs), self.iss_p.public_key)

    def signer(self, group: frost.DealerOutput, quorum: tuple[int, ...] = (1, 3, 5)) -> Any:
        keys, public, rb = group.key_packages, group.public, self.rb

        chosen = {i: keys[i] for i in quorum}
        return lambda msg: frost.sign_with_quorum(chosen, public, msg, rb.randbytes)


_CA: CA | None = None


def ca() -> CA:
    global _CA
    if _CA is None:
        _CA = CA()
    return _CA


RAW_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"micro").digest())
RAW_PUB: Ed25519PublicKey = RAW_KEY.public_key()


# ---------------------------------------------------------------------------- CA


def test_cert_generation(benchmark: Any) -> None:
    c = ca()
    cert = benchmark(lambda: cax509.finalize(c.tbs, c.sign(c.tbs), c.iss_p.public_key))
    assert cert.tbs_certificate_bytes == c.tbs


def test_ed25519_sign_tbs(benchmark: Any) -> None:
    tbs = ca().tbs
    assert len(benchmark(RAW_KEY.sign, tbs)) == 64


def test_cert_validation(benchmark: Any) -> None:
    c = ca()
    path = benchmark(validate.verify_chain, c.leaf, [c.inter], [c.root], NOW + dt.timedelta(hours=1),
                     "host1.example.org")
    assert len(path) == 3


def test_ed25519_verify_x2(benchmark: Any) -> None:
    msg = ca().tbs
    sig = RAW_KEY.sign(msg)

    def two() -> None:
        RAW_PUB.verify(sig, msg)
        RAW_PUB.verify(sig, msg)

    benchmark(two)


def test_frost_sign(benchmark: Any) -> None:
    c = ca()
    msg = hashlib.sha256(b"frost").digest()
    assert len(benchmark(c.sign, msg)) == 64


def test_ed25519_sign_32(benchmark: Any) -> None:
    benchmark(RAW_KEY.sign, hashlib.sha256(b"frost").digest())


QUORUM = (1, 3, 5)


def test_frost_sign_distributed(benchmark: Any) -> None:
    c = ca()
    msg = hashlib.sha256(b"frost").digest()
    assert frost.verify_signature(c.iss.public.group_public_key, msg, benchmark(_frost_distributed()))


def _frost_distributed() -> Any:
    c = ca()
    keys, public, rb = c.iss.key_packages, c.iss.public, c.rb
    msg = hashlib.sha256(b"frost").digest()

    def one() -> bytes:
        nonces, commitments = {}, []
        for i in QUORUM:  # each signer, ahead of time (preprocessing)
            nonces[i], com = frost.commit(i, keys[i].signing_share, rb.randbytes)
            commitments.append(com)
        contexts = {i: frost.signing_context(public.group_public_key, commitments, msg, checked=(i,))
                    for i in QUORUM}  # each signer, on its own
        shares = [frost.sign_with_context(keys[i], nonces[i], contexts[i]) for i in QUORUM]
        return frost.aggregate_with_context(contexts[QUORUM[0]], public, shares)  # the aggregator

    return one


def _floor_inputs() -> tuple[list[bytes], list[bytes], bytes, bytes, bytes]:
    import nacl.bindings as sodium

    rng = random.Random(7)
    scalars = [sodium.crypto_core_ed25519_scalar_reduce(rng.randbytes(64)) for _ in range(2 * len(QUORUM))]
    points = [sodium.crypto_scalarmult_ed25519_base_noclamp(x) for x in scalars]
    seed = hashlib.sha256(b"floor").digest()
    pk, sk = sodium.crypto_sign_seed_keypair(seed)
    msg = hashlib.sha256(b"frost").digest()
    return scalars, points, pk, msg, sodium.crypto_sign(msg, sk)


def _floor(group_commitments: int) -> Any:
    import nacl.bindings as sodium

    scalars, points, pk, msg, signed = _floor_inputs()
    t = len(QUORUM)
    base, var, add = (sodium.crypto_scalarmult_ed25519_base_noclamp, sodium.crypto_scalarmult_ed25519_noclamp,
                      sodium.crypto_core_ed25519_add)

    def run() -> None:
        for x in scalars:  # 2t nonce commitments
            base(x)
        for _ in range(group_commitments):  # sum(D_i) + sum(rho_i * E_i)
            acc = points[0]
            for i in range(t):
                term = var(scalars[i], points[t + i])
                acc = add(acc, term)
                if i:
                    acc = add(acc, points[i])
        assert sodium.crypto_sign_open(signed, pk) == msg  # the final verification

    return run


def test_frost_floor(benchmark: Any) -> None:
    benchmark(_floor(1))


def test_frost_floor_distributed(benchmark: Any) -> None:
    benchmark(_floor(len(QUORUM)))


# ---------------------------------------------------------------------------- CT

BLOCK = 1000


def test_ct_append(benchmark: Any) -> None:
    tree = LogTree()
    counter = iter(range(10**9))

    def block() -> None:
        for _ in range(BLOCK):
            tree.append(next(counter).to_bytes(8, "big") + b"-certificate-entry-" + b"x" * 13)

    benchmark.extra_info["per"] = BLOCK
    benchmark(block)


def test_sha256_x2(benchmark: Any) -> None:
    data = [b"\x01" + i.to_bytes(64, "big") for i in range(BLOCK)]
    sha = hashlib.sha256

    def block() -> None:
        for d in data:
            sha(d).digest()
            sha(d).digest()

    benchmark.extra_info["per"] = BLOCK
    benchmark(block)


_TREE: LogTree | None = None


def test_ct_inclusion_proof(benchmark: Any) -> None:
    global _TREE
    if _TREE is None:
        _TREE = LogTree()
        for i in range(1 << 16):
            _TREE.append(i.to_bytes(8, "big"))
    tree = _TREE
    rng = random.Random(3)
    proof = benchmark(lambda: tree.inclusion_proof(rng.randrange(1 << 16)))
    assert len(proof) == 16


def test_sha256_x16(benchmark: Any) -> None:
    node = b"\x01" + bytes(64)
    sha = hashlib.sha256

    def path() -> None:
        for _ in range(16):
            sha(node).digest()

    benchmark(path)


# ---------------------------------------------------------------------------- DNS


def _authority(cache: bool = False) -> tuple[Any, bytes, int]:
    from trustchain.dns.authority import Authority
    from trustchain.dns.dnssec import sign_zone
    from trustchain.dns.keys import KeySet
    from trustchain.dns.zone import AddRecords, Zone, ZoneUpdate

    now = 1_700_000_000
    zone = Zone.create("micro.example.", primary_ns="ns1", admin="hostmaster", nameservers=("ns1",))
    records = [AddRecords(f"host{i}", "A", 300, (f"192.0.2.{i % 250 + 1}",)) for i in range(200)]
    zone.apply(ZoneUpdate("micro.example.", (*records, AddRecords("ns1", "A", 300, ("192.0.2.53",)))))
    seed = hashlib.sha256
    auth = Authority() if cache else Authority(answer_cache_bytes=0)
    auth.load(zone, sign_zone(zone, KeySet.initial(seed(b"ksk").digest(), seed(b"zsk").digest()), now))
    query = dns.message.make_query("host7.micro.example.", "A", use_edns=0, want_dnssec=True).to_wire()
    return auth, query, now


def test_dns_answer(benchmark: Any) -> None:
    auth, query, now = _authority()
    wire = benchmark(auth.answer, query, now, max_udp=1232)
    assert dns.message.from_wire(wire).answer


def test_dns_answer_cached(benchmark: Any) -> None:
    auth, query, now = _authority(cache=True)
    wire = benchmark(auth.answer, query, now, max_udp=1232)
    assert dns.message.from_wire(wire).answer


def test_dnspython_parse_query(benchmark: Any) -> None:
    _, query, _ = _authority()
    benchmark(dns.message.from_wire, query)


# ---------------------------------------------------------------------------- driver


def summarise(bench_json: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per operation: median seconds per operation, its limit's, and the ratio."""
    med: dict[str, float] = {}
    for b in bench_json["benchmarks"]:
        name = b["name"].removeprefix("test_")
        per = b.get("extra_info", {}).get("per", 1)
        med[name] = b["stats"]["median"] / per
    rows = []
    for op, limit in PAIRS.items():
        if op in med and limit in med:
            rows.append({"operation": op, "median_s": med[op], "limit": limit, "limit_median_s": med[limit],
                         "ratio": med[op] / med[limit] if med[limit] else None})
    return rows


def run(json_out: Path | None = None, max_time: float = 0.5, quiet: bool = True,
        select: str | None = None) -> list[dict[str, Any]]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="micro-") as tmp:
        raw = Path(tmp) / "bench.json"
        args = [__file__, "-o", "addopts=", "-p", "no:cacheprovider", "-p", "no:randomly",
                f"--benchmark-json={raw}", f"--benchmark-max-time={max_time}", "--benchmark-min-rounds=5",
                "--benchmark-warmup=on", "--benchmark-timer=time.process_time",
                "--rootdir", str(Path(__file__).resolve().parent)]
        if select:
            args += ["-k", select]
        if quiet:
            args += ["-q", "--benchmark-disable-gc", "--benchmark-columns=median,ops,rounds"]
        code = pytest.main(args)
        if code != 0:
            raise RuntimeError(f"microbenchmarks failed (pytest exit {code})")
        data = json.loads(raw.read_text())
    rows = summarise(data)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"machine_info": data.get("machine_info", {}), "datetime": data.get("datetime"),
                                        "rows": rows}, indent=2, default=str) + "\n")
    return rows


def interleaved(rounds: int = 400) -> list[dict[str, Any]]:
    """FROST beside its floor, measured alternately call by call (CPU time of each call, medians), so a
    burst of load from other processes on a shared machine hits both sides of the ratio alike."""
    import time

    msg = hashlib.sha256(b"frost").digest()
    pairs = {"frost_sign": (lambda: ca().sign(msg), _floor(1), "frost_floor"),
             "frost_sign_distributed": (_frost_distributed(), _floor(len(QUORUM)), "frost_floor_distributed")}
    rows = []
    clock = time.process_time
    for op, (fn, floor, limit) in pairs.items():
        a: list[float] = []
        b: list[float] = []
        for _ in range(rounds):
            t0 = clock()
            fn()
            t1 = clock()
            floor()
            b.append(clock() - t1)
            a.append(t1 - t0)
        med_a, med_b = sorted(a)[rounds // 2], sorted(b)[rounds // 2]
        rows.append({"operation": op + " (interleaved)", "median_s": med_a, "limit": limit, "limit_median_s": med_b,
                     "ratio": med_a / med_b if med_b else None})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'operation':<36} {'median':>12}   {'physical limit':<24} {'median':>12} {'ratio':>8}"]
    for r in rows:
        lines.append(f"{r['operation']:<36} {r['median_s'] * 1e6:>10.1f}µs   {r['limit']:<24} "
                     f"{r['limit_median_s'] * 1e6:>10.2f}µs {r['ratio']:>7.3g}x")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="write the summary rows (and machine info) here")
    ap.add_argument("--max-time", type=float, default=0.5, help="pytest-benchmark max time per benchmark (s)")
    ap.add_argument("-k", dest="select", help="only the benchmarks matching this pytest -k expression")
    args = ap.parse_args()
    rows = run(args.json, args.max_time, quiet=True, select=args.select)
    if args.select is None or "frost" in args.select:
        rows += interleaved()
        if args.json is not None:
            doc = json.loads(args.json.read_text())
            doc["rows"] = rows
            args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(format_rows(rows))


if __name__ == "__main__":
    main()
