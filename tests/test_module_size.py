"""No module of the protocol core grows past MAX_LINES: a module that long holds more than one concept,
and the core is read (and audited) module by module."""

from __future__ import annotations

from pathlib import Path

import trustchain

ROOT = Path(trustchain.__file__).resolve().parent
MAX_LINES = 600

def _sizes() -> dict[str, int]:
    return {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in sorted(ROOT.rglob("*.py"))}


def test_no_core_module_is_over_the_limit() -> None:
    too_long = {rel: n for rel, n in _sizes().items() if n > MAX_LINES}
    assert too_long == {}, f"split these modules (over {MAX_LINES} lines): {too_long}"
