"""End-to-end node benchmark (a script, not a test): a real N-validator cluster on 127.0.0.1.

Starts `python -m reference_node` processes from `reference_node.cluster.generate` (5 validators,
3-of-5 FROST issuing key, TCP transport, SQLite synchronous=FULL unless told otherwise), then measures
through the HTTP API:

- certificate issuance: POST /api/v1/cert/request -> 201 with the certificate (or 202, then polled until
  issued), i.e. ordering of the request through PBFT, the validators' reveals of serial randomness,
  3-of-5 FROST signing among the validators, ordering of `finalize`, CT append.
  First one at a time (latency without load), then `--concurrency` requests in flight spread over all
  nodes (throughput, latency under load). The dns-01 challenges are ordered and published beforehand
  and are not timed; CSR keys are generated beforehand.
- DNS resolution: GET /api/v1/dns/resolve (HTTP round trip + authoritative answer from the
  replicated zone), and the same question over the node's UDP listener, for comparison.
- each node's peak memory (VmHWM from /proc/<pid>/status; psutil's current RSS where /proc is absent).

The CA's replicated policy (genesis `limits.ca`) limits each account (one per node) to 50 requests an
hour and each registered domain to 50 certificates a week, so with the default profile one run issues
at most 50 per node; names are spread over several zones. `--profile load-test` writes a genesis whose
`limits.ca` admits LOAD_TEST_LIMITS instead: a cluster built for measuring, never the default.
Prints the figures beside the design document's claims.

Run: python benchmarks/node_bench.py [--nodes 5] [--threshold 3] [--certs 200] [--concurrency 20]
                                     [--sequential 20] [--dns-queries 2000] [--profile load-test] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import dns.exception
import dns.message
import dns.query
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reference_node import cluster as clustermod  # noqa: E402

CLAIMS = {"generation_ms": 35.0, "throughput_per_s": 10_000.0, "dns_ms": 50.0}
PER_ACCOUNT_LIMIT = 50
POLL_S = 0.05  # how often a pending certificate request is polled
PER_DOMAIN = 40
LOAD_TEST_LIMITS: dict[str, Any] = {"ca": {"requests_per_account": 10_000_000, "certificates_per_domain": 10_000_000},
                                     "dns": {"max_zones_per_owner": 1000}}
PROFILES: dict[str, dict[str, Any] | None] = {"default": None, "load-test": LOAD_TEST_LIMITS}


@dataclass
class Node:
    api: str
    dns_port: int | None
    proc: subprocess.Popen[bytes]


@dataclass
class Results:
    sequential_ms: list[float] = field(default_factory=list)
    concurrent_ms: list[float] = field(default_factory=list)
    concurrent_wall_s: float = 0.0
    dns_api_ms: list[float] = field(default_factory=list)
    dns_api_wall_s: float = 0.0
    dns_udp_ms: list[float] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    memory_source: str = ""
    failures: list[str] = field(default_factory=list)
    serial_commands: dict[str, int] = field(default_factory=dict)  # commit and reveal commands, all validators


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


# ---------------------------------------------------------------------------------------- cluster


def start_cluster(directory: Path, nodes: int, threshold: int, synchronous: str, transport: str,
                  limits: dict[str, Any] | None = None) -> list[Node]:
    configs = clustermod.generate(directory, nodes, threshold, timeout="2s", synchronous=synchronous,
                                  transport=transport, api_write_rate=1e6,  # load generator: one address
                                  limits=limits)
    out = []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for cfg in configs:
        # every request comes from one address, and an open-loop generator holds one connection per
        # request in flight: the default 32 per address would reset the rest, and the default 100 reads
        # a second per address would answer its polls of pending requests 429
        limits = "max_connections_per_ip = 4096\nread_rate = 1000000.0\nglobal_write_rate = 1000000.0\n"
        text = cfg.read_text().replace("[api]\n", "[api]\n" + limits, 1)
        cfg.write_text(text)
        doc = tomllib.loads(text)
        log = open(cfg.parent / "node.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen([sys.executable, "-m", "reference_node", "--config", str(cfg), "--log-level",
                                 "WARNING"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        dns_listen = doc.get("dns", {}).get("listen")
        out.append(Node("http://" + doc["api"]["listen"], int(dns_listen.rsplit(":", 1)[1]) if dns_listen else None,
                        proc))
    return out


def stop_cluster(nodes: list[Node]) -> None:
    for n in nodes:
        if n.proc.poll() is None:
            n.proc.send_signal(signal.SIGTERM)
    for n in nodes:
        try:
            n.proc.wait(10)
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.wait(5)


async def wait_healthy(session: aiohttp.ClientSession, nodes: list[Node], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    for n in nodes:
        while True:
            if n.proc.poll() is not None:
                raise RuntimeError(f"{n.api}: node exited with {n.proc.returncode}")
            try:
                async with session.get(n.api + "/api/v1/health") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n.api}: not healthy after {timeout} s")
            await asyncio.sleep(0.1)


def peak_memory(nodes: list[Node]) -> tuple[dict[str, float], str]:
    """Peak resident set per node in MB: VmHWM from /proc, else psutil's current RSS."""
    out: dict[str, float] = {}
    source = "VmHWM (/proc/<pid>/status)"
    for i, n in enumerate(nodes):
        status = Path(f"/proc/{n.proc.pid}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[f"node{i}"] = int(line.split()[1]) / 1024
        else:
            try:
                import psutil  # type: ignore[import-untyped]

                out[f"node{i}"] = psutil.Process(n.proc.pid).memory_info().rss / 2**20
                source = "psutil RSS at the end (no /proc: not a peak)"
            except Exception:  # psutil absent or the process gone
                source = "unavailable"
    return out, source


# ------------------------------------------------------------------------------------------ work


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
               ok: tuple[int, ...] = (200,)) -> dict[str, Any]:
    async with session.post(url, json=body) as r:
        doc = await r.json(content_type=None)
        if r.status not in ok:
            raise RuntimeError(f"POST {url}: HTTP {r.status}: {doc}")
        return doc  # type: ignore[no-any-return]


