"""DNS benchmark (a script, not a test): our UDP listener vs knotd serving the same signed zone.

    python benchmarks/dns_bench.py [--seconds 8] [--clients 8] [--repeat 2] [--workers 2]

Prints dnsperf query rates and their ratio to knotd, p50/p99 latency (sequential queries from
Python, same client for every server), DoQ queries per second (aioquic client, one connection, many
concurrent streams), and resolution latency through the resolver state machine (cold with DNSSEC
validation, and warm from cache). Needs apt packages dnsperf and knot (knotd).

Our server is measured in three configurations, each against knotd in the same run, alternating
(ours, knotd, ours, knotd...) so that load from other processes hits both alike:

* ``cached``: the shipped `trustchain-cli dns serve` (answer cache on, default event loop). After
  the first pass over the query file every answer is an answer-cache hit.
* ``uncached``: the same code with the answer cache disabled: every query parsed and rendered by
  dnspython (the authoritative path as it was before the cache).
* ``cached xN``: N processes sharing the port with SO_REUSEPORT, on uvloop if installed (the
  one-process-per-core deployment); knotd uses its default of one UDP thread per CPU.

The machine's CPUs are shared by dnsperf, the server under test and anything else running: the load
average is printed with each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message

from reference_node.dns.client import doq_connection, doq_query, drive, random_id
from trustchain.dns.resolver import Resolver, Upstream
from trustchain.dns.validator import Validator

ORIGIN = "bench.example."
NAMES = 200


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def write_zone(directory: Path) -> Path:
    lines = [f"$ORIGIN {ORIGIN}", "$TTL 300", "@ IN SOA ns1 hostmaster 1 3600 600 1209600 300", "@ IN NS ns1",
             "ns1 IN A 192.0.2.53"]
    for i in range(NAMES):
        lines += [f"host{i} IN A 192.0.2.{i % 250 + 1}", f"host{i} IN AAAA 2001:db8::{i:x}"]
    path = directory / "bench.zone"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_queries(directory: Path) -> Path:
    lines = []
    for i in range(NAMES):
        lines += [f"host{i}.{ORIGIN} A", f"host{i}.{ORIGIN} AAAA", f"nx{i}.{ORIGIN} A"]
    path = directory / "queries.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_udp(port: int, deadline: float = 15.0) -> None:
    wire = dns.message.make_query(f"host1.{ORIGIN}", "A").to_wire()
    end = time.monotonic() + deadline
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < end:
            s.sendto(wire, ("127.0.0.1", port))
            try:
                s.recvfrom(4096)
                return
            except TimeoutError:
                continue
    raise RuntimeError(f"no server answering on port {port}")


def dnsperf(port: int, queries: Path, seconds: int, clients: int) -> tuple[float, float]:
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds),
                          "-c", str(clients), "-D"], capture_output=True, text=True, check=False).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    if not qps or not lat:
        raise RuntimeError("could not parse dnsperf output:\n" + out)
    return float(qps.group(1)), float(lat.group(1)) * 1000


def latencies(port: int, n: int = 2000) -> tuple[float, float]:
    samples = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        for i in range(n):
            q = dns.message.make_query(f"host{i % NAMES}.{ORIGIN}", "A", want_dnssec=True)
            wire = q.to_wire()
            t0 = time.perf_counter()
            s.sendto(wire, ("127.0.0.1", port))
            s.recvfrom(65535)
            samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


async def doq_rate(port: int, seconds: float, concurrency: int = 32) -> float:
    done = 0
    async with doq_connection("127.0.0.1", port) as conn:
        end = time.monotonic() + seconds

        async def worker(k: int) -> None:
            nonlocal done
            i = k
            while time.monotonic() < end:
                await doq_query(conn, dns.message.make_query(f"host{i % NAMES}.{ORIGIN}", "A").to_wire())
                done += 1
                i += concurrency

        start = time.monotonic()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return done / (time.monotonic() - start)


async def resolution_latency(port: int, anchor_file: Path, n: int = 200) -> tuple[float, float, float]:
    from reference_node.cli.dns import load_anchor

    validator = Validator(load_anchor(anchor_file))
    cold, warm, plain = [], [], []
    for i in range(n):
        r = Resolver(next_id=random_id, upstreams=(Upstream("127.0.0.1", port),), validator=validator)
        t0 = time.perf_counter()
        res = await drive(r.resolve(f"host{i % NAMES}.{ORIGIN}", "A", time.time()))
        cold.append((time.perf_counter() - t0) * 1000)
        assert res.validation is not None and res.validation.secure, res.trace
        t0 = time.perf_counter()
        await drive(r.resolve(f"host{i % NAMES}.{ORIGIN}", "A", time.time()))
        warm.append((time.perf_counter() - t0) * 1000)
        r2 = Resolver(next_id=random_id, upstreams=(Upstream("127.0.0.1", port),))
        t0 = time.perf_counter()
        await drive(r2.resolve(f"host{i % NAMES}.{ORIGIN}", "AAAA", time.time()))
        plain.append((time.perf_counter() - t0) * 1000)
    return statistics.median(cold), statistics.median(warm), statistics.median(plain)


def knot_conf(directory: Path, signed_zone: Path, port: int) -> Path:
    conf = directory / "knot.conf"
    conf.write_text(f"""server:
    rundir: "{directory}"
    listen: 127.0.0.1@{port}
    background-workers: 1
