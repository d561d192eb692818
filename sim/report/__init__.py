"""`python -m sim report`: measure the current commit and write reports/README.md plus plots.

The experiments are in `sim.experiments` and `sim.capacity`; this package renders them, one module per
group of sections (`sim.report.document` assembles the document and holds the command).
"""

from __future__ import annotations

from sim.report.document import Report, cmd_report, generate, register

__all__ = ["Report", "cmd_report", "generate", "register"]
