# ruff: noqa: RUF001  (the report is prose, so non-ASCII symbols in its strings are meant)
"""The report's scale sections: simulator speed, observers, and the reference node's loopback cluster."""

from __future__ import annotations

from sim.experiments import LoopbackResult, ObserverScaleResult, ScaleResult
from sim.report.base import CLAIM_CERT_GEN_MS, ReportBase

__all__ = ["ScaleSections"]


class ScaleSections(ReportBase):
    """Renders the scale and loopback sections, and the loopback cluster's entries in the claims table."""

    def render_scale(self, s: ScaleResult) -> list[str]:
        p = self.plan
        rows, fits, reused = s.rows, s.fits, s.reused
        fig, ax = self.plots.new()
        for sig, mark in (("real", "o-"), ("modelled", "s-")):
            sub = [r for r in rows if r["signatures"] == sig and not r.get("direct")]
            ax.plot([r["n"] for r in sub], [r["cpu_s"] * 1000 / r["requests"] for r in sub], mark,
                    label=f"{sig} signatures (fit ∝ n^{fits[sig]['k']})")
        ax.axhline(600, color="red", ls="--", label="budget: 1,000 requests in 10 min = 600 ms CPU / request")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("validators n")
        ax.set_ylabel("simulator CPU time per request (ms, one core)")
        ax.set_title("Simulator cost per request grows ~n²; modelled signatures buy a constant factor")
        ax.legend(fontsize=8)
        f1 = self.plots.save(fig, "simulator_scale.png")

        table = ["| n | signatures | requests | CPU s (one core) | simulated events / CPU s "
                 "| messages delivered / CPU s "
                 "| peak RSS (MB) | met |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in rows:
            table.append(f"| {r['n']} | {r['signatures']}{' (direct check)' if r.get('direct') else ''} | "
                         f"{r['requests']} | {r['cpu_s']:.1f} | {r['events_per_s']:,} | {r['messages_per_s']:,} | "
                         f"{r['peak_rss_mb']:.0f} | {'yes' if r['expectation_met'] else 'NO'} |")
        direct = next((r for r in rows if r.get("direct")), None)
        check = ""
        if direct and fits["real"]["k"] is not None:
            pred = fits["real"]["a"] * direct["requests"] * direct["n"] ** fits["real"]["k"]
            check = (f" Check of the extrapolation: a direct {direct['requests']}-request run at n = {direct['n']} "
                     f"(real signatures) took {direct['cpu_s']:.0f} s CPU; the fit predicted {pred:.0f} s.")
        return [
            "## Simulator scale", "",
            "The `python -m sim bench` cluster (closed loop, 16 clients, batch 10, lognormal 20 ms), each point in a "
            "fresh single-use process, timed by process CPU time (robust to the other jobs sharing this machine). "
            f"Short runs ({p.scale_requests} requests) are measured; the cost per request is fitted as a·n^k and "
            "solved for the largest n whose 1,000-request run fits in 10 minutes of one core — **an "
            f"extrapolation**.{check}", "",
            f"- real Ed25519 signatures (PyNaCl): largest n ≈ **{fits['real']['largest_n']}** "
            f"(cost ∝ n^{fits['real']['k']})",
            f"- modelled signatures (HMAC-SHA512 per signer, `sim/scale.py`: models cost, not security): largest n "
            f"≈ **{fits['modelled']['largest_n']}** (cost ∝ n^{fits['modelled']['k']})", "",
            *table, "", f"![simulator scale]({f1})", "",
            *(["(These scale figures were measured by an earlier `python -m sim report` run on this machine and "
               "reused with `--reuse-scale`.)", ""] if reused else []),
            "Peak RSS is the worker process's maximum resident set (`resource.getrusage`), including the "
            "interpreter and its imports.", "",
            "**Validators vs observers.** Every simulated node above is a voting PBFT validator, so the cost "
            "grows ~n². Beyond a validator committee, nodes join as observers (next section).", "",
            "Modelled signatures are selected per scenario with `cluster.signatures: modelled`.", ""]

    def observer_claim(self) -> str:
        rows = self.observer_rows
        if not rows:
            return "observers not measured"
        big = rows[-1]
        po = big["per_observer"]
        counts = ", ".join(format(r["nodes"], ",") for r in rows)
        return (f"with observers: {big['nodes']:,} nodes ({big['validators']} validators) in {big['cpu_s']:.0f} s CPU, "
                f"{big['peak_rss_mb']:.0f} MB; per observer {po['received_mean']} messages received "
                f"({', '.join(str(r['per_observer']['received_mean']) for r in rows)} at "
                f"{counts} nodes)")

    def render_observer_scale(self, s: ObserverScaleResult) -> list[str]:
        rows = s.rows
        fig, ax = self.plots.new()
        xs = [r["nodes"] for r in rows]
        ax.plot(xs, [r["cpu_s"] for r in rows], "o-", label="simulator CPU s (one core)")
        ax.plot(xs, [r["peak_rss_mb"] for r in rows], "s-", label="peak RSS (MB)")
        ax.plot(xs, [r["per_observer"]["received_mean"] for r in rows], "^-", label="messages received per observer")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes (validators + observers)")
        ax.set_title("Validators plus observers: per-node traffic stays flat as observers are added")
        ax.legend(fontsize=8)
        f1 = self.plots.save(fig, "observer_scale.png")
        table = ["| nodes | validators | observers (Byzantine, partitioned) | batches | CPU s | wall s | peak RSS MB "
                 "| observer msgs sent / received (mean, max) | observer bytes received (mean) "
                 "| validator feed msgs sent (mean) | validator consensus msgs sent (mean) | met |",
                 "| ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
        for r in rows:
            po, pv = r["per_observer"], r["per_validator_feed"]
            table.append(
                f"| {r['nodes']:,} | {r['validators']} | {r['observers']:,} ({r['byzantine_observers']}, "
                f"{r['partitioned']:,}) | {r['batches']} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | "
                f"{r['peak_rss_mb']:.0f} | {po['sent_mean']} / {po['received_mean']} ({po['sent_max']}, "
                f"{po['received_max']}) | {po['received_bytes_mean']:,} | {pv['sent_mean']} | "
                f"{r['per_validator_consensus_sent_mean']} | {'yes' if r['expectation_met'] else 'NO'} |")
        return [
            "## Scaling with observers", "",
            "`scenarios/scale-10k.yaml` resized (`python -m sim scale --nodes ...`): 31 validators (f = 10, all "
            "ten Byzantine) and observers for the rest, 0.5% of them Byzantine (withholding and forging "
            "batches), a third of them partitioned for two seconds; 256 requests. Observers verify each batch's "
            "commit certificate (2f+1 commit signatures), execute it on their own replica and forward it through "
            "three independent fan-out-4 trees; observers simulated in one process share one certificate check "
            "(a cache keyed by packet digest). Each point ran in a fresh process; CPU time is the process's own "
            "(robust to other jobs on this machine), wall time is not.", "",
            *table, "", f"![observer scale]({f1})", "",
            *(["(Reused from an earlier run's `data/observer_scale.json` with `--reuse-scale`.)", ""]
              if s.reused else []),
            "Messages and bytes per observer stay constant as observers are added (each receives one copy per tree "
            "and forwards to at most 12 children), and so do the validators' (the feed's children are fixed; "
            "their consensus traffic depends only on the 31 validators). Total CPU grows linearly with the node "
            "count, since every observer executes every batch on its own replica.", ""]

    def render_loopback(self, result: LoopbackResult) -> list[str]:
        d = result.data
        if d is None:
            return ["## Loopback cluster", "", f"The node benchmark failed (exit {result.returncode}): "
                    f"`{result.stderr.strip()[-300:]}`", ""]
        seq, conc = d["issuance_sequential"], d["issuance_concurrent"]
        mem = d["peak_memory_mb"]
        return [
            "## Loopback cluster (reference node)", "",
            f"`benchmarks/node_bench.py`: {d['cluster']['nodes']} validator processes on 127.0.0.1, "
            f"{d['cluster']['threshold']}-of-{d['cluster']['nodes']} FROST, {d['cluster']['transport']} peer links, "
            f"SQLite synchronous={d['cluster']['synchronous']}, all on this {d['cluster']['cpus']}-core machine (the "
            "clients too). Issuance is timed from `POST /api/v1/cert/request` to the response carrying the "
            "certificate: two ordered consensus steps (approve, finalize) and one FROST exchange. Wall time.", "",
            "| measurement | p50 | p99 | rate |", "| --- | ---: | ---: | ---: |",
            f"| issuance, one at a time ({seq['count']}) | {seq['p50_ms']:.0f} ms | {seq['p99_ms']:.0f} ms | "
            f"{seq['certs_per_s']:.1f} certs/s |",
            f"| issuance, {conc['concurrency']} in flight ({conc['count']}) | {conc['p50_ms']:.0f} ms | "
            f"{conc['p99_ms']:.0f} ms | {conc['certs_per_s']:.1f} certs/s |",
            f"| DNS resolve through the API ({d['dns_api']['count']}) | {d['dns_api']['p50_ms']:.2f} ms | "
            f"{d['dns_api']['p99_ms']:.2f} ms | {d['dns_api']['queries_per_s']:.0f} q/s (one client) |",
            f"| DNS query to a node's UDP listener ({d['dns_udp']['count']}) | {d['dns_udp']['p50_ms']:.2f} ms | "
            f"{d['dns_udp']['p99_ms']:.2f} ms | |", "",
            f"Peak memory per node: {min(mem.values()):.0f}–{max(mem.values()):.0f} MB ({d['memory_source']}). "
            "The replicated CA policy also admits at most 50 requests per account per hour, so 10,000 "
            "certificates per second is out of reach by policy before it is out of reach by CPU.", ""]

    def _loopback_claims(self) -> dict[str, tuple[str, str | None]]:
        d = self.loopback_data
        if d is None:
            return {}
        seq, conc, api = d["issuance_sequential"], d["issuance_concurrent"], d["dns_api"]
        return {
            "Certificate generation": (
                f"p50 {seq['p50_ms']:.0f} ms, p99 {seq['p99_ms']:.0f} ms end to end through the API (5 nodes, "
                f"3-of-5 FROST, one at a time); p50 {conc['p50_ms']:.0f} ms with {conc['concurrency']} in flight",
                "meets on loopback" if seq["p50_ms"] <= CLAIM_CERT_GEN_MS else
                f"not met end to end on loopback (p50 {seq['p50_ms']:.0f} ms > {CLAIM_CERT_GEN_MS:g} ms)"),
            "DNS resolution": (f"through the API p50 {api['p50_ms']:.1f} ms, p99 {api['p99_ms']:.1f} ms; UDP "
                               f"listener p50 {d['dns_udp']['p50_ms']:.1f} ms (no WAN distance)", None),
            "Consensus finality": (f"an issuance (two ordered steps + FROST) completes in p50 {seq['p50_ms']:.0f} "
                                   "ms", None),
            "Throughput": (f"{conc['certs_per_s']:.0f} certs/s with {conc['concurrency']} in flight "
                           f"(p99 {conc['p99_ms']:.0f} ms)", None),
        }
