"""Every exception the project defines derives from `trustchain.errors.TrustChainError`, so a caller
(an API handler, the CLI, a test harness) can catch everything TrustChain raises with one clause.

Modules are imported and their classes inspected, so a class that inherits from another project
exception (e.g. `class X(LogError)`) counts as long as the root does.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import reference_node
import sim
import trustchain
from trustchain.errors import TrustChainError


def _modules(package: ModuleType) -> list[ModuleType]:
    """Every module of `package`, imported. `__main__` modules are skipped: importing one runs a CLI."""
    found = [package]
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        found.append(importlib.import_module(info.name))
    return found


def _defined_exceptions() -> dict[str, type[BaseException]]:
    out: dict[str, type[BaseException]] = {}
    for package in (trustchain, sim, reference_node):
        for module in _modules(package):
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                    out[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return out


def test_every_exception_derives_from_trustchain_error() -> None:
    found = _defined_exceptions()
    assert len(found) >= 25  # the walk really reached the packages
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, TrustChainError))
    assert outside == []