def new_csr(name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Job:
    node: int
    name: str
    csr: str
    proof: str = ""


async def prepare(session: aiohttp.ClientSession, nodes: list[Node], total: int) -> list[Job]:
    """Zones, then per node one challenge for all its names and one update publishing their TXTs."""
    jobs = [Job(k % len(nodes), f"h{k}.d{k // PER_DOMAIN}.example", "") for k in range(total)]
    for zone in sorted({j.name.split(".", 1)[1] for j in jobs}):
        await post(session, nodes[0].api + "/api/v1/dns/update", {"create": {
            "origin": zone + ".", "primary_ns": f"ns1.{zone}.", "admin": f"hostmaster.{zone}."}})
    for i, n in enumerate(nodes):
        mine = [j for j in jobs if j.node == i]
        if not mine:
            continue
        res = await post(session, n.api + "/api/v1/cert/challenge", {"names": [j.name for j in mine]})
        by_name = {c["name"]: c for c in res["challenges"]}
        ops_by_zone: dict[str, list[dict[str, Any]]] = {}
        for j in mine:
            ch = by_name[j.name]
            j.proof = ch["key_authorization"]
            ops_by_zone.setdefault(j.name.split(".", 1)[1] + ".", []).append(
                {"op": "add", "name": ch["txt_name"], "type": "TXT", "ttl": 300, "values": [f'"{ch["txt_value"]}"']})
        for zone, ops in ops_by_zone.items():
            await post(session, n.api + "/api/v1/dns/update", {"update": {"origin": zone, "ops": ops}})
    for j in jobs:
        j.csr = new_csr(j.name)
    return jobs


async def until_issued(session: aiohttp.ClientSession, api: str, doc: dict[str, Any],
                       timeout_s: float) -> dict[str, Any]:
    """A certificate request's answer once issued: the node answers 201 within its `api.issue_wait`, else
    202 with a location, polled here every POLL_S (finer than its Retry-After, so as to time the issuance)."""
    deadline = time.perf_counter() + timeout_s
    while doc.get("status") == "pending" and time.perf_counter() < deadline:
        await asyncio.sleep(POLL_S)
        async with session.get(api + doc["location"]) as r:
            doc = await r.json(content_type=None)
            if r.status not in (200, 202):
                raise RuntimeError(f"GET {doc.get('location')}: HTTP {r.status}: {doc}")
    return doc


async def issue(session: aiohttp.ClientSession, nodes: list[Node], job: Job) -> float:
    t0 = time.perf_counter()
    api = nodes[job.node].api
    res = await post(session, api + "/api/v1/cert/request",
                     {"csr": job.csr, "names": [job.name], "proofs": [job.proof]}, ok=(201, 202))
    res = await until_issued(session, api, res, 60.0)
    elapsed = time.perf_counter() - t0
    if res.get("status") != "issued":
        raise RuntimeError(f"{job.name}: not issued within 60 s ({res})")
    return elapsed * 1000


async def run_dns(session: aiohttp.ClientSession, nodes: list[Node], count: int, res: Results) -> None:
    names = ["h0.d0.example", "d0.example", "nope.d0.example"]
    t0 = time.perf_counter()
    for k in range(count):
        n = nodes[k % len(nodes)]
        q0 = time.perf_counter()
        async with session.get(n.api + "/api/v1/dns/resolve", params={"domain": names[k % 3], "type": "TXT"}) as r:
            await r.read()
            if r.status != 200:
                res.failures.append(f"dns/resolve HTTP {r.status}")
        res.dns_api_ms.append((time.perf_counter() - q0) * 1000)
    res.dns_api_wall_s = time.perf_counter() - t0
    ports = [n.dns_port for n in nodes if n.dns_port]
    if not ports:
        return

    def udp() -> None:
        for k in range(count):
            q = dns.message.make_query(names[k % 3], "A", want_dnssec=True)
            q0 = time.perf_counter()
            try:
                dns.query.udp(q, "127.0.0.1", port=ports[k % len(ports)], timeout=2)
            except (dns.exception.Timeout, OSError) as exc:
                res.failures.append(f"udp: {exc}")
                continue
            res.dns_udp_ms.append((time.perf_counter() - q0) * 1000)

    await asyncio.to_thread(udp)


async def bench(args: argparse.Namespace, directory: Path) -> Results:
    res = Results()
    nodes = start_cluster(directory, args.nodes, args.threshold, args.synchronous, args.transport,
                          PROFILES[args.profile])
    try:
        timeout = aiohttp.ClientTimeout(total=120)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await wait_healthy(session, nodes)
            total = args.sequential + args.certs
            print(f"cluster up: {args.nodes} validators, threshold {args.threshold}; preparing {total} "
                  "challenges", file=sys.stderr, flush=True)
            jobs = await prepare(session, nodes, total)
            seq_jobs, conc_jobs = jobs[:args.sequential], jobs[args.sequential:]
            for job in seq_jobs:  # one at a time: latency without load
                res.sequential_ms.append(await issue(session, nodes, job))
            print(f"sequential: {len(seq_jobs)} issued", file=sys.stderr, flush=True)
            sem = asyncio.Semaphore(args.concurrency)

            async def one(job: Job) -> None:
                async with sem:
                    try:
                        res.concurrent_ms.append(await issue(session, nodes, job))
                    except RuntimeError as exc:
                        res.failures.append(str(exc))

            t0 = time.perf_counter()
            await asyncio.gather(*(one(j) for j in conc_jobs))
            res.concurrent_wall_s = time.perf_counter() - t0
            print(f"concurrent: {len(res.concurrent_ms)} issued", file=sys.stderr, flush=True)
            for n in nodes:  # how many commands the serial randomness cost (several draws share one)
                async with session.get(n.api + "/api/v1/status") as r:
                    ca = (await r.json()).get("ca", {})
                for kind in ("commits", "reveals"):
                    res.serial_commands[kind] = res.serial_commands.get(kind, 0) + ca.get(f"serial_{kind}_ordered", 0)
            await run_dns(session, nodes, args.dns_queries, res)
        res.peak_rss_mb, res.memory_source = peak_memory(nodes)
    finally:
        stop_cluster(nodes)
    return res


def report(args: argparse.Namespace, res: Results) -> dict[str, Any]:
    conc_rate = len(res.concurrent_ms) / res.concurrent_wall_s if res.concurrent_wall_s else float("nan")
    seq_rate = 1000 / statistics.mean(res.sequential_ms) if res.sequential_ms else float("nan")
    return {
        "cluster": {"nodes": args.nodes, "threshold": args.threshold, "transport": args.transport,
                    "profile": args.profile,
                    "synchronous": args.synchronous, "host": socket.gethostname(), "cpus": os.cpu_count()},
        "issuance_sequential": {"count": len(res.sequential_ms), "p50_ms": pct(res.sequential_ms, 50),
                                "p99_ms": pct(res.sequential_ms, 99), "certs_per_s": seq_rate},
        "issuance_concurrent": {"count": len(res.concurrent_ms), "concurrency": args.concurrency,
                                "wall_s": res.concurrent_wall_s, "certs_per_s": conc_rate,
                                "p50_ms": pct(res.concurrent_ms, 50), "p99_ms": pct(res.concurrent_ms, 99)},
        "dns_api": {"count": len(res.dns_api_ms), "p50_ms": pct(res.dns_api_ms, 50),
                    "p99_ms": pct(res.dns_api_ms, 99),
                    "queries_per_s": len(res.dns_api_ms) / res.dns_api_wall_s if res.dns_api_wall_s else None},
        "dns_udp": {"count": len(res.dns_udp_ms), "p50_ms": pct(res.dns_udp_ms, 50),
                    "p99_ms": pct(res.dns_udp_ms, 99)},
        "serial_commands": {**res.serial_commands, "certificates": len(res.sequential_ms) + len(res.concurrent_ms)},
        "peak_memory_mb": res.peak_rss_mb, "memory_source": res.memory_source,
        "failures": res.failures[:20], "claims": CLAIMS,
    }


def print_table(doc: dict[str, Any]) -> None:
    c, s, k = doc["cluster"], doc["issuance_sequential"], doc["issuance_concurrent"]
    d, u = doc["dns_api"], doc["dns_udp"]
    print(f"TrustChain node benchmark: {c['nodes']} validators on 127.0.0.1, {c['threshold']}-of-{c['nodes']} "
          f"FROST, {c['transport']}, synchronous={c['synchronous']}, {c['cpus']} CPUs")
    print(f"{'metric':<52} {'measured':>14} {'design claim':>14}")
    rows = [
        (f"issuance latency p50, one at a time ({s['count']})", f"{s['p50_ms']:.1f} ms", "35 ms"),
        ("issuance latency p99, one at a time", f"{s['p99_ms']:.1f} ms", ""),
        (f"issuance latency p50, {k['concurrency']} in flight ({k['count']})", f"{k['p50_ms']:.1f} ms", ""),
        (f"issuance latency p99, {k['concurrency']} in flight", f"{k['p99_ms']:.1f} ms", ""),
        ("certificates per second, one at a time", f"{s['certs_per_s']:.1f}", ""),
        (f"certificates per second, {k['concurrency']} in flight", f"{k['certs_per_s']:.1f}", "10,000+"),
        (f"DNS resolve via API p50 ({d['count']})", f"{d['p50_ms']:.2f} ms", "<50 ms"),
        ("DNS resolve via API p99", f"{d['p99_ms']:.2f} ms", ""),
        (f"DNS query via UDP listener p50 ({u['count']})", f"{u['p50_ms']:.2f} ms", ""),
        ("DNS query via UDP listener p99", f"{u['p99_ms']:.2f} ms", ""),
    ]
    serial = doc["serial_commands"]
    if serial.get("reveals"):
        rows.append(("serial reveal commands per certificate (all validators)",
                     f"{serial['reveals'] / max(1, serial['certificates']):.2f}", ""))
    rows += [(f"peak memory {name}", f"{mb:.1f} MB", "") for name, mb in sorted(doc["peak_memory_mb"].items())]
    for metric, measured, claim in rows:
        print(f"{metric:<52} {measured:>14} {claim:>14}")
    print(f"memory: {doc['memory_source']}")
    if doc["failures"]:
        print(f"failures ({len(doc['failures'])} shown): " + "; ".join(doc["failures"]))
    print("Issuance is timed from POST /api/v1/cert/request to the answer carrying the signed certificate "
          "(challenge publication excluded). This is a closed loop (a fixed number in flight): see "
          "benchmarks/load_gen.py for throughput against offered load.")
    if c.get("profile") == "default":
        print(f"The default genesis admits {PER_ACCOUNT_LIMIT} requests per account per hour; "
              "--profile load-test raises limits.ca in the benchmark cluster's genesis.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--threshold", type=int, default=3)
    p.add_argument("--certs", type=int, default=200, help="certificates issued concurrently")
    p.add_argument("--sequential", type=int, default=20, help="certificates issued one at a time first")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--dns-queries", type=int, default=2000)
    p.add_argument("--synchronous", choices=("full", "normal"), default="full")
    p.add_argument("--transport", choices=("tcp", "quic"), default="tcp")
    p.add_argument("--dir", type=Path, help="cluster directory (default: a temporary one, removed afterwards)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="default",
                   help="genesis CA rate limits: the safe default, or load-test (LOAD_TEST_LIMITS)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    limit = PER_ACCOUNT_LIMIT * args.nodes
    if args.profile == "default" and args.certs + args.sequential > limit:
        p.error(f"--certs + --sequential: at most {limit} ({PER_ACCOUNT_LIMIT} per node account per hour; "
                "--profile load-test raises the genesis limits)")
    directory = args.dir or Path(tempfile.mkdtemp(prefix="tc-node-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the nodes (finally blocks) on SIGTERM too
    try:
        res = asyncio.run(bench(args, directory))
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    doc = report(args, res)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print_table(doc)
    return 0 if not res.failures else 1


if __name__ == "__main__":
    sys.exit(main())
