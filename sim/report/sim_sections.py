# ruff: noqa: RUF001  (the report is prose, so non-ASCII symbols in its strings are meant)
"""The report's simulation sections: microbenchmarks, finality and cost against n, the network model,
batching, recovery, and the adversaries."""

from __future__ import annotations

from typing import Any

from sim.experiments import AdversaryRow, BatchResult, RecoveryResult, ScalingResult, WanResult, med
from sim.report.base import CLAIM_FINALITY_S, CLAIM_THROUGHPUT, ReportBase, fmt_time

__all__ = ["SimSections"]


class SimSections(ReportBase):
    """Renders the simulation sections' results as Markdown and plots."""

    def render_micro(self, rows: list[dict[str, Any]]) -> list[str]:
        lines = ["## Microbenchmarks (wall time, this machine)", "",
                 "pytest-benchmark medians (`python benchmarks/micro.py`), each beside the raw library call it is "
                 "built on, measured in the same run; the ratio is the part that travels between machines. "
                 "Absolute times move with the machine's load (the load average is in the header).", "",
                 "| operation | median | physical limit (same run) | its median | ratio |",
                 "| --- | ---: | --- | ---: | ---: |"]
        for r in rows:
            lines.append(f"| {r['operation']} | {fmt_time(r['median_s'])} | {r['limit']} | "
                         f"{fmt_time(r['limit_median_s'])} | {r['ratio']:.3g}× |")
        lines += ["", "What each row times is listed in the docstring of `benchmarks/micro.py`. FROST 3-of-5 here runs "
                  "all three signers and the aggregator in one process (no network), so it is the total CPU a "
                  "quorum spends per certificate, not the latency a client sees.", ""]
        return lines

    def render_scaling(self, s: ScalingResult) -> list[str]:
        p = self.plan
        ns, p50, p99, mpr, bpr = s.n, s.p50, s.p99, s.mpr, s.bpr
        fig, ax = self.plots.new()
        ax.plot(ns, [x / 1000 for x in p50], "o-", label="p50")
        ax.plot(ns, [x / 1000 for x in p99], "s-", label="p99")
        ax.axhline(CLAIM_FINALITY_S, color="red", ls="--", label=f"design claim: {CLAIM_FINALITY_S:g} s")
        ax.set_yscale("log")
        ax.set_xlabel("validators n (all voting; f = ⌊(n−1)/3⌋)")
        ax.set_ylabel("client-observed finality (simulated s)")
        ax.set_title(f"Finality stays far below the 15 s claim up to n = {max(ns)}\n(lognormal 20 ms links, batch 10)")
        ax.legend()
        f1 = self.plots.save(fig, "finality_vs_n.png")

        a, k = s.msg_fit
        fig, ax = self.plots.new()
        ax.plot(ns, mpr, "o-", label="measured")
        if len(ns) > 1:
            ax.plot(ns, [a * n**k for n in ns], ":", color="gray", label=f"fit ∝ n^{k:.2f}")
            ax.plot(ns, [mpr[0] * n / ns[0] for n in ns], "--", color="green", label=f"linear (from n={ns[0]})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("validators n")
        ax.set_ylabel("messages per committed request")
        ax.set_title("PBFT messages per request grow ~n² — not linear")
        ax.legend()
        f2 = self.plots.save(fig, "messages_per_request_vs_n.png")

        fig, ax = self.plots.new()
        ax.plot(ns, [b / 1024 for b in bpr], "o-", label="measured")
        if s.bytes_fit is not None:
            ab, kb = s.bytes_fit
            ax.plot(ns, [ab * n**kb / 1024 for n in ns], ":", color="gray", label=f"fit ∝ n^{kb:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("validators n")
        ax.set_ylabel("bytes sent per committed request (KiB)")
        ax.set_title("Bandwidth per request grows ~n² as well")
        ax.legend()
        f3 = self.plots.save(fig, "bytes_per_request_vs_n.png")

        rows = ["| n | f | seeds | finality p50 (sim ms) | p99 (sim ms) | messages / request | KiB / request | "
                "sim wall s / run |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for i, n in enumerate(ns):
            rows.append(f"| {n} | {(n - 1) // 3} | {s.seeds[i]} | {p50[i]:.1f} | {p99[i]:.1f} | {mpr[i]:.0f} | "
                        f"{bpr[i] / 1024:.1f} | {s.wall_s[i]:.1f} |")
        return [
            "## Finality and cost against cluster size", "",
            f"Closed loop, 16 clients, {p.scaling_requests} requests per run, batch size 10, lognormal one-way "
            f"latency (median 20 ms, σ 0.3), no faults; {p.scaling_seeds} seeds per point. Every node here is a "
            "**voting validator**: the simulator has no non-voting replicas yet (see below). Latencies are per-run "
            "percentiles in **simulated time**, then the median over seeds.", "",
            *rows, "", f"![finality vs n]({f1})", "", f"![messages per request vs n]({f2})", "",
            f"![bytes per request vs n]({f3})", "",
            f"Messages per committed request grow as n^{k:.2f} (least-squares fit over n = {ns[0]}..{ns[-1]}): "
            "PBFT's normal case is all-to-all (prepare and commit), so O(n²) per batch. Per-request cost is "
            "divided by the batch size, which hides nothing about the exponent.", ""]

    def render_wan(self, w: WanResult) -> list[str]:
        p = self.plan
        xs, p50, p99 = w.latencies, w.p50, w.p99
        fig, ax = self.plots.new()
        ax.plot(xs, p50, "o-", label="finality p50")
        ax.plot(xs, p99, "s-", label="finality p99")
        ax.plot(xs, [4 * x for x in xs], ":", color="gray", label="4 × one-way latency (request, 3 phases)")
        ax.axhline(CLAIM_FINALITY_S * 1000, color="red", ls="--", label="design claim: 15 s")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("median one-way link latency (ms, lognormal σ 0.3)")
        ax.set_ylabel("client-observed finality (simulated ms)")
        ax.set_title("Finality tracks ~4–5 one-way delays (n = 7)")
        ax.legend(fontsize=8)
        f1 = self.plots.save(fig, "finality_vs_latency.png")

        xr, r50, r99 = w.regions, w.regions_p50, w.regions_p99
        fig, ax = self.plots.new()
        ax.plot(xr, r50, "o-", label="finality p50")
        ax.plot(xr, r99, "s-", label="finality p99")
        ax.axhline(CLAIM_FINALITY_S * 1000, color="red", ls="--", label="design claim: 15 s")
        ax.set_yscale("log")
        ax.set_xlabel("WAN regions the 7 validators are spread over (round robin)")
        ax.set_ylabel("client-observed finality (simulated ms)")
        ax.set_title("On the WAN model, finality is a few inter-region RTTs")
        ax.legend(fontsize=8)
        f2 = self.plots.save(fig, "finality_vs_wan_regions.png")
        from sim.scenario import WAN_REGIONS

        rows = ["| link model | finality p50 (sim ms) | p99 (sim ms) |", "| --- | ---: | ---: |"]
        rows += [f"| lognormal, median {x:g} ms | {a:.1f} | {b:.1f} |" for x, a, b in zip(xs, p50, p99, strict=True)]
        rows += [f"| wan, {x} region(s): {', '.join(WAN_REGIONS[:x])} | {a:.1f} | {b:.1f} |"
                 for x, a, b in zip(xr, r50, r99, strict=True)]
        return ["## Finality against the network model", "",
                f"n = 7, batch 10, 16 closed-loop clients, 100 requests, {p.wan_seeds} seeds per point. The "
                "`wan` model uses public inter-region medians (`sim/network.py`), σ 0.15; clients sit at the "
                "replica sites.", "", *rows, "", f"![finality vs latency]({f1})", "",
                f"![finality vs regions]({f2})", ""]

    def render_batch(self, r: BatchResult) -> list[str]:
        p = self.plan
        xs, tput, lat, mpr = r.batch, r.tput, r.latency_p50, r.mpr
        micro_rate = None
        if "cert_generation" in self.micro_rows:
            micro_rate = 1 / self.micro_rows["cert_generation"]["median_s"]
        fig, ax = self.plots.new()
        ax.plot(xs, tput, "o-", label="ordered requests / simulated s (no CPU cost modelled)")
        ax.axhline(CLAIM_THROUGHPUT, color="red", ls="--", label="design claim: 10,000 certs/s")
        if micro_rate:
            ax.axhline(micro_rate, color="purple", ls="-.",
                       label=f"CPU ceiling: FROST 3-of-5 issuance, 1 core ({micro_rate:.0f}/s wall)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size (requests per pre-prepare)")
        ax.set_ylabel("throughput (requests / s)")
        ax.set_title("Batching raises ordering throughput; signing CPU caps issuance")
        ax.legend(fontsize=8)
        f1 = self.plots.save(fig, "throughput_vs_batch.png")
        rows = ["| batch | throughput (req / simulated s) | finality p50 (sim ms) | messages / request |",
                "| ---: | ---: | ---: | ---: |"]
        rows += [f"| {x} | {t:,.0f} | {la:.1f} | {m:.1f} |" for x, t, la, m in zip(xs, tput, lat, mpr, strict=True)]
        return ["## Throughput against batch size", "",
                f"n = 7, 200 closed-loop clients (enough outstanding requests to fill batches of 100), "
                f"{p.batch_requests} key-value requests, lognormal 20 ms links, {p.batch_seeds} seeds. Throughput "
                "is completed requests per **simulated** second from first submission to last completion. The "
                "simulator charges no CPU time here (the capacity section does), so this is what the protocol and "
                "network allow; the purple line "
                "is the single-core CPU ceiling for certificate signing from the microbenchmarks (wall time).", "",
                *rows, "", f"![throughput vs batch]({f1})", ""]

    def render_recovery(self, r: RecoveryResult) -> list[str]:
        out = r.times
        fig, ax = self.plots.new()
        labels = list(out)
        ax.boxplot([out[k] or [float("nan")] for k in labels], tick_labels=labels, showfliers=True)
        for i, k in enumerate(labels, 1):
            ax.plot([i] * len(out[k]), out[k], "o", alpha=0.5, color="C0")
        ax.set_ylabel("time to first completed request (simulated s)")
        ax.set_title("Time until clients see progress again after a crash or a heal")
        f1 = self.plots.save(fig, "recovery.png")
        rows = ["| event | scenario | seeds | recovery p50 (sim s) | max (sim s) | expectation met |",
                "| --- | --- | ---: | ---: | ---: | ---: |"]
        for label, fname, nrec, vals, met in r.detail:
            rows.append(f"| {label} | `{fname}` | {nrec} | {med(vals):.2f} | {max(vals, default=float('nan')):.2f} | "
                        f"{met}/{nrec} |")
        return ["## Recovery after a primary crash and after a partition heals", "",
                "Time from the event (crash of the primary; heal of the symmetric partition) to the next request "
                "a client completes, in **simulated** seconds. `primary-crash`: n = 4, view-change timeout "
                "1 s; `partition-heal`: n = 7 split 3 | 4 (no side has a quorum) for 8 s, view-change timeout 1 s, "
                "doubling per failed view.", "", *rows, "", f"![recovery]({f1})", ""]

    def render_adversaries(self, results: list[AdversaryRow]) -> list[str]:
        rows = ["| adversary / scenario | seeds | safety expected | consensus safety held | application checks held "
                "| liveness held | expectation met | errors |",
                "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        names, safe_frac, live_frac = [], [], []
        for r in results:
            app_txt = f"{r.app_ok}/{r.judged}" + (f" (failed: {', '.join(r.failed_app)})" if r.failed_app else "")
            rows.append(f"| {r.name} | {r.runs} | {r.expect} | {r.safe}/{r.judged} | {app_txt} | {r.live}/{r.judged} | "
                        f"{r.met}/{r.runs} | {r.errors} |")
            names.append(r.name.split(" (")[0].strip("`").removesuffix(".yaml"))
            safe_frac.append(r.safe / r.judged if r.judged else 0)
            live_frac.append(r.live / r.judged if r.judged else 0)
        fig, ax = self.plots.new()
        fig.set_size_inches(8, 4.8)
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [100 * s for s in safe_frac], 0.4, label="consensus safety held")
        ax.bar([x + 0.2 for x in xs], [100 * s for s in live_frac], 0.4, label="liveness held")
        ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("runs (% of seeds)")
        ax.set_ylim(0, 105)
        within_ok = all(r.safe == r.runs for r in results if r.expect == "hold")
        ax.set_title("Consensus safety held for every adversary within f; beyond f it breaks" if within_ok
                     else "Consensus safety FAILED in some runs within f (see the table)")
        ax.legend(fontsize=8, loc="lower left")
        f1 = self.plots.save(fig, "adversaries.png")
        return ["## Safety and liveness against each adversary, over many seeds", "",
                "Checkers: *consensus safety* is agreement, validity and certificates (2f+1 valid commit "
                "signatures behind every execution); *application checks* are each application's own (e.g. "
                "CT maximum merge delay, CA issuance liveness, DNS result agreement); and liveness (every "
                "request completes within the scenario's "
                "bound after GST). Generated rows run one behaviour on both faulty replicas of a 7-node "
                "cluster (f = 2, lognormal 20 ms, 150 requests); the scenario files are described in "
                "`scenarios/README.md`. `beyond-threshold` runs f+1 colluders and *expects* a safety "
                "violation: \"safety held 0/N\" there is the checker doing its job. Seeds are 1..N (not the "
                "file's own seed).", "", *rows, "", f"![adversaries]({f1})", ""]
