"""DNS benchmark (a script, not a test): our UDP listeners vs knotd serving the same signed zone.

    python benchmarks/dns_bench.py [--seconds 8] [--clients 8] [--repeat 3] [--workers 2] [--no-node] [--extras]

Configurations, each measured by dnsperf against knotd in the same run, alternating (ours then knotd,
then knotd then ours...) so that load from other processes hits both alike, with the plain mix (no
EDNS) and the DNSSEC mix (dnsperf -D: EDNS with DO, answers carry RRSIGs and NSEC proofs) separately;
the query mix is A, AAAA and NXDOMAIN names, a third each:

* ``node``: a real validator's DNS listener (node0 of a 4-validator cluster on this machine, one DNS
  process). The zone is created and filled through the node's HTTP API and consensus; knotd serves
  the same signed zone, read back from the node (every RRset with its RRSIGs, along the NSEC chain).
* ``dns serve``: `trustchain-cli dns serve`, one process: the same listener and answer table code.
* ``dns serve xN``: `--workers N`, N processes sharing the port with SO_REUSEPORT, against knotd with
  N UDP threads.

knotd runs with one UDP worker (`udp-workers: 1`) for the one-process configurations. Prints each
pair's q/s and ratio (ours / knotd) with the load average, then the median ratios. `--extras` adds
sequential latency, DoQ and resolution figures. Needs apt packages dnsperf and knot (knotd).
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

import dns.exception
import dns.message
import dns.name
import dns.query

from reference_node import eventloop
from reference_node.dns.client import doq_connection, doq_query, drive, random_id
from trustchain.dns.resolver import Resolver, Upstream
from trustchain.dns.validator import Validator

ORIGIN = "bench.example."
NAMES = 200


def free_port() -> int:
    """A port free for both UDP and TCP right now (the servers bind both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def write_zone(directory: Path) -> Path:
    lines = [f"$ORIGIN {ORIGIN}", "$TTL 300", "@ IN SOA ns1 hostmaster 1 3600 600 1209600 300", "@ IN NS ns1",
             "ns1 IN A 192.0.2.53"]
    for i in range(NAMES):
        lines += [f"host{i} IN A 192.0.2.{i % 250 + 1}", f"host{i} IN AAAA 2001:db8::{i:x}"]
    path = directory / "bench.zone"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_udp(port: int, deadline: float = 180.0) -> None:
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


def knot_conf(directory: Path, zones: dict[str, Path], port: int, workers: int) -> Path:
    """knotd serving the given presigned zone files as they are, with `workers` UDP threads."""
    conf = directory / f"knot-{port}.conf"
    zone_lines = "".join(f"""  - domain: {origin}
    file: "{path}"
    storage: "{directory}"
    journal-content: none
    zonefile-sync: -1
""" for origin, path in zones.items())
    conf.write_text(f"""server:
    rundir: "{directory}/knot-{port}"
    listen: 127.0.0.1@{port}
    udp-workers: {workers}
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{directory}/knot-{port}/db"
log:
  - target: stderr
    any: warning
zone:
{zone_lines}""")
    (directory / f"knot-{port}").mkdir(exist_ok=True)
    return conf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="dnsperf runs per configuration and mix")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes for the multi-process configuration (1: skip it)")
    ap.add_argument("--no-node", action="store_true", help="skip the node configuration (no cluster started)")
    ap.add_argument("--extras", action="store_true", help="also latency, DoQ and resolution figures")
    args = ap.parse_args()
    for tool in ("dnsperf", "knotd"):
        if shutil.which(tool) is None:
            print(f"{tool} not installed (apt: {'dnsperf' if tool == 'dnsperf' else 'knot'})", file=sys.stderr)
            return 3
    with tempfile.TemporaryDirectory(prefix="dns-bench-") as tmp:
        return run(Path(tmp), args)


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


def write_queries_for(directory: Path, origin: str, name: str) -> Path:
    lines = []
    for i in range(NAMES):
        lines += [f"host{i}.{origin} A", f"host{i}.{origin} AAAA", f"nx{i}.{origin} A"]
    path = directory / name
    path.write_text("\n".join(lines) + "\n")
    return path


def dnsperf_mix(port: int, queries: Path, seconds: int, clients: int, do: bool) -> tuple[float, float]:
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds), "-c", str(clients)]
    out = subprocess.run([*cmd, *(["-D"] if do else [])], capture_output=True, text=True, check=False).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    if not qps or not lat:
        raise RuntimeError("could not parse dnsperf output:\n" + out)
    if lost and int(lost.group(1)) > 0.01 * float(qps.group(1)) * seconds:
        print(f"  (dnsperf on port {port}: {lost.group(1)} queries lost)", flush=True)
    return float(qps.group(1)), float(lat.group(1)) * 1000


RESULTS: dict[tuple[str, str], list[float]] = {}