database:
    storage: "{directory}/db"
log:
  - target: stderr
    any: warning
zone:
  - domain: {ORIGIN}
    file: "{signed_zone}"
    storage: "{directory}"
    journal-content: none
    zonefile-sync: -1
""")
    return conf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2, help="dnsperf runs per configuration")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes for the SO_REUSEPORT configuration (0: skip it)")
    ap.add_argument("--serve", nargs=3, metavar=("ZONEFILE", "PORT", "CACHE_BYTES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:  # child process: one UDP listener on 127.0.0.1:PORT (SO_REUSEPORT), until SIGTERM
        serve_child(Path(args.serve[0]), int(args.serve[1]), int(args.serve[2]))
        return 0
    for tool in ("dnsperf", "knotd"):
        if shutil.which(tool) is None:
            print(f"{tool} not installed (apt: {'dnsperf' if tool == 'dnsperf' else 'knot'})", file=sys.stderr)
            return 3
    with tempfile.TemporaryDirectory(prefix="dns-bench-") as tmp:
        return run(Path(tmp), args.seconds, args.clients, args.repeat, args.workers)


def serve_child(zonefile: Path, port: int, cache_bytes: int) -> None:
    """Our server without the CLI wrapper, so the bench can vary the answer cache and the loop: same
    zone, same keys (keys/ beside the zone file, as `dns sign` and `dns serve` use)."""
    import signal

    from reference_node.cli.dns import load_keys, load_zone
    from reference_node.dns.server import DNSServer, authority_handler
    from reference_node.dns.server import run as run_loop
    from trustchain.dns.authority import Authority
    from trustchain.dns.dnssec import sign_zone

    zone = load_zone(zonefile, None)
    keys = load_keys(argparse.Namespace(ksk_seed=None, zsk_seed=None, key_dir=None), zonefile, zone.origin)
    authority = Authority(answer_cache_bytes=cache_bytes)
    authority.load(zone, sign_zone(zone, keys, int(time.time())))

    async def serve() -> None:
        server = DNSServer(authority_handler(authority))
        await server.start_udp("127.0.0.1", port, reuse_port=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.close()

    run_loop(serve()) if os.environ.get("DNS_BENCH_UVLOOP") else asyncio.run(serve())


def self_signed(directory: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return directory / "cert.pem", directory / "key.pem"


def load() -> str:
    return "load {:.1f}/{:.1f}".format(*os.getloadavg()[:2])


def compare(name: str, ours: int, knot: int, queries: Path, seconds: int, clients: int, repeat: int) -> None:
    """dnsperf alternately against ours and knotd, `repeat` times each; one line per pair."""
    for i in range(repeat):
        before = load()
        our_qps, our_avg = dnsperf(ours, queries, seconds, clients)
        knot_qps, knot_avg = dnsperf(knot, queries, seconds, clients)
        print(f"UDP {name:12s} run {i + 1}: trustchain {our_qps:8.0f} q/s (avg {our_avg:.2f} ms)  "
              f"knotd {knot_qps:8.0f} q/s (avg {knot_avg:.2f} ms)  ratio {our_qps / knot_qps:.3f}  [{before}]",
              flush=True)


def run(tmp: Path, seconds: int, clients: int, repeat: int, workers: int) -> int:
    zone = write_zone(tmp)
    queries = write_queries(tmp)
    cli = [sys.executable, "-m", "reference_node.cli", "dns"]
    subprocess.run([*cli, "sign", str(zone)], check=True, capture_output=True)
    signed, anchor = tmp / "bench.zone.signed", tmp / f"dsset-{ORIGIN}"
    cert, key = self_signed(tmp)
    ours, doq, knot, uncached, multi = free_port(), free_port(), free_port(), free_port(), free_port()
    child = [sys.executable, str(Path(__file__).resolve()), "--serve", str(zone)]
    procs = [
        subprocess.Popen([*cli, "serve", "--zone", str(zone), "--listen", f"127.0.0.1:{ours}",
                          "--doq", f"127.0.0.1:{doq}", "--tls-cert", str(cert), "--tls-key", str(key)],
                         stdout=subprocess.DEVNULL),
        subprocess.Popen(["knotd", "-c", str(knot_conf(tmp, signed, knot))], stderr=subprocess.DEVNULL),
        subprocess.Popen([*child, str(uncached), "0"]),
    ]
    procs += [subprocess.Popen([*child, str(multi), str(8 << 20)], env={**os.environ, "DNS_BENCH_UVLOOP": "1"})
              for _ in range(workers)]
    try:
        for port in (ours, knot, uncached) + ((multi,) if workers else ()):
            wait_udp(port)
        try:
            import uvloop  # noqa: F401

            loop_name = "uvloop"
        except ImportError:
            loop_name = "asyncio (uvloop not installed)"
        print(f"zone {ORIGIN}: {NAMES * 2 + 3} records, signed (Ed25519, NSEC); {os.cpu_count()} CPUs; "
              f"dnsperf -D (DO bit) {seconds} s x {clients} clients, mix A/AAAA/NXDOMAIN; {load()}")
        compare("uncached", uncached, knot, queries, seconds, clients, repeat)
        compare("cached", ours, knot, queries, seconds, clients, repeat)
        if workers:
            print(f"(cached x{workers}: {workers} processes, SO_REUSEPORT, {loop_name})")
            compare(f"cached x{workers}", multi, knot, queries, seconds, clients, repeat)
        for name, port in (("uncached", uncached), ("cached", ours), ("knotd", knot)):
            p50, p99 = latencies(port)
            print(f"latency {name:9s} p50 {p50:.3f} ms  p99 {p99:.3f} ms  (sequential, one client)")
        for i in range(repeat):
            before = load()
            doq_qps = asyncio.run(doq_rate(doq, min(seconds, 5)))
            print(f"DoQ  trustchain run {i + 1}: {doq_qps:8.0f} q/s  (aioquic client, 1 connection, "
                  f"32 concurrent streams)  [{before}]", flush=True)
        cold, warm, plain = asyncio.run(resolution_latency(ours, anchor))
        print(f"resolution (median): validated cold {cold:.2f} ms (answer + DNSKEY queries, validation), "
              f"unvalidated cold {plain:.2f} ms, cache hit {warm:.3f} ms")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
