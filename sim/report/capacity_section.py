# ruff: noqa: RUF001  (the report is prose, so non-ASCII symbols in its strings are meant)
"""The report's capacity section: certificates per second against offered load, with CPU charged."""

from __future__ import annotations

from sim.capacity import P99_BOUND_MS, TARGET_RPS, CapacityResult
from sim.report.base import ReportBase

__all__ = ["CapacitySection"]


class CapacitySection(ReportBase):
    """Renders `sim.capacity` results and their entry in the claims table."""

    def render_capacity(self, r: CapacityResult) -> list[str]:
        cores = sorted({p.cores for p in r.points})
        fig, (left, right) = self.plots.plt.subplots(1, 2, figsize=(11, 4.4), dpi=100)
        for i, c in enumerate(cores):
            pts = [p for p in r.points if p.cores == c]
            xs = [p.offered for p in pts]
            color = f"C{i % 10}"
            left.plot(xs, [p.throughput for p in pts], "o-", color=color, label=f"{c} cores")
            left.plot(xs, [min(p.offered, p.capacity) for p in pts], ":", color=color)
            right.plot(xs, [p.p99_ms / 1000 for p in pts], "s-", color=color, label=f"{c} cores")
        lo = min((p.offered for p in r.points), default=1.0)
        hi = max((p.offered for p in r.points), default=1.0)
        left.plot([lo, hi], [lo, hi], ":", color="gray", label="offered = completed")
        left.axhline(TARGET_RPS, color="red", ls="--", label="claim: 10,000 certs/s")
        right.axhline(P99_BOUND_MS / 1000, color="red", ls="--", label="p99 bound: 1 s")
        for ax, ylabel in ((left, "completed certificates / simulated s"), (right, "p99 latency (simulated s)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel("offered load (certificate requests / s, Poisson)")
            ax.set_ylabel(ylabel)
        left.legend(fontsize=7)
        right.legend(fontsize=7)
        needed = (f"needs {r.cores_needed} cores per validator" if r.cores_needed
                  else "not reached with the cores tried")
        fig.suptitle(f"5 validators, 7-region WAN, CPU charged per operation: 10,000 certs/s {needed}")
        f1 = self.plots.save(fig, "capacity_with_cpu.png")

        rows = ["| cores / validator | offered (req/s) | requests | completed | throughput (req / sim s) | "
                "p50 (sim ms) | p99 (sim ms) | CPU per request (busiest validator, ms) | utilisation | "
                "CPU capacity (req/s) | meets |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for p in r.points:
            rows.append(f"| {p.cores} | {p.offered:,.0f} | {p.requests:,} | {p.completed:,} | {p.throughput:,.0f} | "
                        f"{p.p50_ms:.0f} | {p.p99_ms:.0f} | {p.cpu_us_per_request / 1000:.2f} | "
                        f"{p.utilisation:.2f} | {p.capacity:,.0f} | {'yes' if p.meets else 'no'} |")
        costs = ", ".join(f"{k} {v:g}" for k, v in r.costs.as_dict().items())
        source = r.costs_source
        two = (f"{r.two_cores_rps:,.0f} certificates/s" if r.two_cores_rps is not None
               else "below the smallest load tried")
        at = next((p for p in r.points if p.cores == r.cores_needed and p.offered == TARGET_RPS), None)
        work = ("" if at is None else
                f" At that load the busiest validator spends {at.cpu_us_per_request / 1000:.2f} ms of core time per "
                f"certificate, {TARGET_RPS * at.cpu_us_per_request / 1e6:.1f} cores' worth at {TARGET_RPS:,.0f}/s "
                f"(utilisation {at.utilisation:.2f}); the short runs' p99 stays far below 1 s even past "
                "saturation, so the utilisation bound is what decides.")
        return [
            "## Capacity with CPU", "",
            "The other sections charge no CPU. Here every validator has a CPU model (`sim/cpu.py`): `cores` cores "
            "and a FIFO queue; a message or timer is handled when a core is free and holds it for the operation's "
            "cost (packet handling, decoding and digests per KiB, each signature the replica verified, each "
            "message it signed, each commit), and its effects leave when that time has elapsed, in order. Each "
            "executed request is charged what one certificate issuance costs that validator (the `certificate` "
            "profile): CSR verification and TBS construction on every validator, a FROST round-1 commitment and "
            "signature share on each of the 3 signers (rotating), aggregation and verification on one of them, "
            "and checking the finalize request and assembling the certificate on every validator; a batch's "
            "per-request work is spread over the free cores.", "",
            f"Costs (µs of one core), {source}: {costs}.", "",
            "Workload: 5 validators (f = 1) on the 7-region WAN model (validator i in the i-th region: us-east, "
            "us-west, eu-west, eu-central, ap-south; σ 0.15), open-loop Poisson arrivals "
            "(`workload.mode: poisson`: arrivals do not wait for completions; latency counts from the arrival), "
            f"batch 200, one seed per point, {r.plan.min_requests:,}–{r.plan.max_requests:,} requests per point "
            f"(about {r.plan.arrival_s:g} simulated s of arrivals). Each core count's loads span a tenth to twice "
            "its rough CPU bound. Latency is that of the issuance request's ordering (f+1 matching replies "
            "carrying the approval); the FROST and finalize steps are charged as CPU but their extra round trips "
            "are not simulated here. The simulated replicas sign with the modelled scheme to keep the simulator "
            "fast; the CPU model charges Ed25519 costs for every signature. Throughput is completions per "
            "simulated second between the 10th and the 90th percentile completion; in runs this short it reads "
            "low at high loads (the spread of WAN latencies stretches the completions of a quarter second of "
            "arrivals), so the plot also shows, dotted, min(offered, CPU capacity), where CPU capacity is "
            "cores ÷ the busiest validator's core time per request at that point. A point **meets** the target "
            f"when every request completed, p99 ≤ {P99_BOUND_MS / 1000:g} s and utilisation (offered load × the "
            "busiest validator's core time per request ÷ cores) < 1: a short run cannot tell a slowly growing "
            "backlog from a steady state by latency alone.",
            "", *rows, "", f"![capacity with CPU]({f1})", "",
            f"**Cores per validator for {TARGET_RPS:,.0f} certificates/s with p99 ≤ 1 s: "
            f"{r.cores_needed if r.cores_needed else 'not reached with the cores tried'}** (the smallest core count "
            "that met it, narrowed by bisection between powers of two). With this machine's 2 cores per validator "
            f"the cluster met {two} (bisection on the load).{work}", ""]

    def capacity_claim(self) -> tuple[str, str] | None:
        r = self.capacity_result
        if r is None:
            return None
        two = f"{r.two_cores_rps:,.0f}" if r.two_cores_rps is not None else "< the smallest load tried"
        needed = (f"{TARGET_RPS:,.0f} certs/s with p99 ≤ 1 s needs **{r.cores_needed} cores per validator**"
                  if r.cores_needed else f"{TARGET_RPS:,.0f} certs/s not reached with the cores tried")
        text = (f"with CPU charged (5 validators, 7-region WAN, open loop, certificate costs "
                f"as in the capacity section): {needed}; with 2 cores (this "
                f"machine) {two} certs/s")
        verdict = (f"met in simulation with {r.cores_needed} cores per validator" if r.cores_needed
                   else "not met in simulation")
        return text, verdict
