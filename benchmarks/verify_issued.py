"""Check a sample of certificates issued by a real cluster (a script, not a test).

    python benchmarks/verify_issued.py [--certs 20] [--concurrency 10]

Starts the `node_bench.py` cluster (5 validators, 3-of-5 FROST, TCP, load-test limits), issues `--certs`
certificates through POST /api/v1/cert/request, then for each one: `openssl verify` against the root and
intermediate the node returned, and a CT log entry (RFC 6962 get-entries on every node) whose leaf
carries the certificate's serial number and subject public key (the precertificate's TBS is logged
before the certificate is signed). Prints one line per certificate and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load_gen as lg
import node_bench as nb


async def issue(session: aiohttp.ClientSession, nodes: list[nb.Node], count: int, concurrency: int
                ) -> list[dict[str, Any]]:
    jobs = await lg.prepare(session, nodes, count)
    gate = asyncio.Semaphore(concurrency)

    async def one(job: nb.Job) -> dict[str, Any]:
        body = {"csr": job.csr, "names": [job.name], "proofs": [job.proof]}
        api = nodes[job.node].api
        async with gate:
            async with session.post(api + "/api/v1/cert/request", json=body) as r:
                doc: dict[str, Any] = await r.json(content_type=None)
                if r.status not in (201, 202):
                    raise RuntimeError(f"{job.name}: HTTP {r.status}: {str(doc)[:200]}")
            doc = await nb.until_issued(session, api, doc, 120.0)
            if doc.get("status") != "issued":
                raise RuntimeError(f"{job.name}: not issued: {str(doc)[:200]}")
            return doc

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def log_leaves(session: aiohttp.ClientSession, api: str) -> list[bytes]:
    async with session.get(api + "/ct/v1/get-sth") as r:
        size = int((await r.json())["tree_size"])
    leaves: list[bytes] = []
    while len(leaves) < size:
        async with session.get(api + f"/ct/v1/get-entries?start={len(leaves)}&end={size - 1}") as r:
            entries = (await r.json())["entries"]
        if not entries:
            break
        leaves += [base64.b64decode(e["leaf_input"]) for e in entries]
    return leaves


def openssl_verify(doc: dict[str, Any], work: Path) -> str:
    (work / "leaf.pem").write_text(doc["certificate"])
    (work / "intermediate.pem").write_text(doc["chain"][0])
    (work / "root.pem").write_text(doc["chain"][1])
    out = subprocess.run(["openssl", "verify", "-CAfile", str(work / "root.pem"), "-untrusted",
                          str(work / "intermediate.pem"), str(work / "leaf.pem")], capture_output=True, text=True)
    return (out.stdout + out.stderr).strip().splitlines()[-1] if out.returncode == 0 else f"FAILED {out.stderr.strip()}"


def in_log(doc: dict[str, Any], leaves: list[bytes]) -> bool:
    cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8, "big")
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return any(serial in leaf and spki in leaf for leaf in leaves)


async def run(args: argparse.Namespace, nodes: list[nb.Node], work: Path) -> int:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        await nb.wait_healthy(session, nodes)
        docs = await issue(session, nodes, args.certs, args.concurrency)
        logs = [await log_leaves(session, n.api) for n in nodes]
    failures = 0
    for doc in docs:
        verified = openssl_verify(doc, work)
        logged = [i for i, leaves in enumerate(logs) if in_log(doc, leaves)]
        ok = not verified.startswith("FAILED") and len(logged) == len(nodes)
        failures += not ok
        print(f"{doc['names'][0]:<24} serial {doc['serial']}  openssl: {verified}  CT: in the log of nodes {logged}")
    print(f"{len(docs) - failures} of {len(docs)} certificates verify with openssl and are in every node's CT log")
    return 1 if failures else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--certs", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=10)
    args = p.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="tc-verify-issued-"))
    nodes = nb.start_cluster(directory, 5, 3, "full", "tcp", nb.LOAD_TEST_LIMITS)
    try:
        return asyncio.run(run(args, nodes, directory))
    finally:
        nb.stop_cluster(nodes)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
