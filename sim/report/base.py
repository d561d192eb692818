
"""The report's shared parts: the design document's claims, the plotting helper, and the state every
section reads and writes (`ReportBase`, which the section classes extend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.capacity import CapacityResult
    from sim.experiments import AdversaryRow, BatchResult, Lab, Plan, ScalingResult, WanResult

__all__ = ["CLAIM_CERT_GEN_MS", "CLAIM_DNS_MS", "CLAIM_FINALITY_S", "CLAIM_NODES", "CLAIM_THROUGHPUT",
           "CLAIM_VALIDATION_MS", "Plots", "ReportBase", "fmt_time"]

# The design document's claims (TrustChain.md, "Performance Metrics").
CLAIM_CERT_GEN_MS = 35.0
CLAIM_DNS_MS = 50.0
CLAIM_VALIDATION_MS = 10.0
CLAIM_FINALITY_S = 15.0
CLAIM_THROUGHPUT = 10_000.0
CLAIM_NODES = 10_000



class Plots:
    def __init__(self, out: Path) -> None:
        try:
            import matplotlib
        except ImportError:
            raise SystemExit("python -m sim report: the figures need matplotlib; "
                             "install it with: pip install 'trustchain[report]'") from None

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.plt = plt
        self.out = out
        self.files: list[str] = []

    def new(self) -> Any:
        fig, ax = self.plt.subplots(figsize=(7, 4.2), dpi=100)
        ax.grid(True, which="both", alpha=0.3)
        return fig, ax

    def save(self, fig: Any, name: str) -> str:
        fig.tight_layout()
        fig.savefig(self.out / name)
        self.plt.close(fig)
        self.files.append(name)
        return name



def fmt_time(s: float) -> str:
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"



class ReportBase:
    """What the sections share: the output, the plan, the lab, the Markdown so far, the claims table's
    rows, and each section's result (the claims table uses whichever sections ran)."""

    out: Path
    plan: Plan
    lab: Lab
    data: Path
    plots: Plots
    md: list[str]
    claims: dict[str, dict[str, str]]
    timings: dict[str, float]
    reuse_scale: bool
    micro_rows: dict[str, dict[str, Any]]
    scaling_result: ScalingResult | None
    wan_result: WanResult | None
    batch_result: BatchResult | None
    adversary_rows: list[AdversaryRow]
    scale_fits: dict[str, dict[str, Any]]
    observer_rows: list[dict[str, Any]]
    loopback_data: dict[str, Any] | None
    capacity_result: CapacityResult | None

    def claim(self, key: str, claimed: str, sim: str, loopback: str, verdict: str) -> None:
        self.claims[key] = {"claimed": claimed, "sim": sim, "loopback": loopback, "verdict": verdict}

