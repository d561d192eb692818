"""What a checker concludes about one property of a run. Its own module so that the checkers and the
modules they build on (`sim.conflicts`, the application plug-ins) share it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Verdict"]


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str = ""
    first_violation: dict[str, object] | None = None
    checked: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    #: the run ended before the property could be decided (not a violation, and not a pass)
    inconclusive: bool = False
