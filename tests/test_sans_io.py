"""The protocol core must stay deterministic and sans-I/O: replicas replay it byte for byte, and the
simulator and the reference node run the same code.

Every module under trustchain/ is checked: no networking, threads, processes or file-system access, no
clock reads, no entropy from the OS and no use of the global `random` generator (a `random.Random`
instance handed in is fine). The CT core is held to a stricter rule on top: it imports no clock,
randomness or date module at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trustchain
import trustchain.ct

ROOT = Path(trustchain.__file__).resolve().parent
CT_DIR = Path(trustchain.ct.__file__).resolve().parent

# ---------------------------------------------------------------------------- every module under trustchain/

#: modules that perform I/O (network, processes, threads, event loops, files) or draw OS entropy
IO_MODULES = {
    "asyncio", "socket", "selectors", "ssl", "threading", "multiprocessing", "concurrent", "subprocess",
    "os", "pathlib", "shutil", "tempfile", "secrets",
    "dns.query", "dns.resolver", "dns.asyncquery", "dns.asyncresolver", "dns.asyncbackend",
}
#: functions of the `time` module that read a clock or block
CLOCK_FUNCTIONS = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
                   "process_time", "process_time_ns", "thread_time", "thread_time_ns", "sleep"}
#: `datetime`/`date` class methods that read the clock
NOW_METHODS = {"now", "utcnow", "today"}
#: builtins that do I/O
IO_BUILTINS = {"open", "input"}

#: Modules allowed to break the rule, with the reason. Nothing may be added here lightly: the core is
#: sans-I/O so that every replica (and the simulator) computes the same bytes from the same inputs.
#: File-backed adapters belong beside the drivers (e.g. `reference_node/ct_filestore.py`).
KNOWN_EXCEPTIONS: dict[str, set[str]] = {}


def _is_io_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in IO_MODULES)


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def core_violations(source: str, filename: str = "<module>") -> list[str]:
    """Uses of I/O, clocks, OS entropy or the global random generator in one module's source."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # local name -> module it stands for ("time", "random", "datetime")
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _is_io_module(a.name):
                    found.append(a.name)
                if a.name in ("time", "random", "datetime"):
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if _is_io_module(module):
                found.append(module)
            for a in node.names:
                if _is_io_module(module):
                    continue
                if _is_io_module(f"{module}.{a.name}"):
                    found.append(f"{module}.{a.name}")
                elif module == "time" and a.name in CLOCK_FUNCTIONS:
                    found.append(f"time.{a.name}")
                elif module == "random" and a.name != "Random":
                    found.append(f"random.{a.name}")
                elif module == "datetime" and a.name in ("datetime", "date"):
                    aliases[a.asname or a.name] = f"datetime.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = _dotted(node.value)
            head, _, rest = owner.partition(".")
            module = aliases.get(head)
            full = f"{module}.{rest}" if module and rest else (module or owner)
            if full == "time" and node.attr in CLOCK_FUNCTIONS:
                found.append(f"time.{node.attr}")
            elif full == "random" and node.attr != "Random":
                found.append(f"random.{node.attr}")
            elif full in ("datetime.datetime", "datetime.date") and node.attr in NOW_METHODS:
                found.append(f"{full}.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in IO_BUILTINS:
            found.append(f"{node.func.id}()")
    return found


def test_every_core_module_is_sans_io() -> None:
    modules = sorted(ROOT.rglob("*.py"))
    assert len(modules) >= 60
    # every subpackage is walked, not only the CT core
    packages = {p.parent.relative_to(ROOT).as_posix() for p in modules}
    assert {".", "app", "ca", "consensus", "crypto", "ct", "dns"} <= packages
    bad: dict[str, list[str]] = {}
    for path in modules:
        rel = path.relative_to(ROOT).as_posix()
        allowed = KNOWN_EXCEPTIONS.get(rel, set())
        found = [v for v in core_violations(path.read_text(), str(path)) if v not in allowed]
        if found:
            bad[rel] = found
    assert bad == {}


def test_known_exceptions_still_exist_and_still_need_it() -> None:
    for rel, allowed in KNOWN_EXCEPTIONS.items():
        path = ROOT / rel
        assert path.exists(), f"{rel} is gone: drop it from KNOWN_EXCEPTIONS"
        assert set(core_violations(path.read_text(), str(path))) == allowed


def test_core_checker_catches_violations() -> None:
    sample = "\n".join([
        "import asyncio",
        "import socket as s",
        "from concurrent.futures import ThreadPoolExecutor",
        "import dns.resolver",
        "from dns import query",
        "import time as t",
        "from time import monotonic",
        "import random",
        "from random import randrange",
        "from random import Random",
        "import datetime as dt",
        "from datetime import datetime",
        "t.time()",
        "random.random()",
        "random.Random(1).random()",
        "dt.datetime.now(dt.UTC)",
        "datetime.utcnow()",
        "dt.date.today()",
        "dt.datetime(2000, 1, 1)",
        "open('x')",
        "env.open()",
    ])
    assert sorted(core_violations(sample)) == sorted([
        "asyncio", "socket", "concurrent.futures", "dns.resolver", "dns.query", "time.monotonic",
        "random.randrange", "time.time", "random.random", "datetime.datetime.now", "datetime.datetime.utcnow",
        "datetime.date.today", "open()",
    ])


# ---------------------------------------------------------------------------- the CT core, more strictly

FORBIDDEN_MODULES = {"asyncio", "socket", "threading", "random", "time", "datetime", "secrets", "subprocess"}
FORBIDDEN_CALLS = {"urandom", "open"}


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(node.module or "")
        elif isinstance(node, ast.Call):
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
