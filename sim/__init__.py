"""Deterministic discrete-event simulator that runs the real trustchain/ protocol code in virtual time.

The public API is listed in `__all__`. Its names are imported lazily (PEP 562), so that importing one
submodule (e.g. `sim.scenario` to validate a file) does not load the whole world and runner.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.checkers import Verdict
    from sim.runner import RunResult, run
    from sim.scenario import Scenario, ScenarioError, from_dict, load
    from sim.trace import Trace
    from sim.world import World

__all__ = ["RunResult", "Scenario", "ScenarioError", "Trace", "Verdict", "World", "from_dict", "load", "run"]

_HOME = {
    "RunResult": "sim.runner", "run": "sim.runner",
    "Scenario": "sim.scenario", "ScenarioError": "sim.scenario", "from_dict": "sim.scenario", "load": "sim.scenario",
    "Trace": "sim.trace", "Verdict": "sim.checkers", "World": "sim.world",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