def compare(name: str, ours: int, knot: int, queries: Path, args: argparse.Namespace, do: bool) -> None:
    """dnsperf alternately against ours and knotd, `repeat` times each (ours first, then knotd first, so
    that neither always runs on a warmer or quieter machine); one line per pair."""
    mix = "DO" if do else "plain"
    for i in range(args.repeat):
        before = load()
        order = ((ours, "t"), (knot, "k")) if i % 2 == 0 else ((knot, "k"), (ours, "t"))
        got = {who: dnsperf_mix(port, queries, args.seconds, args.clients, do) for port, who in order}
        (our_qps, our_avg), (knot_qps, knot_avg) = got["t"], got["k"]
        RESULTS.setdefault((name, mix), []).append(our_qps / knot_qps)
        print(f"UDP {name:14s} {mix:5s} run {i + 1}: trustchain {our_qps:8.0f} q/s (avg {our_avg:.2f} ms)  "
              f"knotd {knot_qps:8.0f} q/s (avg {knot_avg:.2f} ms)  ratio {our_qps / knot_qps:.3f}  [{before}]",
              flush=True)


# --- the node configuration: a real 4-validator cluster, the zone created through the API ------------------

NODE_ORIGIN = "node.example."


def http(method: str, url: str, body: object = None) -> tuple[int, dict[str, object]]:
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode(errors="replace")}


def start_cluster(tmp: Path, dns_workers: int) -> tuple[list[subprocess.Popen[bytes]], str, int]:
    """Four validators (node0 with `dns_workers` DNS processes); returns them, node0's API and DNS port."""
    import tomllib

    from reference_node import cluster

    configs = cluster.generate(tmp / "cluster", 4, 3, timeout="2s", api_write_rate=10_000.0)
    if dns_workers > 1:
        text = configs[0].read_text().replace("[dns]\n", f"[dns]\nworkers = {dns_workers}\n", 1)
        configs[0].write_text(text)
    repo = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, "-m", "reference_node", "--config", str(c), "--log-level", "WARNING"],
                              stdout=open(c.parent / "node.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                              env=dict(os.environ, PYTHONPATH=str(repo)), cwd=str(repo)) for c in configs]
    doc = tomllib.loads(configs[0].read_text())
    api = "http://" + doc["api"]["listen"]
    port = int(doc["dns"]["listen"].rsplit(":", 1)[1])
    for c in configs:
        url = "http://" + tomllib.loads(c.read_text())["api"]["listen"] + "/api/v1/health"
        end = time.monotonic() + 180
        while time.monotonic() < end:
            try:
                if http("GET", url)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{c.parent.name} not healthy: " + (c.parent / "node.log").read_text()[-2000:])
    return procs, api, port


def fill_node_zone(api: str, port: int) -> None:
    """Create NODE_ORIGIN through the API with the same records as the bench zone."""
    code, res = http("POST", api + "/api/v1/dns/update", {"create": {
        "origin": NODE_ORIGIN, "primary_ns": f"ns1.{NODE_ORIGIN}", "admin": f"hostmaster.{NODE_ORIGIN}",
        "nameservers": [f"ns1.{NODE_ORIGIN}"]}})
    assert code == 200, res
    ops = [{"op": "add", "name": f"ns1.{NODE_ORIGIN}", "type": "A", "ttl": 300, "values": ["192.0.2.53"]}]
    for i in range(NAMES):
        ops += [{"op": "add", "name": f"host{i}.{NODE_ORIGIN}", "type": "A", "ttl": 300,
                 "values": [f"192.0.2.{i % 250 + 1}"]},
                {"op": "add", "name": f"host{i}.{NODE_ORIGIN}", "type": "AAAA", "ttl": 300,
                 "values": [f"2001:db8::{i:x}"]}]
    for k in range(0, len(ops), 50):
        code, res = http("POST", api + "/api/v1/dns/update", {"update": {"origin": NODE_ORIGIN, "ops": ops[k:k + 50]}})
        assert code == 200 and res.get("status") == "ok", res
    wire = dns.message.make_query(f"host{NAMES - 1}.{NODE_ORIGIN}", "AAAA")
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            if dns.query.udp(wire, "127.0.0.1", port=port, timeout=1).answer:
                return
        except dns.exception.Timeout:
            pass
        time.sleep(0.2)
    raise RuntimeError("the node does not serve the zone")


def walk_zone(port: int, origin: str, path: Path) -> Path:
    """The node's signed zone as served (every RRset with its RRSIGs, following the NSEC chain over TCP):
    knotd then serves exactly the same data."""
    import dns.rdatatype

    lines: list[str] = []
    name = dns.name.from_text(origin)
    seen: set[dns.name.Name] = set()
    while name not in seen:
        seen.add(name)
        nsec_answer = dns.query.tcp(dns.message.make_query(name, "NSEC", want_dnssec=True), "127.0.0.1", port=port,
                                    timeout=60).answer
        nsec = next(r for r in nsec_answer if r.rdtype == dns.rdatatype.NSEC)
        for rdtype in nsec[0].windows_to_types() if hasattr(nsec[0], "windows_to_types") else _types(nsec[0]):
            if rdtype == dns.rdatatype.RRSIG:
                continue
            answer = dns.query.tcp(dns.message.make_query(name, rdtype, want_dnssec=True), "127.0.0.1", port=port,
                                   timeout=60).answer
            lines += [rrset.to_text() for rrset in answer]
        name = nsec[0].next
    path.write_text("\n".join(lines) + "\n")
    return path


def _types(nsec: object) -> list[int]:
    out = []
    for window, bitmap in nsec.windows:  # type: ignore[attr-defined]
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    out.append(window * 256 + i * 8 + bit)
    return out


def run(tmp: Path, args: argparse.Namespace) -> int:
    zone = write_zone(tmp)
    queries = write_queries_for(tmp, ORIGIN, "queries.txt")
    node_queries = write_queries_for(tmp, NODE_ORIGIN, "node-queries.txt")
    cli = [sys.executable, "-m", "reference_node.cli", "dns"]
    subprocess.run([*cli, "sign", str(zone)], check=True, capture_output=True)
    signed = tmp / "bench.zone.signed"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        node_port = 0
        zones = {ORIGIN: signed}
        if not args.no_node:
            cluster, api, node_port = start_cluster(tmp, 1)
            procs += cluster
            fill_node_zone(api, node_port)
            zones[NODE_ORIGIN] = walk_zone(node_port, NODE_ORIGIN, tmp / "node.zone.signed")
        ours, multi, knot, knot_multi = free_port(), free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([*cli, "serve", "--zone", str(zone), "--listen", f"127.0.0.1:{ours}"],
                                      stdout=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["knotd", "-c", str(knot_conf(tmp, zones, knot, 1))], stderr=subprocess.DEVNULL))
        if args.workers > 1:
            procs.append(subprocess.Popen([*cli, "serve", "--zone", str(zone), "--listen", f"127.0.0.1:{multi}",
                                           "--workers", str(args.workers)], stdout=subprocess.DEVNULL))
            procs.append(subprocess.Popen(["knotd", "-c", str(knot_conf(tmp, zones, knot_multi, args.workers))],
                                          stderr=subprocess.DEVNULL))
        for port in (ours, knot) + ((multi, knot_multi) if args.workers > 1 else ()):
            wait_udp(port)
        print(f"zone {NAMES * 2 + 3} records, signed (Ed25519, NSEC); {os.cpu_count()} CPUs; "
              f"dnsperf {args.seconds} s x {args.clients} clients, mix A/AAAA/NXDOMAIN; "
              f"{eventloop.loop_name()}; {load()}", flush=True)
        for do in (False, True):
            if node_port:
                compare("node", node_port, knot, node_queries, args, do)
            compare("dns serve", ours, knot, queries, args, do)
            if args.workers > 1:
                compare(f"dns serve x{args.workers}", multi, knot_multi, queries, args, do)
        print("median ratios: " + ", ".join(f"{name} {mix} {statistics.median(r):.3f}"
                                             for (name, mix), r in RESULTS.items()), flush=True)
        if args.extras:
            extras(ours, knot, tmp, args)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


