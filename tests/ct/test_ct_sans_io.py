"""The CT core must stay deterministic and sans-I/O: replicas replay it byte for byte."""

from __future__ import annotations

import ast
from pathlib import Path

import trustchain.ct

CT_DIR = Path(trustchain.ct.__file__).resolve().parent
FORBIDDEN_MODULES = {"asyncio", "socket", "threading", "random", "time", "datetime", "secrets", "subprocess"}
FORBIDDEN_CALLS = {"urandom", "open"}
FILE_IO_ALLOWED = {"filestore.py"}


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(node.module or "")
        elif isinstance(node, ast.Call) and path.name not in FILE_IO_ALLOWED:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in FORBIDDEN_CALLS:
                found.append(f"{name}()")
    return found


def test_ct_modules_use_no_clock_rng_or_io() -> None:
    modules = sorted(CT_DIR.glob("*.py"))
    assert len(modules) >= 10
    bad = {p.name: v for p in modules if (v := _violations(p))}
    assert bad == {}


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom random import randrange\nimport os\nos.urandom(8)\n")
    assert _violations(sample) == ["time", "random", "urandom()"]
