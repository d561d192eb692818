"""Open-loop load generator for certificate issuance (a script, not a test).

    python benchmarks/load_gen.py [--rates 10,20,40,80] [--duration 10] [--procs 2] [--closed 40] [--json OUT]

Starts a real cluster like `node_bench.py` (5 validators, 3-of-5 FROST, TCP, SQLite synchronous=FULL)
from a genesis with the load-test profile (`limits.ca` raised: the default admits 50 requests per
account per hour), publishes the dns-01 proofs for every name beforehand (not timed), then, for each
offered rate, sends POST /api/v1/cert/request at that rate for `--duration` seconds.

Open loop, honestly: the arrival times are a Poisson process fixed before the run and split over
`--procs` separate processes (each with its own event loop and connections), and a request is sent at
its arrival time whether or not earlier ones were answered. Latency runs from the *scheduled* arrival
to the 201 carrying the certificate, so a generator that falls behind cannot hide the wait (no
coordinated omission). Reported per offered rate: achieved throughput (certificates completed over the
span from the first arrival to the last completion), p50/p99 latency, failures. The knee is the highest
offered rate whose throughput keeps within 90 % of it and whose p99 stays under `--slo` seconds.

`--closed N` also runs the closed loop beside it (N requests in flight, the next sent when one is
answered, as `node_bench.py` does): its throughput is what the cluster sustains when the load waits for
it, which an open-loop curve past the knee shows as queueing instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import node_bench as nb

MAX_NAMES_PER_CHALLENGE = 50
PER_ZONE = 200  # names per registered domain (the load-test genesis lifts the per-domain rate)


@dataclass
class Outcome:
    scheduled: float  # seconds after the phase start
    latency_s: float | None  # None: failed or timed out
    error: str = ""


async def prepare(session: aiohttp.ClientSession, nodes: list[nb.Node], total: int) -> list[nb.Job]:
    """`node_bench.prepare`, with the challenges chunked (a challenge names at most the policy's
    max_names) and the zone updates per chunk."""
    jobs = [nb.Job(k % len(nodes), f"h{k}.d{k // PER_ZONE}.example", "") for k in range(total)]
    for zone in sorted({j.name.split(".", 1)[1] for j in jobs}):
        await nb.post(session, nodes[0].api + "/api/v1/dns/update", {"create": {
            "origin": zone + ".", "primary_ns": f"ns1.{zone}.", "admin": f"hostmaster.{zone}."}})
    for i, n in enumerate(nodes):
        mine = [j for j in jobs if j.node == i]
        for k in range(0, len(mine), MAX_NAMES_PER_CHALLENGE):
            chunk = mine[k:k + MAX_NAMES_PER_CHALLENGE]
            res = await nb.post(session, n.api + "/api/v1/cert/challenge", {"names": [j.name for j in chunk]})
            by_name = {c["name"]: c for c in res["challenges"]}
            ops_by_zone: dict[str, list[dict[str, Any]]] = {}
            for j in chunk:
                ch = by_name[j.name]
                j.proof = ch["key_authorization"]
                ops_by_zone.setdefault(j.name.split(".", 1)[1] + ".", []).append(
                    {"op": "add", "name": ch["txt_name"], "type": "TXT", "ttl": 300,
                     "values": [f'"{ch["txt_value"]}"']})
            for zone, ops in ops_by_zone.items():
                await nb.post(session, n.api + "/api/v1/dns/update", {"update": {"origin": zone, "ops": ops}})
    for j in jobs:
        j.csr = nb.new_csr(j.name)
    return jobs


async def _send(session: aiohttp.ClientSession, apis: list[str], job: nb.Job, timeout_s: float) -> str:
    body = {"csr": job.csr, "names": [job.name], "proofs": [job.proof]}
    t0 = time.monotonic()
    async with session.post(apis[job.node] + "/api/v1/cert/request", json=body) as r:
        doc = await r.json(content_type=None)
        if r.status not in (201, 202):
            return f"HTTP {r.status}: {str(doc)[:120]}"
    doc = await nb.until_issued(session, apis[job.node], doc, timeout_s - (time.monotonic() - t0))
    return "" if doc.get("status") == "issued" else f"not issued: {str(doc)[:120]}"


def _open_worker(args: tuple[list[str], list[tuple[float, nb.Job]], float, float]) -> list[Outcome]:
    """One generator process: sends each job at its scheduled time (seconds after `start`, a wall-clock
    epoch shared by all processes), never waiting for earlier answers."""
    apis, schedule, start, timeout_s = args

    async def run() -> list[Outcome]:
        out: list[Outcome] = []
        timeout = aiohttp.ClientTimeout(total=timeout_s + 10)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:

            async def one(at: float, job: nb.Job) -> None:
                try:
                    err = await _send(session, apis, job, timeout_s)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    err = f"{type(exc).__name__}: {exc}"
                done = time.time() - start
                out.append(Outcome(at, None if err else done - at, err))

            tasks = []
            for at, job in schedule:
                delay = start + at - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(at, job)))
            await asyncio.gather(*tasks)
        return out

    return asyncio.run(run())


def _closed_worker(args: tuple[list[str], list[nb.Job], int, float]) -> tuple[list[Outcome], float]:
    apis, jobs, in_flight, timeout_s = args

    async def run() -> tuple[list[Outcome], float]:
        out: list[Outcome] = []
        queue = list(reversed(jobs))
        timeout = aiohttp.ClientTimeout(total=timeout_s + 10)
        t0 = time.time()
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:

            async def loop() -> None:
                while queue:
                    job = queue.pop()
                    sent = time.time()
                    try:
                        err = await _send(session, apis, job, timeout_s)
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        err = f"{type(exc).__name__}: {exc}"
                    out.append(Outcome(sent - t0, None if err else time.time() - sent, err))

            await asyncio.gather(*(loop() for _ in range(in_flight)))
        return out, time.time() - t0

    return asyncio.run(run())


def poisson_schedule(rate: float, duration: float, rng: random.Random) -> list[float]:
    times, t = [], rng.expovariate(rate)
    while t < duration:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def summarise(offered: float, outcomes: list[Outcome], span_s: float) -> dict[str, Any]:
    lat = [o.latency_s for o in outcomes if o.latency_s is not None]
    errors = [o.error for o in outcomes if o.latency_s is None]
    return {"offered_per_s": offered, "sent": len(outcomes), "completed": len(lat),
            "throughput_per_s": len(lat) / span_s if span_s > 0 else float("nan"),
            "p50_ms": nb.pct([x * 1000 for x in lat], 50), "p99_ms": nb.pct([x * 1000 for x in lat], 99),
            "mean_ms": statistics.mean(lat) * 1000 if lat else float("nan"),
            "failures": len(errors), "failure_examples": sorted(set(errors))[:3]}


def knee(rows: list[dict[str, Any]], slo_s: float) -> float | None:
    """The highest offered rate the cluster kept up with (>= 90 % of it completed per second, p99
    within the SLO, no failures); None if it kept up with none."""
    ok = [r["offered_per_s"] for r in rows if r["failures"] == 0 and r["throughput_per_s"] >= 0.9 * r["offered_per_s"]
          and r["p99_ms"] <= slo_s * 1000]
    return max(ok) if ok else None


def node_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds consumed so far by the node processes (Linux /proc; 0 elsewhere).
    CPU per certificate is robust against other load on the machine, wall-clock throughput is not."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def run_open(apis: list[str], jobs: list[nb.Job], rate: float, duration: float, procs: int, seed: int,
             timeout_s: float) -> dict[str, Any]:
    arrivals = poisson_schedule(rate, duration, random.Random(seed))
    assert len(arrivals) <= len(jobs), "not enough prepared jobs for this rate"
    schedule = list(zip(arrivals, jobs, strict=False))
    start = time.time() + 1.0  # every process is up before the first arrival
    parts = [(apis, schedule[k::procs], start, timeout_s) for k in range(procs)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        outcomes = [o for part in pool.map(_open_worker, parts) for o in part]
    last = max((o.scheduled + o.latency_s for o in outcomes if o.latency_s is not None), default=0.0)
    first = min((o.scheduled for o in outcomes), default=0.0)
    return summarise(rate, outcomes, last - first)


def run_closed(apis: list[str], jobs: list[nb.Job], in_flight: int, procs: int, timeout_s: float) -> dict[str, Any]:
    per = max(1, in_flight // procs)
    parts = [(apis, jobs[k::procs], per, timeout_s) for k in range(procs)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        results = pool.map(_closed_worker, parts)
    outcomes = [o for part, _ in results for o in part]
    row = summarise(float("nan"), outcomes, max(w for _, w in results))
    row["in_flight"] = per * procs
    return row


async def _setup(args: argparse.Namespace, nodes: list[nb.Node], total: int) -> list[nb.Job]:
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        await nb.wait_healthy(session, nodes)
        print(f"cluster up; preparing {total} challenges", file=sys.stderr, flush=True)
        return await prepare(session, nodes, total)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--threshold", type=int, default=3)
    p.add_argument("--rates", default="10,20,40,80", help="offered rates, certificates per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals per rate")
    p.add_argument("--procs", type=int, default=2, help="generator processes")
    p.add_argument("--closed", type=int, default=0, help="also run a closed loop with this many in flight")
    p.add_argument("--closed-certs", type=int, default=400)
    p.add_argument("--slo", type=float, default=2.0, help="p99 latency (s) the knee must stay within")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take before it counts failed")
    p.add_argument("--synchronous", choices=("full", "normal"), default="full")
    p.add_argument("--transport", choices=("tcp", "quic"), default="tcp")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", action="store_true", help="keep the cluster directory (node logs) afterwards")
    args = p.parse_args(argv)
    rates = [float(x) for x in args.rates.split(",") if x]
    if not rates or min(rates) <= 0 or args.duration <= 0 or args.procs < 1:
        p.error("--rates, --duration, --procs: positive values needed")
    need = [int(r * args.duration * 1.3) + 20 for r in rates]
    total = sum(need) + (args.closed_certs if args.closed else 0)
    directory = Path(tempfile.mkdtemp(prefix="tc-load-gen-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    nodes = nb.start_cluster(directory, args.nodes, args.threshold, args.synchronous, args.transport,
                             nb.LOAD_TEST_LIMITS)
    rows: list[dict[str, Any]] = []
    closed: dict[str, Any] | None = None
    try:
        jobs = asyncio.run(_setup(args, nodes, total))
        apis = [n.api for n in nodes]
        pids = [n.proc.pid for n in nodes]
        offset = 0
        for k, (rate, n) in enumerate(zip(rates, need, strict=True)):
            cpu0 = node_cpu_s(pids)
            row = run_open(apis, jobs[offset:offset + n], rate, args.duration, args.procs, args.seed + k, args.timeout)
            row["node_cpu_s"] = node_cpu_s(pids) - cpu0
            row["cpu_ms_per_cert"] = 1000 * row["node_cpu_s"] / row["completed"] if row["completed"] else float("nan")
            offset += n
            rows.append(row)
            print(f"offered {rate:7.1f}/s  achieved {row['throughput_per_s']:7.1f}/s  p50 {row['p50_ms']:8.1f} ms  "
                  f"p99 {row['p99_ms']:8.1f} ms  cpu {row['cpu_ms_per_cert']:6.1f} ms/cert  "
                  f"failures {row['failures']} {row['failure_examples'][:1]}",
                  file=sys.stderr, flush=True)
            time.sleep(2.0)  # let the previous rate's backlog drain
        if args.closed:
            closed = run_closed(apis, jobs[offset:offset + args.closed_certs], args.closed, args.procs, args.timeout)
    finally:
        nb.stop_cluster(nodes)
        if args.keep:
            print(f"cluster directory kept: {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    doc = {"cluster": {"nodes": args.nodes, "threshold": args.threshold, "transport": args.transport,
                       "synchronous": args.synchronous, "profile": "load-test", "generator_procs": args.procs,
                       "duration_s": args.duration},
           "open_loop": rows, "knee_per_s": knee(rows, args.slo), "slo_p99_s": args.slo, "closed_loop": closed}
    print(f"{'offered/s':>10} {'achieved/s':>11} {'p50 ms':>9} {'p99 ms':>9} {'sent':>6} {'failed':>7} "
          f"{'cpu ms/cert':>12}")
    for r in rows:
        print(f"{r['offered_per_s']:>10.1f} {r['throughput_per_s']:>11.1f} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} "
              f"{r['sent']:>6} {r['failures']:>7} {r['cpu_ms_per_cert']:>12.1f}")
    print(f"knee (>= 90 % of offered, p99 <= {args.slo:g} s, no failures): {doc['knee_per_s']}")
    if closed:
        print(f"closed loop, {closed['in_flight']} in flight: {closed['throughput_per_s']:.1f}/s, "
              f"p50 {closed['p50_ms']:.1f} ms, p99 {closed['p99_ms']:.1f} ms, failures {closed['failures']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