def extras(ours: int, knot: int, tmp: Path, args: argparse.Namespace) -> None:
    """Sequential latency, DoQ rate and resolution latency (a `dns serve` with DoQ of its own)."""
    cli = [sys.executable, "-m", "reference_node.cli", "dns"]
    cert, key = self_signed(tmp)
    udp, doq = free_port(), free_port()
    proc = subprocess.Popen([*cli, "serve", "--zone", str(tmp / "bench.zone"), "--listen", f"127.0.0.1:{udp}",
                             "--doq", f"127.0.0.1:{doq}", "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdout=subprocess.DEVNULL)
    try:
        wait_udp(udp)
        for name, port in (("trustchain", ours), ("knotd", knot)):
            p50, p99 = latencies(port)
            print(f"latency {name:10s} p50 {p50:.3f} ms  p99 {p99:.3f} ms  (sequential, one client)")
        doq_qps = asyncio.run(doq_rate(doq, min(args.seconds, 5)))
        print(f"DoQ  trustchain: {doq_qps:8.0f} q/s  (aioquic client, 1 connection, 32 concurrent streams)  [{load()}]")
        cold, warm, plain = asyncio.run(resolution_latency(udp, tmp / f"dsset-{ORIGIN}"))
        print(f"resolution (median): validated cold {cold:.2f} ms, unvalidated cold {plain:.2f} ms, "
              f"cache hit {warm:.3f} ms")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
